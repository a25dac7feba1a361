//! `/api/v1/tenants/{name}/auth-providers/{kind}` (admin: never a secret) and
//! `/api/v1/integration/tenants/{name}/auth-providers` (the integration token: the
//! secrets, every read audited). docs/auth-providers.md.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;

use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::{AppState, ADMIN_ACTOR};
use crate::auth_providers::{AuthProvider, CheckResult, IntegrationView, ProviderRequest};
use crate::workflows::settings;

/// Who reads secrets with the integration token, in the audit trail.
pub const INTEGRATION_ACTOR: &str = "integration";

#[utoipa::path(put, path = "/api/v1/tenants/{name}/auth-providers/{kind}", tag = "auth-providers", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id"), ("kind" = String, Path, description = "github, entra_id or oidc")),
    request_body(content = ProviderRequest, description = "the fields of the kind (docs/auth-providers.md)"),
    responses((status = 200, body = AuthProvider, description = "saved; the secret is never shown (client_secret_set)"),
        (status = 400, body = ErrorBody, description = "a missing, unknown or malformed field, named"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "the issuer's discovery document or JWKS did not check out")))]
pub async fn put(
    State(state): State<AppState>,
    Path((name, kind)): Path<(String, String)>,
    body: JsonBody<Value>,
) -> Result<Json<AuthProvider>, ApiError> {
    Ok(Json(
        settings::put_provider(&state.platform, &name, &kind, &body.value, ADMIN_ACTOR).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/auth-providers/{kind}", tag = "auth-providers", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id"), ("kind" = String, Path, description = "github, entra_id or oidc")),
    responses((status = 200, body = AuthProvider), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path((name, kind)): Path<(String, String)>,
) -> Result<Json<AuthProvider>, ApiError> {
    Ok(Json(
        settings::provider(&state.platform, &name, &kind).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{name}/auth-providers/{kind}", tag = "auth-providers", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id"), ("kind" = String, Path, description = "github, entra_id or oidc")),
    responses((status = 204, description = "removed, with its secret"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path((name, kind)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    settings::delete_provider(&state.platform, &name, &kind, ADMIN_ACTOR).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/tenants/{name}/auth-providers/{kind}/test", tag = "auth-providers", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id"), ("kind" = String, Path, description = "github, entra_id or oidc")),
    responses((status = 200, body = CheckResult), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "the check failed (why, and the field)")))]
pub async fn test(
    State(state): State<AppState>,
    Path((name, kind)): Path<(String, String)>,
) -> Result<Json<CheckResult>, ApiError> {
    Ok(Json(
        settings::test_provider(&state.platform, &name, &kind).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/integration/tenants/{name}/auth-providers", tag = "auth-providers", security(("integration" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = IntegrationView, description = "every provider with its client secret; the read is audited"),
        (status = 401, body = ErrorBody, description = "not the integration token (the admin token is refused too)"),
        (status = 404, body = ErrorBody)))]
pub async fn integration(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<IntegrationView>, ApiError> {
    Ok(Json(
        settings::providers_with_secrets(&state.platform, &name, INTEGRATION_ACTOR).await?,
    ))
}
