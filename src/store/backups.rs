//! The backup tables: `backups` (one row per backup, its manifest and expiry),
//! `backup_policies` (a tenant's schedule) and `plan_backup_policies` (a plan's
//! default). The caller owns the transaction.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{found, Result};
use crate::store::tenants::Isolation;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const COLUMNS: &str =
    "id, tenant_id, tenant_name, kind, status, isolation, encrypted, location, size_bytes, \
                       sha256, manifest, error, created_at, finished_at, expires_at";

fn backup(row: &Row) -> Result<(Backup, Option<Manifest>)> {
    let manifest: Option<Manifest> = row
        .try_get::<_, Option<serde_json::Value>>("manifest")?
        .and_then(|m| serde_json::from_value(m).ok());
    let b = Backup {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        tenant: row.try_get("tenant_name")?,
        kind: row.try_get("kind")?,
        status: row.try_get("status")?,
        isolation: row.try_get("isolation")?,
        encrypted: row.try_get("encrypted")?,
        size_bytes: row.try_get("size_bytes")?,
        sha256: row.try_get("sha256")?,
        template_version: manifest.as_ref().map(|m| m.template_version),
        server_version: manifest.as_ref().map(|m| m.server_version.clone()),
        tables: manifest
            .as_ref()
            .map(|m| m.tables.clone())
            .unwrap_or_default(),
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
        expires_at: row.try_get("expires_at")?,
    };
    Ok((b, manifest))
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
pub async fn insert_running(c: &impl GenericClient, b: &NewBackup<'_>) -> Result<()> {
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
) -> Result<Backup> {
    let row = c
        .query_opt(
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
    Ok(backup(&found(row)?)?.0)
}

/// Marks a running backup failed; false if it was not running (already settled).
pub async fn fail(c: &impl GenericClient, id: Uuid, error: &str) -> Result<bool> {
    let n = c
        .execute(
            "UPDATE berqenas.backups SET status = 'failed', error = $2, finished_at = now()
              WHERE id = $1 AND status = 'running'",
            &[&id, &error],
        )
        .await?;
    Ok(n == 1)
}

pub async fn find(c: &impl GenericClient, id: Uuid) -> Result<Option<(Backup, Option<Manifest>)>> {
    let row = c
        .query_opt(
            &format!("SELECT {COLUMNS} FROM berqenas.backups WHERE id = $1"),
            &[&id],
        )
        .await?;
    row.as_ref().map(backup).transpose()
}

pub async fn list(c: &impl GenericClient, tenant_id: Uuid) -> Result<Vec<Backup>> {
    let rows = c
        .query(
            &format!(
                "SELECT {COLUMNS} FROM berqenas.backups WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC"
            ),
            &[&tenant_id],
        )
        .await?;
    rows.iter().map(|r| Ok(backup(r)?.0)).collect()
}

/// Sets when a backup expires (an archive is kept past its tenant's purge).
pub async fn set_expiry(
    c: &impl GenericClient,
    id: Uuid,
    expires_at: Option<DateTime<Utc>>,
) -> Result<()> {
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
) -> Result<Vec<(Uuid, Uuid, String)>> {
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

pub async fn mark_expired(c: &impl GenericClient, id: Uuid) -> Result<()> {
    c.execute(
        "UPDATE berqenas.backups SET status = 'expired', location = NULL WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

/// Failed backups, for metrics and operators.
pub async fn count_failed(c: &impl GenericClient) -> Result<i64> {
    Ok(c.query_one(
        "SELECT count(*) FROM berqenas.backups WHERE status = 'failed'",
        &[],
    )
    .await?
    .get(0))
}

/// The tenant's policy row, if any.
pub async fn policy_of_tenant(
    c: &impl GenericClient,
    tenant_id: Uuid,
) -> Result<Option<BackupPolicy>> {
    let row = c
        .query_opt(
            "SELECT schedule, retention_days, encryption, next_run_at FROM berqenas.backup_policies WHERE tenant_id = $1",
            &[&tenant_id],
        )
        .await?;
    Ok(row.map(|r| BackupPolicy {
        schedule: Some(r.get(0)),
        retention_days: r.get(1),
        encryption: r.get(2),
        next_run_at: Some(r.get(3)),
    }))
}

/// A plan's default policy, if it has one.
pub async fn policy_of_plan(c: &impl GenericClient, plan: &str) -> Result<Option<BackupPolicy>> {
    let stmt = c
        .prepare_cached(
            "SELECT schedule, retention_days, encryption FROM berqenas.plan_backup_policies WHERE plan = $1",
        )
        .await?;
    let row = c.query_opt(&stmt, &[&plan]).await?;
    Ok(row.map(|r| BackupPolicy {
        schedule: Some(r.get(0)),
        retention_days: r.get(1),
        encryption: r.get(2),
        next_run_at: None,
    }))
}

pub async fn upsert_policy(
    c: &impl GenericClient,
    tenant_id: Uuid,
    schedule: &str,
    retention: i32,
    encryption: bool,
    next: DateTime<Utc>,
) -> Result<()> {
    c.execute(
        "INSERT INTO berqenas.backup_policies (tenant_id, schedule, retention_days, encryption, next_run_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id) DO UPDATE SET schedule = $2, retention_days = $3, encryption = $4,
                next_run_at = $5, updated_at = now()",
        &[&tenant_id, &schedule, &retention, &encryption, &next],
    )
    .await?;
    Ok(())
}

pub async fn delete_policy(c: &impl GenericClient, tenant_id: Uuid) -> Result<()> {
    c.execute(
        "DELETE FROM berqenas.backup_policies WHERE tenant_id = $1",
        &[&tenant_id],
    )
    .await?;
    Ok(())
}

pub async fn upsert_plan_policy(
    c: &impl GenericClient,
    plan: &str,
    schedule: &str,
    retention: i32,
    encryption: bool,
) -> Result<()> {
    c.execute(
        "INSERT INTO berqenas.plan_backup_policies (plan, schedule, retention_days, encryption) VALUES ($1, $2, $3, $4)
         ON CONFLICT (plan) DO UPDATE SET schedule = $2, retention_days = $3, encryption = $4",
        &[&plan, &schedule, &retention, &encryption],
    )
    .await?;
    Ok(())
}

/// A due policy of a live tenant, on whichever server it lives (each backup is taken
/// from there), claimed (locked, skipping those others hold):
/// (tenant, schedule, retention days, encryption).
pub async fn claim_due_policy(c: &impl GenericClient) -> Result<Option<(Uuid, String, i32, bool)>> {
    Ok(c.query_opt(
        "SELECT bp.tenant_id, bp.schedule, bp.retention_days, bp.encryption
               FROM berqenas.backup_policies bp JOIN berqenas.tenants t ON t.id = bp.tenant_id
              WHERE bp.next_run_at <= now() AND t.status IN ('active', 'trial', 'suspended')
              ORDER BY bp.next_run_at LIMIT 1
                FOR UPDATE OF bp SKIP LOCKED",
        &[],
    )
    .await?
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))))
}

pub async fn set_next_run(
    c: &impl GenericClient,
    tenant_id: Uuid,
    next: DateTime<Utc>,
) -> Result<()> {
    c.execute(
        "UPDATE berqenas.backup_policies SET next_run_at = $2 WHERE tenant_id = $1",
        &[&tenant_id, &next],
    )
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// Asked for through the API or CLI.
    Manual,
    /// Taken by the worker on the tenant's schedule.
    Scheduled,
    /// Taken when the tenant was deleted: its archive.
    Final,
}

impl BackupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Manual => "manual",
            BackupKind::Scheduled => "scheduled",
            BackupKind::Final => "final",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [BackupKind::Manual, BackupKind::Scheduled, BackupKind::Final]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupStatus {
    Running,
    Succeeded,
    Failed,
    /// Past its retention: the object is deleted, the record stays.
    Expired,
}

impl BackupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::Running => "running",
            BackupStatus::Succeeded => "succeeded",
            BackupStatus::Failed => "failed",
            BackupStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            BackupStatus::Running,
            BackupStatus::Succeeded,
            BackupStatus::Failed,
            BackupStatus::Expired,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A backup as the API shows it (the manifest without its sealed key).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Backup {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant: String,
    pub kind: BackupKind,
    pub status: BackupStatus,
    pub isolation: Isolation,
    pub encrypted: bool,
    pub size_bytes: Option<i64>,
    /// SHA-256 of the stored object, hex.
    pub sha256: Option<String>,
    pub template_version: Option<i32>,
    pub server_version: Option<String>,
    /// Row counts and checksums per table, as `verify` checks them.
    pub tables: Vec<TableStat>,
    /// Why a failed backup failed.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When the worker deletes it (null: kept).
    pub expires_at: Option<DateTime<Utc>>,
}

/// Manual and final backups without a policy are kept this long.
pub const DEFAULT_RETENTION_DAYS: i32 = 30;

/// A tenant's (or a plan's) policy.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupPolicy {
    /// Null: no scheduled backups.
    pub schedule: Option<String>,
    pub retention_days: i32,
    pub encryption: bool,
    /// When the worker takes the next scheduled backup (tenant policies only).
    pub next_run_at: Option<DateTime<Utc>>,
}

impl Default for BackupPolicy {
    fn default() -> Self {
        Self {
            schedule: None,
            retention_days: DEFAULT_RETENTION_DAYS,
            encryption: true,
            next_run_at: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant: String,
    pub mode: Isolation,
    pub template_version: i32,
    pub server_version: String,
    pub created_at: DateTime<Utc>,
    /// The database the dump was taken from.
    pub database: String,
    /// The schema the archive holds: the tenant's, or for shared mode the scratch
    /// schema its rows were copied into.
    pub schema: String,
    /// Bytes of the stored object (ciphertext when encrypted).
    pub size_bytes: i64,
    /// SHA-256 of the stored object, hex.
    pub sha256: String,
    pub encryption: Option<Encryption>,
    pub tables: Vec<TableStat>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Encryption {
    /// `AES-256-GCM, 1 MiB chunks` (see `backup::crypt`).
    pub algorithm: String,
    /// The backup's data key, sealed under the server's secret key (base64).
    pub data_key: String,
}

/// One table's row count and an order-independent checksum of its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TableStat {
    pub table: String,
    pub rows: i64,
    pub checksum: String,
    /// How the checksum was taken (a manifest without it used `text`).
    #[serde(default)]
    pub method: ChecksumMethod,
}

/// Both sum a 64-bit hash of every row, so row order does not matter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumMethod {
    /// `hash_record_extended`: each column hashed by its type's own hash function, no
    /// text conversion (about twice as fast); needs a hash function for every column's
    /// type.
    Record,
    /// `hashtextextended` of the row as text ([`STABLE_TEXT`] fixes the text): works
    /// for every type.
    #[default]
    Text,
}

impl ChecksumMethod {
    pub fn sql(self, table: &str) -> String {
        let hash = match self {
            ChecksumMethod::Record => "hash_record_extended(r.*, 0)",
            // `ROW(r.*)`: a column named `r` cannot shadow the whole-row reference.
            ChecksumMethod::Text => "hashtextextended(ROW(r.*)::text, 0)",
        };
        format!("SELECT count(*), coalesce(sum({hash}), 0)::text FROM ONLY {table} AS r")
    }
}
