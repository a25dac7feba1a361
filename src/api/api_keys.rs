//! `/api/v1/tenants/{name}/api-keys`: create, list, revoke, rotate.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::OptionalJson;
use super::{AppState, ADMIN_ACTOR};
use crate::tenant::api_keys::{
    self, ApiKey, ApiKeyList, CreateApiKey, NewApiKey, RotateApiKey, RotatedApiKey,
};

#[utoipa::path(post, path = "/api/v1/tenants/{name}/api-keys", tag = "api-keys", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    request_body(content = CreateApiKey, description = "optional"),
    responses(
        (status = 201, body = NewApiKey, description = "created; api_key is shown only here"),
        (status = 400, body = ErrorBody, description = "bad name or expires_in"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the tenant is deleted, purged or failed")))]
pub async fn create(
    State(state): State<AppState>,
    Path(name): Path<String>,
    OptionalJson(body): OptionalJson<CreateApiKey>,
) -> Result<(StatusCode, Json<NewApiKey>), ApiError> {
    let key =
        crate::workflows::changes::create_key(&state.platform, &name, &body, ADMIN_ACTOR).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/api-keys", tag = "api-keys", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = ApiKeyList, description = "newest first; never a secret"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ApiKeyList>, ApiError> {
    Ok(Json(api_keys::list(&state.platform, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{name}/api-keys/{id}", tag = "api-keys", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id"),
        ("id" = String, Path, description = "the key's id, or its prefix bqk_<16 hex>")),
    responses((status = 200, body = ApiKey, description = "revoked (it stops working at once); revoking again changes nothing"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<ApiKey>, ApiError> {
    Ok(Json(
        crate::workflows::changes::revoke_key(&state.platform, &name, &id, ADMIN_ACTOR).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/tenants/{name}/api-keys/{id}/rotate", tag = "api-keys", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id"),
        ("id" = String, Path, description = "the key's id, or its prefix bqk_<16 hex>")),
    request_body(content = RotateApiKey, description = "optional"),
    responses(
        (status = 201, body = RotatedApiKey, description = "the new key (shown only here) and the old one, which works until its expires_at"),
        (status = 400, body = ErrorBody, description = "bad expires_in"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the key is revoked, expired or already rotated")))]
pub async fn rotate(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<RotateApiKey>,
) -> Result<(StatusCode, Json<RotatedApiKey>), ApiError> {
    let rotated =
        crate::workflows::changes::rotate_key(&state.platform, &name, &id, &body, ADMIN_ACTOR)
            .await?;
    Ok((StatusCode::CREATED, Json(rotated)))
}
