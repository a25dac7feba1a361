//! `/api/v1/operations`: what an operation did, step by step (a slow onboarding can be
//! watched here).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::AppState;
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
