//! Deciding what to migrate: one query over the registry, however many tenants.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{MigrateRequest, Result};
use crate::platform::Platform;
use crate::tenant::service::Error;
use crate::tenant::{store, Isolation};

/// Tenants whose objects exist: a soft-deleted tenant is migrated too, so a restore
/// brings it back at the current version.
pub(super) const LIVE: &str = "'trial', 'active', 'suspended', 'deleted'";

/// One tenant below the latest version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PendingTenant {
    #[serde(skip)]
    pub id: Uuid,
    pub tenant: String,
    pub isolation: Isolation,
    pub from_version: i32,
    /// The migration files it will run, in order.
    pub migrations: Vec<String>,
    #[serde(skip)]
    pub schema: String,
    #[serde(skip)]
    pub database: String,
    #[serde(skip)]
    pub owner_role: String,
}

#[derive(Deserialize)]
struct Row {
    id: Uuid,
    name: String,
    isolation: Isolation,
    schema: String,
    database: String,
    owner: String,
    version: i32,
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
    let row = client
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE template_version >= $4) AS current,
                        coalesce(json_agg(json_build_object(
                            'id', id, 'name', name, 'isolation', isolation,
                            'schema', coalesce(schema_name, ''), 'database', database_name,
                            'owner', owner_role, 'version', template_version)
                          ORDER BY created_at, id) FILTER (WHERE template_version < $4), '[]') AS pending
                   FROM berqenas.tenants
                  WHERE status IN ({LIVE})
                    AND ($1::uuid IS NULL OR id = $1)
                    AND ($2::text IS NULL OR plan = $2)
                    AND ($3::text IS NULL OR isolation = $3)"
            ),
            &[&tenant_id, &req.plan, &isolation, &target],
        )
        .await?;
    let rows: Vec<Row> =
        serde_json::from_value(row.get("pending")).expect("the query builds this shape");
    let pending: Vec<PendingTenant> = rows
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
            schema: r.schema,
            database: r.database,
            owner_role: r.owner,
        })
        .collect();
    Ok(MigrationPlan {
        target_version: target,
        already_current: row.get("current"),
        pending,
    })
}
