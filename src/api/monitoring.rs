//! Per-tenant monitoring (docs/monitoring.md): the alert rules as a Prometheus rule
//! file, the scrape targets for Prometheus's HTTP service discovery, a Grafana
//! dashboard per tenant, and a tenant's monitoring level.
//!
//! The rules and targets are what Prometheus itself reads, so the metrics token
//! (`--metrics-token`, which already opens `/metrics`) opens them too, as does the
//! admin token: one read-only credential for everything Prometheus fetches. The
//! dashboard and the level need the admin token.

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::{AppState, ADMIN_ACTOR};
use crate::monitoring::service::{self, Error, LevelRequest, TenantMonitoring};
use crate::monitoring::targets::{self, TargetGroup};
use crate::problem::Kind;

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Rejected(p) => Self(p),
            Error::Pool(e) => Self::unavailable(&e),
            other => Self::internal(&other, "monitoring request"),
        }
    }
}

/// Where Prometheus finds berqenas and its monitoring files; set by `serve`.
#[derive(Clone, Default)]
pub struct Settings {
    /// `--monitoring-target`: the `host:port` of each instance Prometheus scrapes;
    /// empty: the address the discovery request was sent to (its `Host`).
    pub targets: Vec<String>,
    /// The rule file under `<data-dir>/monitoring/` (none: not written).
    pub rules_file: Option<std::sync::Arc<crate::monitoring::files::RulesFile>>,
}

/// After a change made with the admin token (a create, a plan change, a delete or
/// purge, a level) the rule file is rendered again; unchanged renderings are not
/// rewritten, and many wakes make one render.
pub async fn wake_after_change(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let res = next.run(req).await;
    if changes && res.status().is_success() {
        if let Some(file) = &state.monitoring.rules_file {
            file.wake();
        }
    }
    res
}

fn refuse() -> Response {
    let mut res = super::error::answer(
        Kind::Unauthorized,
        "unauthorized",
        "send Authorization: Bearer <metrics token or admin token>",
        None,
    );
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

#[utoipa::path(get, path = "/api/v1/monitoring/rules", tag = "monitoring", security(("admin" = []), ("metrics" = [])),
    responses((status = 200, content_type = "application/yaml", body = String,
            description = "a Prometheus rule file: one group per tenant, the alerts of its monitoring level"),
        (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn rules(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !super::metrics::authorized(&state, &headers) {
        return refuse();
    }
    match service::rules(&state.platform).await {
        Ok(text) => ([(header::CONTENT_TYPE, "application/yaml")], text).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The discovery request's own `Host`, when it is a plain `host[:port]`.
fn host_of(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let with_port = if host.contains(':') && !host.ends_with(']') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    targets::valid_address(&with_port).then(|| host.to_string())
}

#[utoipa::path(get, path = "/api/v1/monitoring/targets", tag = "monitoring", security(("admin" = []), ("metrics" = [])),
    responses((status = 200, body = Vec<TargetGroup>,
            description = "Prometheus HTTP service discovery: [{\"targets\": [\"host:port\"], \"labels\": {...}}]"),
        (status = 401, body = ErrorBody)))]
pub async fn targets(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !super::metrics::authorized(&state, &headers) {
        return refuse();
    }
    let addresses = if state.monitoring.targets.is_empty() {
        host_of(&headers).into_iter().collect()
    } else {
        state.monitoring.targets.clone()
    };
    Json(targets::render(&addresses)).into_response()
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/monitoring/dashboard", tag = "monitoring", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = Object, description = "a Grafana dashboard model (import it, or POST it to Grafana's /api/dashboards/db as `dashboard`)"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn dashboard(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(service::dashboard(&state.platform, &name).await?))
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/monitoring", tag = "monitoring", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = TenantMonitoring),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<TenantMonitoring>, ApiError> {
    Ok(Json(service::get(&state.platform, &name).await?))
}

#[utoipa::path(put, path = "/api/v1/tenants/{name}/monitoring", tag = "monitoring", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    request_body = LevelRequest,
    responses((status = 200, body = TenantMonitoring, description = "the level set (null: back to the plan's); the rule file follows"),
        (status = 400, body = ErrorBody, description = "no level, or not one of basic, standard, enterprise"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<LevelRequest>,
) -> Result<Json<TenantMonitoring>, ApiError> {
    Ok(Json(
        service::set(&state.platform, &name, &body.value, ADMIN_ACTOR).await?,
    ))
}
