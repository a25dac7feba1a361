//! `/api/v1/webhooks`: endpoints, their secrets, pings, deliveries and replays
//! (docs/webhooks.md).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, OptionalJson};
use super::{AppState, ADMIN_ACTOR};
use crate::events::webhooks::{
    self as wh, CreateWebhook, Delivery, DeliveryList, DeliveryQuery, Error, NewWebhook,
    ReplayRange, Replayed, RotateSecret, UpdateWebhook, Webhook, WebhookList,
};

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Rejected(p) => Self(p),
            Error::Pool(e) => Self::unavailable(&e),
            other => Self::internal(&other, "webhook request"),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", security(("admin" = [])),
    request_body = CreateWebhook,
    responses(
        (status = 201, body = NewWebhook, description = "created; secret is shown only here"),
        (status = 400, body = ErrorBody, description = "bad url, events or description (field named)"),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "url resolves to a loopback, link-local, private or unspecified address")))]
pub async fn create(
    State(state): State<AppState>,
    body: JsonBody<CreateWebhook>,
) -> Result<(StatusCode, Json<NewWebhook>), ApiError> {
    let w = wh::create(&state.platform, &state.webhooks, &body.value, ADMIN_ACTOR).await?;
    Ok((StatusCode::CREATED, Json(w)))
}

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("admin" = [])),
    responses((status = 200, body = WebhookList, description = "never a secret"), (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<WebhookList>, ApiError> {
    Ok(Json(wh::list(&state.platform).await?))
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("admin" = [])),
    params(("id" = String, Path, description = "the endpoint's id")),
    responses((status = 200, body = Webhook, description = "never a secret"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Webhook>, ApiError> {
    Ok(Json(wh::get(&state.platform, &id).await?))
}

#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("admin" = [])),
    params(("id" = String, Path, description = "the endpoint's id")),
    request_body = UpdateWebhook,
    responses((status = 200, body = Webhook), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody<UpdateWebhook>,
) -> Result<Json<Webhook>, ApiError> {
    Ok(Json(
        wh::update(
            &state.platform,
            &state.webhooks,
            &id,
            &body.value,
            ADMIN_ACTOR,
        )
        .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("admin" = [])),
    params(("id" = String, Path, description = "the endpoint's id")),
    responses((status = 200, body = Webhook, description = "removed with its deliveries"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Webhook>, ApiError> {
    Ok(Json(wh::delete(&state.platform, &id, ADMIN_ACTOR).await?))
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/rotate-secret", tag = "webhooks", security(("admin" = [])),
    params(("id" = String, Path, description = "the endpoint's id")),
    request_body(content = RotateSecret, description = "optional"),
    responses((status = 201, body = NewWebhook, description = "the new secret, shown only here; the previous one signs too until previous_secret_expires_at"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<RotateSecret>,
) -> Result<(StatusCode, Json<NewWebhook>), ApiError> {
    let w = wh::rotate(&state.platform, &id, &body, ADMIN_ACTOR).await?;
    Ok((StatusCode::CREATED, Json(w)))
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/ping", tag = "webhooks", security(("admin" = [])),
    params(("id" = String, Path, description = "the endpoint's id")),
    responses((status = 202, body = Delivery, description = "a webhook.ping event queued for this endpoint only"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn ping(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Delivery>), ApiError> {
    let d = wh::ping(&state.platform, &id, ADMIN_ACTOR).await?;
    state.relay_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(d)))
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("admin" = [])),
    params(("id" = String, Path, description = "the endpoint's id"),
        ("state" = Option<String>, Query, description = "pending, delivered or dead"),
        ("limit" = Option<i64>, Query, description = "at most this many, newest first (default 50, at most 500)")),
    responses((status = 200, body = DeliveryList, description = "attempts, status codes, latency, next retry"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<DeliveryList>, ApiError> {
    super::extract::known_params(&q, &["state", "limit"])?;
    let limit = super::extract::page_limit(&q)?;
    let query = DeliveryQuery {
        state: q.get("state").cloned(),
        limit,
    };
    Ok(Json(wh::deliveries(&state.platform, &id, &query).await?))
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/replay", tag = "webhooks", security(("admin" = [])),
    params(("id" = String, Path, description = "the endpoint's id"), ("delivery_id" = String, Path, description = "the delivery to send again")),
    responses((status = 202, body = Delivery, description = "a new delivery of the same event (same webhook-id)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn replay_one(
    State(state): State<AppState>,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Delivery>), ApiError> {
    let d = wh::replay_one(&state.platform, &id, &delivery, ADMIN_ACTOR).await?;
    state.relay_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(d)))
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/replay", tag = "webhooks", security(("admin" = [])),
    params(("id" = String, Path, description = "the endpoint's id")),
    request_body = ReplayRange,
    responses((status = 202, body = Replayed, description = "every matching event of the range queued again, in order"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn replay_range(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody<ReplayRange>,
) -> Result<(StatusCode, Json<Replayed>), ApiError> {
    let r = wh::replay_range(&state.platform, &id, &body.value, ADMIN_ACTOR).await?;
    state.relay_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(r)))
}
