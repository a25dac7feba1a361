//! `/api/v1/audit`, `/api/v1/audit/verify` and `/api/v1/tenants/{name}/audit`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::audit::chain::Verification;
use crate::audit::query::{self, AuditPage, AuditQuery};

fn parse_query<'a>(
    q: &'a HashMap<String, String>,
    allowed: &[&str],
) -> Result<AuditQuery<'a>, ApiError> {
    super::extract::known_params(q, allowed)?;
    let limit = super::extract::page_limit(q)?;
    Ok(AuditQuery {
        tenant: q.get("tenant").map(String::as_str),
        action: q.get("action").map(String::as_str),
        since: q.get("since").map(String::as_str),
        limit,
        cursor: q.get("cursor").map(String::as_str),
    })
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("admin" = [])),
    params(
        ("tenant" = Option<String>, Query, description = "only rows of this tenant (name or id)"),
        ("action" = Option<String>, Query, description = "only this action, e.g. tenant_suspended"),
        ("since" = Option<String>, Query, description = "only rows at or after: RFC 3339 time, a date (UTC), or a duration back from now (24h, 7d)"),
        ("limit" = Option<i64>, Query, description = "page size, 1 to 1000 (default 50)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page (older rows)")),
    responses((status = 200, body = AuditPage, description = "newest first"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<AuditPage>, ApiError> {
    let q = parse_query(&q, &["tenant", "action", "since", "limit", "cursor"])?;
    Ok(Json(query::page(&state.platform, &q).await?))
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/audit", tag = "audit", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id (also of a tenant no longer in the registry)"),
        ("action" = Option<String>, Query, description = "only this action"),
        ("since" = Option<String>, Query, description = "as for /api/v1/audit"),
        ("limit" = Option<i64>, Query, description = "page size, 1 to 1000 (default 50)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, body = AuditPage, description = "newest first"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn tenant(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<AuditPage>, ApiError> {
    let q = parse_query(&q, &["action", "since", "limit", "cursor"])?;
    Ok(Json(query::tenant_page(&state.platform, &name, &q).await?))
}

#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", security(("admin" = [])),
    responses((status = 200, body = Verification, description = "ok, or the first broken link (row id and what is wrong)"),
        (status = 401, body = ErrorBody)))]
pub async fn verify(State(state): State<AppState>) -> Result<Json<Verification>, ApiError> {
    Ok(Json(query::verify(&state.platform).await?))
}
