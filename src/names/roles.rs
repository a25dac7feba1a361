//! The default group roles every tenant gets (seed 001 section 3.3), and exactly what
//! each may do. They are NOLOGIN roles named `tenant_<name>_<role>`; tenant users are
//! login roles that are members of one of them.

use std::fmt::Write;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::pg::Ident;

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
    let mut sql = String::new();
    for role in DefaultRole::ALL {
        let r = role_of(role);
        if role == DefaultRole::TenantAdmin {
            let _ = write!(
                sql,
                "GRANT USAGE, CREATE ON SCHEMA {schema} TO {r};\n\
                 GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {r};\n\
                 GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema} TO {r};\n\
                 ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT ALL ON TABLES TO {r};\n\
                 ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT ALL ON SEQUENCES TO {r};\n"
            );
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
