//! Shared tables with row-level security: every tenant's rows in one pool schema,
//! each table with a `tenant_id`, RLS enabled and forced. The tenant is derived from
//! the connected role (`current_user`) through a member table, never from a setting
//! the tenant could change: `SET app.tenant_id`, `set_config` spoof nothing, and a
//! `SET ROLE` to any role not mapped to a tenant sees no rows at all.
//!
//! Privileges on the pool tables belong to five pool roles, granted once when the
//! pool is built; a tenant's roles are only made members. Granting per tenant would
//! rewrite the tables' catalog rows on every create, and concurrent creates collide.

use std::fmt::Write;

use crate::names::DefaultRole;
use crate::names::Slug;
use crate::pg::{Ident, Literal};

/// The pool schema, in the control database.
pub const POOL_SCHEMA: &str = "berqenas_shared";
/// Owns the pool's tables; NOLOGIN, and no tenant is ever a member.
pub const POOL_OWNER: &str = "berqenas_shared_owner";
/// Holds SELECT, INSERT, UPDATE, DELETE on every pool table: the tenants' login roles.
pub const POOL_LOGIN: &str = "berqenas_shared_login";

fn ident(s: &str) -> Ident {
    Ident::new(s).expect("static names are valid identifiers")
}

/// The pool role carrying a default role's privileges on the pool tables.
pub fn pool_role(role: DefaultRole) -> Ident {
    ident(&format!("berqenas_shared_{}", role.as_str()))
}

/// Every pool role (created once, at build).
pub fn pool_roles() -> Vec<Ident> {
    let mut roles = vec![ident(POOL_OWNER), ident(POOL_LOGIN)];
    roles.extend(DefaultRole::ALL.map(pool_role));
    roles
}

/// Builds the pool: the template's tables in the pool schema, then `tenant_id`,
/// per-tenant unique constraints, forced RLS and the pool roles' grants. Runs in one
/// transaction; `tables` are the template's tables, read from the catalog after the
/// template ran (the first half of this build).
pub fn build_head_sql(template_sql: &str) -> String {
    let (schema, owner) = (ident(POOL_SCHEMA), ident(POOL_OWNER));
    format!(
        "CREATE SCHEMA {schema} AUTHORIZATION {owner};\n\
         REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;\n\
         SET LOCAL ROLE {owner};\n\
         SET LOCAL search_path = {schema};\n\
         -- Which tenant each role acts for. A role sees only its own row.\n\
         CREATE TABLE members (role name PRIMARY KEY, tenant_id uuid NOT NULL);\n\
         ALTER TABLE members ENABLE ROW LEVEL SECURITY;\n\
         CREATE POLICY own_row ON members FOR SELECT USING (role = current_user);\n\
         CREATE FUNCTION current_tenant() RETURNS uuid LANGUAGE sql STABLE\n\
             SET search_path = pg_catalog\n\
             AS $$ SELECT tenant_id FROM {schema}.members WHERE role = current_user $$;\n\
         {template_sql}\n\
         RESET ROLE;\n"
    )
}

