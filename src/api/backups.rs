//! `/api/v1/tenants/{name}/backups`, `/api/v1/backups/{id}`, backup policies, and the
//! offboarding endpoints (`DELETE /api/v1/tenants/{name}` lives in `tenants.rs`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, OptionalJson};
use super::{AppState, ADMIN_ACTOR};
use crate::backup::policy::{self, BackupPolicy, PolicyRequest};
use crate::backup::restore::RestoreRequest;
use crate::backup::verify::VerifyReport;
use crate::backup::{self, Backup};
use crate::tenant::service::CreatedTenant;
use crate::tenant::Tenant;
use crate::workflows;
use crate::workflows::restores::Restored;

impl From<backup::Error> for ApiError {
    fn from(e: backup::Error) -> Self {
        if let Some(p) = e.problem() {
            if p.code == "backup_corrupt" {
                tracing::warn!(error = %e, "a backup failed its integrity check");
            }
            return Self(p);
        }
        match e {
            backup::Error::Tenant(e) => e.into(),
            backup::Error::Pool(e) => crate::tenant::service::Error::Pool(e).into(),
            other => Self::internal(&other, "backup request"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupList {
    pub backups: Vec<Backup>,
}

#[utoipa::path(post, path = "/api/v1/tenants/{name}/backups", tag = "backups", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 201, body = Backup, description = "taken: pg_dump custom format, encrypted, with its manifest"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the tenant is deleted or purged"), (status = 500, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Backup>), ApiError> {
    let b = workflows::backups::create(&state.platform, &name, ADMIN_ACTOR).await?;
    Ok((StatusCode::CREATED, Json(b)))
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/backups", tag = "backups", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = BackupList, description = "newest first, failed and expired ones included"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<BackupList>, ApiError> {
    Ok(Json(BackupList {
        backups: backup::list(&state.platform, &name).await?,
    }))
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/backups/{id}", tag = "backups", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id"), ("id" = String, Path, description = "backup id")),
    responses((status = 200, body = Backup), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Backup>, ApiError> {
    Ok(Json(backup::get(&state.platform, Some(&name), &id).await?))
}

#[utoipa::path(get, path = "/api/v1/backups/{id}", tag = "backups", security(("admin" = [])),
    params(("id" = String, Path, description = "backup id")),
    responses((status = 200, body = Backup), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_by_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Backup>, ApiError> {
    Ok(Json(backup::get(&state.platform, None, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/tenants/{name}/backups/{id}/restore", tag = "backups", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id"), ("id" = String, Path, description = "backup id")),
    request_body(content = Option<RestoreRequest>, description = "empty: in place; {\"as\":\"new-name\"}: into a new tenant"),
    responses((status = 200, body = Tenant, description = "restored in place (logins were off meanwhile)"),
        (status = 201, body = CreatedTenant, description = "restored into a new tenant; its secrets are shown only here"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the backup or the tenant cannot be used")))]
pub async fn restore(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    OptionalJson(req): OptionalJson<RestoreRequest>,
) -> Result<Response, ApiError> {
    Ok(
        match workflows::restores::restore(&state.platform, &name, &id, &req, ADMIN_ACTOR).await? {
            Restored::InPlace(t) => (StatusCode::OK, Json(t)).into_response(),
            Restored::New(c) => (StatusCode::CREATED, Json(c)).into_response(),
        },
    )
}

#[utoipa::path(post, path = "/api/v1/tenants/{name}/backups/{id}/verify", tag = "backups", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id"), ("id" = String, Path, description = "backup id")),
    responses((status = 200, body = VerifyReport, description = "restored into a scratch database and compared with the manifest"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn verify(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<VerifyReport>, ApiError> {
    Ok(Json(
        workflows::backups::verify(&state.platform, Some(&name), &id, ADMIN_ACTOR).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/backups/{id}/verify", tag = "backups", security(("admin" = [])),
    params(("id" = String, Path, description = "backup id")),
    responses((status = 200, body = VerifyReport), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn verify_by_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<VerifyReport>, ApiError> {
    Ok(Json(
        workflows::backups::verify(&state.platform, None, &id, ADMIN_ACTOR).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/backup-policy", tag = "backups", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = BackupPolicy, description = "schedule null: no scheduled backups"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_policy(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<BackupPolicy>, ApiError> {
    Ok(Json(policy::get(&state.platform, &name).await?))
}

#[utoipa::path(put, path = "/api/v1/tenants/{name}/backup-policy", tag = "backups", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    request_body = PolicyRequest,
    responses((status = 200, body = BackupPolicy), (status = 400, body = ErrorBody, description = "bad schedule or retention_days"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_policy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<PolicyRequest>,
) -> Result<Json<BackupPolicy>, ApiError> {
    Ok(Json(
        policy::put(&state.platform, &name, &body.value, ADMIN_ACTOR).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{name}/backup-policy", tag = "backups", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = BackupPolicy, description = "no more scheduled backups"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_policy(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<BackupPolicy>, ApiError> {
    Ok(Json(
        policy::remove(&state.platform, &name, ADMIN_ACTOR).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/plans/{name}/backup-policy", tag = "backups", security(("admin" = [])),
    params(("name" = String, Path, description = "plan name")),
    responses((status = 200, body = BackupPolicy, description = "what the plan's new tenants start with"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_plan_policy(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<BackupPolicy>, ApiError> {
    Ok(Json(policy::get_plan(&state.platform, &name).await?))
}

#[utoipa::path(put, path = "/api/v1/plans/{name}/backup-policy", tag = "backups", security(("admin" = [])),
    params(("name" = String, Path, description = "plan name")),
    request_body = PolicyRequest,
    responses((status = 200, body = BackupPolicy), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn put_plan_policy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<PolicyRequest>,
) -> Result<Json<BackupPolicy>, ApiError> {
    Ok(Json(
        policy::put_plan(&state.platform, &name, &body.value, ADMIN_ACTOR).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/tenants/{name}/restore", tag = "tenants", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = Tenant, description = "back in the status it had; a purged tenant is rebuilt from its archive"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not deleted or purged, or its archive expired")))]
pub async fn restore_tenant(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    Ok(Json(
        crate::workflows::offboarding::restore(&state.platform, &name, ADMIN_ACTOR).await?,
    ))
}
