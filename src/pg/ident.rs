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

/// The raw name (as [`Ident::as_str`]), for bind parameters and comparisons.
impl AsRef<str> for Ident {
    fn as_ref(&self) -> &str {
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

/// As the raw name (JSON shows a tenant's roles and schema by name).
impl serde::Serialize for Ident {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Checked as [`Ident::new`] checks it.
impl<'de> serde::Deserialize<'de> for Ident {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ident::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A text column read as an identifier: a stored name that is not one is an error of
/// the read (the store's), never a panic later.
impl<'a> tokio_postgres::types::FromSql<'a> for Ident {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let s = <&str as tokio_postgres::types::FromSql>::from_sql(ty, raw)?;
        Ok(Ident::new(s)?)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&str as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

/// Bound as its raw name (a bind parameter needs no quoting).
impl tokio_postgres::types::ToSql for Ident {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.as_str().to_sql(ty, out)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&str as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
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
