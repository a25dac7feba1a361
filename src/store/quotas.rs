//! The quota tables: `tenant_quotas` (per-tenant overrides), the `effective_quotas`
//! view (what is in force), `usage_counters` (application-reported usage) and
//! `disk_usage` (the last measurement, and what a block took). The caller owns the
//! transaction.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{found, Result};
use crate::isolation::RoleLimits;

const EFFECTIVE: &str =
    "SELECT db_quota_bytes, max_connections, statement_timeout_ms, api_calls_per_minute,
        realtime_events_per_minute, max_users, max_llm_tokens_per_day, max_agents,
        max_concurrent_agents, max_data_retention_days, transaction_timeout_ms,
        realtime_events_per_hour, realtime_max_subscribers
   FROM berqenas.effective_quotas WHERE tenant_id = $1";

fn quotas(r: &Row) -> Quotas {
    Quotas {
        db_quota_bytes: r.get("db_quota_bytes"),
        max_connections: r.get("max_connections"),
        statement_timeout_ms: r.get("statement_timeout_ms"),
        api_calls_per_minute: r.get("api_calls_per_minute"),
        realtime_events_per_minute: r.get("realtime_events_per_minute"),
        max_users: r.get("max_users"),
        max_llm_tokens_per_day: r.get("max_llm_tokens_per_day"),
        max_agents: r.get("max_agents"),
        max_concurrent_agents: r.get("max_concurrent_agents"),
        max_data_retention_days: r.get("max_data_retention_days"),
        transaction_timeout_ms: r.get("transaction_timeout_ms"),
        realtime_events_per_hour: r.get("realtime_events_per_hour"),
        realtime_max_subscribers: r.get("realtime_max_subscribers"),
        max_storage_gb: storage_gb(r.get("db_quota_bytes")),
    }
}

/// The quotas in force for a tenant (`None`: no such tenant).
pub async fn effective(c: &impl GenericClient, tenant_id: Uuid) -> Result<Option<Quotas>> {
    let stmt = c.prepare_cached(EFFECTIVE).await?;
    Ok(c.query_opt(&stmt, &[&tenant_id])
        .await?
        .as_ref()
        .map(quotas))
}

/// The quotas in force for each of `tenants` (one page of the integrity round).
pub async fn effective_of(c: &impl GenericClient, tenants: &[Uuid]) -> Result<Vec<(Uuid, Quotas)>> {
    Ok(c
        .query(
            "SELECT tenant_id, db_quota_bytes, max_connections, statement_timeout_ms, api_calls_per_minute,
                    realtime_events_per_minute, max_users, max_llm_tokens_per_day, max_agents,
                    max_concurrent_agents, max_data_retention_days, transaction_timeout_ms,
                    realtime_events_per_hour, realtime_max_subscribers
               FROM berqenas.effective_quotas WHERE tenant_id = ANY($1)",
            &[&tenants],
        )
        .await?
        .iter()
        .map(|r| (r.get("tenant_id"), quotas(r)))
        .collect())
}

/// The quota fields this tenant overrides (the rest come from its plan). The disk
/// quota counts as overridden when it differs from the plan's storage.
pub async fn overridden(c: &impl GenericClient, tenant_id: Uuid) -> Result<Vec<String>> {
    let row = c
        .query_opt(
            "SELECT to_jsonb(q) AS o, t.db_quota_bytes <> p.storage_bytes AS disk
               FROM berqenas.tenants t JOIN berqenas.plans p ON p.name = t.plan
               LEFT JOIN berqenas.tenant_quotas q ON q.tenant_id = t.id
              WHERE t.id = $1",
            &[&tenant_id],
        )
        .await?;
    let Some(row) = row else { return Ok(vec![]) };
    let mut out = Vec::new();
    if row.get::<_, bool>("disk") {
        out.push("db_quota_bytes".to_string());
    }
    if let Some(serde_json::Value::Object(o)) = row.get::<_, Option<serde_json::Value>>("o") {
        for (field, _, _) in FIELDS {
            if o.get(*field).is_some_and(|v| !v.is_null()) {
                out.push(field.to_string());
            }
        }
    }
    Ok(out)
}

