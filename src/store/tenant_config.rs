//! The `plan_config_defaults` and `tenant_configs` tables: each plan's defaults (and
//! JSON Schema) for its tenants' configuration, and every version of every tenant's
//! configuration document (the current one is the highest).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Result;

/// A plan's stored defaults and schema.
#[derive(Debug, Clone)]
pub struct PlanDefaults {
    pub defaults: Value,
    pub schema: Option<Value>,
}

/// One version of a tenant's configuration.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigVersion {
    pub version: i32,
    #[schema(value_type = Object)]
    pub config: Value,
    /// The merge patch that made this version (null: the plan's defaults at creation).
    #[schema(value_type = Option<Object>)]
    pub patch: Option<Value>,
    pub actor: String,
    pub changed_at: DateTime<Utc>,
}

fn version_row(r: &tokio_postgres::Row) -> Result<ConfigVersion> {
    Ok(ConfigVersion {
        version: r.try_get("version")?,
        config: r.try_get("config")?,
        patch: r.try_get("patch")?,
        actor: r.try_get("actor")?,
        changed_at: r.try_get("changed_at")?,
    })
}

/// The plan's defaults and schema (`None`: the plan has none stored).
pub async fn plan_defaults(c: &impl GenericClient, plan: &str) -> Result<Option<PlanDefaults>> {
    Ok(c.query_opt(
        "SELECT defaults, schema FROM berqenas.plan_config_defaults WHERE plan = $1",
        &[&plan],
    )
    .await?
    .map(|r| PlanDefaults {
        defaults: r.get(0),
        schema: r.get(1),
    }))
}

/// Sets the plan's defaults and schema (`NotFound`: no such plan).
pub async fn put_plan_defaults(
    c: &impl GenericClient,
    plan: &str,
    defaults: &Value,
    schema: Option<&Value>,
) -> Result<()> {
    let n = c
        .execute(
            "INSERT INTO berqenas.plan_config_defaults (plan, defaults, schema)
             SELECT name, $2, $3 FROM berqenas.plans WHERE name = $1
             ON CONFLICT (plan) DO UPDATE SET defaults = EXCLUDED.defaults,
                 schema = EXCLUDED.schema, updated_at = now()",
            &[&plan, &defaults, &schema],
        )
        .await?;
    match n {
        0 => Err(super::Error::NotFound),
        _ => Ok(()),
    }
}

/// Writes a new tenant's version 1: its plan's stored defaults, else `builtin`, with
/// `plan` set to the plan's name. One statement, so a create can pipeline it beside
/// its other writes (no round trip of its own).
pub async fn create_default(
    c: &impl GenericClient,
    tenant_id: Uuid,
    plan: &str,
    builtin: &Value,
    actor: &str,
) -> Result<()> {
    // Cached: a create's statement, on its path every time.
    let stmt = c
        .prepare_cached(
            "INSERT INTO berqenas.tenant_configs (tenant_id, version, config, patch, actor)
             SELECT $1, 1, COALESCE((SELECT defaults FROM berqenas.plan_config_defaults WHERE plan = $2), $3)
                           || jsonb_build_object('plan', $2::text), NULL, $4",
        )
        .await?;
    c.execute(&stmt, &[&tenant_id, &plan, &builtin, &actor])
        .await?;
    Ok(())
}

/// The tenant's current configuration (`None`: it has none, e.g. made before configs).
pub async fn current(c: &impl GenericClient, tenant_id: Uuid) -> Result<Option<ConfigVersion>> {
    let row = c
        .query_opt(
            "SELECT version, config, patch, actor, changed_at FROM berqenas.tenant_configs
              WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1",
            &[&tenant_id],
        )
        .await?;
    row.as_ref().map(version_row).transpose()
}

/// The tenant's current configuration document, with its plan's schema, in one
/// statement (what a PATCH validates against).
pub async fn current_with_schema(
    c: &impl GenericClient,
    tenant_id: Uuid,
    plan: &str,
) -> Result<(Option<ConfigVersion>, Option<Value>)> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&plan];
    let (current, schema) = tokio::join!(
        current(c, tenant_id),
        c.query_opt(
            "SELECT schema FROM berqenas.plan_config_defaults WHERE plan = $1",
            &params,
        )
    );
    Ok((current?, schema?.and_then(|r| r.get(0))))
}

/// Appends a version.
pub async fn append(
    c: &impl GenericClient,
    tenant_id: Uuid,
    version: i32,
    config: &Value,
    patch: &Value,
    actor: &str,
) -> Result<DateTime<Utc>> {
    Ok(c.query_one(
        "INSERT INTO berqenas.tenant_configs (tenant_id, version, config, patch, actor)
         VALUES ($1, $2, $3, $4, $5) RETURNING changed_at",
        &[&tenant_id, &version, &config, &patch, &actor],
    )
    .await?
    .get(0))
}

/// Every version, newest first.
pub async fn history(c: &impl GenericClient, tenant_id: Uuid) -> Result<Vec<ConfigVersion>> {
    c.query(
        "SELECT version, config, patch, actor, changed_at FROM berqenas.tenant_configs
          WHERE tenant_id = $1 ORDER BY version DESC",
        &[&tenant_id],
    )
    .await?
    .iter()
    .map(version_row)
    .collect()
}
