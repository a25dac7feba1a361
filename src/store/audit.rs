//! The audit trail's tables: `audit_log` (append-only; the chain trigger of migration
//! 0007 links each row to the one before) and `audit_head` (the chain's last link).
//! The caller owns the transaction.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Result;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One audit row to append. `action` is one of the names in docs/audit.md
/// (`tenant_created`, `tenant_suspended`, `api_key_revoked`, ...).
pub struct Entry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub tenant_id: Option<Uuid>,
    pub tenant_name: Option<&'a str>,
    pub operation_id: Option<Uuid>,
    pub details: serde_json::Value,
}

/// Appends a row inside the caller's transaction. The chain trigger takes the chain's
/// lock until that transaction ends, so call this as the transaction's last change.
pub async fn append(c: &impl GenericClient, e: &Entry<'_>) -> Result<()> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO berqenas.audit_log (actor, action, tenant_id, tenant_name, operation_id, details)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    c.execute(
        &stmt,
        &[
            &e.actor,
            &e.action,
            &e.tenant_id,
            &e.tenant_name,
            &e.operation_id,
            &e.details,
        ],
    )
    .await?;
    Ok(())
}

/// The chain's head: (last row's id, its hash, rows counted); `None` when the head
/// row is missing.
pub async fn head(c: &impl GenericClient) -> Result<Option<(Option<i64>, Vec<u8>, i64)>> {
    Ok(c.query_opt(
        "SELECT last_id, last_hash, row_count FROM berqenas.audit_head",
        &[],
    )
    .await?
    .map(|r| (r.get(0), r.get(1), r.get(2))))
}

/// The bytes a row's hash covers: the same expression as `berqenas.audit_canonical`
/// (migration 0007), written out here so that a replaced function cannot fool a check.
const CANONICAL: &str = "convert_to(jsonb_build_array(id, \
     to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), actor, action, \
     tenant_id, tenant_name, operation_id, details)::text, 'UTF8')";

/// One row of the chain as a check reads it.
pub struct Link {
    pub id: i64,
    pub prev_hash: Option<Vec<u8>>,
    pub hash: Option<Vec<u8>>,
    /// The row's fields as its hash covers them.
    pub canonical: Vec<u8>,
}

/// Up to `limit` rows of the chain after row `after`, in id order.
pub async fn links(c: &impl GenericClient, after: i64, limit: i64) -> Result<Vec<Link>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT id, prev_hash, hash, {CANONICAL} FROM berqenas.audit_log
              WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .await?;
    Ok(c.query(&stmt, &[&after, &limit])
        .await?
        .iter()
        .map(|r| Link {
            id: r.get(0),
            prev_hash: r.get(1),
            hash: r.get(2),
            canonical: r.get(3),
        })
        .collect())
}

fn entry(r: &Row) -> AuditEntry {
    AuditEntry {
        id: r.get("id"),
        at: r.get("at"),
        actor: r.get("actor"),
        action: r.get("action"),
        tenant_id: r.get("tenant_id"),
        tenant_name: r.get("tenant_name"),
        operation_id: r.get("operation_id"),
        details: r.get("details"),
        prev_hash: hex::encode(r.get::<_, Vec<u8>>("prev_hash")),
        hash: hex::encode(r.get::<_, Vec<u8>>("hash")),
    }
}

/// The optional filters of a page of the trail.
pub struct Filter<'a> {
    /// A tenant's name (matched against `tenant_name`) ...
    pub tenant: Option<&'a str>,
    /// ... or its id.
    pub tenant_id: Option<Uuid>,
    pub action: Option<&'a str>,
    pub since: Option<DateTime<Utc>>,
    /// Rows older than this id (the cursor).
    pub before: Option<i64>,
}

/// A page of the trail, newest first.
pub async fn list(c: &impl GenericClient, f: &Filter<'_>, limit: i64) -> Result<Vec<AuditEntry>> {
    let rows = c
        .query(
            "SELECT id, at, actor, action, tenant_id, tenant_name, operation_id, details, prev_hash, hash
               FROM berqenas.audit_log
              WHERE ($1::text IS NULL OR tenant_name = $1 OR tenant_id = $2)
                AND ($3::text IS NULL OR action = $3)
                AND ($4::timestamptz IS NULL OR at >= $4)
                AND ($5::bigint IS NULL OR id < $5)
              ORDER BY id DESC LIMIT $6",
            &[&f.tenant, &f.tenant_id, &f.action, &f.since, &f.before, &limit],
        )
        .await?;
    Ok(rows.iter().map(entry).collect())
}

/// Whether the trail names this tenant (by name or id) in any row.
pub async fn mentions(c: &impl GenericClient, key: &str) -> Result<bool> {
    Ok(c.query_opt(
        "SELECT 1 FROM berqenas.audit_log WHERE tenant_name = $1 OR tenant_id::text = $1 LIMIT 1",
        &[&key],
    )
    .await?
    .is_some())
}

/// The id of the trail's last row (0 when it is empty): rows appended later have
/// greater ids.
pub async fn last_id(c: &impl GenericClient) -> Result<i64> {
    Ok(c.query_one(
        "SELECT coalesce(max(id), 0)::bigint FROM berqenas.audit_log",
        &[],
    )
    .await?
    .get(0))
}

/// The tenants named by `action` rows after row `after` whose details carry this
/// `run_id` (a migration run's), oldest first.
pub async fn tenants_of(
    c: &impl GenericClient,
    action: &str,
    run_id: Uuid,
    after: i64,
) -> Result<Vec<String>> {
    Ok(c.query(
        "SELECT tenant_name FROM berqenas.audit_log
          WHERE id > $3 AND action = $1 AND details ->> 'run_id' = $2::uuid::text
            AND tenant_name IS NOT NULL
          ORDER BY id",
        &[&action, &run_id, &after],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// One row of the audit trail.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Increases with every append; the chain runs in this order.
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `admin` (the admin API), `worker` (the background worker), ...
    pub actor: String,
    pub action: String,
    pub tenant_id: Option<Uuid>,
    pub tenant_name: Option<String>,
    pub operation_id: Option<Uuid>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// Hex SHA-256 of the row before (zeros for the first row).
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash` and this row's fields.
    pub hash: String,
}
