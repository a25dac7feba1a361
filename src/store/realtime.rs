//! `realtime_counters` (migration 0026): the events each tenant published in the
//! current minute and hour, as `berqenas_realtime.admit` counted them. Read here for
//! usage, metrics and quota crossings; only that function writes it.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::Result;

/// This minute's and this hour's published events of a tenant (0 for a window that
/// has moved on since its last event).
pub async fn counted(c: &impl GenericClient, tenant: Uuid) -> Result<(i64, i64)> {
    let row = c
        .query_one(
            "SELECT coalesce(sum(events) FILTER (WHERE window_kind = 'minute'
                                 AND window_start = date_trunc('minute', now())), 0)::bigint,
                    coalesce(sum(events) FILTER (WHERE window_kind = 'hour'
                                 AND window_start = date_trunc('hour', now())), 0)::bigint
               FROM berqenas.realtime_counters WHERE tenant_id = $1",
            &[&tenant],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// A tenant whose current window is at its limit, or that is marked exceeded.
#[derive(Debug, Clone)]
pub struct Standing {
    pub tenant: Uuid,
    /// `realtime_events_per_minute` or `realtime_events_per_hour`, the fuller one.
    pub limit_name: &'static str,
    pub limit: i64,
    pub used: i64,
    pub at_limit: bool,
}

/// Every tenant at a realtime limit now, and every one marked exceeded (to recover).
///
/// Looked for among the tenants with a count in the current hour or minute and those
/// marked, not among every tenant's quotas: a limit is at least 1, so a tenant with
/// no count now is at none (at 10,231 tenants and no counts, `psql`: 6.8 to 12.5 ms a
/// round that way, 0.8 to 1.5 ms this way, the same rows with tenants at, below and
/// past their windows, and marked; docs/quotas.md).
pub async fn standings(c: &impl GenericClient) -> Result<Vec<Standing>> {
    let rows = c
        .query(
            "WITH now_counts AS (
                 SELECT r.tenant_id,
                        coalesce(max(r.events) FILTER (WHERE r.window_kind = 'minute'
                                 AND r.window_start = date_trunc('minute', now())), 0) AS minute,
                        coalesce(max(r.events) FILTER (WHERE r.window_kind = 'hour'
                                 AND r.window_start = date_trunc('hour', now())), 0) AS hour
                   FROM berqenas.realtime_counters r
                  WHERE r.window_start >= date_trunc('hour', now())
                  GROUP BY r.tenant_id
             ), candidates AS (
                 SELECT tenant_id FROM now_counts
                 UNION
                 SELECT tenant_id FROM berqenas.quota_breaches WHERE quota = 'realtime'
             )
             SELECT q.tenant_id, n.minute::bigint, q.realtime_events_per_minute::bigint,
                    n.hour::bigint, q.realtime_events_per_hour::bigint
               FROM candidates c
               JOIN berqenas.effective_quotas q ON q.tenant_id = c.tenant_id
               LEFT JOIN now_counts n ON n.tenant_id = q.tenant_id
              WHERE (n.minute >= q.realtime_events_per_minute OR n.hour >= q.realtime_events_per_hour)
                 OR EXISTS (SELECT 1 FROM berqenas.quota_breaches b
                             WHERE b.tenant_id = q.tenant_id AND b.quota = 'realtime')",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let (tenant, minute, per_minute, hour, per_hour): (
                Uuid,
                Option<i64>,
                i64,
                Option<i64>,
                i64,
            ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            let (minute, hour) = (minute.unwrap_or(0), hour.unwrap_or(0));
            if hour >= per_hour {
                Standing {
                    tenant,
                    limit_name: "realtime_events_per_hour",
                    limit: per_hour,
                    used: hour,
                    at_limit: true,
                }
            } else {
                Standing {
                    tenant,
                    limit_name: "realtime_events_per_minute",
                    limit: per_minute,
                    used: minute,
                    at_limit: minute >= per_minute,
                }
            }
        })
        .collect())
}

/// Whether the tenant may stream now (trial or active); `None`: no such tenant.
pub async fn live(c: &impl GenericClient, tenant: Uuid) -> Result<Option<bool>> {
    Ok(c.query_opt(
        "SELECT status IN ('trial', 'active') FROM berqenas.tenants WHERE id = $1",
        &[&tenant],
    )
    .await?
    .map(|r| r.get(0)))
}

/// A realtime limit's refusal (SQLSTATE 53400 with a `retry_after=` hint): its message
/// and when to retry.
pub fn refusal(e: &tokio_postgres::Error) -> Option<(String, u64)> {
    let db = e.as_db_error()?;
    (db.code().code() == "53400").then(|| {
        (
            db.message().to_string(),
            db.hint()
                .and_then(|h| h.strip_prefix("retry_after="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1),
        )
    })
}

/// Counts `n` events of the tenant (reported through `POST .../usage`) against its
/// realtime limits, all or none; run it outside a transaction (it is its own) or in
/// one the caller commits. `Ok(Err((message, retry_after_secs)))` when a limit
/// refuses them, `Ok(Ok(used this minute))` when counted. Schema and shared mode; a
/// database-mode tenant's count is in its own database (`realtime_gate`).
pub async fn admit_n(
    c: &impl GenericClient,
    tenant: Uuid,
    n: i64,
) -> Result<std::result::Result<i64, (String, u64)>> {
    match c
        .query_one("SELECT berqenas_realtime.admit_n($1, $2)", &[&tenant, &n])
        .await
    {
        Ok(row) => Ok(Ok(row.get(0))),
        Err(e) => match refusal(&e) {
            Some(r) => Ok(Err(r)),
            None => Err(e.into()),
        },
    }
}

/// Copies a database-mode tenant's counters (as its own database's gate holds them)
/// into `realtime_counters`, for `/metrics` and the quota round's crossings.
pub async fn mirror(
    c: &impl GenericClient,
    tenant: Uuid,
    rows: &[(String, chrono::DateTime<chrono::Utc>, i64)],
) -> Result<()> {
    for (kind, start, events) in rows {
        c.execute(
            "INSERT INTO berqenas.realtime_counters (tenant_id, window_kind, window_start, events)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, window_kind) DO UPDATE
                 SET window_start = excluded.window_start, events = excluded.events",
            &[&tenant, kind, start, events],
        )
        .await?;
    }
    Ok(())
}

/// Every live tenant's events this minute (as counted in SQL) and its per-minute
/// limit, by tenant name (for `/metrics`).
pub async fn per_minute_all(c: &impl GenericClient) -> Result<Vec<(String, i64, i64)>> {
    Ok(c.query(
        "SELECT t.name, coalesce(r.events, 0)::bigint, q.realtime_events_per_minute::bigint
               FROM berqenas.tenants t
               JOIN berqenas.effective_quotas q ON q.tenant_id = t.id
               LEFT JOIN berqenas.realtime_counters r ON r.tenant_id = t.id
                    AND r.window_kind = 'minute' AND r.window_start = date_trunc('minute', now())
              WHERE t.status IN ('trial', 'active', 'suspended')",
        &[],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect())
}

/// The tenants whose events the quota round looks after, a page at a time in id
/// order after `after` (pruning, and in database mode the gate's sync).
pub async fn tenants_page(
    c: &impl GenericClient,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Uuid>> {
    Ok(c.query(
        "SELECT id FROM berqenas.tenants
              WHERE status IN ('trial', 'active', 'suspended')
                AND ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
        &[&after, &limit],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}
