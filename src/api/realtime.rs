//! Realtime (issue 15). Tenant side, with the tenant's API key:
//! `POST /api/v1/realtime/publish` and `GET /api/v1/realtime/stream` (Server-Sent
//! Events). Admin side, with the admin token, acting for a named tenant (the CLI's
//! `realtime publish` and `realtime tail`): `POST .../tenants/{name}/realtime/publish`,
//! `GET .../tenants/{name}/realtime/stream`, and `POST .../tenants/{name}/realtime/tables`.
//!
//! A publish is an insert as the tenant's own login role (through the data API's
//! pools), so the quotas the control plane enforces in SQL apply to it exactly as to
//! the tenant's own SQL. A stream's tenant is decided once, here, when it connects.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::ratelimit;
use super::tenant_key::TenantKey;
use super::AppState;
use crate::dataapi::QueryRequest;
use crate::problem::{Kind, Problem};
use crate::realtime::{self, Filter, PublishRequest, Published, PublishedTable, TableRequest};
use crate::tenant::service;
use crate::tenant::{Status, Tenant};

fn bad(e: realtime::Invalid) -> ApiError {
    ApiError(Problem::bad_field(e.field, e.message))
}

async fn find(state: &AppState, name: &str) -> Result<Tenant, ApiError> {
    let client = state
        .platform
        .pool
        .get()
        .await
        .map_err(service::Error::from)?;
    Ok(crate::store::tenants::find(&client, name)
        .await
        .map_err(service::Error::from)?
        .ok_or_else(|| service::Error::not_found(name))?)
}

/// A suspended, deleted or unfinished tenant neither publishes nor streams.
fn live(t: &Tenant) -> Result<(), ApiError> {
    match t.status {
        Status::Active | Status::Trial => Ok(()),
        other => Err(ApiError(Problem::new(
            Kind::Conflict,
            "tenant_not_active",
            format!(
                "tenant {} is {other:?}; realtime needs an active or trial tenant",
                t.name
            )
            .to_lowercase(),
        ))),
    }
}

/// The insert, as the tenant's login role.
async fn publish_as(
    state: &AppState,
    t: &Tenant,
    q: &crate::quota::Quotas,
    req: &PublishRequest,
) -> Response {
    if let Err(e) = realtime::check_publish(req) {
        return bad(e).into_response();
    }
    let query = QueryRequest {
        sql: "SELECT realtime_publish($1, $2::jsonb)".into(),
        params: vec![
            serde_json::Value::String(req.channel.clone()),
            serde_json::Value::String(req.payload.to_string()),
        ],
    };
    // Every mode counts the event in SQL as it is inserted (database mode: the gate
    // inside the tenant's own database); a refusal comes back as QueryError::Limited.
    let published = state.data.execute(&state.platform, t, q, &query).await;
    match published {
        Ok(answer) => {
            let id = answer
                .result
                .rows
                .first()
                .and_then(|r| r.first())
                .and_then(|v| {
                    v.as_i64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                })
                .unwrap_or_default();
            (
                StatusCode::CREATED,
                Json(Published {
                    id,
                    channel: req.channel.clone(),
                }),
            )
                .into_response()
        }
        Err(e) => super::data::query_error(e),
    }
}

#[utoipa::path(post, path = "/api/v1/realtime/publish", tag = "realtime", security(("api_key" = [])),
    request_body = PublishRequest,
    responses(
        (status = 201, body = Published),
        (status = 400, body = ErrorBody, description = "bad channel or payload (names the field)"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "public_api is off for the tenant"),
        (status = 429, body = ErrorBody, description = "over api_calls_per_minute, realtime_events_per_minute or realtime_events_per_hour; Retry-After")))]
pub async fn publish(
    State(state): State<AppState>,
    key: TenantKey,
    body: JsonBody<PublishRequest>,
) -> Result<Response, ApiError> {
    let t = key.tenant;
    public_api(&t)?;
    let (q, decision) = match ratelimit::admit(&state, &t, "realtime_publish").await? {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(refused),
    };
    Ok(ratelimit::with_headers(
        publish_as(&state, &t, &q, &body.value).await,
        &decision,
    ))
}

fn public_api(t: &Tenant) -> Result<(), ApiError> {
    if t.public_api {
        return Ok(());
    }
    Err(ApiError(Problem::new(
        Kind::Forbidden,
        "public_api_disabled",
        format!(
            "the data API is off for tenant {}: its public_api is false",
            t.name
        ),
    )))
}

#[utoipa::path(post, path = "/api/v1/tenants/{name}/realtime/publish", tag = "realtime", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    request_body = PublishRequest,
    responses(
        (status = 201, body = Published, description = "published as the tenant (its quotas apply)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the tenant is not active"),
        (status = 429, body = ErrorBody, description = "over realtime_events_per_minute or realtime_events_per_hour; Retry-After")))]
pub async fn admin_publish(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<PublishRequest>,
) -> Result<Response, ApiError> {
    let t = find(&state, &name).await?;
    live(&t)?;
    let q = ratelimit::effective_quotas(&state, &t).await?;
    Ok(publish_as(&state, &t, &q, &body.value).await)
}

