//! Least privilege, enforced and checked. At start berqenas takes from PUBLIC what
//! PostgreSQL gives it by default (CONNECT and TEMP on the tenant database and
//! template1, CREATE on `public`); then, at start and after every provisioning, it
//! checks that no tenant role holds an elevated attribute or a `pg_*` membership and
//! that none can reach template1. A violation is an error, never a warning.

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use super::Ident;

#[derive(Debug, thiserror::Error)]
pub enum HardeningError {
    #[error("least-privilege check failed: {}", .0.join("; "))]
    Violations(Vec<String>),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

/// Takes PUBLIC's default privileges away. Statements the connected role may not run
/// (template1 belongs to the bootstrap superuser) are skipped here; the check that
/// follows then fails with the exact privilege that is left.
///
/// Only what is still granted is revoked, so a restart rewrites no catalog row.
/// Servers of one control database take turns (an advisory lock); servers of two
/// control databases in one cluster cannot, because advisory locks belong to a
/// database while template1's row is shared by the cluster, so a collision there
/// ("tuple concurrently updated") is retried.
pub async fn secure_defaults(
    client: &mut deadpool_postgres::Client,
    database: &Ident,
) -> Result<(), tokio_postgres::Error> {
    let mut attempt = 0;
    loop {
        match secure_defaults_once(client, database).await {
            Err(e) if attempt < COLLISION_RETRIES && is_catalog_collision(&e) => {
                attempt += 1;
                tracing::debug!(attempt, error = %e, "catalog row changed concurrently; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            other => return other,
        }
    }
}

const COLLISION_RETRIES: u64 = 8;

/// PostgreSQL reports two concurrent GRANT/REVOKE on one catalog row as an internal
/// error rather than a serialization failure.
fn is_catalog_collision(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| {
        d.code() == &SqlState::INTERNAL_ERROR && d.message().starts_with("tuple concurrently")
    })
}

async fn secure_defaults_once(
    client: &mut deadpool_postgres::Client,
    database: &Ident,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await?;
    let hub = connect_role();
    tx.batch_execute(&super::ensure_nologin_role_sql(&hub))
        .await?;
    let db = database.as_str();
    let mut steps = vec![
        (
            public_has_database(db),
            format!("REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC"),
        ),
        (
            public_has_database("template1"),
            "REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC".to_string(),
        ),
        (
            "SELECT has_schema_privilege('public', 'public', 'CREATE')".to_string(),
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_string(),
        ),
    ];
    steps.extend(advisory_lock_steps());
    // Each step: a query telling whether it is still needed, then the statement.
    for (needed, sql) in steps {
        if !tx.query_one(&needed, &[]).await?.get::<_, bool>(0) {
            continue;
        }
        tx.batch_execute("SAVEPOINT hardening").await?;
        match tx.batch_execute(&sql).await {
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                tracing::warn!(statement = %sql, "not permitted to tighten this default");
                tx.batch_execute("ROLLBACK TO SAVEPOINT hardening").await?;
            }
            other => other?,
        }
    }
    // After the revokes: until then the hub role's CONNECT may come from PUBLIC.
    let hub_lacks = !tx
        .query_one(
            "SELECT has_database_privilege($1, $2, 'CONNECT')
                    AND has_database_privilege($1, $2, 'TEMPORARY')",
            &[&hub.as_str(), &db],
        )
        .await?
        .get::<_, bool>(0);
    if hub_lacks {
        tx.batch_execute(&format!(
            "GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {hub}"
        ))
        .await?;
    }
    tx.commit().await
}

/// A query telling whether PUBLIC still has CONNECT or TEMPORARY on a database.
fn public_has_database(db: &str) -> String {
    let db = super::Literal(db);
    format!(
        "SELECT has_database_privilege('public', {db}, 'CONNECT')
                OR has_database_privilege('public', {db}, 'TEMPORARY')"
    )
}

/// Advisory locks belong to a database, and schema- and shared-mode tenants share the
/// control database: a tenant taking the control plane's lock keys could stall the
/// worker or another tenant's operations. So in the control database only the control
/// role may take advisory locks (releasing them stays open to all).
fn advisory_lock_steps() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for try_ in ["", "try_"] {
        for xact in ["", "xact_"] {
            for shared in ["", "_shared"] {
                for args in ["bigint", "integer, integer"] {
                    let f = format!("pg_catalog.pg_{try_}advisory_{xact}lock{shared}({args})");
                    let lit = super::Literal(&f);
                    out.push((
                        format!("SELECT has_function_privilege('public', {lit}, 'EXECUTE')"),
                        format!("REVOKE EXECUTE ON FUNCTION {f} FROM PUBLIC"),
                    ));
                    out.push((
                        format!(
                            "SELECT NOT has_function_privilege(current_user, {lit}, 'EXECUTE')"
                        ),
                        format!("GRANT EXECUTE ON FUNCTION {f} TO CURRENT_USER"),
                    ));
                }
            }
        }
    }
    out
}

/// The one role holding CONNECT and TEMP on the database schema-mode tenants live in;
/// every tenant role is a member. Granting on the database per tenant would rewrite
/// its one catalog row on every create, and concurrent creates would collide.
pub const CONNECT_ROLE: &str = "berqenas_tenant_connect";

pub fn connect_role() -> Ident {
    Ident::new(CONNECT_ROLE).expect("a valid identifier")
}

/// Any constant; only servers tightening defaults at the same time contend for it.
const LOCK: i64 = 0x6265_7271_6861_7264; // "berqhard"

/// Checks the given tenant roles and the current database's PUBLIC privileges.
pub async fn check(c: &impl GenericClient, roles: &[String]) -> Result<(), HardeningError> {
    let stmt = c.prepare_cached(CHECK_SQL).await?;
    verdict(&c.query(&stmt, &[&roles]).await?)
}

/// [`check`] on a plain connection (a tenant database, outside the pool).
pub async fn check_client(
    c: &tokio_postgres::Client,
    roles: &[String],
) -> Result<(), HardeningError> {
    verdict(&c.query(CHECK_SQL, &[&roles]).await?)
}

const CHECK_SQL: &str = "SELECT r.rolname::text,
                    array_remove(ARRAY[
                        CASE WHEN r.rolsuper THEN 'SUPERUSER' END,
                        CASE WHEN r.rolcreatedb THEN 'CREATEDB' END,
                        CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END,
                        CASE WHEN r.rolreplication THEN 'REPLICATION' END,
                        CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END,
                        CASE WHEN has_database_privilege(r.oid, 'template1', 'CONNECT') THEN 'CONNECT on template1' END
                    ], NULL)
                    || ARRAY(SELECT 'member of ' || g.rolname FROM pg_roles g
                              WHERE g.rolname LIKE 'pg\\_%' AND pg_has_role(r.oid, g.oid, 'MEMBER'))
               FROM pg_roles r WHERE r.rolname = ANY($1)
             UNION ALL
             SELECT 'PUBLIC', array_remove(ARRAY[
                        CASE WHEN has_schema_privilege('public', 'public', 'CREATE') THEN 'CREATE on schema public' END,
                        CASE WHEN has_database_privilege('public', current_database(), 'CONNECT')
                             THEN 'CONNECT on database ' || current_database() END
                    ], NULL)";

fn verdict(rows: &[tokio_postgres::Row]) -> Result<(), HardeningError> {
    let violations: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let found: Vec<String> = r.get(1);
            (!found.is_empty())
                .then(|| format!("{} has {}", r.get::<_, String>(0), found.join(", ")))
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(HardeningError::Violations(violations))
    }
}
