//! Tenant names: validated once at the edge, and every PostgreSQL name derived from them.

use std::fmt;

use crate::pg::Ident;

/// A valid tenant name: 3 to 32 characters, `[a-z][a-z0-9-]*[a-z0-9]`, no `--`,
/// not reserved. Every derived identifier fits PostgreSQL's 63 bytes.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Slug(String);

/// As the name's text (`"acme"`): messages quote tenant names with `{:?}`.
impl fmt::Debug for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

pub const MIN_LEN: usize = 3;
pub const MAX_LEN: usize = 32;

/// Names that would confuse operators or PostgreSQL (`pg_` is reserved by the server).
const RESERVED: &[&str] = &[
    "public",
    "berqenas",
    "postgres",
    "template",
    "template0",
    "template1",
    "admin",
    "root",
    "system",
    "default",
    "information-schema",
    "none",
    "all",
    "tenant",
    "tenants",
    "api",
];

/// The longest role suffix any capability adds (`tenant_<name>_application_manager`).
const LONGEST_SUFFIX: &str = "_application_manager";

// Every derived identifier fits PostgreSQL's 63 bytes, so none is ever truncated.
const _: () =
    assert!("tenant_".len() + MAX_LEN + LONGEST_SUFFIX.len() <= crate::pg::ident::MAX_IDENT_BYTES);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    #[error("name must be {MIN_LEN} to {MAX_LEN} characters long, got {0}")]
    Length(usize),
    #[error("name must start with a lower-case letter a-z")]
    Start,
    #[error("name must end with a lower-case letter or digit")]
    End,
    #[error(
        "name may contain only lower-case letters a-z, digits and single hyphens; found {0:?}"
    )]
    Char(char),
    #[error("name must not contain two hyphens in a row")]
    DoubleHyphen,
    #[error("name {0:?} is reserved")]
    Reserved(String),
}

impl Slug {
    pub fn parse(name: &str) -> Result<Self, SlugError> {
        let len = name.chars().count();
        if !(MIN_LEN..=MAX_LEN).contains(&len) {
            return Err(SlugError::Length(len));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-'))
        {
            return Err(SlugError::Char(c));
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(SlugError::Start);
        }
        if name.ends_with('-') {
            return Err(SlugError::End);
        }
        if name.contains("--") {
            return Err(SlugError::DoubleHyphen);
        }
        if name.starts_with("pg-") || name.starts_with("pg_") || RESERVED.contains(&name) {
            return Err(SlugError::Reserved(name.to_string()));
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A warm pool member's placeholder name, `wp--<key>` (`key`: 20 lower-case hex
    /// digits). Its objects are `tenant_wp__<key>...`: no tenant name contains `--`, so
    /// none of a tenant's names can ever be a member's. Never a tenant's name: only
    /// the warm pool makes these (docs/warm_pool.md).
    pub fn warm_member(key: &str) -> Option<Self> {
        let hex = key.len() == 20
            && key
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        hex.then(|| Self(format!("wp--{key}")))
    }

    /// `tenant_<name>` with hyphens as underscores: the stem of every derived name.
    /// Underscores are not allowed in names, so the mapping cannot collide.
    fn stem(&self) -> String {
        format!("tenant_{}", self.0.replace('-', "_"))
    }

    fn derived(&self, suffix: &str) -> Ident {
        Ident::new(format!("{}{suffix}", self.stem()))
            .expect("derived names fit 63 bytes (checked by tests)")
    }

    pub fn schema(&self) -> Ident {
        self.derived("")
    }

    /// NOLOGIN role that owns every object of the tenant.
    pub fn owner_role(&self) -> Ident {
        self.derived("_owner")
    }

    /// The login role the tenant's application connects as.
    pub fn login_role(&self) -> Ident {
        self.derived("_user")
    }

    /// The tenant's NOLOGIN group role for one of the default roles.
    pub fn group_role(&self, role: super::roles::DefaultRole) -> Ident {
        self.derived(&format!("_{}", role.as_str()))
    }

    /// Every role the tenant itself has (users come from the registry): owner, login
    /// and the default group roles.
    pub fn fixed_roles(&self) -> Vec<Ident> {
        let mut roles = vec![self.login_role(), self.owner_role()];
        roles.extend(super::roles::DefaultRole::ALL.map(|r| self.group_role(r)));
        roles
    }

    /// [`Self::fixed_roles`] as names, as the least-privilege check takes them.
    pub fn fixed_role_names(&self) -> Vec<String> {
        self.fixed_roles()
            .iter()
            .map(|r| r.as_str().to_string())
            .collect()
    }

    /// A tenant user's login role: 48 random bits keep the email out of the catalog.
    pub fn user_role(&self, random_hex: &str) -> Ident {
        self.derived(&format!("_u{random_hex}"))
    }

    /// Advisory-lock key serialising every operation on this name.
    pub fn lock_key(&self) -> String {
        format!("berqenas.tenant:{}", self.0)
    }
}

/// Checked as [`Slug::parse`] checks it.
impl<'de> serde::Deserialize<'de> for Slug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Slug::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A text column read as a tenant name: a stored name that is not one is an error of
/// the read (the store's), never a panic later.
impl<'a> tokio_postgres::types::FromSql<'a> for Slug {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let s = <&str as tokio_postgres::types::FromSql>::from_sql(ty, raw)?;
        Ok(Slug::parse(s)?)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&str as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

impl tokio_postgres::types::ToSql for Slug {
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

/// A tenant name reads as the text it is wherever a `&str` is wanted.
impl std::ops::Deref for Slug {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_names() {
        for n in ["acme", "a-b", "abc", "tenant-42", "x1y"] {
            assert!(Slug::parse(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn refuses_bad_names_with_reason() {
        let cases: &[(&str, SlugError)] = &[
            ("ab", SlugError::Length(2)),
            ("Acme", SlugError::Char('A')),
            ("1abc", SlugError::Start),
            ("abc-", SlugError::End),
            ("a--b", SlugError::DoubleHyphen),
            ("a;drop", SlugError::Char(';')),
            ("pg-x", SlugError::Reserved("pg-x".into())),
            ("public", SlugError::Reserved("public".into())),
            ("ünï", SlugError::Char('ü')),
        ];
        for (name, want) in cases {
            assert_eq!(Slug::parse(name).as_ref(), Err(want), "{name}");
        }
        assert_eq!(Slug::parse(&"a".repeat(33)), Err(SlugError::Length(33)));
    }

    #[test]
    fn longest_derived_name_fits_postgres() {
        let longest = Slug::parse(&"a".repeat(MAX_LEN)).unwrap();
        // Each of these would panic if its name did not fit.
        let roles = longest.fixed_roles();
        assert_eq!(roles.len(), 6);
        assert!(roles
            .iter()
            .any(|r| r.as_str().ends_with("_application_manager")));
        assert!(longest.user_role("0123456789ab").as_str().len() <= 63);
        let name = format!("{}{LONGEST_SUFFIX}", longest.stem());
        assert!(
            name.len() <= crate::pg::ident::MAX_IDENT_BYTES,
            "{} bytes",
            name.len()
        );
        assert_eq!(longest.owner_role().as_str().len(), 7 + 32 + 6);
    }

    #[test]
    fn hyphens_become_underscores() {
        let s = Slug::parse("my-co").unwrap();
        assert_eq!(s.schema().as_str(), "tenant_my_co");
        assert_eq!(s.login_role().as_str(), "tenant_my_co_user");
    }
}
