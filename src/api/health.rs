//! `GET /health` (public, for load balancers) and `GET /api/v1/status` (admin).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::AppState;
use crate::store::tenants as store;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `healthy` or `unhealthy`
    pub status: String,
    /// `ok` or `unreachable`
    pub database: String,
    /// Tenants that hold data (not deleted, purged or failed); null when unreachable.
    pub tenants_count: Option<i64>,
    pub version: String,
}

#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let count = tokio::time::timeout(Duration::from_secs(3), async {
        let client = state.platform.pool.get().await.ok()?;
        store::count_live(&client).await.ok()
    })
    .await
    .ok()
    .flatten();
    let (code, status, database) = match count {
        Some(_) => (StatusCode::OK, "healthy", "ok"),
        None => (StatusCode::SERVICE_UNAVAILABLE, "unhealthy", "unreachable"),
    };
    (
        code,
        Json(Health {
            status: status.into(),
            database: database.into(),
            tenants_count: count,
            version: crate::VERSION.into(),
        }),
    )
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub version: String,
    pub postgres: PostgresInfo,
    /// Tenants per lifecycle state.
    pub tenants: BTreeMap<String, i64>,
    pub template_version: i32,
    pub network: NetworkInfo,
    /// Unclaimed warm pool members (docs/warm_pool.md), per mode and template version.
    /// They are not tenants: `tenants` does not count them.
    #[serde(default)]
    pub warm_pool: Vec<WarmPoolMembers>,
    /// Sessions this instance holds open in database-mode members' databases for the
    /// claims that take them (connections to PostgreSQL; at most 16).
    #[serde(default)]
    pub warm_pool_sessions: usize,
    /// The berqenas instance that answered (several may share one control database).
    #[serde(default)]
    pub instance: InstanceInfo,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WarmPoolMembers {
    /// The PostgreSQL server the members are on (`default` first).
    #[serde(default = "default_server")]
    pub server: String,
    /// `schema`, `database` or `shared`.
    pub isolation: String,
    /// A member at another version than the current one is stale: never claimed,
    /// and dropped by the next refill round.
    pub template_version: i32,
    pub members: i64,
}

fn default_server() -> String {
    crate::store::servers::DEFAULT.to_string()
}

/// One `berqenas serve` process among those on the control database.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct InstanceInfo {
    /// The instance id its operations are leased to (new at every start).
    pub id: uuid::Uuid,
    /// The background jobs this instance runs for all of them (each elected on its own;
    /// see docs/instances.md), by name.
    pub elected: Vec<String>,
}

/// How network rules are enforced on this server.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NetworkInfo {
    /// The range VPN subnets are cut from, and their size.
    pub vpn_pool: String,
    /// `enforced by pg_hba.conf (...)`, or `not enforced: ...` and why.
    pub postgres: String,
    /// Whether the WireGuard and nftables files are applied or only rendered.
    pub vpn: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PostgresInfo {
    pub version: String,
    /// `embedded` (berqenas's own cluster) or `external` (--database-url).
    pub mode: String,
    pub host: String,
    pub port: u16,
    pub database: String,
}

#[utoipa::path(get, path = "/api/v1/status", tag = "health", security(("admin" = [])),
    responses((status = 200, body = Status), (status = 401, body = super::error::ErrorBody)))]
pub async fn status(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    let p = &state.platform;
    let client = p
        .pool
        .get()
        .await
        .map_err(crate::tenant::service::Error::from)?;
    let version: String = client
        .query_one("SELECT current_setting('server_version')", &[])
        .await
        .map_err(crate::tenant::service::Error::from)?
        .get(0);
    let tenants = store::count_by_status(&client)
        .await
        .map_err(crate::tenant::service::Error::from)?
        .into_iter()
        .collect();
    let warm_pool = crate::store::warm_pool::counts(&client)
        .await
        .map_err(crate::tenant::service::Error::from)?
        .into_iter()
        .map(|m| WarmPoolMembers {
            server: m.server,
            isolation: m.isolation,
            template_version: m.template_version,
            members: m.members,
        })
        .collect();
    Ok(Json(Status {
        version: crate::VERSION.into(),
        postgres: PostgresInfo {
            version,
            mode: if p.embedded { "embedded" } else { "external" }.into(),
            host: p.endpoint.host.clone(),
            port: p.endpoint.port,
            database: p.endpoint.database.clone(),
        },
        tenants,
        template_version: p.template.latest_version(),
        network: NetworkInfo {
            vpn_pool: format!("{} in /{}s", p.network.pool.net, p.network.pool.prefix),
            postgres: crate::workflows::network::enforcement(p),
            vpn: crate::workflows::network::vpn_enforcement(p),
        },
        warm_pool,
        warm_pool_sessions: state.platform.holds.count(),
        instance: InstanceInfo {
            id: state.platform.engine.instance(),
            elected: state.elected.held().into_iter().map(String::from).collect(),
        },
    }))
}