#[utoipa::path(post, path = "/api/v1/tenants/{name}/realtime/tables", tag = "realtime", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    request_body = TableRequest,
    responses(
        (status = 201, body = PublishedTable, description = "the table's inserts, updates and deletes are published on table.<name>"),
        (status = 400, body = ErrorBody, description = "bad or unknown table (names the field); nothing changed"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the tenant is not active")))]
pub async fn tables(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<TableRequest>,
) -> Result<Response, ApiError> {
    let table = body.value.table.clone();
    realtime::check_table(&table).map_err(bad)?;
    let t = find(&state, &name).await?;
    live(&t)?;
    let result = realtime::publish_table(&state.platform, &t, &table, super::ADMIN_ACTOR).await;
    match result {
        Ok(()) => Ok((
            StatusCode::CREATED,
            Json(PublishedTable {
                channel: format!("table.{table}"),
                table,
            }),
        )
            .into_response()),
        Err(realtime::place::Error::Invalid(e)) => Err(bad(e)),
        Err(e) => Err(ApiError::internal(
            &e,
            "installing a realtime table trigger",
        )),
    }
}

/// `channel` parameters (repeatable) and nothing else; `Last-Event-ID` if resuming.
fn subscription_args(
    query: Option<String>,
    headers: &HeaderMap,
) -> Result<(Filter, Option<i64>), ApiError> {
    let mut channels = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if k != "channel" {
            return Err(ApiError(Problem::bad_field(
                &k,
                format!("unknown query parameter {k:?}; the stream takes channel (repeatable)"),
            )));
        }
        channels.push(v.into_owned());
    }
    let filter = Filter::parse(&channels).map_err(bad)?;
    let last = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    ApiError(Problem::bad_field(
                        "Last-Event-ID",
                        "Last-Event-ID must be the id of an event this stream sent (a non-negative integer)",
                    ))
                })?,
        ),
    };
    Ok((filter, last))
}

/// How often an idle stream sends a comment line (`BERQENAS_REALTIME_HEARTBEAT_SECS`).
fn heartbeat() -> Duration {
    std::env::var("BERQENAS_REALTIME_HEARTBEAT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .map_or(Duration::from_secs(15), Duration::from_secs)
}

async fn stream_for(
    state: &AppState,
    t: &Tenant,
    filter: Filter,
    last: Option<i64>,
) -> Result<Response, ApiError> {
    let q = ratelimit::effective_quotas(state, t).await?;
    let max = q.realtime_max_subscribers.max(0) as usize;
    let sub = state
        .realtime
        .subscribe(&state.platform, t, max, filter, last)
        .await
        .map_err(|e| match e {
            realtime::hub::Error::TooMany { .. } => ApiError(Problem::new(
                Kind::TooManyRequests,
                "realtime_max_subscribers",
                e.to_string(),
            )),
            other => ApiError::unavailable(&other),
        })?;
    let events = futures_util::stream::unfold(sub, |mut sub| async move {
        match sub.next().await {
            Some(Ok(e)) => {
                let data = serde_json::to_string(&*e).unwrap_or_default();
                let ev = SseEvent::default().id(e.id.to_string()).data(data);
                Some((Ok::<_, Infallible>(ev), sub))
            }
            Some(Err(err)) => {
                tracing::warn!(error = %err, "a realtime stream ended on an error");
                None
            }
            None => None,
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(heartbeat()).text("heartbeat"))
        .into_response())
}

#[utoipa::path(get, path = "/api/v1/realtime/stream", tag = "realtime", security(("api_key" = [])),
    params(("channel" = Vec<String>, Query, description = "a channel, a prefix (orders.*) or * (all); repeatable"),
        ("Last-Event-ID" = Option<i64>, Header, description = "resume after this event id")),
    responses(
        (status = 200, description = "text/event-stream: `id:` the event id, `data:` {id, channel, payload, created_at}; heartbeats as comments"),
        (status = 400, body = ErrorBody, description = "bad channel or Last-Event-ID (names the field)"),
        (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "realtime_max_subscribers streams are open")))]
pub async fn stream(
    State(state): State<AppState>,
    key: TenantKey,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (filter, last) = subscription_args(query, &headers)?;
    public_api(&key.tenant)?;
    stream_for(&state, &key.tenant, filter, last).await
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/realtime/stream", tag = "realtime", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id"),
        ("channel" = Vec<String>, Query, description = "a channel, a prefix (orders.*) or * (all); repeatable"),
        ("Last-Event-ID" = Option<i64>, Header, description = "resume after this event id")),
    responses(
        (status = 200, description = "text/event-stream, as GET /api/v1/realtime/stream"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the tenant is not active"),
        (status = 429, body = ErrorBody, description = "realtime_max_subscribers streams are open")))]
pub async fn admin_stream(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (filter, last) = subscription_args(query, &headers)?;
    let t = find(&state, &name).await?;
    live(&t)?;
    stream_for(&state, &t, filter, last).await
}
