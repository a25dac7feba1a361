//! Shared primitives on a tenant's roles that several domains need.
//!
//! [`temp_role`]: a throw-away login role that holds exactly one tenant owner's
//! privileges, the only kind of session berqenas runs tenant-reachable code in;
//! [`worker`]: one such role and its session, lent to one tenant after another.

pub mod owned;
pub mod temp_role;
pub mod worker;

pub use temp_role::{Reach, TempRole};
pub use worker::{Lending, Tainted, Worker};

/// What can go wrong with these primitives: the database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Pg(#[from] crate::pg::PgError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
