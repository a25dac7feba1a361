//! Per-tenant backups with PostgreSQL's own tools: `pg_dump` in custom format
//! (compressed) of the tenant's schema (schema mode), of its schema in its own
//! database (database mode: the only place its roles can create anything), or of its
//! rows copied into a scratch schema (shared mode); encrypted with a per-backup data
//! key; described by a manifest; kept in a [`store::BackupStore`]. Restores never run
//! the dump's code with more privilege than the tenant's own roles have.

pub mod crypt;
pub mod dump;
pub mod feed;
pub mod manifest;
pub mod policy;
pub mod registry;
pub mod restore;
pub mod shared;
pub mod store;
pub mod take;
pub mod verify;
pub mod worker;

use uuid::Uuid;

use crate::platform::Platform;
use crate::problem::{Kind, Problem};
pub use crate::store::backups::{Backup, BackupKind, BackupStatus};
use crate::tenant;

pub use manifest::{Manifest, TableStat};

pub use crate::store::backups::DEFAULT_RETENTION_DAYS;

crate::pg::from_text_column!(BackupKind, "backup kind");

crate::pg::from_text_column!(BackupStatus, "backup status");

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's mistake, with the field it concerns; nothing was changed.
    #[error("{}", .0.message)]
    Rejected(Problem),
    #[error(transparent)]
    Tenant(tenant::service::Error),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    /// The control plane's store found no row, or a conflict, where this operation
    /// expected none.
    #[error(transparent)]
    Registry(crate::store::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Pg(#[from] crate::pg::PgError),
    #[error("backup store: {0}")]
    Store(#[source] std::io::Error),
    #[error("streaming to or from {0}: {1}")]
    Pipe(&'static str, #[source] std::io::Error),
    #[error(transparent)]
    Tool(#[from] dump::ToolError),
    #[error(transparent)]
    Crypt(#[from] crypt::CryptError),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error(transparent)]
    Hardening(#[from] crate::pg::hardening::HardeningError),
    /// PostgreSQL refused the backup's contents while restoring them (the tenant's own
    /// objects: nothing berqenas can fix by retrying).
    #[error("the backup could not be restored: {reason}")]
    Unrestorable { reason: String },
    #[error("backup {id} does not match its manifest: {what}")]
    Integrity { id: Uuid, what: String },
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl From<tenant::service::Error> for Error {
    fn from(e: tenant::service::Error) -> Self {
        match e {
            tenant::service::Error::Rejected(p) => Self::Rejected(p),
            other => Self::Tenant(other),
        }
    }
}

impl From<crate::access::Error> for Error {
    fn from(e: crate::access::Error) -> Self {
        match e {
            crate::access::Error::Db(e) => Error::Db(e),
            crate::access::Error::Pool(e) => Error::Pool(e),
            crate::access::Error::Pg(e) => Error::Pg(e),
        }
    }
}

impl From<crate::store::Error> for Error {
    fn from(e: crate::store::Error) -> Self {
        match e {
            crate::store::Error::Db(e) => Error::Db(e),
            other => Error::Registry(other),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Rejected(Problem::bad_field(field, message))
    }

    pub(crate) fn not_found(what: &str, message: impl Into<String>) -> Self {
        Self::Rejected(Problem::new(Kind::NotFound, what, message))
    }

    pub(crate) fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::Rejected(Problem::new(Kind::Conflict, code, message))
    }

    /// The answer a client gets when the error is the request's or the backup's (not
    /// an outage): a refusal, a damaged or missing backup, one PostgreSQL will not load.
    pub fn problem(&self) -> Option<Problem> {
        Some(match self {
            Error::Rejected(p) => p.clone(),
            Error::Tenant(tenant::service::Error::Rejected(p)) => p.clone(),
            Error::Integrity { .. } | Error::Crypt(_) => Problem::new(
                Kind::Conflict,
                "backup_corrupt",
                format!("the backup is damaged and cannot be used: {self}"),
            ),
            Error::Unrestorable { reason } => Problem::new(
                Kind::Conflict,
                "backup_unrestorable",
                format!(
                    "the backup could not be restored (the tenant's data is unchanged): {reason}"
                ),
            ),
            Error::Store(e) if e.kind() == std::io::ErrorKind::NotFound => Problem::new(
                Kind::Conflict,
                "backup_missing",
                "the backup's stored object is missing from the backup store",
            ),
            _ => return None,
        })
    }
}

/// Opens a connection as the control role to another database of the server.
pub(crate) async fn connect_to(p: &Platform, database: &str) -> Result<tokio_postgres::Client> {
    let mut config = p.config.clone();
    config.dbname(database);
    Ok(crate::pg::connect(&config).await?)
}

/// The tenant, by name or id.
pub(crate) async fn tenant(p: &Platform, key: &str) -> Result<tenant::Tenant> {
    Ok(tenant::service::get(p, key).await?)
}

/// The backups of a tenant, newest first.
pub async fn list(p: &Platform, key: &str) -> Result<Vec<Backup>> {
    let t = tenant(p, key).await?;
    let client = p.pool.get().await?;
    Ok(crate::store::backups::list(&client, t.id).await?)
}

/// One backup by id; with a tenant key, it must be that tenant's.
pub async fn get(p: &Platform, tenant_key: Option<&str>, id: &str) -> Result<Backup> {
    let (backup, _) = find(p, tenant_key, id).await?;
    Ok(backup)
}

/// A backup and its manifest, checked to belong to the tenant named (if any).
pub(crate) async fn find(
    p: &Platform,
    tenant_key: Option<&str>,
    id: &str,
) -> Result<(Backup, Option<Manifest>)> {
    let owner = match tenant_key {
        Some(k) => Some(tenant(p, k).await?),
        None => None,
    };
    let not_found = || Error::not_found("backup_not_found", format!("backup {id:?} not found"));
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let client = p.pool.get().await?;
    let (backup, manifest) = crate::store::backups::find(&client, id)
        .await?
        .ok_or_else(not_found)?;
    if owner.is_some_and(|t| t.id != backup.tenant_id) {
        return Err(not_found());
    }
    Ok((backup, manifest))
}
