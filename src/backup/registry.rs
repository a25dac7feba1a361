//! SQL for the `backups`, `backup_policies` and `plan_backup_policies` tables. The
//! caller owns the transaction.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Backup, BackupKind, BackupStatus, Manifest};
use crate::tenant::Isolation;

const COLUMNS: &str =
    "id, tenant_id, tenant_name, kind, status, isolation, encrypted, location, size_bytes, \
                       sha256, manifest, error, created_at, finished_at, expires_at";

fn backup(row: &Row) -> (Backup, Option<Manifest>) {
    let manifest: Option<Manifest> = row
        .get::<_, Option<serde_json::Value>>("manifest")
        .and_then(|m| serde_json::from_value(m).ok());
    let b = Backup {
        id: row.get("id"),
        tenant_id: row.get("tenant_id"),
        tenant: row.get("tenant_name"),
        kind: BackupKind::parse(row.get("kind")).expect("kind is checked by the table"),
        status: BackupStatus::parse(row.get("status")).expect("status is checked by the table"),
        isolation: Isolation::parse(row.get("isolation")).expect("checked by the table"),
        encrypted: row.get("encrypted"),
        size_bytes: row.get("size_bytes"),
        sha256: row.get("sha256"),
        template_version: manifest.as_ref().map(|m| m.template_version),
        server_version: manifest.as_ref().map(|m| m.server_version.clone()),
        tables: manifest
            .as_ref()
            .map(|m| m.tables.clone())
            .unwrap_or_default(),
        error: row.get("error"),
        created_at: row.get("created_at"),
        finished_at: row.get("finished_at"),
        expires_at: row.get("expires_at"),
    };
    (b, manifest)
}

/// Where a backup's object lives in the store.
pub fn object_key(tenant_id: Uuid, id: Uuid) -> String {
    format!("{tenant_id}/{id}.bqb")
}

pub fn manifest_key(tenant_id: Uuid, id: Uuid) -> String {
    format!("{tenant_id}/{id}.manifest.json")
}

pub struct NewBackup<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant_name: &'a str,
    pub kind: BackupKind,
    pub isolation: Isolation,
    pub encrypted: bool,
}

/// Records a backup as running (committed before the work, so a failure has a row).
pub async fn insert_running(
    c: &impl GenericClient,
    b: &NewBackup<'_>,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "INSERT INTO berqenas.backups (id, tenant_id, tenant_name, kind, status, isolation, encrypted)
         VALUES ($1, $2, $3, $4, 'running', $5, $6)",
        &[
            &b.id,
            &b.tenant_id,
            &b.tenant_name,
            &b.kind.as_str(),
            &b.isolation.as_str(),
            &b.encrypted,
        ],
    )
    .await?;
    Ok(())
}

pub async fn succeed(
    c: &impl GenericClient,
    m: &Manifest,
    location: &str,
    expires_at: Option<DateTime<Utc>>,
) -> Result<Backup, tokio_postgres::Error> {
    let row = c
        .query_one(
            &format!(
                "UPDATE berqenas.backups SET status = 'succeeded', location = $2, size_bytes = $3, sha256 = $4,
                        manifest = $5, finished_at = now(), expires_at = $6
                  WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &m.id,
                &location,
                &m.size_bytes,
                &m.sha256,
                &serde_json::to_value(m).expect("a manifest serialises"),
                &expires_at,
            ],
        )
        .await?;
    Ok(backup(&row).0)
}

pub async fn fail(
    c: &impl GenericClient,
    id: Uuid,
    error: &str,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "UPDATE berqenas.backups SET status = 'failed', error = $2, finished_at = now() WHERE id = $1",
        &[&id, &error],
    )
    .await?;
    Ok(())
}

pub async fn find(
    c: &impl GenericClient,
    id: Uuid,
) -> Result<Option<(Backup, Option<Manifest>)>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            &format!("SELECT {COLUMNS} FROM berqenas.backups WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(backup))
}

pub async fn list(
    c: &impl GenericClient,
    tenant_id: Uuid,
) -> Result<Vec<Backup>, tokio_postgres::Error> {
    let rows = c
        .query(
            &format!(
                "SELECT {COLUMNS} FROM berqenas.backups WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC"
            ),
            &[&tenant_id],
        )
        .await?;
    Ok(rows.iter().map(|r| backup(r).0).collect())
}

/// Sets when a backup expires (an archive is kept past its tenant's purge).
pub async fn set_expiry(
    c: &impl GenericClient,
    id: Uuid,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "UPDATE berqenas.backups SET expires_at = $2 WHERE id = $1",
        &[&id, &expires_at],
    )
    .await?;
    Ok(())
}

/// Succeeded backups past their expiry, claimed for deletion.
pub async fn claim_expired(
    c: &impl GenericClient,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid, String)>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT id, tenant_id, tenant_name FROM berqenas.backups
              WHERE status = 'succeeded' AND expires_at <= now()
              ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

pub async fn mark_expired(c: &impl GenericClient, id: Uuid) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "UPDATE berqenas.backups SET status = 'expired', location = NULL WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

/// Failed backups, for metrics and operators.
pub async fn count_failed(c: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    Ok(c.query_one(
        "SELECT count(*) FROM berqenas.backups WHERE status = 'failed'",
        &[],
    )
    .await?
    .get(0))
}
