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
    sweep_unregistered_backup_schemas(p, &c, &mut report).await?;
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

/// A shared-mode backup's scratch schema `berqenas_backup_<backup id>` with no registry
/// row (made before the registry existed) is dead when its backup is not `running` (a
/// backup drops it before it finishes) and no restore of that backup holds the
/// backup's advisory lock (every restore through that schema does, old versions too).
/// The sweeper holds that lock itself while it checks and drops, so no restore can
/// start in between.
async fn sweep_unregistered_backup_schemas(
    p: &Platform,
    c: &tokio_postgres::Client,
    report: &mut Report,
) -> Result<()> {
    const DEAD: &str = "NOT EXISTS (SELECT 1 FROM berqenas.scratch_objects s
                                     WHERE s.kind = 'schema' AND s.name = n.nspname)
                AND NOT EXISTS (SELECT 1 FROM berqenas.backups b
                                 WHERE replace(b.id::text, '-', '') = substr(n.nspname, 17)
                                   AND b.status = 'running')";
    let candidates: Vec<String> = c
        .query(
            &format!(
                "SELECT n.nspname::text FROM pg_namespace n
                  WHERE n.nspname ~ '^berqenas_backup_[0-9a-f]{{32}}$' AND {DEAD}"
            ),
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in candidates {
        let Ok(backup_id) = Uuid::parse_str(&name["berqenas_backup_".len()..]) else {
            continue;
        };
        let key = format!("berqenas.backup:{backup_id}");
        let locked: bool = c
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&key],
            )
            .await?
            .get(0);
        if !locked {
            continue; // a restore of that backup is using it
        }
        let dropped = async {
            let still_dead = c
                .query_opt(
                    &format!("SELECT 1 FROM pg_namespace n WHERE n.nspname = $1 AND {DEAD}"),
                    &[&name],
                )
                .await?
                .is_some();
            if still_dead {
                let schema = Ident::new(name.clone()).expect("matched a short pattern");
                c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await?;
            }
            Ok::<_, tokio_postgres::Error>(still_dead)
        }
        .await;
        c.execute(
            "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
            &[&key],
        )
        .await?;
        match dropped {
            Ok(true) => {
                crate::metrics::scratch_swept(Kind::Schema.as_str());
                tracing::warn!(
                    scratch.kind = "schema",
                    scratch.name = %name,
                    scratch.database = %p.endpoint.database,
                    "removed an unregistered scratch schema of a backup or restore that stopped"
                );
                report.removed.push((Kind::Schema, name));
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(scratch.name = %name, error = %e,
                    "could not remove an unregistered scratch schema; retrying at the next round");
            }
        }
    }
    Ok(())
}
