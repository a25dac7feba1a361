//! `/api/v1/tenants`: create, read, list, update, delete, credentials; and plans.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use sha2::{Digest, Sha256};

use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, OptionalJson};
use super::{AppState, ADMIN_ACTOR};
use crate::ops::Idempotency;
use crate::problem::Problem;
use crate::tenant::offboarding::{DeleteOptions, DeleteRequest};
use crate::tenant::service::{
    self, CreateTenant, CreatedTenant, Credentials, TenantPage, UpdateTenant,
};
use crate::tenant::{Plan, Tenant};

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

fn idempotency(
    headers: &HeaderMap,
    route: &str,
    canonical: &[u8],
) -> Result<Option<Idempotency>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()))
        .ok_or_else(|| {
            Problem::bad_field(
                "Idempotency-Key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })?;
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update(b"\n");
    h.update(canonical);
    Ok(Some(Idempotency {
        key: key.to_string(),
        request_hash: h.finalize().to_vec(),
    }))
}

#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", security(("admin" = [])),
    request_body = CreateTenant,
    params(("Idempotency-Key" = Option<String>, Header, description = "the same key and body within 24 hours replays the first answer whole, api_key and password included (kept sealed at rest, forgotten after 24 hours); another body under the key is 422")),
    responses(
        (status = 201, body = CreatedTenant, description = "created; api_key and credentials are shown only here"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: JsonBody<CreateTenant>,
) -> Result<(StatusCode, Json<CreatedTenant>), ApiError> {
    let idem = idempotency(&headers, "POST /api/v1/tenants", &body.canonical)?;
    let created =
        crate::workflows::create::create(&state.platform, &body.value, idem.as_ref(), ADMIN_ACTOR)
            .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}", tag = "tenants", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = Tenant), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    Ok(Json(service::get(&state.platform, &name).await?))
}

#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", security(("admin" = [])),
    params(
        ("status" = Option<String>, Query, description = "only tenants in this state"),
        ("plan" = Option<String>, Query, description = "only tenants on this plan"),
        ("limit" = Option<i64>, Query, description = "page size, 1 to 1000 (default 50)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, body = TenantPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<TenantPage>, ApiError> {
    super::extract::known_params(&q, &["status", "plan", "limit", "cursor"])?;
    let limit = super::extract::page_limit(&q)?;
    let page = service::list(
        &state.platform,
        q.get("status").map(String::as_str),
        q.get("plan").map(String::as_str),
        limit,
        q.get("cursor").map(String::as_str),
    )
    .await?;
    Ok(Json(page))
}

#[utoipa::path(patch, path = "/api/v1/tenants/{name}", tag = "tenants", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    request_body = UpdateTenant,
    responses((status = 200, body = Tenant), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<UpdateTenant>,
) -> Result<Json<Tenant>, ApiError> {
    Ok(Json(
        crate::workflows::changes::update(&state.platform, &name, &body.value, ADMIN_ACTOR).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{name}", tag = "tenants", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id"),
        ("retention" = Option<i64>, Query, description = "days until the purge, 0 to 3650 (default 30)"),
        ("purge" = Option<String>, Query, description = "`now`: purge at once after the final backup; needs {\"confirm\":\"<name>\"}")),
    request_body(content = Option<DeleteRequest>, description = "retention_days, confirm"),
    responses((status = 200, body = Tenant, description = "deleted (logins off, final backup archived) and restorable until purge_after"),
        (status = 400, body = ErrorBody, description = "bad retention, or purge=now without the right confirm"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "already deleted, or a delete is in progress")))]
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    OptionalJson(req): OptionalJson<DeleteRequest>,
) -> Result<Json<Tenant>, ApiError> {
    super::extract::known_params(&q, &["retention", "purge"])?;
    let from_query = q
        .get("retention")
        .map(|r| r.trim().parse::<i64>())
        .transpose()
        .map_err(|_| Problem::bad_field("retention", "retention must be a whole number of days"))?;
    if from_query.is_some() && req.retention_days.is_some() {
        return Err(Problem::bad_field(
            "retention_days",
            "give the retention once: ?retention= or retention_days, not both",
        )
        .into());
    }
    let purge_now = match q.get("purge").map(String::as_str) {
        None => false,
        Some("now") => true,
        Some(other) => {
            return Err(Problem::bad_field(
                "purge",
                format!("purge must be \"now\", got {other:?}"),
            )
            .into())
        }
    };
    let opts = DeleteOptions {
        retention_field: if from_query.is_some() {
            "retention"
        } else {
            "retention_days"
        },
        retention_days: from_query.or(req.retention_days),
        purge_now,
        confirm: req.confirm,
    };
    Ok(Json(
        crate::workflows::offboarding::delete(&state.platform, &name, &opts, ADMIN_ACTOR).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/credentials", tag = "tenants", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = Credentials, description = "the login role's credentials (the read is audited)"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn credentials(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Credentials>, ApiError> {
    Ok(Json(
        service::credentials_of(&state.platform, &name, ADMIN_ACTOR).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/tenants/{name}/credentials/rotate", tag = "tenants", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = Credentials, description = "a new password for the login role, shown this once; open sessions stay open"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "purged, or another operation on the tenant is in progress")))]
pub async fn rotate_credentials(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Credentials>, ApiError> {
    Ok(Json(
        crate::workflows::changes::rotate_credentials(&state.platform, &name, ADMIN_ACTOR).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/plans", tag = "plans", security(("admin" = [])),
    responses((status = 200, body = Vec<Plan>), (status = 401, body = ErrorBody)))]
pub async fn plans(State(state): State<AppState>) -> Result<Json<Vec<Plan>>, ApiError> {
    Ok(Json(service::plans(&state.platform).await?))
}
