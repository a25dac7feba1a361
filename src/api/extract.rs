//! A JSON body extractor whose every failure speaks our error shape and names the
//! field: malformed JSON, a wrong type, an unknown field, a body over the limit.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::problem::{Kind, Problem};

/// Bodies above this are refused with 413.
pub const MAX_BODY: usize = 1 << 20;

/// The parsed body, plus its canonical JSON (for idempotency hashing).
pub struct JsonBody<T> {
    pub value: T,
    pub canonical: Vec<u8>,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse(&read_body(req, state).await?)
    }
}

/// The raw body, with a body over [`MAX_BODY`] a 413 and an unreadable one a 400.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(Problem::new(
                Kind::TooLarge,
                "body_too_large",
                format!("request body is larger than {} bytes", MAX_BODY),
            ))
        } else {
            ApiError(Problem::new(
                Kind::BadInput,
                "unreadable_body",
                "request body could not be read",
            ))
        }
    })
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<JsonBody<T>, ApiError> {
    let raw: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError(Problem::new(
            Kind::BadInput,
            "malformed_json",
            format!("request body is not valid JSON: {e}"),
        ))
    })?;
    if !raw.is_object() {
        return Err(ApiError(Problem::new(
            Kind::BadInput,
            "malformed_json",
            "request body must be a JSON object",
        )));
    }
    let canonical = serde_json::to_vec(&raw).expect("a parsed value serialises");
    let value = serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = unknown_field(&inner).unwrap_or(path);
        let field = (!field.is_empty() && field != ".").then_some(field);
        let message = match &field {
            Some(f) => format!("{f}: {inner}"),
            None => inner,
        };
        ApiError(Problem {
            kind: Kind::BadInput,
            code: "invalid_field".into(),
            message,
            field,
        })
    })?;
    Ok(JsonBody { value, canonical })
}

/// Like [`JsonBody`] for requests whose every field is optional: an empty body is the
/// default value; a non-empty one must be a valid JSON object.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        Ok(Self(parse(&bytes)?.value))
    }
}

/// serde reports unknown and missing fields in its message, not its path.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))?;
    Some(rest.split('`').next()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::service::CreateTenant;

    fn field_of(body: &str) -> Option<String> {
        parse::<CreateTenant>(body.as_bytes())
            .err()
            .and_then(|e| e.0.field)
    }

    #[test]
    fn names_the_offending_field() {
        assert_eq!(
            field_of(r#"{"name":"acme","colour":1}"#).as_deref(),
            Some("colour")
        );
        assert_eq!(
            field_of(r#"{"name":"acme","public_api":"yes"}"#).as_deref(),
            Some("public_api")
        );
        assert_eq!(field_of(r#"{"name":5}"#).as_deref(), Some("name"));
        assert_eq!(field_of(r#"{}"#).as_deref(), Some("name"));
        assert!(parse::<CreateTenant>(b"{not json").is_err());
    }
}
