//! Deciding what to migrate: one query over the registry, however many tenants.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{MigrateRequest, Result};
use crate::pg::Ident;
use crate::platform::Platform;
use crate::store::tenants as store;
use crate::tenant::service::Error;
use crate::tenant::{Isolation, Slug};

/// Tenants whose objects exist: a soft-deleted tenant is migrated too, so a restore
/// brings it back at the current version.
pub(super) const LIVE: &[&str] = &["trial", "active", "suspended", "deleted"];

/// One tenant below the latest version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PendingTenant {
    #[serde(skip)]
    pub id: Uuid,
    #[schema(value_type = String)]
    pub tenant: Slug,
    pub isolation: Isolation,
    pub from_version: i32,
    /// The migration files it will run, in order.
    pub migrations: Vec<String>,
    /// Where its objects are, as the registry holds them (`None` in a plan read back
    /// from JSON, which is shown, never run).
    #[serde(skip)]
    pub(crate) place: Option<Place>,
}

/// Where a pending tenant's objects are.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    /// Its schema (schema and database modes).
    pub(crate) schema: Option<Ident>,
    pub(crate) database: Ident,
    pub(crate) owner_role: Ident,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MigrationPlan {
    pub target_version: i32,
    /// Selected tenants already at the target.
    pub already_current: i64,
    pub pending: Vec<PendingTenant>,
}

pub async fn plan(p: &Platform, req: &MigrateRequest) -> Result<MigrationPlan> {
    let client = p.pool.get().await?;
    let tenant_id = match &req.tenant {
        None => None,
        Some(key) => Some(
            store::find(&client, key)
                .await?
                .ok_or_else(|| Error::not_found(key))?
                .id,
        ),
    };
    let target = p.template.latest_version();
    let isolation = req.isolation.map(|i| i.as_str());
    // One row whatever the count: how many are current, and the pending ones.
    let (already_current, pending) = store::migration_candidates(
        &client,
        LIVE,
        tenant_id,
        req.plan.as_deref(),
        isolation,
        target,
    )
    .await?;
    let pending: Vec<PendingTenant> = pending
        .into_iter()
        .map(|r| PendingTenant {
            id: r.id,
            migrations: p
                .template
                .pending(r.version)
                .iter()
                .map(|m| m.name.clone())
                .collect(),
            tenant: r.name,
            isolation: r.isolation,
            from_version: r.version,
            place: Some(Place {
                schema: r.schema,
                database: r.database,
                owner_role: r.owner,
            }),
        })
        .collect();
    Ok(MigrationPlan {
        target_version: target,
        already_current,
        pending,
    })
}
