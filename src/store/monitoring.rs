//! Monitoring levels (migration 0028): `plans.monitoring_level` and the tenant's
//! override `tenants.monitoring_level`, and what the monitoring renderings read of the
//! registry. The caller owns the transaction.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::Result;

/// The tenants that have alert rules and series: every one not purged (nor failed or
/// still being made). Soft-deleted tenants keep theirs until the purge, since a
/// restore brings them back.
const MONITORED: &str = "('trial', 'active', 'suspended', 'deleted')";

/// Every monitored tenant with its effective level, by name.
pub async fn levels(c: &impl GenericClient) -> Result<Vec<(String, String)>> {
    let rows = c
        .query(
            &format!(
                "SELECT t.name, coalesce(t.monitoring_level, p.monitoring_level)
                   FROM berqenas.tenants t JOIN berqenas.plans p ON p.name = t.plan
                  WHERE t.status IN {MONITORED} ORDER BY t.name"
            ),
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// One monitored tenant's level: what its plan gives and its own override.
#[derive(Debug, Clone)]
pub struct TenantLevel {
    pub id: Uuid,
    pub name: String,
    pub plan: String,
    pub plan_level: String,
    pub override_level: Option<String>,
}

/// The monitored tenant named `key` (its name or id), locked for update when
/// `for_update`.
pub async fn tenant_level(
    c: &impl GenericClient,
    key: &str,
    for_update: bool,
) -> Result<Option<TenantLevel>> {
    let id = key.parse::<Uuid>().ok();
    let lock = if for_update { "FOR UPDATE OF t" } else { "" };
    let row = c
        .query_opt(
            &format!(
                "SELECT t.id, t.name, t.plan, p.monitoring_level, t.monitoring_level
                   FROM berqenas.tenants t JOIN berqenas.plans p ON p.name = t.plan
                  WHERE (t.id = $1 OR t.name = $2) AND t.status IN {MONITORED} {lock}"
            ),
            &[&id, &key],
        )
        .await?;
    Ok(row.map(|r| TenantLevel {
        id: r.get(0),
        name: r.get(1),
        plan: r.get(2),
        plan_level: r.get(3),
        override_level: r.get(4),
    }))
}

/// Sets (or with `None` clears) the tenant's own level.
pub async fn set_override(c: &impl GenericClient, id: Uuid, level: Option<&str>) -> Result<()> {
    c.execute(
        "UPDATE berqenas.tenants SET monitoring_level = $2, updated_at = now() WHERE id = $1",
        &[&id, &level],
    )
    .await?;
    Ok(())
}

/// For each monitored tenant with a finished backup: whether the last one succeeded
/// (an expired backup had succeeded).
pub async fn last_backups(c: &impl GenericClient) -> Result<Vec<(String, bool)>> {
    let rows = c
        .query(
            &format!(
                "SELECT DISTINCT ON (b.tenant_id) t.name, b.status <> 'failed'
                   FROM berqenas.backups b JOIN berqenas.tenants t ON t.id = b.tenant_id
                  WHERE b.status IN ('succeeded', 'failed', 'expired') AND t.status IN {MONITORED}
                  ORDER BY b.tenant_id, b.created_at DESC"
            ),
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
