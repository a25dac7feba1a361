//! The control plane's tables, one module per table family; every statement on them
//! lives here. The caller owns the transaction.

pub mod operations;
