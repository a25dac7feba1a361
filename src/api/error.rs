//! Domain errors to HTTP: one JSON shape, `{"error":{"code","message","field"}}`.
//! 5xx bodies are opaque; their cause is logged here, once.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{Kind, Problem};
use crate::tenant::service;

#[derive(Debug)]
pub struct ApiError(pub Problem);

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

pub fn status_of(kind: Kind) -> StatusCode {
    match kind {
        Kind::BadInput => StatusCode::BAD_REQUEST,
        Kind::Unauthorized => StatusCode::UNAUTHORIZED,
        Kind::Forbidden => StatusCode::FORBIDDEN,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::Conflict => StatusCode::CONFLICT,
        Kind::Gone => StatusCode::GONE,
        Kind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Kind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Kind::BadGateway => StatusCode::BAD_GATEWAY,
        Kind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// The control database cannot be reached: a 503 the client may retry; the cause
    /// goes to the log only.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "control-plane database unavailable");
        Self(Problem::new(
            Kind::Unavailable,
            "database_unavailable",
            "the database is unavailable; retry later",
        ))
    }

    /// Anything else that failed: an opaque 500; the cause goes to the log only.
    pub fn internal(cause: &dyn std::fmt::Debug, what: &str) -> Self {
        tracing::error!(error = ?cause, "{what} failed");
        Self(Problem::new(
            Kind::Internal,
            "internal",
            "internal error; the server log has the details",
        ))
    }
}

/// An error answer of `kind`, in the one error shape (for handlers that add headers).
pub fn answer(kind: Kind, code: &str, message: impl Into<String>, field: Option<&str>) -> Response {
    ApiError(Problem {
        kind,
        code: code.into(),
        message: message.into(),
        field: field.map(str::to_string),
    })
    .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let p = self.0;
        let body = ErrorBody {
            error: ErrorDetail {
                code: p.code,
                message: p.message,
                field: p.field,
            },
        };
        (status_of(p.kind), Json(body)).into_response()
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self(p)
    }
}

impl From<crate::workflows::Error> for ApiError {
    fn from(e: crate::workflows::Error) -> Self {
        use crate::ops::OpError;
        match e {
            crate::workflows::Error::Rejected(p) => Self(p),
            crate::workflows::Error::Tenant(e) => e.into(),
            crate::workflows::Error::Backup(e) => e.into(),
            crate::workflows::Error::Operation(e) => {
                let (kind, code, message) = match &e {
                    OpError::Stopping(_) => (
                        Kind::Unavailable,
                        "server_stopping",
                        "the server is stopping; the operation is finished or undone when it starts again".to_string(),
                    ),
                    OpError::Unfinished { op, .. } => (
                        Kind::Unavailable,
                        "operation_unfinished",
                        format!("operation {op} did not finish; the server finishes it, retry later to see it done"),
                    ),
                    OpError::Pool(_) => (
                        Kind::Unavailable,
                        "database_unavailable",
                        "the database is unavailable; retry later".to_string(),
                    ),
                    _ => (
                        Kind::Internal,
                        "internal",
                        "internal error; the server log has the details".to_string(),
                    ),
                };
                tracing::error!(error = ?e, "operation failed");
                Self(Problem::new(kind, code, message))
            }
        }
    }
}

impl From<service::Error> for ApiError {
    fn from(e: service::Error) -> Self {
        match e {
            service::Error::Rejected(p) => Self(p),
            service::Error::Pool(e) => Self::unavailable(&e),
            other => Self::internal(&other, "request"),
        }
    }
}
