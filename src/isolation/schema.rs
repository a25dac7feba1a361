//! Schema per tenant: `tenant_<name>` owned by a NOLOGIN owner role, in the control
//! plane's database. All of it is transactional, so creation is one transaction.

use super::{create_login_role, Provision, Strategy};
use crate::names::roles::{self, DefaultRole};
use crate::names::Slug;
use crate::pg::Ident;

pub struct SchemaPerTenant;

impl Strategy for SchemaPerTenant {
    fn create_sql(&self, p: &Provision<'_>) -> String {
        let login = create_login_role(&p.slug.login_role(), p.password_verifier, p.limits);
        objects_sql(
            p.slug,
            &login,
            true,
            p.template_sql,
            p.grant_owner_to_creator,
        )
    }

    fn drop_sql(&self, slug: &Slug, existing_roles: &[Ident]) -> String {
        let mut sql = format!("DROP SCHEMA IF EXISTS {} CASCADE;\n", slug.schema());
        if !existing_roles.is_empty() {
            sql.push_str(&format!("DROP OWNED BY {};\n", list(existing_roles)));
            for role in existing_roles {
                sql.push_str(&format!("DROP ROLE IF EXISTS {role};\n"));
            }
        }
        sql
    }
}

/// A warm pool member (docs/warm_pool.md): everything [`SchemaPerTenant::create_sql`]
/// makes, under the member's placeholder name, but the login role NOLOGIN with no
/// password, limits or `search_path`: the claim sets those, in the same order a
/// create does ([`super::warm::claim_sql`]).
pub fn member_sql(member: &Slug, template_sql: &str, grant_owner_to_creator: bool) -> String {
    let login = format!("CREATE ROLE {} NOLOGIN;\n", member.login_role());
    objects_sql(member, &login, false, template_sql, grant_owner_to_creator)
}

/// The roles, the schema, its privileges and the template. `login_sql` makes the
/// login role; `search_path`: whether the login role's `search_path` is set here.
fn objects_sql(
    slug: &Slug,
    login_sql: &str,
    search_path: bool,
    template_sql: &str,
    grant_owner_to_creator: bool,
) -> String {
    let schema = slug.schema();
    let owner = slug.owner_role();
    let login = slug.login_role();
    let groups: Vec<Ident> = DefaultRole::ALL
        .iter()
        .map(|r| slug.group_role(*r))
        .collect();
    let group_list = list(&groups);
    let mut sql = format!("CREATE ROLE {owner} NOLOGIN;\n");
    for g in &groups {
        sql.push_str(&format!("CREATE ROLE {g} NOLOGIN;\n"));
    }
    sql.push_str(login_sql);
    if grant_owner_to_creator {
        sql.push_str(&format!(
            "GRANT {owner}, {login}, {group_list} TO CURRENT_USER;\n"
        ));
    }
    // PUBLIC has no CONNECT or TEMP here; the tenant's roles get them through the
    // roles that hold them (see pg::hardening; a disk block takes TEMP away).
    sql.push_str(&format!(
        "GRANT {}, {} TO {login}, {group_list};\n",
        crate::pg::hardening::connect_role(),
        crate::pg::hardening::temp_role()
    ));
    if search_path {
        sql.push_str(&format!("ALTER ROLE {login} SET search_path = {schema};\n"));
    }
    sql.push_str(&schema_sql(slug, template_sql));
    sql
}

/// The tenant's schema as a schema-mode create makes it, its roles there already:
/// owned by its owner, the login's usage and default privileges, the template run as
/// the owner, the group roles' grants. Also what a shared-mode tenant moving into
/// schema mode gets (docs/moves.md).
pub fn schema_sql(slug: &Slug, template_sql: &str) -> String {
    let (schema, owner, login) = (slug.schema(), slug.owner_role(), slug.login_role());
    // Function bodies are not checked again here: this template's were when its
    // template database was built at start (`tenant::database_mode::ensure_template`),
    // and checking one looks up every function of its name in every schema, which
    // grows with the tenants (each has the template's functions).
    format!(
        "CREATE SCHEMA {schema} AUTHORIZATION {owner};\n\
         REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;\n\
         GRANT USAGE ON SCHEMA {schema} TO {login};\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {login};\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {login};\n\
         SET LOCAL ROLE {owner};\n\
         SET LOCAL search_path = {schema};\n\
         SET LOCAL check_function_bodies = off;\n\
         {template_sql}\n\
         {grants}\
         RESET ROLE;\n\
         SET LOCAL search_path TO DEFAULT;\n\
         SET LOCAL check_function_bodies TO DEFAULT;\n",
        grants = roles::new_schema_grants_sql(&schema, &owner, |r| slug.group_role(r)),
    )
}

fn list(roles: &[Ident]) -> String {
    roles
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
