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
/// follows then fails with the exact privilege that is left. Servers starting together
/// take turns (concurrent GRANT/REVOKE on one database collide).
pub async fn secure_defaults(
    client: &mut deadpool_postgres::Client,
    database: &Ident,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await?;
    let hub = connect_role();
    tx.batch_execute(&super::ensure_nologin_role_sql(&hub))
        .await?;
    tx.batch_execute(&format!(
        "GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {hub}"
    ))
    .await?;
    let mut statements = vec![
        format!("REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC"),
        "REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC".to_string(),
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_string(),
    ];
    statements.extend(advisory_lock_revokes());
    for sql in statements {
        tx.batch_execute("SAVEPOINT hardening").await?;
        match tx.batch_execute(&sql).await {
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                tracing::warn!(statement = %sql, "not permitted to tighten this default");
                tx.batch_execute("ROLLBACK TO SAVEPOINT hardening").await?;
            }
            other => other?,
        }
    }
    tx.commit().await
}

/// Advisory locks belong to a database, and schema- and shared-mode tenants share the
/// control database: a tenant taking the control plane's lock keys could stall the
/// worker or another tenant's operations. So in the control database only the control
/// role may take advisory locks (releasing them stays open to all).
fn advisory_lock_revokes() -> Vec<String> {
    let mut out = Vec::new();
    for try_ in ["", "try_"] {
        for xact in ["", "xact_"] {
            for shared in ["", "_shared"] {
                for args in ["bigint", "integer, integer"] {
                    let f = format!("pg_catalog.pg_{try_}advisory_{xact}lock{shared}({args})");
                    out.push(format!("REVOKE EXECUTE ON FUNCTION {f} FROM PUBLIC"));
                    out.push(format!("GRANT EXECUTE ON FUNCTION {f} TO CURRENT_USER"));
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
