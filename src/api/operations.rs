//! `/api/v1/operations`: what an operation did, step by step (a slow onboarding can be
//! watched here).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::{AppState, ADMIN_ACTOR};
use crate::workflows::onboarding_callback::{self, CallbackReceived, Caller, StepCallback};
use crate::workflows::operations::{self, Operation, OperationPage};

#[utoipa::path(get, path = "/api/v1/operations/{id}", tag = "operations", security(("admin" = [])),
    params(("id" = String, Path, description = "the operation's id (a UUID)")),
    responses((status = 200, body = Operation), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Operation>, ApiError> {
    Ok(Json(operations::get(&state.platform, &id).await?))
}

#[utoipa::path(get, path = "/api/v1/operations", tag = "operations", security(("admin" = [])),
    params(
        ("tenant" = Option<String>, Query, description = "only operations on this tenant (name or id; also one that no longer exists, or was never created)"),
        ("state" = Option<String>, Query, description = "running, succeeded or failed"),
        ("limit" = Option<i64>, Query, description = "page size, 1 to 1000 (default 50)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page (older operations)")),
    responses((status = 200, body = OperationPage, description = "newest first"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<OperationPage>, ApiError> {
    super::extract::known_params(&q, &["tenant", "state", "limit", "cursor"])?;
    let limit = super::extract::page_limit(&q)?;
    Ok(Json(
        operations::list(
            &state.platform,
            q.get("tenant").map(String::as_str),
            q.get("state").map(String::as_str),
            limit,
            q.get("cursor").map(String::as_str),
        )
        .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/operations/{id}/steps/{name}/complete", tag = "operations",
    security(("step_signature" = []), ("admin" = [])),
    params(("id" = String, Path, description = "the operation's id, as the step's call named it (`operation_id`)"),
        ("name" = String, Path, description = "the onboarding step's name")),
    request_body = StepCallback,
    responses((status = 200, body = CallbackReceived, description = "stored; the create goes on (or is undone)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody, description = "neither a valid signature with the step's secret nor the admin token"),
        (status = 404, body = ErrorBody, description = "no such operation, step, or step in this operation"),
        (status = 409, body = ErrorBody, description = "the operation is not waiting for this step's callback")))]
pub async fn complete_step(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CallbackReceived>, ApiError> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let caller = match super::bearer::token(&headers) {
        Some(t) if state.is_admin_token(t) => Caller::Admin,
        _ => Caller::Signed {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
        },
    };
    let rt = &state.platform;
    // The signature first (over the exact bytes), then the body.
    let parsed = super::extract::json_from_bytes::<StepCallback>(&headers, &body);
    let parsed = match parsed {
        Ok(p) => p.value,
        Err(e) => {
            // An unsigned caller learns nothing about the body's shape.
            onboarding_callback::authenticate(rt, &id, &name, &caller, &body).await?;
            return Err(e);
        }
    };
    Ok(Json(
        onboarding_callback::complete(rt, &id, &name, caller, &body, &parsed).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/operations/{id}/abort", tag = "operations", security(("admin" = [])),
    params(("id" = String, Path, description = "the operation's id (a UUID)")),
    responses(
        (status = 202, body = Operation, description = "abort requested: the operation is undone at its next step boundary (poll GET /api/v1/operations/{id}, also in Location, until it is `failed`)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such operation"),
        (status = 409, body = ErrorBody, description = "operation_finished, operation_undoing, or past_point_of_no_return: it can only finish")))]
pub async fn abort(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let op = crate::workflows::abort::abort(&state.platform, &id, ADMIN_ACTOR).await?;
    let mut res = (StatusCode::ACCEPTED, Json::<Operation>(op)).into_response();
    res.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/api/v1/operations/{id}")).expect("a UUID is ASCII"),
    );
    Ok(res)
}
