//! `GET /api/v1/events`: the outbox, for scripts and tests (webhooks deliver it).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::events::query::{self, Error, EventPage, EventQuery};
use crate::tenant::service;

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Rejected(p) => Self(p),
            Error::Store(e) => service::Error::from(e).into(),
            Error::Pool(e) => service::Error::from(e).into(),
        }
    }
}

const PARAMS: &[&str] = &["tenant", "type", "after", "limit"];

#[utoipa::path(get, path = "/api/v1/events", tag = "events", security(("admin" = [])),
    params(
        ("tenant" = Option<String>, Query, description = "only this tenant's events (name or id; also of a tenant no longer in the registry, by name)"),
        ("type" = Option<String>, Query, description = "an event type (tenant.suspended), a prefix (tenant.*) or *"),
        ("after" = Option<String>, Query, description = "only events after this one: its seq or its id (next_cursor of the previous page)"),
        ("limit" = Option<i64>, Query, description = "page size, 1 to 1000 (default 50)")),
    responses((status = 200, body = EventPage, description = "oldest first (newest last); each event as webhooks deliver it, with its seq"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<EventPage>, ApiError> {
    super::extract::known_params(&q, PARAMS)?;
    let limit = super::extract::page_limit(&q)?;
    let query = EventQuery {
        tenant: q.get("tenant").cloned(),
        event_type: q.get("type").cloned(),
        after: q.get("after").cloned(),
        limit,
    };
    Ok(Json(query::page(&state.platform, &query).await?))
}
