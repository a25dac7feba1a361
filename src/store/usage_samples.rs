//! `usage_samples`: each live tenant's disk bytes, open connections and API calls of the
//! last minute, sampled by the quota round (`quota::history`) and pruned by age; read
//! back as a tenant's history for the console's charts.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::tenant_sessions::TENANT_SESSIONS;
use super::Result;

/// Statuses whose tenants are sampled: they have database objects and may be used.
const SAMPLED: &str = "('trial', 'active', 'suspended')";

/// One sample of one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub disk_bytes: i64,
    pub connections: i32,
    pub api_calls: i32,
}

/// Whether the last sampling is older than `every_secs`, or there was none.
pub async fn due(c: &impl GenericClient, every_secs: f64) -> Result<bool> {
    Ok(c.query_one(
        "SELECT coalesce((SELECT sampled_at FROM berqenas.usage_sample_runs)
                         <= now() - $1::float8 * interval '1 second', true)",
        &[&every_secs],
    )
    .await?
    .get(0))
}

/// Records that a sampling ran now (the caller's transaction, with its sample).
pub async fn mark_sampled(c: &impl GenericClient) -> Result<()> {
    c.execute(
        "INSERT INTO berqenas.usage_sample_runs (sampled_at) VALUES (now())
         ON CONFLICT (single) DO UPDATE SET sampled_at = EXCLUDED.sampled_at",
        &[],
    )
    .await?;
    Ok(())
}

/// The tenants a sample covers, by id.
pub async fn sampled_tenants(c: &impl GenericClient) -> Result<Vec<Uuid>> {
    let rows = c
        .query(
            &format!("SELECT id FROM berqenas.tenants WHERE status IN {SAMPLED}"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// One sample of every live tenant at `now()`, in one statement: the disk as last
/// measured, the sessions of its login roles now, and `api` (tenant, calls) as counted
/// by this server. A tenant's row is written only when one of the three moved since
/// its last row, or that row is older than `hold_secs`: its figures stand until its
/// next row (the console draws them so). Every live tenant's row every interval, most
/// of them the same, made tenants × retention / interval rows: 86 million at 10,000
/// tenants and the defaults. Answers how many rows were written.
///
/// The sessions are found from their owners ([`TENANT_SESSIONS`]) and summed per
/// tenant: not a look through all sessions for each tenant, which grew with tenants
/// times sessions (the `SELECT` at 10,231 tenants with 66 sessions open: 665 to
/// 738 ms that way; docs/console.md). A tenant's last row is found by its primary
/// key, newest first.
pub async fn sample(c: &impl GenericClient, api: &[(Uuid, i32)], hold_secs: f64) -> Result<u64> {
    let ids: Vec<Uuid> = api.iter().map(|a| a.0).collect();
    let calls: Vec<i32> = api.iter().map(|a| a.1).collect();
    let sql = format!(
        "WITH connections AS (
             SELECT id AS tenant_id, sum(n)::int AS n FROM {TENANT_SESSIONS} o GROUP BY id),
         api AS (SELECT * FROM unnest($1::uuid[], $2::int[]) AS a(tenant_id, calls)),
         now_figures AS (
             SELECT t.id, coalesce(d.bytes, 0) AS disk_bytes, coalesce(n.n, 0) AS connections,
                    coalesce(a.calls, 0) AS api_calls
               FROM berqenas.tenants t
               LEFT JOIN berqenas.disk_usage d ON d.tenant_id = t.id
               LEFT JOIN connections n ON n.tenant_id = t.id
               LEFT JOIN api a ON a.tenant_id = t.id
              WHERE t.status IN {SAMPLED})
         INSERT INTO berqenas.usage_samples (tenant_id, sampled_at, disk_bytes, connections, api_calls)
         SELECT f.id, now(), f.disk_bytes, f.connections, f.api_calls
           FROM now_figures f
           LEFT JOIN LATERAL (
                SELECT s.sampled_at, s.disk_bytes, s.connections, s.api_calls
                  FROM berqenas.usage_samples s WHERE s.tenant_id = f.id
                 ORDER BY s.sampled_at DESC LIMIT 1) l ON true
          WHERE l.sampled_at IS NULL
             OR l.sampled_at <= now() - $3::float8 * interval '1 second'
             OR (l.disk_bytes, l.connections, l.api_calls)
                IS DISTINCT FROM (f.disk_bytes, f.connections, f.api_calls)
         ON CONFLICT DO NOTHING"
    );
    Ok(c.execute(&sql, &[&ids, &calls, &hold_secs]).await?)
}

/// Samples older than `keep_secs` go.
pub async fn prune(c: &impl GenericClient, keep_secs: f64) -> Result<u64> {
    Ok(c.execute(
        "DELETE FROM berqenas.usage_samples
              WHERE sampled_at < now() - $1::float8 * interval '1 second'",
        &[&keep_secs],
    )
    .await?)
}

/// A tenant's samples since `since`, oldest first, at most `limit`.
pub async fn history(
    c: &impl GenericClient,
    tenant: Uuid,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Sample>> {
    let rows = c
        .query(
            "SELECT sampled_at, disk_bytes, connections, api_calls FROM (
                 SELECT * FROM berqenas.usage_samples
                  WHERE tenant_id = $1 AND sampled_at >= $2
                  ORDER BY sampled_at DESC LIMIT $3) s
              ORDER BY sampled_at",
            &[&tenant, &since, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Sample {
            at: r.get(0),
            disk_bytes: r.get(1),
            connections: r.get(2),
            api_calls: r.get(3),
        })
        .collect())
}

/// Tenants created and deleted on each UTC day of the last `days` (days without
/// either are absent), oldest first.
pub async fn changes_per_day(
    c: &impl GenericClient,
    days: i32,
) -> Result<Vec<(NaiveDate, i64, i64)>> {
    let rows = c
        .query(
            "WITH since AS (SELECT (now() AT TIME ZONE 'UTC')::date - $1::int AS d),
                  made AS (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
                             FROM berqenas.tenants, since
                            WHERE created_at >= since.d GROUP BY 1),
                  gone AS (SELECT (deleted_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
                             FROM berqenas.offboarding, since
                            WHERE deleted_at >= since.d GROUP BY 1)
             SELECT day, coalesce(made.n, 0), coalesce(gone.n, 0)
               FROM made FULL JOIN gone USING (day) ORDER BY day",
            &[&days],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}