/// The second half of the build, once the template's tables and their unique
/// constraints (name, column list) are known.
pub fn build_tail_sql(tables: &[String], uniques: &[(String, String, Vec<String>)]) -> String {
    let (schema, owner) = (ident(POOL_SCHEMA), ident(POOL_OWNER));
    let mut sql = format!("SET LOCAL ROLE {owner};\n");
    for t in tables {
        let t = Ident::new(t.clone()).expect("catalog names are valid");
        let _ = write!(
            sql,
            "ALTER TABLE {schema}.{t} ADD COLUMN tenant_id uuid NOT NULL DEFAULT {schema}.current_tenant();\n\
             CREATE INDEX ON {schema}.{t} (tenant_id);\n\
             ALTER TABLE {schema}.{t} ENABLE ROW LEVEL SECURITY;\n\
             ALTER TABLE {schema}.{t} FORCE ROW LEVEL SECURITY;\n\
             CREATE POLICY tenant_isolation ON {schema}.{t}\n\
                 USING (tenant_id = {schema}.current_tenant())\n\
                 WITH CHECK (tenant_id = {schema}.current_tenant());\n\
             CREATE POLICY maintenance ON {schema}.{t} TO {owner} USING (true) WITH CHECK (true);\n"
        );
    }
    // A unique constraint over all tenants would let one tenant's rows block, and
    // reveal, another's: each becomes unique per tenant.
    for (table, constraint, columns) in uniques {
        let (t, c) = (ident(table), ident(constraint));
        let columns: Vec<String> = columns.iter().map(|col| ident(col).to_string()).collect();
        let columns = columns.join(", ");
        let _ = writeln!(
            sql,
            "ALTER TABLE {schema}.{t} DROP CONSTRAINT {c}, ADD CONSTRAINT {c} UNIQUE (tenant_id, {columns});"
        );
    }
    sql.push_str("RESET ROLE;\n");
    // Every pool role but the owner reads its own member row and looks up its tenant.
    let users: Vec<String> = pool_roles()
        .iter()
        .filter(|r| r.as_str() != POOL_OWNER)
        .map(|r| r.to_string())
        .collect();
    let users = users.join(", ");
    let _ = writeln!(sql, "GRANT USAGE ON SCHEMA {schema} TO {users};");
    let _ = writeln!(sql, "GRANT SELECT ON {schema}.members TO {users};");
    let _ = writeln!(
        sql,
        "GRANT EXECUTE ON FUNCTION {schema}.current_tenant() TO {users};"
    );
    for t in tables {
        let _ = writeln!(
            sql,
            "GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.{} TO {}, {};",
            ident(t),
            ident(POOL_LOGIN),
            pool_role(DefaultRole::TenantAdmin)
        );
    }
    for role in [
        DefaultRole::ApplicationManager,
        DefaultRole::Developer,
        DefaultRole::Auditor,
    ] {
        for (privileges, table) in role.table_grants() {
            if tables.iter().any(|t| t == table) {
                let _ = writeln!(
                    sql,
                    "GRANT {privileges} ON {schema}.{} TO {};",
                    ident(table),
                    pool_role(role)
                );
            }
        }
    }
    sql
}

/// A shared-mode tenant: its roles, their pool memberships, their member rows. One
/// transaction in the control database; no catalog row is shared with other creates.
pub fn create_sql(
    slug: &Slug,
    tenant_id: &str,
    login_sql: &str,
    grant_owner_to_creator: bool,
) -> String {
    objects_sql(slug, tenant_id, login_sql, true, grant_owner_to_creator)
}

/// A warm pool member (docs/warm_pool.md): what [`create_sql`] makes, under the
/// member's placeholder name and the id its tenant will have, the login role NOLOGIN
/// with no password, limits or `search_path` (the claim sets them in a create's order).
pub fn member_sql(member: &Slug, tenant_id: &str, grant_owner_to_creator: bool) -> String {
    let login = format!("CREATE ROLE {} NOLOGIN;\n", member.login_role());
    objects_sql(member, tenant_id, &login, false, grant_owner_to_creator)
}

/// Gives a claimed member's member rows its tenant's role names (`renames`: from, to).
/// As the pool owner: the rows' table is under row-level security.
pub fn rename_members_sql(renames: &[(Ident, Ident)]) -> String {
    let values: Vec<String> = renames
        .iter()
        .map(|(from, to)| format!("({}, {})", Literal(from.as_str()), Literal(to.as_str())))
        .collect();
    format!(
        "SET LOCAL ROLE {owner};\n\
         UPDATE {schema}.members m SET role = v.new::name FROM (VALUES {values}) v(old, new)\n\
          WHERE m.role = v.old::name;\n\
         RESET ROLE;\n",
        owner = ident(POOL_OWNER),
        schema = ident(POOL_SCHEMA),
        values = values.join(", "),
    )
}

/// Maps a claimed member's member rows (`roles`: its tenant's names, renamed) to the
/// tenant's id, for a member on another server, whose tenant's id was chosen before
/// its claim (a placed create's). The member never logged in: it has no other row.
pub fn rekey_members_sql(roles: &[Ident], tenant_id: &str) -> String {
    let names: Vec<String> = roles
        .iter()
        .map(|r| Literal(r.as_str()).to_string())
        .collect();
    format!(
        "SET LOCAL ROLE {owner};\n\
         UPDATE {schema}.members SET tenant_id = {id}::uuid WHERE role IN ({names});\n\
         RESET ROLE;\n",
        owner = ident(POOL_OWNER),
        schema = ident(POOL_SCHEMA),
        id = Literal(tenant_id),
        names = names.join(", "),
    )
}

