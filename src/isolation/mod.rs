//! Isolation strategies: how a tenant's data is kept apart, rendered as SQL.
//! Schema-per-tenant is implemented; database and shared modes follow the same trait.

pub mod database;
pub mod pool_catalog;
pub mod quota_guard;
pub mod realtime_triggers;
pub mod schema;
pub mod schema_objects;
pub mod shared;
pub mod warm;

use crate::names::Slug;
use crate::pg::{Ident, Literal};

/// Per-role limits PostgreSQL enforces for the tenant's login role.
#[derive(Debug, Clone)]
pub struct RoleLimits {
    pub connection_limit: i32,
    pub statement_timeout_ms: i32,
    pub idle_in_transaction_timeout_ms: i32,
    /// `None` when the connected role may not set `temp_file_limit` (superuser only).
    pub temp_file_limit_kb: Option<i64>,
}

impl RoleLimits {
    pub fn new(
        connection_limit: i32,
        statement_timeout_ms: i32,
        db_quota_bytes: i64,
        may_set_temp: bool,
    ) -> Self {
        Self {
            connection_limit,
            statement_timeout_ms,
            idle_in_transaction_timeout_ms: statement_timeout_ms.saturating_mul(2),
            // temp_file_limit is an int in kB; clamp huge quotas to its maximum.
            temp_file_limit_kb: may_set_temp
                .then(|| (db_quota_bytes / 1024).clamp(1, i32::MAX as i64)),
        }
    }

    /// `ALTER ROLE` statements that (re)apply these limits.
    pub fn sql(&self, role: &Ident) -> String {
        let mut sql = format!(
            "ALTER ROLE {role} CONNECTION LIMIT {};\n\
             ALTER ROLE {role} SET statement_timeout = {};\n\
             ALTER ROLE {role} SET idle_in_transaction_session_timeout = {};\n",
            self.connection_limit, self.statement_timeout_ms, self.idle_in_transaction_timeout_ms
        );
        if let Some(kb) = self.temp_file_limit_kb {
            sql.push_str(&format!("ALTER ROLE {role} SET temp_file_limit = {kb};\n"));
        }
        sql
    }
}

/// What an isolation mode must render. Every statement is idempotent on revert.
pub trait Strategy {
    /// Everything the tenant needs, in one transaction where the mode allows.
    /// `password_verifier` is a SCRAM verifier: the plaintext never reaches the server.
    fn create_sql(&self, p: &Provision<'_>) -> String;

    /// Drops what `create_sql` made, given the roles that exist.
    fn drop_sql(&self, slug: &Slug, existing_roles: &[Ident]) -> String;
}

pub struct Provision<'a> {
    pub slug: &'a Slug,
    pub password_verifier: &'a str,
    pub limits: &'a RoleLimits,
    pub template_sql: &'a str,
    /// A non-superuser with CREATEROLE must be a member of the tenant's roles to act as
    /// them (and later to drop what they own).
    pub grant_owner_to_creator: bool,
}

pub fn create_login_role(role: &Ident, verifier: &str, limits: &RoleLimits) -> String {
    format!(
        "CREATE ROLE {role} LOGIN PASSWORD {};\n{}",
        Literal(verifier),
        limits.sql(role)
    )
}
