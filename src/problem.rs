//! The shape every failure takes on its way out: a kind (which the API turns into a
//! status code), a stable machine-readable code, a message for people, and the field
//! that was wrong, if one was.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    BadInput,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    /// Was there and is no more (a used or expired invitation link).
    Gone,
    Unprocessable,
    TooLarge,
    /// A body in a format the endpoint does not take (not JSON).
    UnsupportedMediaType,
    /// Over a rate limit (the answer carries `Retry-After`).
    TooManyRequests,
    Unavailable,
    /// A service berqenas depends on (an onboarding step's endpoint) failed.
    BadGateway,
    /// A statement cancelled at its timeout.
    Timeout,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub kind: Kind,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl Kind {
    /// An outage rather than the request's fault: retrying the same request may work.
    pub fn is_outage(self) -> bool {
        matches!(
            self,
            Kind::Unavailable | Kind::BadGateway | Kind::Timeout | Kind::Internal
        )
    }
}

impl Problem {
    pub fn new(kind: Kind, code: &str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
            field: None,
        }
    }

    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        Self {
            kind: Kind::BadInput,
            code: "invalid_field".into(),
            message: message.into(),
            field: Some(field.into()),
        }
    }
}
