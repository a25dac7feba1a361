//! A console request that failed: the API's error (status and message, naming the
//! field), shown as a page.

use axum::response::{IntoResponse, Response};

use super::html;
use crate::api::error::{status_of, ApiError};
use crate::problem::{Kind, Problem};

#[derive(Debug)]
pub struct Failure(pub Problem);

impl Failure {
    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        Self(Problem::bad_field(field, message))
    }

    pub fn new(kind: Kind, code: &str, message: impl Into<String>) -> Self {
        Self(Problem::new(kind, code, message))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let p = self.0;
        let field = p
            .field
            .as_deref()
            .map(|f| format!("<p>Field: <code>{}</code></p>", html::esc(f)))
            .unwrap_or_default();
        let body = format!(
            "<section class=\"error\" id=\"error\"><h2>{}</h2><p id=\"error-message\">{}</p>{field}\
             <p><a href=\"/console\">Back to the tenants</a></p></section>",
            html::esc(&p.code),
            html::esc(&p.message),
        );
        (status_of(p.kind), html::bare("Error", &body)).into_response()
    }
}

macro_rules! via_api_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Self {
                Self(ApiError::from(e).0)
            }
        }
    )*};
}

via_api_error!(
    crate::workflows::Error,
    crate::tenant::service::Error,
    crate::backup::Error,
    crate::events::webhooks::Error,
    Problem
);
