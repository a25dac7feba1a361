//! The JSON body extractors every endpoint that takes a body goes through, whose every
//! failure speaks our error shape and names what is wrong: a body that does not say it
//! is JSON (415), malformed JSON, a key given twice, a NUL character, a wrong type, an
//! unknown field, a body over the limit. Each check happens before any handler runs,
//! so a refused body changes nothing.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::strict_json::{self, Refused};
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
        match read_json(req, state).await? {
            Some(bytes) => parse(&bytes),
            None => Err(ApiError(Problem::new(
                Kind::BadInput,
                "malformed_json",
                "request body is empty: send a JSON object",
            ))),
        }
    }
}

/// A JSON body read as raw bytes first (a handler that verifies a signature over the
/// exact bytes), checked and parsed as [`JsonBody`] is.
pub(super) fn json_from_bytes<T: DeserializeOwned>(
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<JsonBody<T>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError(Problem::new(
            Kind::BadInput,
            "malformed_json",
            "request body is empty: send a JSON object",
        )));
    }
    json_media_type(headers)?;
    parse(bytes)
}

/// The body if it is not blank, after checking that it says it is JSON; `None` for an
/// empty (or all-whitespace) body, which needs no `Content-Type`.
async fn read_json<S: Send + Sync>(req: Request, state: &S) -> Result<Option<Bytes>, ApiError> {
    let media_type = json_media_type(req.headers());
    let bytes = read_body(req, state).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    media_type?;
    Ok(Some(bytes))
}

/// `Ok` when `Content-Type` is `application/json` or `application/<anything>+json`,
/// with any parameters (`; charset=utf-8`), in any case; else the 415 to answer. A
/// body that does not say what it is might be a form an HTML page posted across
/// origins (browsers send those without asking): it is refused, not guessed at.
fn json_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = declared
        .as_deref()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let is_json = essence.as_deref().is_some_and(|e| {
        e == "application/json"
            || e.strip_prefix("application/")
                .is_some_and(|sub| sub.len() > "+json".len() && sub.ends_with("+json"))
    });
    if is_json {
        return Ok(());
    }
    let got = match &declared {
        Some(v) => format!("got {v:?}"),
        None => "none was given".to_string(),
    };
    Err(ApiError(Problem {
        kind: Kind::UnsupportedMediaType,
        code: "unsupported_media_type".into(),
        message: format!(
            "the request body must be JSON, sent with Content-Type: application/json; {got}"
        ),
        field: Some("Content-Type".into()),
    }))
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

/// Parses a body that has passed [`read_json`]'s checks.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<JsonBody<T>, ApiError> {
    let raw = strict_json::parse(bytes).map_err(|refused| {
        ApiError(match refused {
            Refused::DuplicateKey(path) => Problem {
                kind: Kind::BadInput,
                code: "duplicate_key".into(),
                message: format!("{path}: this key is given twice; give each key once"),
                field: Some(path),
            },
            Refused::Nul(path) if !path.is_empty() => Problem::bad_field(
                &path,
                format!(
                    "{path}: contains a NUL character (\\u0000), which PostgreSQL cannot store"
                ),
            ),
            Refused::Nul(_) => Problem::new(
                Kind::BadInput,
                "malformed_json",
                "request body must be a JSON object",
            ),
            Refused::Syntax(e) => Problem::new(
                Kind::BadInput,
                "malformed_json",
                format!("request body is not valid JSON: {e}"),
            ),
        })
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
/// default value (and needs no `Content-Type`); a non-empty one must be a JSON object
/// sent as JSON, checked exactly as [`JsonBody`] checks it.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match read_json(req, state).await? {
            Some(bytes) => Ok(Self(parse(&bytes)?.value)),
            None => Ok(Self(T::default())),
        }
    }
}

/// serde reports unknown and missing fields in its message, not its path.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))?;
    Some(rest.split('`').next()?.to_string())
}

/// Refuses a query parameter not in `allowed`, naming it.
pub fn known_params(
    q: &std::collections::HashMap<String, String>,
    allowed: &[&str],
) -> Result<(), Problem> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(Problem::bad_field(
            k,
            format!("unknown query parameter {k:?}"),
        )),
        None => Ok(()),
    }
}

/// A list's `limit` query parameter, if given (its range is the list's to judge).
pub fn page_limit(q: &std::collections::HashMap<String, String>) -> Result<Option<i64>, Problem> {
    q.get("limit")
        .map(|l| l.parse::<i64>())
        .transpose()
        .map_err(|_| Problem::bad_field("limit", "limit must be a whole number"))
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

    fn media_type_ok(content_type: Option<&str>) -> bool {
        let mut h = HeaderMap::new();
        if let Some(ct) = content_type {
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        }
        json_media_type(&h).is_ok()
    }

    #[test]
    fn only_json_media_types_are_taken() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
            " application/json ; charset=UTF-8",
        ] {
            assert!(media_type_ok(Some(ok)), "{ok:?}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "application/+json",
            "text/json",
            "",
        ] {
            assert!(!media_type_ok(Some(bad)), "{bad:?}");
        }
        assert!(!media_type_ok(None));
    }

    #[test]
    fn a_repeated_key_or_a_nul_names_its_path() {
        let e = parse::<CreateTenant>(br#"{"name":"acme","metadata":{"a":1,"a":2}}"#)
            .err()
            .unwrap()
            .0;
        assert_eq!(
            (e.code.as_str(), e.field.as_deref()),
            ("duplicate_key", Some("metadata.a"))
        );
        assert_eq!(
            field_of(r#"{"name":"acme","metadata":{"a":"x\u0000"}}"#).as_deref(),
            Some("metadata.a")
        );
    }
}
