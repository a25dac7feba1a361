//! The `offboarding` table: a delete's record from its start (`pending`) through
//! `deleted`, `purging` and `purged`, with what it took away so a restore gives back
//! exactly that. The caller owns the transaction.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::{found, Result};
use crate::store::tenants::Status;
use serde::{Deserialize, Serialize};

/// The `offboarding` row.
#[derive(Debug, Clone)]
pub struct Offboarding {
    pub state: String,
    pub previous_status: Status,
    pub disabled_roles: Vec<String>,
    pub disabled_memberships: Vec<Membership>,
    pub final_backup_id: Option<Uuid>,
    pub purge_after: DateTime<Utc>,
    pub purged_at: Option<DateTime<Utc>>,
}

pub async fn find(c: &impl GenericClient, tenant_id: Uuid) -> Result<Option<Offboarding>> {
    let row = c
        .query_opt(
            "SELECT state, previous_status, disabled_roles, final_backup_id, purge_after, purged_at,
                    disabled_memberships
               FROM berqenas.offboarding WHERE tenant_id = $1",
            &[&tenant_id],
        )
        .await?;
    row.map(|r| {
        Ok(Offboarding {
            state: r.try_get(0)?,
            previous_status: r.try_get(1)?,
            disabled_roles: r.try_get(2)?,
            final_backup_id: r.try_get(3)?,
            purge_after: r.try_get(4)?,
            purged_at: r.try_get(5)?,
            disabled_memberships: serde_json::from_value(r.try_get(6)?).unwrap_or_default(),
        })
    })
    .transpose()
}

/// Whether a delete of the tenant is recorded (in any state).
pub async fn exists(c: &impl GenericClient, tenant_id: Uuid) -> Result<bool> {
    Ok(c.query_opt(
        "SELECT 1 FROM berqenas.offboarding WHERE tenant_id = $1",
        &[&tenant_id],
    )
    .await?
    .is_some())
}

/// A delete's intent: `pending`, what it took, and its purge date.
pub async fn insert_pending(
    c: &impl GenericClient,
    tenant_id: Uuid,
    previous_status: Status,
    disabled_roles: &[String],
    disabled_memberships: &[Membership],
    retention_days: i32,
    actor: &str,
) -> Result<()> {
    let memberships = serde_json::to_value(disabled_memberships).expect("plain data serialises");
    c.execute(
        "INSERT INTO berqenas.offboarding
             (tenant_id, state, previous_status, disabled_roles, disabled_memberships, purge_after, actor)
         VALUES ($1, 'pending', $2, $3, $4, now() + make_interval(days => $5), $6)",
        &[
            &tenant_id,
            &previous_status.as_str(),
            &disabled_roles,
            &memberships,
            &retention_days,
            &actor,
        ],
    )
    .await?;
    Ok(())
}

/// Deleted, with its archive; returns (purge date, the archive's expiry: the purge
/// date plus `archive_days`).
pub async fn mark_deleted(
    c: &impl GenericClient,
    tenant_id: Uuid,
    previous_status: Status,
    final_backup_id: Uuid,
    archive_days: i32,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let row = c
        .query_opt(
            "UPDATE berqenas.offboarding SET state = 'deleted', previous_status = $2, final_backup_id = $3, updated_at = now()
              WHERE tenant_id = $1 RETURNING purge_after, purge_after + make_interval(days => $4)",
            &[&tenant_id, &previous_status.as_str(), &final_backup_id, &archive_days],
        )
        .await?;
    let row = found(row)?;
    Ok((row.get(0), row.get(1)))
}

pub async fn mark_purged(c: &impl GenericClient, tenant_id: Uuid) -> Result<()> {
    c.execute(
        "UPDATE berqenas.offboarding SET state = 'purged', purged_at = now(), updated_at = now() WHERE tenant_id = $1",
        &[&tenant_id],
    )
    .await?;
    Ok(())
}

pub async fn delete(c: &impl GenericClient, tenant_id: Uuid) -> Result<()> {
    c.execute(
        "DELETE FROM berqenas.offboarding WHERE tenant_id = $1",
        &[&tenant_id],
    )
    .await?;
    Ok(())
}

/// Deleted tenants past their purge date (`purging`: left half done by a version
/// before the operation engine).
pub async fn due_purges(c: &impl GenericClient, limit: i64) -> Result<Vec<Uuid>> {
    Ok(c
        .query(
            "SELECT o.tenant_id FROM berqenas.offboarding o JOIN berqenas.tenants t ON t.id = o.tenant_id
              WHERE t.status = 'deleted'
                AND ((o.state = 'deleted' AND o.purge_after <= now()) OR o.state = 'purging')
              ORDER BY o.purge_after LIMIT $1",
            &[&limit],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// A membership in one of the tenant's login roles held by a role outside the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub role: String,
    pub member: String,
    /// Who granted it (None if that role no longer exists).
    pub grantor: Option<String>,
    pub admin_option: bool,
}
