//! `/api/v1/tenants/{name}/suspend|resume|activate`.

use axum::extract::{Path, State};
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::OptionalJson;
use super::{AppState, ADMIN_ACTOR};
use crate::tenant::suspension::SuspendTenant;
use crate::tenant::Tenant;

#[utoipa::path(post, path = "/api/v1/tenants/{name}/suspend", tag = "lifecycle", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    request_body(content = SuspendTenant, description = "optional"),
    responses(
        (status = 200, body = Tenant, description = "suspended: logins disabled, sessions ended, API keys refused"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not active or trial; the message names the current state")))]
pub async fn suspend(
    State(state): State<AppState>,
    Path(name): Path<String>,
    OptionalJson(body): OptionalJson<SuspendTenant>,
) -> Result<Json<Tenant>, ApiError> {
    Ok(Json(
        crate::workflows::lifecycle::suspend(&state.platform, &name, &body, ADMIN_ACTOR).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/tenants/{name}/resume", tag = "lifecycle", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses(
        (status = 200, body = Tenant, description = "active again: exactly the logins the suspension disabled are back"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not suspended; the message names the current state")))]
pub async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    Ok(Json(
        crate::workflows::lifecycle::resume(&state.platform, &name, ADMIN_ACTOR).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/tenants/{name}/activate", tag = "lifecycle", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses(
        (status = 200, body = Tenant, description = "the trial ended: active"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not in trial; the message names the current state")))]
pub async fn activate(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    Ok(Json(
        crate::workflows::lifecycle::activate(&state.platform, &name, ADMIN_ACTOR).await?,
    ))
}
