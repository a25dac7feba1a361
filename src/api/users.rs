//! `/api/v1/tenants/{name}/users`: tenant users (seed 001 section 4.1).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::{AppState, ADMIN_ACTOR};
use crate::tenant::users::{self, AddUser, AddedUser, TenantUser, UserList};

#[utoipa::path(post, path = "/api/v1/tenants/{name}/users", tag = "users", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    request_body = AddUser,
    responses(
        (status = 201, body = AddedUser, description = "created; the credentials are shown only here"),
        (status = 400, body = ErrorBody, description = "bad email or role"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the user exists")))]
pub async fn add(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<AddUser>,
) -> Result<(StatusCode, Json<AddedUser>), ApiError> {
    let added =
        crate::workflows::changes::add_user(&state.platform, &name, &body.value, ADMIN_ACTOR)
            .await?;
    Ok((StatusCode::CREATED, Json(added)))
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/users", tag = "users", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = UserList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<UserList>, ApiError> {
    Ok(Json(users::list(&state.platform, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{name}/users/{email}", tag = "users", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id"), ("email" = String, Path, description = "the user's email")),
    responses((status = 200, body = TenantUser, description = "the user as it was; its login is dropped"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    Path((name, email)): Path<(String, String)>,
) -> Result<Json<TenantUser>, ApiError> {
    Ok(Json(
        crate::workflows::changes::remove_user(&state.platform, &name, &email, ADMIN_ACTOR).await?,
    ))
}
