//! Quotas: what each tenant may use (its plan's defaults, overridable per tenant), and
//! how PostgreSQL is made to enforce them: role and database connection limits,
//! per-role timeouts with a watchdog behind them, write privileges taken away over the
//! disk quota, atomic usage counters, and per-tenant rate limits.

pub mod apply;
pub mod breaches;
pub mod disk;
pub mod history;
pub mod placed;
pub mod rate;
pub mod report;
pub mod service;
pub mod usage;
pub mod watchdog;
pub mod worker;

pub use crate::store::quotas::{range, storage_gb, Quotas, FIELDS};
