//! Shared primitives on a tenant's roles that several domains need.
//!
//! [`temp_role`]: a throw-away login role that holds exactly one tenant owner's
//! privileges, the only kind of session berqenas runs tenant-reachable code in.

pub mod owned;
pub mod temp_role;

pub use temp_role::{Reach, TempRole};

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