fn objects_sql(
    slug: &Slug,
    tenant_id: &str,
    login_sql: &str,
    search_path: bool,
    grant_owner_to_creator: bool,
) -> String {
    let (schema, owner, login) = (ident(POOL_SCHEMA), slug.owner_role(), slug.login_role());
    let hub = format!(
        "{}, {}",
        crate::pg::hardening::connect_role(),
        crate::pg::hardening::temp_role()
    );
    let mut sql = format!("CREATE ROLE {owner} NOLOGIN;\n");
    let mut mapped = vec![login.clone(), owner.clone()];
    for role in DefaultRole::ALL {
        let g = slug.group_role(role);
        let _ = writeln!(
            sql,
            "CREATE ROLE {g} NOLOGIN IN ROLE {}, {hub};",
            pool_role(role)
        );
        mapped.push(g);
    }
    sql.push_str(login_sql);
    let _ = writeln!(sql, "GRANT {}, {hub} TO {login};", ident(POOL_LOGIN));
    if search_path {
        let _ = writeln!(sql, "ALTER ROLE {login} SET search_path = {schema};");
    }
    if grant_owner_to_creator {
        let all: Vec<String> = mapped.iter().map(|r| r.to_string()).collect();
        let _ = writeln!(sql, "GRANT {} TO CURRENT_USER;", all.join(", "));
    }
    let rows: Vec<String> = mapped
        .iter()
        .map(|r| format!("({}, {}::uuid)", Literal(r.as_str()), Literal(tenant_id)))
        .collect();
    let _ = writeln!(
        sql,
        "INSERT INTO {schema}.members (role, tenant_id) VALUES {};",
        rows.join(", ")
    );
    sql
}

/// Maps a new user's role to its tenant (users are created elsewhere).
pub fn map_role_sql(role: &Ident, tenant_id: &str) -> String {
    format!(
        "INSERT INTO {}.members (role, tenant_id) VALUES ({}, {}::uuid);\n",
        ident(POOL_SCHEMA),
        Literal(role.as_str()),
        Literal(tenant_id)
    )
}

/// Forgets a removed user's role.
pub fn unmap_role_sql(role: &Ident) -> String {
    format!(
        "SET LOCAL ROLE {};\nDELETE FROM {}.members WHERE role = {};\nRESET ROLE;\n",
        ident(POOL_OWNER),
        ident(POOL_SCHEMA),
        Literal(role.as_str())
    )
}

/// Removes a tenant's rows from every pool table and its member rows. Runs as the pool
/// owner (the maintenance policy), so a non-superuser control role can do it too.
pub fn purge_rows_sql(tables: &[String], tenant_id: &str) -> String {
    let (schema, owner) = (ident(POOL_SCHEMA), ident(POOL_OWNER));
    let mut sql = format!("SET LOCAL ROLE {owner};\n");
    for t in tables {
        let t = Ident::new(t.clone()).expect("catalog names are valid");
        let _ = writeln!(
            sql,
            "DELETE FROM {schema}.{t} WHERE tenant_id = {}::uuid;",
            Literal(tenant_id)
        );
    }
    let _ = writeln!(
        sql,
        "DELETE FROM {schema}.members WHERE tenant_id = {}::uuid;",
        Literal(tenant_id)
    );
    sql.push_str("RESET ROLE;\n");
    sql
}

/// Removes, from every pool table (`tables`, parents first: deleted children first)
/// and the member table, the rows of the tenants `roles` are members for. As the pool
/// owner. For a tenant known by its roles only (on a server other than `default`,
/// whose undoing and purge are handed its roles).
pub fn purge_roles_rows_sql(tables: &[String], roles: &[&str]) -> String {
    let (schema, owner) = (ident(POOL_SCHEMA), ident(POOL_OWNER));
    let roles: Vec<String> = roles.iter().map(|r| Literal(r).to_string()).collect();
    let of = format!(
        "(SELECT tenant_id FROM {schema}.members WHERE role IN ({}))",
        roles.join(", ")
    );
    let mut sql = format!("SET LOCAL ROLE {owner};\n");
    for t in tables.iter().rev() {
        let t = Ident::new(t.clone()).expect("catalog names are valid");
        let _ = writeln!(sql, "DELETE FROM {schema}.{t} WHERE tenant_id IN {of};");
    }
    let _ = writeln!(sql, "DELETE FROM {schema}.members WHERE tenant_id IN {of};");
    sql.push_str("RESET ROLE;\n");
    sql
}
