//! `quota_breaches` (migration 0023): the quotas berqenas observes rather than changes
//! (connections at their limit, a rate refusing), exceeded from the first observation
//! to the recovery; and `usage_reports`: up to when each tenant's usage was reported.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::Result;

/// Marks `quota` of the tenant exceeded; whether it was not already.
pub async fn exceed(c: &impl GenericClient, tenant: Uuid, quota: &str) -> Result<bool> {
    Ok(c.execute(
        "INSERT INTO berqenas.quota_breaches (tenant_id, quota) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
        &[&tenant, &quota],
    )
    .await?
        == 1)
}

/// Marks `quota` of the tenant recovered; whether it was exceeded.
pub async fn recover(c: &impl GenericClient, tenant: Uuid, quota: &str) -> Result<bool> {
    Ok(c.execute(
        "DELETE FROM berqenas.quota_breaches WHERE tenant_id = $1 AND quota = $2",
        &[&tenant, &quota],
    )
    .await?
        == 1)
}

/// Connection use of every live tenant that has a session or is marked exceeded:
/// (tenant, its busiest login role's sessions, all its sessions, database mode). Tenants
/// on `default` only: the others' sessions are on their servers (`quota::placed`).
pub async fn connection_use(c: &impl GenericClient) -> Result<Vec<(Uuid, i64, i64, bool)>> {
    Ok(c.query(
        "WITH roles AS (
             SELECT t.id, t.login_role AS role FROM berqenas.tenants t
              WHERE t.status IN ('trial', 'active', 'suspended') AND t.server = 'default'
             UNION ALL
             SELECT u.tenant_id, u.db_user FROM berqenas.tenant_users u
               JOIN berqenas.tenants t ON t.id = u.tenant_id AND t.server = 'default'
         ), per_role AS (
             SELECT r.id, count(a.pid) AS n
               FROM roles r LEFT JOIN pg_catalog.pg_stat_activity a ON a.usename = r.role
              GROUP BY r.id, r.role
         )
         SELECT p.id, max(p.n)::bigint, sum(p.n)::bigint, t.isolation = 'database'
           FROM per_role p JOIN berqenas.tenants t ON t.id = p.id
          GROUP BY p.id, t.isolation
         HAVING sum(p.n) > 0
             OR EXISTS (SELECT 1 FROM berqenas.quota_breaches b
                         WHERE b.tenant_id = p.id AND b.quota = 'connections')",
        &[],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect())
}

/// Live tenants whose usage was last reported (or, never reported, that were
/// created) at least `every_secs` ago, oldest first.
pub async fn reports_due(c: &impl GenericClient, every_secs: f64, limit: i64) -> Result<Vec<Uuid>> {
    Ok(c.query(
        "SELECT t.id FROM berqenas.tenants t
           LEFT JOIN berqenas.usage_reports r ON r.tenant_id = t.id
          WHERE t.status IN ('trial', 'active', 'suspended')
            AND coalesce(r.reported_until, t.created_at) <= now() - make_interval(secs => $1)
          ORDER BY coalesce(r.reported_until, t.created_at) LIMIT $2",
        &[&every_secs, &limit],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// Moves the tenant's reported period on to now, if it is still due (another server
/// may have reported it meanwhile); returns the period (start, end) to report.
pub async fn claim_report(
    c: &impl GenericClient,
    tenant: Uuid,
    every_secs: f64,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>> {
    let row = c
        .query_opt(
            "WITH prev AS (
                 SELECT coalesce(r.reported_until, t.created_at) AS since
                   FROM berqenas.tenants t
                   LEFT JOIN berqenas.usage_reports r ON r.tenant_id = t.id
                  WHERE t.id = $1
             )
             INSERT INTO berqenas.usage_reports (tenant_id, reported_until)
             SELECT $1, now() FROM prev WHERE prev.since <= now() - make_interval(secs => $2)
             ON CONFLICT (tenant_id) DO UPDATE SET reported_until = excluded.reported_until
             RETURNING (SELECT since FROM prev), reported_until",
            &[&tenant, &every_secs],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}
