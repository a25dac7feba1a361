//! `quota_breaches` (migration 0023): the quotas berqenas observes rather than changes
//! (connections at their limit, a rate refusing), exceeded from the first observation
//! to the recovery; and `usage_reports`: up to when each tenant's usage was reported.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::tenant_sessions::TENANT_SESSIONS;
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

/// A tenant's sessions as its connection quota counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionUse {
    pub tenant: Uuid,
    /// The sessions of its busiest login role (its own or one of its users').
    pub busiest: i64,
    /// All its sessions.
    pub total: i64,
    /// Database mode, where the database's limit caps all its sessions together.
    pub database: bool,
    /// Whether `quota_breaches` has its connections exceeded.
    pub marked: bool,
}

/// Connection use of every live tenant that has a session or is marked exceeded.
/// Tenants on `default` only: the others' sessions are on their servers
/// (`quota::placed`). The sessions are found from their owners
/// ([`TENANT_SESSIONS`]).
pub async fn connection_use(c: &impl GenericClient) -> Result<Vec<ConnectionUse>> {
    static USE: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH per_tenant AS (
                 SELECT id, max(n) AS busiest, sum(n) AS total FROM {TENANT_SESSIONS} o GROUP BY id
             ), marked AS (
                 SELECT tenant_id AS id FROM berqenas.quota_breaches WHERE quota = 'connections'
             )
             SELECT t.id, coalesce(p.busiest, 0)::bigint, coalesce(p.total, 0)::bigint,
                    t.isolation = 'database', m.id IS NOT NULL
               FROM per_tenant p
               FULL JOIN marked m ON m.id = p.id
               JOIN berqenas.tenants t ON t.id = coalesce(p.id, m.id)
              WHERE t.status IN ('trial', 'active', 'suspended') AND t.server = 'default'"
        )
    });
    Ok(c.query(USE.as_str(), &[])
        .await?
        .iter()
        .map(|r| ConnectionUse {
            tenant: r.get(0),
            busiest: r.get(1),
            total: r.get(2),
            database: r.get(3),
            marked: r.get(4),
        })
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
