//! Responses that carry a rate-limit decision: `RateLimit-Limit`, `RateLimit-Remaining`
//! and `RateLimit-Reset` on every answer of a limited endpoint, and 429 with
//! `Retry-After` when over.

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;

use super::error::{answer, ApiError};
use super::AppState;
use crate::problem::Kind;
use crate::quota::rate::Decision;
use crate::quota::Quotas;
use crate::store::tenants::Tenant;
use crate::tenant::service;

fn set(headers: &mut HeaderMap, name: &'static str, value: u64) {
    headers.insert(name, HeaderValue::from(value));
}

/// Adds the `RateLimit-*` headers (and `Retry-After` when limited) to a response.
pub fn with_headers(mut res: Response, d: &Decision) -> Response {
    let h = res.headers_mut();
    match *d {
        Decision::Allowed {
            limit,
            remaining,
            reset_secs,
        } => {
            set(h, "ratelimit-limit", limit as u64);
            set(h, "ratelimit-remaining", remaining as u64);
            set(h, "ratelimit-reset", reset_secs);
        }
        Decision::Limited {
            limit,
            retry_after_secs,
        } => {
            set(h, "ratelimit-limit", limit as u64);
            set(h, "ratelimit-remaining", 0);
            set(h, "ratelimit-reset", retry_after_secs);
            set(h, "retry-after", retry_after_secs);
        }
    }
    res
}

/// 429 for a call over the tenant's `api_calls_per_minute`.
pub fn too_many(d: &Decision) -> Response {
    let limit = match d {
        Decision::Allowed { limit, .. } | Decision::Limited { limit, .. } => *limit,
    };
    with_headers(
        answer(
            Kind::TooManyRequests,
            "rate_limited",
            format!("over this tenant's limit of {limit} API calls per minute; retry after the Retry-After seconds"),
            None,
        ),
        d,
    )
}

/// The tenant's effective quotas (its plan's, with its own overrides).
pub async fn effective_quotas(state: &AppState, t: &Tenant) -> Result<Quotas, ApiError> {
    let client = state
        .platform
        .pool
        .get()
        .await
        .map_err(service::Error::from)?;
    Ok(crate::store::quotas::effective(&client, t.id)
        .await
        .map_err(service::Error::from)?
        .ok_or_else(|| service::Error::not_found(&t.name))?)
}

/// Admits one call of a tenant-key endpoint against `api_calls_per_minute`: the
/// tenant's quotas and the limiter's decision (for the `RateLimit-*` headers), or
/// the 429 to answer. An admitted call is counted in the metrics as `endpoint`.
pub async fn admit(
    state: &AppState,
    t: &Tenant,
    endpoint: &'static str,
) -> Result<Result<(Quotas, Decision), Response>, ApiError> {
    let q = effective_quotas(state, t).await?;
    let decision = state.limits.api_call(t.id, q.api_calls_per_minute as u32);
    crate::quota::breaches::flush(&state.platform, &state.limits);
    if !decision.allowed() {
        return Ok(Err(too_many(&decision)));
    }
    crate::metrics::api_call(endpoint);
    Ok(Ok((q, decision)))
}
