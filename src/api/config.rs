//! `/api/v1/tenants/{name}/config`, `/api/v1/plans/{name}/config-defaults` and
//! `/api/v1/me/config`: tenants' configuration documents (docs/config.md).

use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;

use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::tenant_key::TenantKey;
use super::{AppState, ADMIN_ACTOR};
use crate::tenantconfig::{ConfigHistory, PlanConfigDefaults, TenantConfig};
use crate::workflows::settings;

#[utoipa::path(get, path = "/api/v1/tenants/{name}/config", tag = "config", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = TenantConfig), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<TenantConfig>, ApiError> {
    Ok(Json(settings::config(&state.platform, &name).await?))
}

#[utoipa::path(patch, path = "/api/v1/tenants/{name}/config", tag = "config", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    request_body(content = Object, description = "a JSON merge patch (RFC 7396): null removes a key", content_type = "application/merge-patch+json"),
    responses((status = 200, body = TenantConfig, description = "the new version"),
        (status = 400, body = ErrorBody, description = "not an object, `plan` given, or the plan's schema refuses the result (the field is named)"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<Value>,
) -> Result<Json<TenantConfig>, ApiError> {
    Ok(Json(
        settings::patch_config(&state.platform, &name, &body.value, ADMIN_ACTOR).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/config/history", tag = "config", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = ConfigHistory), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ConfigHistory>, ApiError> {
    Ok(Json(
        settings::config_history(&state.platform, &name).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/plans/{name}/config-defaults", tag = "config", security(("admin" = [])),
    params(("name" = String, Path, description = "plan name")),
    responses((status = 200, body = PlanConfigDefaults, description = "the built-in defaults when the plan has none of its own"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_plan_defaults(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PlanConfigDefaults>, ApiError> {
    Ok(Json(settings::plan_defaults(&state.platform, &name).await?))
}

#[utoipa::path(put, path = "/api/v1/plans/{name}/config-defaults", tag = "config", security(("admin" = [])),
    params(("name" = String, Path, description = "plan name")),
    request_body = PlanConfigDefaults,
    responses((status = 200, body = PlanConfigDefaults),
        (status = 400, body = ErrorBody, description = "defaults not an object, a schema that does not compile, or defaults it refuses"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_plan_defaults(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<PlanConfigDefaults>,
) -> Result<Json<PlanConfigDefaults>, ApiError> {
    Ok(Json(
        settings::put_plan_defaults(&state.platform, &name, &body.value, ADMIN_ACTOR).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/me/config", tag = "data", security(("api_key" = [])),
    responses((status = 200, body = TenantConfig), (status = 401, body = ErrorBody)))]
pub async fn me(
    State(state): State<AppState>,
    key: TenantKey,
) -> Result<Json<TenantConfig>, ApiError> {
    Ok(Json(
        settings::config(&state.platform, &key.tenant.id.to_string()).await?,
    ))
}
