//! Taking a backup: `pg_dump` on an exported snapshot, its output encrypted and
//! hashed on the way into the store, the table checksums computed on the same snapshot
//! at the same time, the manifest written beside the object, the row committed with
//! its audit entry. In pieces a workflow calls from its steps ([`register`], [`dump`],
//! then [`record`], or [`delete_objects`] and [`discard`]): the `backup.take` and
//! `tenant.delete` operations.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use super::crypt::{Sealer, CHUNK};
use super::dump::{self, Conn};
use super::manifest::{self, Encryption, Manifest, FORMAT};
use super::registry;
use super::store::ObjectWriter;
use super::{policy, shared, Backup, BackupKind, Error, Result};
use crate::audit;
use crate::platform::Platform;
use crate::secrets::random_bytes;
use crate::store::backups::{self, NewBackup};
use crate::store::outbox::{
    self,
    data::{redact, BackupCompleted, BackupFailed},
};
use crate::store::tenants::{Isolation, Status, Tenant};

/// A tenant can be backed up while it is live (a deleted one's final backup is its
/// archive).
pub fn check_live(t: &Tenant) -> Result<()> {
    if matches!(t.status, Status::Active | Status::Trial | Status::Suspended) {
        return Ok(());
    }
    Err(Error::conflict(
        "invalid_state",
        format!(
            "cannot back up tenant {}: it is {} (its final backup is its archive)",
            t.name,
            t.status.as_str()
        ),
    ))
}

/// How long a manual backup of `t` is kept: its policy's retention (else 30 days),
/// and whether it is encrypted.
pub async fn manual_terms(
    c: &impl deadpool_postgres::GenericClient,
    t: &Tenant,
) -> Result<(bool, DateTime<Utc>)> {
    let pol = policy::effective(c, t).await?;
    Ok((
        pol.encryption,
        Utc::now() + chrono::Duration::days(pol.retention_days.into()),
    ))
}

/// The backup's row, `running`, before anything is dumped.
pub async fn register(
    c: &impl deadpool_postgres::GenericClient,
    t: &Tenant,
    id: Uuid,
    kind: BackupKind,
    encrypted: bool,
) -> Result<()> {
    backups::insert_running(
        c,
        &NewBackup {
            id,
            tenant_id: t.id,
            tenant_name: &t.name,
            kind,
            isolation: t.isolation,
            encrypted,
        },
    )
    .await?;
    Ok(())
}

/// The backup's row `succeeded`, with its audit entry, in the caller's transaction.
pub async fn record(
    tx: &impl deadpool_postgres::GenericClient,
    t: &Tenant,
    m: &Manifest,
    kind: BackupKind,
    expires_at: Option<DateTime<Utc>>,
    actor: &str,
    op: Option<Uuid>,
) -> Result<Backup> {
    let backup = backups::succeed(tx, m, &registry::object_key(t.id, m.id), expires_at).await?;
    // A delete's final backup is announced with the delete (it may still be undone).
    if kind != BackupKind::Final {
        outbox::emit(tx, t.id, t.name.as_str(), &BackupCompleted::of(&backup)).await?;
    }
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "backup_created",
            tenant_id: Some(t.id),
            tenant_name: Some(&t.name),
            operation_id: op,
            details: serde_json::json!({
                "backup_id": m.id, "kind": kind.as_str(), "size_bytes": m.size_bytes,
                "sha256": m.sha256, "encrypted": m.encryption.is_some(), "expires_at": expires_at,
            }),
        },
    )
    .await?;
    crate::metrics::backup_finished("succeeded");
    Ok(backup)
}

/// The backup's row `failed` with its error and audit entry, in the caller's
/// transaction (its objects are deleted first, [`delete_objects`]). A row that is not
/// `running` is left as it is: a failure is recorded once.
pub async fn discard(
    tx: &impl deadpool_postgres::GenericClient,
    t: &Tenant,
    id: Uuid,
    kind: BackupKind,
    error: &str,
    actor: &str,
    op: Option<Uuid>,
) -> Result<()> {
    let message: String = error.chars().take(2000).collect();
    if !backups::fail(tx, id, &message).await? {
        return Ok(());
    }
    // A final backup fails with the delete it was taken for, which is undone: nothing
    // of it was announced, and nothing is.
    if kind != BackupKind::Final {
        outbox::emit(
            tx,
            t.id,
            t.name.as_str(),
            &BackupFailed {
                backup_id: id,
                kind: kind.as_str().to_string(),
                error: redact(&message),
            },
        )
        .await?;
    }
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "backup_failed",
            tenant_id: Some(t.id),
            tenant_name: Some(&t.name),
            operation_id: op,
            details: serde_json::json!({"backup_id": id, "kind": kind.as_str(), "error": message}),
        },
    )
    .await?;
    crate::metrics::backup_finished("failed");
    tracing::warn!(tenant.name = %t.name, backup.id = %id, error = %message, "backup failed");
    Ok(())
}

