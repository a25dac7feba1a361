//! The SQL of the warm pool (docs/warm_pool.md) per isolation mode: a member made
//! under a placeholder name, a member claimed (renamed to a tenant's names and given
//! its login), a stale member dropped. Each runs in one transaction.

use super::{database, schema, shared, RoleLimits, Strategy};
use crate::names::Slug;
use crate::pg::{Ident, Literal};

/// The isolation modes that have a warm pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Schema,
    Shared,
    /// A member is its roles (made here, in the control database's transaction) and
    /// a database cloned from the template (made by the refill's later steps).
    Database,
}

/// A member's objects: what a create of `mode` makes, under `member`'s name, all of
/// it NOLOGIN. `tenant_id`: the id its tenant will have (shared mode maps its roles
/// to it).
pub fn member_sql(
    mode: Mode,
    member: &Slug,
    tenant_id: &str,
    template_sql: &str,
    grant_owner_to_creator: bool,
) -> String {
    match mode {
        Mode::Shared => shared::member_sql(member, tenant_id, grant_owner_to_creator),
        Mode::Database => database::member_roles_sql(member, grant_owner_to_creator),
        Mode::Schema => schema::member_sql(member, template_sql, grant_owner_to_creator),
    }
}

/// The `application_name` of a session opened ahead in a database-mode member's
/// database, for the claim that takes the member (`workflows::warm_pool_holds`).
pub const HOLD_APPLICATION: &str = "berqenas-warm-hold";

/// Ends every session held ahead in `member`'s database, waiting (at most 2 s) until
/// each has left it: `ALTER DATABASE ... RENAME` refuses while anyone is in the
/// database. Another server's (or this one's) held session, never a claim's own: a
/// claim renames its session's `application_name` before its work, and waits for it
/// to leave (`tenant::database_claim::left`).
pub fn end_holds_sql(member: &Slug) -> String {
    format!(
        // Read afresh: a transaction keeps its first reading of the view.
        "SELECT pg_catalog.pg_stat_clear_snapshot();\n\
         SELECT pg_catalog.pg_terminate_backend(pid, 2000) FROM pg_catalog.pg_stat_activity \
          WHERE datname = {} AND application_name = {} AND pid <> pg_catalog.pg_backend_pid();\n",
        Literal(member.schema().as_str()),
        Literal(HOLD_APPLICATION),
    )
}

/// A member's login role given its password at the refill, still NOLOGIN: PostgreSQL
/// checks every password it is given against the empty one (a PBKDF2 of the
/// verifier's rounds), and the refill pays that instead of the claim.
pub fn member_password_sql(member: &Slug, verifier: &str) -> String {
    format!(
        "ALTER ROLE {} PASSWORD {};\n",
        member.login_role(),
        Literal(verifier)
    )
}

/// The claim: the member's schema and roles renamed to the tenant's, then its login
/// role given what a create gives it, in a create's order (the login, the limits,
/// then `search_path`), so the catalog reads the same as a tenant made from scratch.
/// `verifier`: a password to set with the login, for a member that has none yet
/// (made before members were given theirs at the refill).
pub fn claim_sql(
    mode: Mode,
    member: &Slug,
    tenant: &Slug,
    verifier: Option<&str>,
    limits: &RoleLimits,
) -> String {
    let mut sql = String::new();
    match mode {
        Mode::Schema => sql.push_str(&format!(
            "ALTER SCHEMA {} RENAME TO {};\n",
            member.schema(),
            tenant.schema()
        )),
        // Only sessions held ahead are ever on a member's database: ended, it can be
        // renamed here; the schema inside it is renamed by the create's `configure`
        // step. (A claim in one transaction renames the database last instead.)
        Mode::Database => sql.push_str(&rename_database_sql(member, tenant, limits)),
        Mode::Shared => {}
    }
    sql.push_str(&claim_roles_sql(mode, member, tenant, verifier, limits));
    sql
}

/// A database-mode member's database renamed to the tenant's, with the plan's
/// connection limit: it needs no session on the database, and the sessions held ahead
/// there are ended first.
pub fn rename_database_sql(member: &Slug, tenant: &Slug, limits: &RoleLimits) -> String {
    format!(
        "{}ALTER DATABASE {} RENAME TO {};\nALTER DATABASE {} CONNECTION LIMIT {};\n",
        end_holds_sql(member),
        member.schema(),
        tenant.schema(),
        tenant.schema(),
        limits.connection_limit,
    )
}

