//! What PgBouncer's lookup function reads in the control database (the tenants and
//! their users' login roles), and the databases of database-mode tenants it is
//! installed in.

use deadpool_postgres::GenericClient;

use super::Result;

/// The control database's extra condition on a `pg_authid` row `a` in
/// [`crate::pg::pgbouncer`]'s lookup function: no login role of a tenant that is not
/// active or on trial (suspended, deleted, purged, failed, being created). NOLOGIN
/// already keeps them out; this holds even if a role got LOGIN back behind
/// berqenas's back.
pub const LIVE_TENANT_CONDITION: &str = "
     AND NOT EXISTS (SELECT 1 FROM berqenas.tenants t
                      WHERE t.login_role = a.rolname AND t.status NOT IN ('active', 'trial'))
     AND NOT EXISTS (SELECT 1 FROM berqenas.tenant_users u JOIN berqenas.tenants t ON t.id = u.tenant_id
                      WHERE u.db_user = a.rolname AND t.status NOT IN ('active', 'trial'))";

/// The databases of the database-mode tenants on `server` that may still have one
/// (not purged or failed); whether each is there is for the server to say.
pub async fn tenant_databases(c: &impl GenericClient, server: &str) -> Result<Vec<String>> {
    Ok(c.query(
        "SELECT t.database_name::text FROM berqenas.tenants t
              WHERE t.isolation = 'database' AND t.server = $1
                AND t.status NOT IN ('purged', 'failed')
              ORDER BY 1",
        &[&server],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}