/// Deletes what a failed backup may have stored (the manifest can be committed before
/// the object fails). Idempotent; a store error is logged.
pub async fn delete_objects(p: &Platform, tenant: Uuid, id: Uuid) {
    for key in [
        registry::object_key(tenant, id),
        registry::manifest_key(tenant, id),
    ] {
        if let Err(d) = p.backups.delete(&key).await {
            tracing::warn!(backup.id = %id, error = %d, "could not delete a failed backup's object");
        }
    }
}

/// Dumps the tenant into the store and returns the manifest (also stored). In shared
/// mode its rows pass through the scratch schema [`shared::scratch_schema`]`(id)` of
/// the control database, which the caller declares before and drops after.
pub async fn dump(p: &Platform, t: &Tenant, id: Uuid, encrypted: bool) -> Result<Manifest> {
    if t.isolation != Isolation::Shared {
        let schema = t
            .schema
            .clone()
            .expect("schema and database tenants have a schema");
        return dump_to_store(p, t, id, t.database.as_str(), schema.as_str(), encrypted).await;
    }
    let scratch = shared::scratch_schema(id);
    shared::copy_out(p, t, &scratch).await?;
    dump_to_store(p, t, id, t.database.as_str(), scratch.as_str(), encrypted).await
}

/// Drops a shared-mode backup's scratch schema, if it is there.
pub async fn drop_scratch(p: &Platform, scratch: &crate::pg::Ident) -> Result<()> {
    p.pool
        .get()
        .await?
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {scratch} CASCADE"))
        .await?;
    Ok(())
}

/// Dumps `schema` of `database` into the store; returns the manifest (also stored).
async fn dump_to_store(
    p: &Platform,
    t: &Tenant,
    id: Uuid,
    database: &str,
    schema: &str,
    encrypted: bool,
) -> Result<Manifest> {
    let snap = super::connect_to(p, database).await?;
    snap.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    snap.batch_execute(manifest::STABLE_TEXT).await?;
    let snapshot: String = snap
        .query_one("SELECT pg_export_snapshot()", &[])
        .await?
        .get(0);
    let server_version = manifest::server_version(&snap).await?;

    let cmd = dump::pg_dump(&Conn::control(&p.config, database), schema, Some(&snapshot))?;
    let (mut child, stderr) = dump::spawn(cmd, "pg_dump")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let key = registry::object_key(t.id, id);
    let writer = p.backups.create(&key).await.map_err(Error::Store)?;
    let data_key = encrypted.then(random_bytes::<32>);
    let sealer = data_key.as_ref().map(|k| Sealer::new(k, id));
    let (pumped, stats) = tokio::join!(
        pump(stdout, writer, sealer),
        manifest::table_stats(&snap, schema, None)
    );
    if pumped.is_err() {
        let _ = child.start_kill();
    }
    // The tool's own failure explains a short stream better than the pump's.
    dump::finish(child, stderr, "pg_dump").await?;
    let (writer, size_bytes, sha256) = pumped?;
    let tables = stats?;
    snap.batch_execute("COMMIT").await?;

    let m = Manifest {
        format: FORMAT,
        id,
        tenant_id: t.id,
        tenant: t.name.to_string(),
        mode: t.isolation,
        template_version: t.template_version,
        server_version,
        created_at: Utc::now(),
        database: database.to_string(),
        schema: schema.to_string(),
        size_bytes,
        sha256,
        encryption: data_key.map(|k| Encryption {
            algorithm: "AES-256-GCM, 1 MiB chunks".into(),
            data_key: B64.encode(p.key.seal(&k)),
        }),
        tables,
    };
    let mut mw = p
        .backups
        .create(&registry::manifest_key(t.id, id))
        .await
        .map_err(Error::Store)?;
    mw.write_all(&serde_json::to_vec_pretty(&m)?)
        .await
        .map_err(Error::Store)?;
    mw.commit().await.map_err(Error::Store)?;
    writer.commit().await.map_err(Error::Store)?;
    Ok(m)
}

/// Copies a tool's output into the store, encrypting (if asked) and hashing what is
/// stored. Returns the writer (to commit), the stored size and its SHA-256.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: Box<dyn ObjectWriter>,
    mut sealer: Option<Sealer>,
) -> Result<(Box<dyn ObjectWriter>, i64, String)> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut out = Vec::with_capacity(CHUNK + 64 * 1024);
    let mut hasher = Sha256::new();
    let mut size = 0i64;
    loop {
        let n = from
            .read(&mut buf)
            .await
            .map_err(|e| Error::Pipe("pg_dump", e))?;
        if n == 0 {
            break;
        }
        match sealer.as_mut() {
            Some(s) => s.push(&buf[..n], &mut out),
            None => out.extend_from_slice(&buf[..n]),
        }
        if !out.is_empty() {
            hasher.update(&out);
            size += out.len() as i64;
            to.write_all(&out).await.map_err(Error::Store)?;
            out.clear();
        }
    }
    if let Some(s) = sealer {
        s.finish(&mut out);
    }
    hasher.update(&out);
    size += out.len() as i64;
    to.write_all(&out).await.map_err(Error::Store)?;
    to.flush().await.map_err(Error::Store)?;
    Ok((to, size, hex::encode(hasher.finalize())))
}