/// The part of [`claim_sql`] on roles (and shared mode's member rows): the six roles
/// renamed, then the login role's `LOGIN`, limits and `search_path`.
pub fn claim_roles_sql(
    mode: Mode,
    member: &Slug,
    tenant: &Slug,
    verifier: Option<&str>,
    limits: &RoleLimits,
) -> String {
    let mut sql = String::new();
    let renames: Vec<(Ident, Ident)> = member
        .fixed_roles()
        .into_iter()
        .zip(tenant.fixed_roles())
        .collect();
    for (from, to) in &renames {
        sql.push_str(&format!("ALTER ROLE {from} RENAME TO {to};\n"));
    }
    let login = tenant.login_role();
    match verifier {
        Some(v) => sql.push_str(&format!(
            "ALTER ROLE {login} LOGIN PASSWORD {};\n",
            Literal(v)
        )),
        None => sql.push_str(&format!("ALTER ROLE {login} LOGIN;\n")),
    }
    sql.push_str(&limits.sql(&login));
    let search_path = match mode {
        Mode::Shared => Ident::new(shared::POOL_SCHEMA).expect("a valid name"),
        _ => tenant.schema(),
    };
    sql.push_str(&format!(
        "ALTER ROLE {login} SET search_path = {search_path};\n"
    ));
    if mode == Mode::Shared {
        sql.push_str(&shared::rename_members_sql(&renames));
    }
    sql
}

/// Drops a member (stale, or recycled): its schema or member rows, and its roles.
pub fn drop_sql(mode: Mode, member: &Slug, tenant_id: &str) -> String {
    let roles = member.fixed_roles();
    match mode {
        Mode::Shared => {
            let mut sql = shared::purge_rows_sql(&[], tenant_id);
            sql.push_str(&format!(
                "DROP OWNED BY {};\n",
                roles
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            for r in &roles {
                sql.push_str(&format!("DROP ROLE IF EXISTS {r};\n"));
            }
            sql
        }
        // Its database is dropped first, outside any transaction.
        Mode::Database => schema::SchemaPerTenant.drop_sql(member, &roles),
        Mode::Schema => schema::SchemaPerTenant.drop_sql(member, &roles),
    }
}

/// The schema inside a claimed member's database, renamed to the tenant's (run in
/// that database). Everything else in it (owners, grants, default privileges) names
/// roles by OID and followed their renames.
pub fn rename_schema_sql(member: &Slug, tenant: &Slug) -> String {
    format!(
        "ALTER SCHEMA {} RENAME TO {};",
        member.schema(),
        tenant.schema()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_renames_every_role_and_sets_the_login_last() {
        let member = Slug::warm_member("0123456789abcdef0123").unwrap();
        let tenant = Slug::parse("acme").unwrap();
        let limits = RoleLimits::new(5, 1000, 1 << 20, true);
        let sql = claim_sql(Mode::Schema, &member, &tenant, Some("SCRAM-x"), &limits);
        assert_eq!(member.schema().as_str(), "tenant_wp__0123456789abcdef0123");
        assert!(sql.starts_with(&format!(
            "ALTER SCHEMA {} RENAME TO {};\n",
            member.schema(),
            tenant.schema()
        )));
        for (from, to) in member.fixed_roles().iter().zip(tenant.fixed_roles()) {
            assert!(sql.contains(&format!("ALTER ROLE {from} RENAME TO {to};")));
        }
        let login = sql.find("LOGIN PASSWORD").unwrap();
        let limit = sql.find("statement_timeout").unwrap();
        let path = sql.find("search_path").unwrap();
        assert!(login < limit && limit < path, "{sql}");
        assert!(!sql.contains("members"));
        let shared = claim_sql(Mode::Shared, &member, &tenant, None, &limits);
        assert!(!shared.contains("ALTER SCHEMA"));
        assert!(shared.contains(".members m SET role"), "{shared}");
        // A member given its password at the refill: the claim only grants LOGIN.
        assert!(shared.contains(&format!("ALTER ROLE {} LOGIN;", tenant.login_role())));
        assert!(!shared.contains("PASSWORD"), "{shared}");
    }

    #[test]
    fn a_member_name_is_never_a_tenant_name() {
        let member = Slug::warm_member("0123456789abcdef0123").unwrap();
        assert!(Slug::parse(member.as_str()).is_err());
        assert!(Slug::warm_member("not-hex").is_none());
        assert!(Slug::warm_member("0123456789ABCDEF0123").is_none());
    }
}
