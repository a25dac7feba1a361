//! The only way a name reaches SQL: a validated, quoted identifier.

use std::fmt;

/// PostgreSQL's identifier limit (NAMEDATALEN - 1). Longer names are silently
/// truncated by the server, which would make two tenants collide, so we refuse them.
pub const MAX_IDENT_BYTES: usize = 63;

/// A PostgreSQL identifier that renders itself double-quoted with embedded quotes
/// doubled. Construction checks length and refuses NUL; nothing else can produce one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Ident(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentError {
    #[error("identifier is empty")]
    Empty,
    #[error("identifier is {0} bytes, PostgreSQL allows at most 63")]
    TooLong(usize),
    #[error("identifier contains a NUL byte")]
    Nul,
}

impl Ident {
    pub fn new(name: impl Into<String>) -> Result<Self, IdentError> {
        let name = name.into();
        if name.is_empty() {
            return Err(IdentError::Empty);
        }
        if name.len() > MAX_IDENT_BYTES {
            return Err(IdentError::TooLong(name.len()));
        }
        if name.contains('\0') {
            return Err(IdentError::Nul);
        }
        Ok(Self(name))
    }

    /// The raw name, for bind parameters and catalog comparisons (never for SQL text).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&postgres_protocol::escape::escape_identifier(&self.0))
    }
}

impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ident({:?})", self.0)
    }
}

/// A string literal for the few places where SQL takes no bind parameter (DDL).
pub struct Literal<'a>(pub &'a str);

impl fmt::Display for Literal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&postgres_protocol::escape::escape_literal(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_doubles_embedded_quotes() {
        assert_eq!(Ident::new("a\"b").unwrap().to_string(), "\"a\"\"b\"");
        assert_eq!(
            Ident::new("tenant_acme").unwrap().to_string(),
            "\"tenant_acme\""
        );
    }

    #[test]
    fn refuses_what_postgres_would_truncate() {
        assert_eq!(Ident::new("x".repeat(64)), Err(IdentError::TooLong(64)));
        assert!(Ident::new("x".repeat(63)).is_ok());
        assert_eq!(Ident::new(""), Err(IdentError::Empty));
    }

    #[test]
    fn literal_escapes_quotes() {
        assert_eq!(Literal("it's").to_string(), "'it''s'");
    }
}
