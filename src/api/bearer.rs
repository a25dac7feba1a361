//! The token of an `Authorization: Bearer <token>` header, the one reading of it that
//! the admin check, the metrics check and the tenant key extractor share.

use axum::http::{header, HeaderMap};

/// The bearer token the request presents, if any. The scheme is case-insensitive
/// (`bearer`, `BEARER`: RFC 9110 section 11.1), separated from the token by one or more
/// spaces; surrounding blanks are not part of the token.
pub fn token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim_start().split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn of(value: &str) -> Option<String> {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        token(&h).map(str::to_string)
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR  abc "] {
            assert_eq!(of(v).as_deref(), Some("abc"), "{v:?}");
        }
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_none() {
        for v in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Bearerabc",
            "Token abc",
            "",
        ] {
            assert_eq!(of(v), None, "{v:?}");
        }
        assert_eq!(token(&HeaderMap::new()), None);
    }
}
