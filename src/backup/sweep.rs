//! The sweeper: removes the scratch objects of processes that died. For each row of
//! `berqenas.scratch_objects` whose lease has lapsed it locks the row (so two servers
//! never act on one object), drops the object idempotently (it may never have been
//! created: a crash can fall between registering and creating), then deletes the row.
//! One object's failure is logged and retried at the next round; the round goes on.
//! It runs at start (after the reconciler) and in the server's worker loop.

use uuid::Uuid;

use super::scratch::{self, Kind, Lapsed};
use super::Result;
use crate::pg::Ident;
use crate::platform::Platform;

/// What a round did.
#[derive(Debug, Default)]
pub struct Report {
    /// Objects that existed and were dropped, by kind and name.
    pub removed: Vec<(Kind, String)>,
    /// Rows whose object was already gone (registered, never created; or dropped
    /// just before the crash).
    pub forgotten: usize,
    /// Rows that could not be swept this round, with the error.
    pub failed: Vec<(Uuid, String)>,
}

/// One sweeping round over every lapsed row.
pub async fn run_once(p: &Platform) -> Result<Report> {
    // A connection of its own: the claiming transaction stays open while the object
    // is dropped over other connections, and a small pool must not starve.
    let c = crate::pg::connect(&p.config).await?;
    let adopted = scratch::adopt_expired_restore_roles(&c).await?;
    if adopted > 0 {
        tracing::warn!(
            roles = adopted,
            "found expired restore roles from before the scratch registry; sweeping them"
        );
    }
    let mut report = Report::default();
    let mut tried: Vec<Uuid> = Vec::new();
    loop {
        c.batch_execute("BEGIN").await?;
        let Some(row) = scratch::claim_next(&c, &tried).await? else {
            c.batch_execute("COMMIT").await?;
            break;
        };
        tried.push(row.id);
        let outcome = match remove(p, &row).await {
            Ok(existed) => async {
                scratch::delete(&c, row.id).await?;
                c.batch_execute("COMMIT").await?;
                Ok(existed)
            }
            .await
            .map_err(super::Error::Db),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(true) => {
                crate::metrics::scratch_swept(row.kind.as_str());
                tracing::warn!(
                    scratch.kind = row.kind.as_str(),
                    scratch.name = %row.name,
                    scratch.database = row.database.as_deref().unwrap_or(""),
                    "removed a scratch object left behind by a process that stopped"
                );
                report.removed.push((row.kind, row.name));
            }
            Ok(false) => {
                tracing::warn!(
                    scratch.kind = row.kind.as_str(),
                    scratch.name = %row.name,
                    "forgot a scratch object registered by a process that stopped (it was never created, or already gone)"
                );
                report.forgotten += 1;
            }
            Err(e) => {
                let _ = c.batch_execute("ROLLBACK").await;
                tracing::warn!(
                    scratch.kind = row.kind.as_str(),
                    scratch.name = %row.name,
                    error = %e,
                    "could not remove a scratch object; retrying at the next round"
                );
                report.failed.push((row.id, e.to_string()));
            }
        }
    }
    Ok(report)
}

/// Drops the object if it is there; `true` if it was.
async fn remove(p: &Platform, row: &Lapsed) -> Result<bool> {
    match row.kind {
        Kind::Database => drop_database(p, &ident(row)?).await,
        Kind::Schema => {
            let database = row
                .database
                .as_deref()
                .ok_or_else(|| super::Error::Integrity {
                    id: row.id,
                    what: "a scratch schema's row names no database".into(),
                })?;
            drop_schema(p, database, &ident(row)?).await
        }
        Kind::Role => drop_role(p, &ident(row)?, row.database.as_deref()).await,
        Kind::File => match tokio::fs::remove_file(&row.name).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(super::Error::Store(e)),
        },
    }
}

fn ident(row: &Lapsed) -> Result<Ident> {
    Ident::new(row.name.clone()).map_err(|e| super::Error::Integrity {
        id: row.id,
        what: format!("scratch object name {:?}: {e}", row.name),
    })
}

async fn database_exists(c: &impl tokio_postgres::GenericClient, name: &str) -> Result<bool> {
    Ok(c.query_opt(
        "SELECT 1 FROM pg_database WHERE datname = $1 AND datallowconn",
        &[&name],
    )
    .await?
    .is_some())
}

async fn drop_database(p: &Platform, name: &Ident) -> Result<bool> {
    let c = p.pool.get().await?;
    let existed = c
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&name.as_str()],
        )
        .await?
        .is_some();
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    Ok(existed)
}

async fn drop_schema(p: &Platform, database: &str, name: &Ident) -> Result<bool> {
    let control = p.pool.get().await?;
    if database != p.endpoint.database && !database_exists(&**control, database).await? {
        return Ok(false); // gone with its database
    }
    let sql = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
    let exists = "SELECT 1 FROM pg_namespace WHERE nspname = $1";
    let existed = if database == p.endpoint.database {
        let existed = control
            .query_opt(exists, &[&name.as_str()])
            .await?
            .is_some();
        control.batch_execute(&sql).await?;
        existed
    } else {
        drop(control);
        let c = super::connect_to(p, database).await?;
        let existed = c.query_opt(exists, &[&name.as_str()]).await?.is_some();
        c.batch_execute(&sql).await?;
        existed
    };
    Ok(existed)
}

/// Ends the role's sessions, drops what it owns (and its privileges) in every
/// database it has anything in, then the role.
async fn drop_role(p: &Platform, name: &Ident, reached: Option<&str>) -> Result<bool> {
    let c = p.pool.get().await?;
    let role = name.as_str();
    if c.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await?
        .is_none()
    {
        return Ok(false);
    }
    c.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
        &[&role],
    )
    .await?;
    // pg_shdepend lists, cluster-wide, the databases holding objects the role owns or
    // privileges granted to it; the database it could reach is added for good measure.
    let mut databases: Vec<String> = c
        .query(
            "SELECT DISTINCT d.datname::text FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid
              WHERE s.refclassid = 'pg_authid'::regclass
                AND s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = $1)
                AND d.datallowconn",
            &[&role],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(db) = reached {
        if !databases.iter().any(|d| d == db) && database_exists(&**c, db).await? {
            databases.push(db.to_string());
        }
    }
    let cleanup = format!("DROP OWNED BY {name}");
    for db in databases.iter().filter(|d| **d != p.endpoint.database) {
        super::connect_to(p, db)
            .await?
            .batch_execute(&cleanup)
            .await?;
    }
    c.batch_execute(&format!("{cleanup};\nDROP ROLE IF EXISTS {name};"))
        .await?;
    Ok(true)
}
