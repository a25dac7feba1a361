//! Quotas and usage of a tenant (admin): `GET/PUT .../quotas`, `GET .../limits`,
//! `GET/POST .../usage`, `GET .../resources`.

use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::ratelimit;
use super::{AppState, ADMIN_ACTOR};
use crate::quota::service::{self, Limits, QuotaUpdate};
use crate::quota::usage::{self, Counted, Increment, Outcome, Resources, UsageSummary};

#[utoipa::path(get, path = "/api/v1/tenants/{name}/limits", tag = "quotas", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = Limits), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn limits(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Limits>, ApiError> {
    Ok(Json(service::limits(&state.platform, &name).await?))
}

#[utoipa::path(put, path = "/api/v1/tenants/{name}/quotas", tag = "quotas", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    request_body = QuotaUpdate,
    responses((status = 200, body = Limits, description = "the quotas now in force"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "below current usage without force; names the quota and the usage")))]
pub async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<QuotaUpdate>,
) -> Result<Json<Limits>, ApiError> {
    Ok(Json(
        crate::workflows::changes::set_quotas(&state.platform, &name, &body.value, ADMIN_ACTOR)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/usage", tag = "quotas", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = UsageSummary), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn summary(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<UsageSummary>, ApiError> {
    Ok(Json(
        usage::summary(&state.platform, &state.limits, &name).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/resources", tag = "quotas", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = Resources), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn resources(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Resources>, ApiError> {
    Ok(Json(
        usage::resources(&state.platform, &state.limits, &name).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/tenants/{name}/usage", tag = "quotas", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    request_body = Increment,
    responses((status = 200, body = Counted, description = "counted; RateLimit-* headers"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "the quota is spent (nothing counted), or over the tenant's API rate; Retry-After when it resets")))]
pub async fn increment(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<Increment>,
) -> Result<Response, ApiError> {
    Ok(
        match usage::increment(&state.platform, &state.limits, &name, &body.value).await? {
            Outcome::RateLimited(d) => ratelimit::too_many(&d),
            Outcome::Counted(counted, d) => {
                ratelimit::with_headers(Json(counted).into_response(), &d)
            }
            Outcome::Refused {
                problem,
                retry_after,
                api,
            } => {
                let mut res = ratelimit::with_headers(
                    super::error::answer(
                        crate::problem::Kind::TooManyRequests,
                        &problem.code,
                        problem.message,
                        None,
                    ),
                    &api,
                );
                if let Some(secs) = retry_after {
                    res.headers_mut()
                        .insert("retry-after", HeaderValue::from(secs));
                }
                res
            }
        },
    )
}
