//! What the API asks of monitoring: a tenant's level (its plan's, or its own override),
//! and the renderings over the whole registry.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Level, Monitored};
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::store::monitoring as store;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's mistake (naming the field) or an unknown tenant; nothing changed.
    #[error("{}", .0.message)]
    Rejected(Problem),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A tenant's monitoring: its level, where it comes from, and the alerts it gets.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantMonitoring {
    pub tenant: String,
    /// The effective level.
    pub level: Level,
    /// `plan` (the plan's level) or `tenant` (the tenant's own override).
    pub source: &'static str,
    pub plan: String,
    pub plan_level: Level,
    /// The alert names (`alertname`) of its rules.
    pub alerts: Vec<&'static str>,
    /// Its Grafana dashboard's uid.
    pub dashboard_uid: String,
}

/// `PUT /api/v1/tenants/{name}/monitoring`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LevelRequest {
    /// `basic`, `standard`, `enterprise`, or null for the plan's level.
    #[serde(default, deserialize_with = "crate::nullable::field")]
    #[schema(value_type = Option<String>)]
    pub level: Option<Option<String>>,
}

fn parse_level(text: &str) -> Result<Level> {
    Level::parse(text, "level").map_err(Error::Rejected)
}

fn stored_level(text: &str) -> Level {
    // The table's CHECK constraint allows only these three.
    Level::parse(text, "monitoring_level").unwrap_or(Level::Standard)
}

fn not_found(key: &str) -> Error {
    Error::Rejected(Problem::new(
        Kind::NotFound,
        "tenant_not_found",
        format!("tenant {key:?} does not exist (or is purged)"),
    ))
}

fn view(t: store::TenantLevel) -> TenantMonitoring {
    let plan_level = stored_level(&t.plan_level);
    let own = t.override_level.as_deref().map(stored_level);
    let level = own.unwrap_or(plan_level);
    TenantMonitoring {
        dashboard_uid: super::dashboard::uid(&t.name),
        tenant: t.name,
        level,
        source: if own.is_some() { "tenant" } else { "plan" },
        plan: t.plan,
        plan_level,
        alerts: level.alerts().iter().map(|a| a.name()).collect(),
    }
}

/// `GET /api/v1/tenants/{name}/monitoring`.
pub async fn get(p: &Platform, key: &str) -> Result<TenantMonitoring> {
    let c = p.pool.get().await?;
    let t = store::tenant_level(&c, key, false)
        .await?
        .ok_or_else(|| not_found(key))?;
    Ok(view(t))
}

/// Sets (or clears) the tenant's own level, audited in the same transaction. The body
/// is checked before anything is read, so a bad one changes nothing.
pub async fn set(
    p: &Platform,
    key: &str,
    req: &LevelRequest,
    actor: &str,
) -> Result<TenantMonitoring> {
    let level = match &req.level {
        None => {
            return Err(Error::Rejected(Problem::bad_field(
                "level",
                format!(
                    "level is required: one of {}, or null for the plan's level",
                    super::LEVELS
                ),
            )))
        }
        Some(None) => None,
        Some(Some(text)) => Some(parse_level(text)?),
    };
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let t = store::tenant_level(&tx, key, true)
        .await?
        .ok_or_else(|| not_found(key))?;
    store::set_override(&tx, t.id, level.map(Level::as_str)).await?;
    let details = serde_json::json!({
        "monitoring_level": level.map(Level::as_str),
        "previous": t.override_level,
    });
    crate::audit::record(
        &tx,
        &crate::audit::Entry {
            actor,
            action: "monitoring_level_updated",
            tenant_id: Some(t.id),
            tenant_name: Some(&t.name),
            operation_id: None,
            details,
        },
    )
    .await?;
    let after = store::tenant_level(&tx, &t.id.to_string(), false)
        .await?
        .ok_or_else(|| not_found(key))?;
    tx.commit().await?;
    Ok(view(after))
}

/// Every monitored tenant and its level, by name.
pub async fn monitored(p: &Platform) -> Result<Vec<Monitored>> {
    let c = p.pool.get().await?;
    Ok(store::levels(&c)
        .await?
        .into_iter()
        .map(|(tenant, level)| Monitored {
            level: stored_level(&level),
            tenant,
        })
        .collect())
}

/// The rule file for the registry as it is now.
pub async fn rules(p: &Platform) -> Result<String> {
    Ok(super::rules::render(&monitored(p).await?))
}

/// The dashboard of the monitored tenant `key`.
pub async fn dashboard(p: &Platform, key: &str) -> Result<serde_json::Value> {
    let t = get(p, key).await?;
    Ok(super::dashboard::render(&t.tenant, t.level))
}
