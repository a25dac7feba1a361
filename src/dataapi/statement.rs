//! What the data API refuses before a statement reaches PostgreSQL: an empty
//! statement, NUL characters (which PostgreSQL's text cannot hold, and which
//! tokio-postgres cannot even send in a statement), and `COPY`, whose rows stream
//! outside the extended-query exchange the data API speaks (`COPY ... FROM STDIN`
//! would leave the connection waiting for data that never comes).

use serde_json::Value;

use super::{QueryError, QueryRequest};

/// The error code of a statement the data API does not run.
pub const UNSUPPORTED: &str = "unsupported_statement";

/// Why `COPY` is refused, told to the tenant.
pub const COPY_REFUSED: &str = "the data API does not run COPY (its rows stream outside \
                                the JSON answer); use SELECT to read rows and INSERT to write them";

/// Refuses a request that cannot run, naming the field at fault.
pub fn check(req: &QueryRequest) -> Result<(), QueryError> {
    if req.sql.trim().is_empty() {
        return Err(invalid("sql", "sql must be one SQL statement".into()));
    }
    if req.sql.contains('\0') {
        return Err(invalid(
            "sql",
            "sql contains a NUL character (\\u0000), which PostgreSQL does not accept".into(),
        ));
    }
    if let Some(i) = req.params.iter().position(has_nul) {
        return Err(invalid(
            "params",
            format!(
                "params[{i}] contains a NUL character (\\u0000), which PostgreSQL text cannot hold"
            ),
        ));
    }
    if first_keyword(&req.sql).eq_ignore_ascii_case("copy") {
        return Err(copy_refused());
    }
    Ok(())
}

/// The answer to a `COPY`, whether seen before it ran or by its reply.
pub fn copy_refused() -> QueryError {
    QueryError::Invalid {
        code: UNSUPPORTED,
        message: COPY_REFUSED.into(),
        field: Some("sql"),
    }
}

/// Whether tokio-postgres failed on a reply the extended protocol does not expect,
/// which for a single statement only a COPY's can be (CopyOutResponse, CopyInResponse):
/// a COPY that got past [`check`]. The error's kind is not public; its message is the
/// only way to tell.
pub fn is_copy_reply(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_none() && e.to_string() == "unexpected message from server"
}

fn invalid(field: &'static str, message: String) -> QueryError {
    QueryError::Invalid {
        code: "invalid_field",
        message,
        field: Some(field),
    }
}

/// A string sent as text with a NUL in it: a string parameter, or a string in an
/// array parameter (sent as an array literal). Objects go as JSON text, where a NUL is
/// the escape `\u0000`, for PostgreSQL's json input to judge.
fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        _ => false,
    }
}

/// The statement's first word, as PostgreSQL's scanner would find it: after
/// whitespace, empty statements (`;`), `--` comments and (nested) `/* */` comments.
/// Empty if the statement starts with anything else (a quote, a parenthesis...).
pub fn first_keyword(sql: &str) -> &str {
    let b = sql.as_bytes();
    let mut i = 0;
    loop {
        match (b.get(i), b.get(i + 1)) {
            (Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | b';'), _) => i += 1,
            (Some(b'-'), Some(b'-')) => {
                while i < b.len() && !matches!(b[i], b'\n' | b'\r') {
                    i += 1;
                }
            }
            (Some(b'/'), Some(b'*')) => {
                let mut depth = 0usize;
                while i < b.len() {
                    match (b[i], b.get(i + 1)) {
                        (b'/', Some(b'*')) => {
                            depth += 1;
                            i += 2;
                        }
                        (b'*', Some(b'/')) => {
                            depth -= 1;
                            i += 2;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => i += 1,
                    }
                }
            }
            _ => break,
        }
    }
    let start = i;
    // Identifier characters as PostgreSQL's scanner knows them (any non-ASCII byte
    // included), so the word ends on an ASCII byte or at the end: a char boundary.
    while i < b.len()
        && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'$') || b[i] >= 0x80)
    {
        i += 1;
    }
    &sql[start..i]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_keyword_skips_whitespace_comments_and_empty_statements() {
        for (sql, word) in [
            ("COPY t TO STDOUT", "COPY"),
            ("  \n\tcopy t FROM STDIN", "copy"),
            ("-- a comment\ncOpY t TO STDOUT", "cOpY"),
            ("--\r\nCOPY x", "COPY"),
            ("/* one */ /* two /* nested */ still */COPY x", "COPY"),
            (";; COPY x", "COPY"),
            ("/* never closed", ""),
            ("-- only a comment", ""),
            ("SELECT 'COPY'", "SELECT"),
            ("copyright", "copyright"),
            ("copy$x", "copy$x"),
            ("\"copy\" t", ""),
            ("(SELECT 1)", ""),
            ("ßelect", "ßelect"),
            ("", ""),
        ] {
            assert_eq!(first_keyword(sql), word, "{sql:?}");
        }
    }

    fn req(sql: &str, params: Value) -> QueryRequest {
        QueryRequest {
            sql: sql.into(),
            params: serde_json::from_value(params).unwrap(),
        }
    }

    fn refused(r: &QueryRequest) -> Option<(&'static str, Option<&'static str>)> {
        match check(r) {
            Ok(()) => None,
            Err(QueryError::Invalid { code, field, .. }) => Some((code, field)),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn nul_and_copy_are_refused_naming_the_field() {
        assert_eq!(refused(&req("SELECT 1", json!([]))), None);
        assert_eq!(
            refused(&req("SELECT 1\0", json!([]))),
            Some(("invalid_field", Some("sql")))
        );
        for params in [json!(["a\0b"]), json!([1, ["x", ["y\0"]]])] {
            assert_eq!(
                refused(&req("SELECT $1", params)),
                Some(("invalid_field", Some("params")))
            );
        }
        assert_eq!(refused(&req("SELECT $1", json!([{"k": "a\0"}]))), None);
        assert_eq!(
            refused(&req(" /* x */ copy t to stdout", json!([]))),
            Some((UNSUPPORTED, Some("sql")))
        );
    }
}
