//! What a tenant's roles own (or were granted) in databases other than the one a purge
//! runs in: a role cannot be dropped while any database holds something of it, so a
//! purge clears every database PostgreSQL records a dependency in. Tenants reach only
//! their own database today, but a role may have been given objects elsewhere (by an
//! operator, or before a release closed the `postgres` database), and a purge must
//! always finish.

use deadpool_postgres::GenericClient;

use crate::pg::{self, Ident};
use crate::platform::Platform;

/// The databases other than the current one where `roles` own objects or hold
/// privileges (`pg_shdepend`), excluding `skip` (one about to be dropped).
pub async fn databases_holding(
    c: &impl GenericClient,
    roles: &[&str],
    skip: Option<&str>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT DISTINCT d.datname::text FROM pg_catalog.pg_shdepend s
               JOIN pg_catalog.pg_database d ON d.oid = s.dbid
               JOIN pg_catalog.pg_roles r ON r.oid = s.refobjid
              WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
                AND r.rolname = ANY($1) AND d.datname <> pg_catalog.current_database()
                AND ($2::text IS NULL OR d.datname <> $2) AND d.datallowconn
              ORDER BY 1",
        &[&roles, &skip],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// `DROP OWNED BY <roles> CASCADE` in every other database that holds something of
/// theirs; the caller then drops the roles in its own database.
pub async fn drop_owned_elsewhere(
    p: &Platform,
    c: &impl GenericClient,
    roles: &[Ident],
    skip: Option<&str>,
) -> Result<Vec<String>, pg::PgError> {
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    let databases = databases_holding(c, &names, skip).await?;
    if databases.is_empty() {
        return Ok(databases);
    }
    let list: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    for db in &databases {
        let mut config = p.config.clone();
        config.dbname(db);
        let other = pg::connect(&config).await?;
        other
            .batch_execute(&format!("DROP OWNED BY {} CASCADE", list.join(", ")))
            .await?;
        tracing::warn!(database = %db, roles = ?names, "dropped what a tenant's roles owned in another database");
    }
    Ok(databases)
}
