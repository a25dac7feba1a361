//! Responses that carry a rate-limit decision: `RateLimit-Limit`, `RateLimit-Remaining`
//! and `RateLimit-Reset` on every answer of a limited endpoint, and 429 with
//! `Retry-After` when over.

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;

use super::error::answer;
use crate::problem::Kind;
use crate::quota::rate::Decision;

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
