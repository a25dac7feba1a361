//! Deciding what to migrate: one query over the registry, however many tenants.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{MigrateRequest, Result};
use crate::names::Slug;
use crate::pg::Ident;
use crate::platform::Platform;
use crate::store::tenants as store;
use crate::store::tenants::Isolation;
use crate::tenant::service::Error;

/// Tenants whose objects exist: a soft-deleted tenant is migrated too, so a restore
/// brings it back at the current version.
pub const LIVE: &[&str] = &["trial", "active", "suspended", "deleted"];

/// One tenant below the target version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PendingTenant {
    #[serde(skip)]
    pub id: Uuid,
    #[schema(value_type = String)]
    pub tenant: Slug,
    pub isolation: Isolation,
    /// The server its objects are on (`default`: the one berqenas started with); its
    /// unit runs on a session there.
    #[serde(default = "default_server")]
    pub server: String,
    pub from_version: i32,
    /// The migration files it will run, in order.
    pub migrations: Vec<String>,
    /// Where its objects are, as the registry holds them (`None` in a plan read back
    /// from JSON, which is shown, never run).
    #[serde(skip)]
    pub place: Option<Place>,
}

fn default_server() -> String {
    crate::store::servers::DEFAULT.to_string()
}

impl PendingTenant {
    /// Whether its objects are in the control database itself (schema mode on
    /// `default`, and the shared pool): its session reports its new version in the
    /// transaction of its DDL. Elsewhere (database mode; any tenant on another server)
    /// the DDL commits with the schema's marker and the registry follows.
    pub fn in_control_database(&self) -> bool {
        self.isolation != Isolation::Database && self.server == crate::store::servers::DEFAULT
    }
}

/// Where a pending tenant's objects are.
#[derive(Debug, Clone)]
pub struct Place {
    /// Its schema (schema and database modes).
    pub schema: Option<Ident>,
    pub database: Ident,
    pub owner_role: Ident,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MigrationPlan {
    pub target_version: i32,
    /// Selected tenants already at the target.
    pub already_current: i64,
    pub pending: Vec<PendingTenant>,
}

/// Which tenants a run covers, as resolved when it starts (a tenant by its id), so
/// that a run finished after a restart covers the same ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Selector {
    pub tenant: Option<Uuid>,
    pub plan: Option<String>,
    pub isolation: Option<Isolation>,
}

impl Selector {
    /// The request's selection (a tenant named that does not exist is a 404).
    pub async fn of(p: &Platform, req: &MigrateRequest) -> Result<Self> {
        let tenant = match &req.tenant {
            None => None,
            Some(key) => Some(
                store::find(&p.pool.get().await?, key)
                    .await?
                    .ok_or_else(|| Error::not_found(key))?
                    .id,
            ),
        };
        Ok(Self {
            tenant,
            plan: req.plan.clone(),
            isolation: req.isolation,
        })
    }
}

/// What a run of this request to the latest version would do.
pub async fn plan(p: &Platform, req: &MigrateRequest) -> Result<(Selector, MigrationPlan)> {
    let selector = Selector::of(p, req).await?;
    let plan = plan_for(p, &selector, p.template.latest_version()).await?;
    Ok((selector, plan))
}

/// The selected tenants below `target`, oldest first, and how many are at it already.
pub async fn plan_for(p: &Platform, s: &Selector, target: i32) -> Result<MigrationPlan> {
    let client = p.pool.get().await?;
    // One row whatever the count: how many are current, and the pending ones.
    let (already_current, pending) = store::migration_candidates(
        &client,
        LIVE,
        s.tenant,
        s.plan.as_deref(),
        s.isolation.map(|i| i.as_str()),
        target,
    )
    .await?;
    let pending: Vec<PendingTenant> = pending
        .into_iter()
        .map(|r| PendingTenant {
            id: r.id,
            migrations: p
                .template
                .pending_until(r.version, target)
                .iter()
                .map(|m| m.name.clone())
                .collect(),
            tenant: r.name,
            isolation: r.isolation,
            server: r.server,
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
