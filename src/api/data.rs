//! `POST /api/v1/query`: the tenant data API, authenticated by the tenant's API key.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::ratelimit;
use super::tenant_key::TenantKey;
use super::AppState;
use crate::dataapi::{QueryError, QueryRequest, QueryResult};

pub(super) fn query_error(e: QueryError) -> Response {
    match e {
        QueryError::Limited {
            message,
            retry_after_secs,
        } => {
            let mut res = super::error::answer(
                crate::problem::Kind::TooManyRequests,
                "realtime_quota_exceeded",
                message,
                None,
            );
            res.headers_mut().insert(
                "retry-after",
                axum::http::HeaderValue::from(retry_after_secs),
            );
            res
        }
        QueryError::Invalid {
            code,
            message,
            field,
        } => super::error::answer(crate::problem::Kind::BadInput, code, message, field),
        QueryError::PermissionDenied(m) => super::error::answer(
            crate::problem::Kind::Forbidden,
            "permission_denied",
            m,
            None,
        ),
        QueryError::Timeout(m) => {
            super::error::answer(crate::problem::Kind::Timeout, "statement_timeout", m, None)
        }
        QueryError::TooLarge(m) => {
            super::error::answer(crate::problem::Kind::TooLarge, "result_too_large", m, None)
        }
        QueryError::Unavailable { code, message } => {
            let mut res =
                super::error::answer(crate::problem::Kind::Unavailable, code, message, None);
            res.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            res
        }
        QueryError::Internal(e) => {
            tracing::error!(error = %e, "data API statement failed");
            super::error::answer(
                crate::problem::Kind::Internal,
                "internal",
                "internal error; the server log has the details",
                None,
            )
        }
    }
}

#[utoipa::path(post, path = "/api/v1/query", tag = "data", security(("api_key" = [])),
    request_body = QueryRequest,
    responses(
        (status = 200, body = QueryResult, description = "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset headers"),
        (status = 400, body = ErrorBody, description = "the statement is wrong (PostgreSQL's message and SQLSTATE)"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "public_api is off for the tenant, or PostgreSQL denied a privilege (SQLSTATE 42501)"),
        (status = 413, body = ErrorBody, description = "the result holds more than 16 MiB of cell data; select fewer rows or columns"),
        (status = 429, body = ErrorBody, description = "over api_calls_per_minute; Retry-After"),
        (status = 503, body = ErrorBody, description = "no connection or result memory available (tenant's connection limit, global caps); Retry-After"),
        (status = 504, body = ErrorBody, description = "cancelled at the tenant's statement timeout (SQLSTATE 57014)")))]
pub async fn query(
    State(state): State<AppState>,
    key: TenantKey,
    body: JsonBody<QueryRequest>,
) -> Result<Response, ApiError> {
    let t = key.tenant;
    if !t.public_api {
        return Err(ApiError(crate::problem::Problem::new(
            crate::problem::Kind::Forbidden,
            "public_api_disabled",
            format!(
                "the data API is off for tenant {}: its public_api is false",
                t.name
            ),
        )));
    }
    let p = &state.platform;
    let (q, decision) = match ratelimit::admit(&state, &t, "query").await? {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(refused),
    };
    let res = match state.data.execute(p, &t, &q, &body.value).await {
        Ok(answer) => {
            // The result's memory stays held until its body has been serialised.
            let res = Json(&answer.result).into_response();
            drop(answer);
            res
        }
        Err(e) => query_error(e),
    };
    Ok(ratelimit::with_headers(res, &decision))
}
