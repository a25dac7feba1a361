//! The one code path that puts a tenant's quotas into PostgreSQL: connection limit,
//! `statement_timeout`, `idle_in_transaction_session_timeout` and `temp_file_limit` on
//! every login role, and in database mode the database's own connection limit.

use deadpool_postgres::GenericClient;

use super::Quotas;
use crate::pg::Ident;
use crate::platform::Platform;
use crate::store::tenants::{Isolation, Tenant};
use crate::tenant::access;

/// The SQL that applies `q` to the tenant's logins (and database).
pub fn limits_sql(p: &Platform, t: &Tenant, logins: &[Ident], q: &Quotas) -> String {
    let limits = q.role_limits(p.caps.superuser);
    let mut sql = String::new();
    for role in logins {
        sql.push_str(&limits.sql(role));
    }
    if t.isolation == Isolation::Database {
        let db = &t.database;
        sql.push_str(&format!(
            "ALTER DATABASE {db} CONNECTION LIMIT {};\n",
            q.max_connections
        ));
    }
    sql
}

/// Re-applies the tenant's quotas in force (as the registry holds them inside the
/// caller's transaction) to PostgreSQL, and returns them.
pub async fn apply_limits(
    p: &Platform,
    c: &impl GenericClient,
    t: &Tenant,
) -> crate::store::Result<Quotas> {
    let q = crate::store::found(crate::store::quotas::effective(c, t.id).await?)?;
    let logins = access::login_roles(c, t).await?;
    c.batch_execute(&limits_sql(p, t, &logins, &q)).await?;
    Ok(q)
}
