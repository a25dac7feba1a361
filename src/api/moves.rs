//! `POST /api/v1/tenants/{name}/move`: a tenant moved online to another server
//! (docs/moves.md). Answers 202 with the operation; `GET /api/v1/operations/{id}`
//! follows it (copy progress, lag, the new DSN once cut over).

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::{AppState, ADMIN_ACTOR};
use crate::workflows::move_tenant::{self, MoveRequest};
use crate::workflows::operations::{self, Operation};

#[utoipa::path(post, path = "/api/v1/tenants/{name}/move", tag = "tenants", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    request_body = MoveRequest,
    responses(
        (status = 202, body = Operation, description = "started; poll GET /api/v1/operations/{id} (also in Location)"),
        (status = 400, body = ErrorBody, description = "a bad field (named)"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the tenant is not active or busy, or the target server is draining or down"),
        (status = 422, body = ErrorBody, description = "unknown to_server, the tenant is there already, or a move not supported (to_isolation)")))]
pub async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<MoveRequest>,
) -> Result<Response, ApiError> {
    let rt = &state.platform;
    let id = move_tenant::start(rt, &name, body.value, ADMIN_ACTOR).await?;
    let op = operations::get(rt, &id.to_string()).await?;
    let mut res = (StatusCode::ACCEPTED, Json::<Operation>(op)).into_response();
    res.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/api/v1/operations/{id}")).expect("ASCII"),
    );
    Ok(res)
}
