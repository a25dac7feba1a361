//! Database per tenant: `tenant_<name>` cloned from a template database that berqenas
//! keeps at the latest tenant template (PostgreSQL 15's WAL_LOG clone: no migration
//! per tenant). The database belongs to the control-plane role; the tenant's objects
//! to its NOLOGIN owner role; CONNECT and TEMP only to the tenant's roles.

use std::fmt::Write;

use super::{create_login_role, RoleLimits};
use crate::names::roles::{self, DefaultRole};
use crate::names::Slug;
use crate::pg::Ident;

/// The template every tenant database is cloned from: one per control database, so
/// two installations on one server never share (or drop) each other's.
pub fn template_db(control_db: &str) -> Ident {
    let name = format!("{control_db}_tenant_template");
    Ident::new(name).unwrap_or_else(|_| {
        use sha2::{Digest, Sha256};
        let digest = hex::encode(Sha256::digest(control_db.as_bytes()));
        Ident::new(format!("berqenas_tenant_template_{}", &digest[..16])).expect("fits")
    })
}
/// Owns the objects in the template; a clone's objects pass to the tenant's owner.
pub const TEMPLATE_OWNER: &str = "berqenas_template_owner";
/// The schema in the template, renamed to `tenant_<name>` in each clone.
pub const TEMPLATE_SCHEMA: &str = "tenant";

fn ident(s: &str) -> Ident {
    Ident::new(s).expect("static names are valid identifiers")
}

/// Builds the template's contents; runs inside the (new, empty) template database.
pub fn template_sql(template_sql: &str, grant_owner_to_creator: bool) -> String {
    let (owner, schema) = (ident(TEMPLATE_OWNER), ident(TEMPLATE_SCHEMA));
    let mut sql = String::new();
    if grant_owner_to_creator {
        let _ = writeln!(sql, "GRANT {owner} TO CURRENT_USER;");
    }
    let _ = write!(
        sql,
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;\n\
         {large_objects}\
         {realtime_triggers}\n\
         CREATE SCHEMA {schema} AUTHORIZATION {owner};\n\
         REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;\n\
         SET ROLE {owner};\n\
         SET search_path = {schema};\n\
         {template_sql}\n\
         RESET ROLE;\n\
         RESET search_path;\n",
        // Functions of pg_catalog belong to the bootstrap superuser: only a superuser
        // control role can take them from PUBLIC (else the operator's DBA must).
        large_objects = if grant_owner_to_creator {
            String::new()
        } else {
            crate::pg::hardening::revoke_large_objects_sql()
        },
        realtime_triggers = super::realtime_triggers::INSTALL_SQL,
    );
    sql
}

/// Roles first, in the control database, in one transaction (the registry row with
/// them): owner, default group roles, login role.
pub fn roles_sql(
    slug: &Slug,
    verifier: &str,
    limits: &RoleLimits,
    grant_owner_to_creator: bool,
) -> String {
    let owner = slug.owner_role();
    let login = slug.login_role();
    let groups: Vec<Ident> = DefaultRole::ALL
        .iter()
        .map(|r| slug.group_role(*r))
        .collect();
    let mut sql = format!("CREATE ROLE {owner} NOLOGIN;\n");
    for g in &groups {
        let _ = writeln!(sql, "CREATE ROLE {g} NOLOGIN;");
    }
    sql.push_str(&create_login_role(&login, verifier, limits));
    let _ = writeln!(
        sql,
        "ALTER ROLE {login} SET search_path = {};",
        slug.schema()
    );
    if grant_owner_to_creator {
        let all: Vec<String> = std::iter::once(&owner)
            .chain(&groups)
            .chain([&login])
            .map(|r| r.to_string())
            .collect();
        let _ = writeln!(sql, "GRANT {} TO CURRENT_USER;", all.join(", "));
    }
    sql
}

/// A warm pool member's roles (docs/warm_pool.md): [`roles_sql`] under the member's
/// placeholder names, the login role NOLOGIN with no password, limits or
/// `search_path` (the claim sets those, in the order [`roles_sql`] does).
pub fn member_roles_sql(member: &Slug, grant_owner_to_creator: bool) -> String {
    let owner = member.owner_role();
    let login = member.login_role();
    let groups: Vec<Ident> = DefaultRole::ALL
        .iter()
        .map(|r| member.group_role(*r))
        .collect();
    let mut sql = format!("CREATE ROLE {owner} NOLOGIN;\n");
    for g in &groups {
        let _ = writeln!(sql, "CREATE ROLE {g} NOLOGIN;");
    }
    let _ = writeln!(sql, "CREATE ROLE {login} NOLOGIN;");
    if grant_owner_to_creator {
        let all: Vec<String> = std::iter::once(&owner)
            .chain(&groups)
            .chain([&login])
            .map(|r| r.to_string())
            .collect();
        let _ = writeln!(sql, "GRANT {} TO CURRENT_USER;", all.join(", "));
    }
    sql
}

/// A warm pool member's clone: no connection limit until its claim sets the plan's
/// (the member's roles cannot log in; only the control role connects, to configure
/// it). Cannot run in a transaction.
pub fn member_clone_sql(member: &Slug, template: &Ident) -> String {
    format!(
        "CREATE DATABASE {} TEMPLATE {template} STRATEGY WAL_LOG",
        member.schema(),
    )
}

/// The clone. Cannot run in a transaction.
pub fn clone_sql(slug: &Slug, template: &Ident, connection_limit: i32) -> String {
    format!(
        "CREATE DATABASE {} TEMPLATE {template} STRATEGY WAL_LOG CONNECTION LIMIT {connection_limit}",
        slug.schema(),
    )
}

/// Makes the clone the tenant's, inside the new database, in one transaction.
pub fn configure_sql(slug: &Slug) -> String {
    let (db, schema, owner, login) = (
        slug.schema(),
        slug.schema(),
        slug.owner_role(),
        slug.login_role(),
    );
    let groups: Vec<String> = DefaultRole::ALL
        .iter()
        .map(|r| slug.group_role(*r).to_string())
        .collect();
    let groups = groups.join(", ");
    format!(
        "ALTER SCHEMA {tmpl} RENAME TO {schema};\n\
         REASSIGN OWNED BY {tmpl_owner} TO {owner};\n\
         REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC;\n\
         GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {login}, {groups};\n\
         GRANT USAGE ON SCHEMA {schema} TO {login};\n\
         SET LOCAL ROLE {owner};\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {login};\n\
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {login};\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {login};\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {login};\n\
         {grants}\
         RESET ROLE;\n",
        tmpl = ident(TEMPLATE_SCHEMA),
        tmpl_owner = ident(TEMPLATE_OWNER),
        grants = roles::grants_sql(&schema, &owner, |r| slug.group_role(r)),
    )
}

/// Drops the tenant's database, ending its sessions. Cannot run in a transaction.
pub fn drop_database_sql(slug: &Slug) -> String {
    format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", slug.schema())
}
