//! `/api/v1/servers`: the PostgreSQL servers tenants are placed on (docs/servers.md).
//! A server's URL goes in once and never comes out.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::{AppState, ADMIN_ACTOR};
use crate::workflows::servers::{
    self as srv, AddServer, Error, ServerInfo, ServerList, UpdateServer,
};

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Rejected(p) => Self(p),
            Error::Pool(e) => Self::unavailable(&e),
            other => Self::internal(&other, "server request"),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/servers", tag = "servers", security(("admin" = [])),
    request_body = AddServer,
    responses(
        (status = 201, body = ServerInfo, description = "checked, hardened, its template database built; the URL is never shown"),
        (status = 400, body = ErrorBody, description = "bad name, url or labels (field named)"),
        (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "a server of that name exists, or the URL is the default server"),
        (status = 422, body = ErrorBody, description = "unreachable, older than PostgreSQL 15, or a role that may not create roles and databases")))]
pub async fn add(
    State(state): State<AppState>,
    body: JsonBody<AddServer>,
) -> Result<(StatusCode, Json<ServerInfo>), ApiError> {
    let s = srv::add(&state.platform, &body.value, ADMIN_ACTOR).await?;
    Ok((StatusCode::CREATED, Json(s)))
}

#[utoipa::path(get, path = "/api/v1/servers", tag = "servers", security(("admin" = [])),
    responses((status = 200, body = ServerList, description = "health, version, tenant count, disk and connections of each (looked at live)"),
        (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<ServerList>, ApiError> {
    Ok(Json(srv::list(&state.platform).await?))
}

#[utoipa::path(get, path = "/api/v1/servers/{name}", tag = "servers", security(("admin" = [])),
    params(("name" = String, Path, description = "the server's name")),
    responses((status = 200, body = ServerInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServerInfo>, ApiError> {
    Ok(Json(srv::get(&state.platform, &name).await?))
}

#[utoipa::path(patch, path = "/api/v1/servers/{name}", tag = "servers", security(("admin" = [])),
    params(("name" = String, Path, description = "the server's name")),
    request_body = UpdateServer,
    responses((status = 200, body = ServerInfo, description = "labels replaced, draining set"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<UpdateServer>,
) -> Result<Json<ServerInfo>, ApiError> {
    Ok(Json(
        srv::update(&state.platform, &name, &body.value, ADMIN_ACTOR).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/servers/{name}", tag = "servers", security(("admin" = [])),
    params(("name" = String, Path, description = "the server's name")),
    responses((status = 200, body = ServerInfo, description = "removed (as it was)"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "it has tenants (the count is named), or it is default")))]
pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServerInfo>, ApiError> {
    crate::workflows::warm_pool_placed::before_remove(&state.platform, &name).await?;
    Ok(Json(
        srv::remove(&state.platform, &name, ADMIN_ACTOR).await?,
    ))
}
