//! The default group roles every tenant gets (seed 001 section 3.3), and exactly what
//! each may do. They are NOLOGIN roles named `tenant_<name>_<role>`; tenant users are
//! login roles that are members of one of them.

use std::fmt::Write;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::pg::{Ident, Literal};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DefaultRole {
    /// All privileges on the tenant's objects; may create tables in its schema.
    TenantAdmin,
    /// Manages applications, resources and deployments; appends to user_activity.
    ApplicationManager,
    /// Reads applications, resources and deployments; appends to user_activity.
    Developer,
    /// Reads everything, changes nothing.
    Auditor,
}

crate::pg::from_text_column!(DefaultRole, "default role");

/// (privileges, table) as seed 001 lists them, for the default template's tables.
type Grants = &'static [(&'static str, &'static str)];

impl DefaultRole {
    pub const ALL: [DefaultRole; 4] = [
        DefaultRole::TenantAdmin,
        DefaultRole::ApplicationManager,
        DefaultRole::Developer,
        DefaultRole::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DefaultRole::TenantAdmin => "tenant_admin",
            DefaultRole::ApplicationManager => "application_manager",
            DefaultRole::Developer => "developer",
            DefaultRole::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub(crate) fn table_grants(self) -> Grants {
        match self {
            DefaultRole::TenantAdmin => &[],
            DefaultRole::ApplicationManager => &[
                ("SELECT, INSERT, UPDATE, DELETE", "applications"),
                ("SELECT, INSERT, UPDATE, DELETE", "resources"),
                ("SELECT, INSERT, UPDATE, DELETE", "deployments"),
                ("SELECT, INSERT", "user_activity"),
            ],
            DefaultRole::Developer => &[
                ("SELECT", "applications"),
                ("SELECT", "resources"),
                ("SELECT", "deployments"),
                ("SELECT, INSERT", "user_activity"),
            ],
            DefaultRole::Auditor => &[
                ("SELECT", "applications"),
                ("SELECT", "resources"),
                ("SELECT", "deployments"),
                ("SELECT", "user_activity"),
            ],
        }
    }
}

/// Grants of every default role in `schema`. Runs as the tenant's owner role, after
/// the template, so the tables exist and the owner is the grantor.
pub fn grants_sql(schema: &Ident, owner: &Ident, role_of: impl Fn(DefaultRole) -> Ident) -> String {
    let admin = role_of(DefaultRole::TenantAdmin);
    let mut sql = format!(
        "GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {admin};\n\
         GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema} TO {admin};\n"
    );
    sql.push_str(&admin_defaults_sql(schema, owner, &admin));
    sql.push_str(&table_grants_sql(schema, role_of));
    sql
}

/// [`grants_sql`] for a schema made in the same transaction, found through
/// `pg_depend`'s index on the schema rather than `GRANT ... ON ALL TABLES IN SCHEMA`,
/// which finds a schema's tables by reading all of `pg_class`: 10 to 20 % of a
/// create's time at 5,000 tenants, and growing with them. The grants and their order
/// are the same.
pub fn new_schema_grants_sql(
    schema: &Ident,
    owner: &Ident,
    role_of: impl Fn(DefaultRole) -> Ident,
) -> String {
    let admin = role_of(DefaultRole::TenantAdmin);
    let (schema_name, admin_name) = (schema.to_string(), admin.to_string());
    let (schema_lit, admin_lit) = (Literal(&schema_name), Literal(&admin_name));
    let mut sql = format!(
        "DO $grants$ DECLARE r record; BEGIN\n\
           FOR r IN SELECT c.oid::regclass AS rel, c.relkind FROM pg_catalog.pg_depend d\n\
                      JOIN pg_catalog.pg_class c ON c.oid = d.objid\n\
                     WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass\n\
                       AND d.refobjid = {schema_lit}::pg_catalog.regnamespace\n\
                       AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0\n\
                       AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')\n\
                     ORDER BY c.relkind = 'S', c.oid LOOP\n\
             EXECUTE pg_catalog.format('GRANT ALL ON %s %s TO %s',\n\
                 CASE r.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.rel, {admin_lit});\n\
           END LOOP;\n\
         END $grants$;\n"
    );
    sql.push_str(&admin_defaults_sql(schema, owner, &admin));
    sql.push_str(&table_grants_sql(schema, role_of));
    sql
}

fn admin_defaults_sql(schema: &Ident, owner: &Ident, admin: &Ident) -> String {
    format!(
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT ALL ON TABLES TO {admin};\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT ALL ON SEQUENCES TO {admin};\n"
    )
}

/// The schema privileges of every default role and the seed's per-table grants of
/// the roles below the tenant admin.
fn table_grants_sql(schema: &Ident, role_of: impl Fn(DefaultRole) -> Ident) -> String {
    let mut sql = String::new();
    for role in DefaultRole::ALL {
        let r = role_of(role);
        if role == DefaultRole::TenantAdmin {
            let _ = writeln!(sql, "GRANT USAGE, CREATE ON SCHEMA {schema} TO {r};");
            continue;
        }
        let _ = writeln!(sql, "GRANT USAGE ON SCHEMA {schema} TO {r};");
        for (privileges, table) in role.table_grants() {
            let table = Ident::new(*table).expect("static table names are valid");
            let _ = writeln!(sql, "GRANT {privileges} ON {schema}.{table} TO {r};");
        }
    }
    sql
}