/// Sets (`Some`) or clears (`None`, back to the plan's value) per-tenant overrides.
/// `db_quota_bytes` lives in the tenants table; `None` there means the plan's storage.
pub async fn set_overrides(
    c: &impl GenericClient,
    tenant_id: Uuid,
    changes: &[(&'static str, Option<i64>)],
) -> Result<()> {
    for (field, value) in changes {
        if *field == "db_quota_bytes" {
            super::tenants::set_db_quota(c, tenant_id, *value).await?;
            continue;
        }
        // Column names come from the static FIELDS list, never from the request.
        let column = crate::pg::Ident::new(*field).expect("static quota names are identifiers");
        let cast = if *field == "max_llm_tokens_per_day" {
            "bigint"
        } else {
            "integer"
        };
        c.execute(
            &format!(
                "INSERT INTO berqenas.tenant_quotas (tenant_id, {column}) VALUES ($1, $2::bigint::{cast})
                 ON CONFLICT (tenant_id) DO UPDATE SET {column} = EXCLUDED.{column}, updated_at = now()"
            ),
            &[&tenant_id, value],
        )
        .await?;
    }
    Ok(())
}

/// The last disk measurement of a tenant.
#[derive(Debug, Clone)]
pub struct DiskUsage {
    pub bytes: i64,
    pub measured_at: DateTime<Utc>,
    pub writes_blocked: bool,
    pub blocked_since: Option<DateTime<Utc>>,
}

pub async fn disk_usage(c: &impl GenericClient, tenant_id: Uuid) -> Result<Option<DiskUsage>> {
    let row = c
        .query_opt(
            "SELECT bytes, measured_at, writes_blocked, blocked_since FROM berqenas.disk_usage WHERE tenant_id = $1",
            &[&tenant_id],
        )
        .await?;
    Ok(row.map(|r| DiskUsage {
        bytes: r.get(0),
        measured_at: r.get(1),
        writes_blocked: r.get(2),
        blocked_since: r.get(3),
    }))
}

/// How stale `measured_at` may grow while a tenant's size stays the same: the time it
/// was last confirmed is written at most this often, not every round.
pub const UNCHANGED_REFRESH_SECS: f64 = 600.0;

/// Records measurements (tenant, bytes) in one statement. An existing row is written
/// when its size changed, or when its `measured_at` is older than
/// [`UNCHANGED_REFRESH_SECS`]; a missing one is inserted. Writing every tenant's row
/// every round, most of them the same, was a steady stream of updates, WAL and dead
/// rows for an idle fleet: at 10,231 tenants, 1.7 MB of WAL and 48 to 76 ms a round,
/// against none and 28 to 40 ms (`psql`, docs/quotas.md). Not `ON CONFLICT DO UPDATE
/// ... WHERE` for the rows that exist: it locks each one it finds before it looks at
/// the `WHERE`, which wrote 575 KB of WAL to change nothing.
pub async fn record_measurements(c: &impl GenericClient, sizes: &[(Uuid, i64)]) -> Result<()> {
    let ids: Vec<Uuid> = sizes.iter().map(|s| s.0).collect();
    let bytes: Vec<i64> = sizes.iter().map(|s| s.1).collect();
    c.execute(
        "WITH m AS (SELECT * FROM unnest($1::uuid[], $2::bigint[]) AS m(id, bytes)),
              changed AS (
                  UPDATE berqenas.disk_usage d SET bytes = m.bytes, measured_at = now()
                    FROM m
                   WHERE d.tenant_id = m.id
                     AND (d.bytes <> m.bytes OR d.measured_at < now() - make_interval(secs => $3)))
         INSERT INTO berqenas.disk_usage (tenant_id, bytes, measured_at)
         SELECT m.id, m.bytes, now() FROM m JOIN berqenas.tenants t ON t.id = m.id
          WHERE NOT EXISTS (SELECT 1 FROM berqenas.disk_usage d WHERE d.tenant_id = m.id)
         ON CONFLICT (tenant_id) DO UPDATE SET bytes = EXCLUDED.bytes, measured_at = EXCLUDED.measured_at",
        &[&ids, &bytes, &UNCHANGED_REFRESH_SECS],
    )
    .await?;
    Ok(())
}

/// Locks the tenant's disk row (creating it) and returns (writes_blocked, revoked).
pub async fn lock_disk_row(
    c: &impl GenericClient,
    tenant_id: Uuid,
) -> Result<(bool, serde_json::Value)> {
    c.execute(
        "INSERT INTO berqenas.disk_usage (tenant_id, bytes) VALUES ($1, 0) ON CONFLICT DO NOTHING",
        &[&tenant_id],
    )
    .await?;
    let row = c
        .query_one(
            "SELECT writes_blocked, revoked FROM berqenas.disk_usage WHERE tenant_id = $1 FOR UPDATE",
            &[&tenant_id],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

pub async fn set_blocked(
    c: &impl GenericClient,
    tenant_id: Uuid,
    blocked: bool,
    revoked: &serde_json::Value,
) -> Result<()> {
    c.execute(
        "UPDATE berqenas.disk_usage SET writes_blocked = $2, revoked = $3,
                blocked_since = CASE WHEN $2 THEN coalesce(blocked_since, now()) END
          WHERE tenant_id = $1",
        &[&tenant_id, &blocked, revoked],
    )
    .await?;
    Ok(())
}

/// How a counted metric is kept: which quota bounds it and over which period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Resets at 00:00 UTC.
    Day,
    /// A running total the application raises and lowers.
    Total,
}

/// Adds `amount` to the counter if the result stays within `limit`, in one statement
/// (concurrent increments serialise on the row; none is lost or double-counted).
/// Returns the new amount, or `None` when it would exceed the limit (nothing counted).
pub async fn increment(
    c: &impl GenericClient,
    tenant_id: Uuid,
    metric: &str,
    period: Period,
    amount: i64,
    limit: i64,
) -> Result<Option<i64>> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO berqenas.usage_counters AS u (tenant_id, metric, period_start, amount)
             SELECT $1::uuid, $2::text,
                    CASE WHEN $3::bool THEN date_trunc('day', now(), 'UTC') ELSE 'epoch'::timestamptz END, $4::bigint
              WHERE $4::bigint <= $5::bigint
             ON CONFLICT (tenant_id, metric, period_start)
             DO UPDATE SET amount = u.amount + EXCLUDED.amount, updated_at = now()
              WHERE u.amount + EXCLUDED.amount <= $5::bigint
             RETURNING amount",
        )
        .await?;
    let daily = period == Period::Day;
    Ok(
        c.query_opt(&stmt, &[&tenant_id, &metric, &daily, &amount, &limit])
            .await?
            .map(|r| r.get(0)),
    )
}

/// Lowers a running total; `None` when it would go below zero (nothing changed).
pub async fn decrement(
    c: &impl GenericClient,
    tenant_id: Uuid,
    metric: &str,
    amount: i64,
) -> Result<Option<i64>> {
    let stmt = c
        .prepare_cached(
            "UPDATE berqenas.usage_counters SET amount = amount - $3, updated_at = now()
              WHERE tenant_id = $1 AND metric = $2 AND period_start = 'epoch' AND amount >= $3
             RETURNING amount",
        )
        .await?;
    Ok(c.query_opt(&stmt, &[&tenant_id, &metric, &amount])
        .await?
        .map(|r| r.get(0)))
}

/// The current value of a counter (0 when never counted).
pub async fn counter(
    c: &impl GenericClient,
    tenant_id: Uuid,
    metric: &str,
    period: Period,
) -> Result<(i64, Option<DateTime<Utc>>)> {
    let row = c
        .query_opt(
            "SELECT amount, updated_at FROM berqenas.usage_counters
              WHERE tenant_id = $1 AND metric = $2
                AND period_start = CASE WHEN $3 THEN date_trunc('day', now(), 'UTC') ELSE 'epoch'::timestamptz END",
            &[&tenant_id, &metric, &(period == Period::Day)],
        )
        .await?;
    Ok(row.map_or((0, None), |r| (r.get(0), Some(r.get(1)))))
}

/// Daily counters older than `keep_days` go; running totals stay.
pub async fn prune_counters(c: &impl GenericClient, keep_days: i32) -> Result<u64> {
    Ok(c.execute(
        "DELETE FROM berqenas.usage_counters
          WHERE period_start > 'epoch' AND period_start < now() - make_interval(days => $1)",
        &[&keep_days],
    )
    .await?)
}

/// The bytes last measured for a tenant (0 before the first measurement).
pub async fn disk_bytes(c: &impl GenericClient, tenant_id: Uuid) -> Result<i64> {
    let row = c
        .query_opt(
            "SELECT bytes FROM berqenas.disk_usage WHERE tenant_id = $1",
            &[&tenant_id],
        )
        .await?;
    Ok(found(row)?.get(0))
}

/// Tenants measured over their disk quota, or still blocked.
pub async fn over_quota_or_blocked(c: &impl GenericClient) -> Result<Vec<Uuid>> {
    Ok(c
        .query(
            "SELECT u.tenant_id FROM berqenas.disk_usage u JOIN berqenas.tenants t ON t.id = u.tenant_id
              WHERE u.bytes > t.db_quota_bytes OR u.writes_blocked",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The quotas in force for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Quotas {
    /// Disk: tables, indexes and TOAST (in shared mode, the tenant's share).
    pub db_quota_bytes: i64,
    /// Concurrent sessions of each login role (and of the database, in database mode).
    pub max_connections: i32,
    /// Statements longer than this are cancelled; transactions idle twice as long end.
    pub statement_timeout_ms: i32,
    /// Data API and usage calls per minute (GCRA: bursts up to the per-minute amount).
    pub api_calls_per_minute: i32,
    pub realtime_events_per_minute: i32,
    pub max_users: i32,
    pub max_llm_tokens_per_day: i64,
    pub max_agents: i32,
    pub max_concurrent_agents: i32,
    pub max_data_retention_days: i32,
    /// A transaction older than this is ended by the watchdog, however busy it keeps
    /// itself (the statement and idle timeouts do not bound a transaction that runs a
    /// short statement every few seconds).
    pub transaction_timeout_ms: i32,
    /// Realtime events a tenant may publish per clock hour (and per clock minute,
    /// `realtime_events_per_minute`); the event over either is refused.
    pub realtime_events_per_hour: i32,
    /// Realtime stream subscribers a tenant may have open at once on one server.
    pub realtime_max_subscribers: i32,
    /// `db_quota_bytes` in whole GiB (rounded down), as seed 002 names it; read-only:
    /// the quota is set as `db_quota_bytes`.
    pub max_storage_gb: i64,
}

/// `db_quota_bytes` in whole GiB, rounded down.
pub fn storage_gb(db_quota_bytes: i64) -> i64 {
    db_quota_bytes >> 30
}

impl Quotas {
    /// The per-role limits PostgreSQL enforces for this tenant's logins.
    pub fn role_limits(&self, may_set_temp: bool) -> RoleLimits {
        RoleLimits::new(
            self.max_connections,
            self.statement_timeout_ms,
            self.db_quota_bytes,
            may_set_temp,
        )
    }
}

/// Every quota field, with the range a value must be in.
pub const FIELDS: &[(&str, i64, i64)] = &[
    ("db_quota_bytes", 1 << 20, 1 << 50),
    ("max_connections", 1, 10_000),
    ("statement_timeout_ms", 100, 86_400_000),
    ("api_calls_per_minute", 1, 10_000_000),
    ("realtime_events_per_minute", 1, 10_000_000),
    ("max_users", 0, 1_000_000),
    ("max_llm_tokens_per_day", 0, 1_000_000_000_000_000),
    ("max_agents", 0, 10_000_000),
    ("max_concurrent_agents", 0, 1_000_000),
    ("max_data_retention_days", 1, 36_500),
    ("transaction_timeout_ms", 1_000, 86_400_000),
    ("realtime_events_per_hour", 1, 1_000_000_000),
    ("realtime_max_subscribers", 0, 1_000_000),
];

/// The range a quota field's value must be in (`None`: no such field).
pub fn range(field: &str) -> Option<(i64, i64)> {
    FIELDS
        .iter()
        .find(|f| f.0 == field)
        .map(|&(_, lo, hi)| (lo, hi))
}
