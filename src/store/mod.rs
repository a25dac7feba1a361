//! L1: the control plane's tables, one module per table family. Every statement that
//! reads or writes one of these `berqenas.*` tables is here, and nowhere else; a query
//! that joins several tables lives with its main table. The caller owns the
//! transaction: every function takes a pooled client or a transaction
//! (`&impl GenericClient`) and never begins or commits one itself.
//!
//! The operation engine's tables (`operations`, `operation_steps`, `instances`, and the
//! tenant row's ownership columns) are in [`operations`].

pub mod api_keys;
pub mod audit;
pub mod auth_providers;
pub mod backups;
pub mod breaches;
pub mod invitations;
pub mod migration_runs;
pub mod monitoring;
pub mod network;
pub mod offboarding;
pub mod onboarding;
pub mod operations;
pub mod outbox;
pub mod plans;
pub mod pooler;
pub mod quotas;
pub mod realtime;
pub mod realtime_gate;
pub mod servers;
pub mod templates;
pub mod tenant_config;
pub mod tenant_sessions;
pub mod tenants;
pub mod usage_samples;
pub mod users;
pub mod warm_pool;
pub mod webhooks;

use tokio_postgres::error::SqlState;

/// What a store function can fail with. The domains map these to their own errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The row the statement needs is not there.
    #[error("no such row")]
    NotFound,
    /// A unique constraint refused the write (its name, as the table defines it).
    #[error("unique constraint {constraint} refused the write")]
    Conflict {
        constraint: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// PostgreSQL failed, or a column did not decode into its type.
    #[error(transparent)]
    Db(tokio_postgres::Error),
    /// A value built in SQL (a JSON aggregate) did not decode into its type.
    #[error("a row of {what} does not decode: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        on_constraint(e)
    }
}

/// As realworld-axum-sqlx's `on_constraint`: a unique violation is a conflict that
/// names its constraint (so a domain can tell "name taken" from an outage); anything
/// else stays a database error, its source kept.
pub fn on_constraint(e: tokio_postgres::Error) -> Error {
    let constraint = e
        .as_db_error()
        .filter(|d| *d.code() == SqlState::UNIQUE_VIOLATION)
        .map(|d| d.constraint().unwrap_or_default().to_string());
    match constraint {
        Some(constraint) => Error::Conflict {
            constraint,
            source: e,
        },
        None => Error::Db(e),
    }
}

impl Error {
    /// The PostgreSQL error underneath, if there is one.
    pub fn db(&self) -> Option<&tokio_postgres::Error> {
        match self {
            Error::NotFound | Error::Decode { .. } => None,
            Error::Conflict { source, .. } => Some(source),
            Error::Db(e) => Some(e),
        }
    }

    /// The constraint a conflict names.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            Error::Conflict { constraint, .. } => Some(constraint),
            _ => None,
        }
    }
}

/// `Some(row)` or [`Error::NotFound`].
pub(crate) fn found<T>(row: Option<T>) -> Result<T> {
    row.ok_or(Error::NotFound)
}
