//! Shared primitives on a tenant's roles that several domains need.
//!
//! [`temp_role`]: a throw-away login role that holds exactly one tenant owner's
//! privileges, the only kind of session berqenas runs tenant-reachable code in.

pub mod owned;
pub mod temp_role;

pub use temp_role::{Reach, TempRole};
