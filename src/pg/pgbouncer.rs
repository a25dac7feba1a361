//! PgBouncer in front of the tenants' server: the lookup function its `auth_query`
//! calls in each database tenants connect to, and the admin console berqenas asks to
//! drop a suspended tenant's pooled connections.
//!
//! PgBouncer 1.18 (Debian 12) runs `auth_query` in the database the client asks for,
//! as `auth_user`; so the function is installed in every database tenants use (the
//! control database, the template database-mode tenants are cloned from, and every
//! tenant database), and `auth_user` gets CONNECT on each. The function is SECURITY
//! DEFINER (it reads `pg_authid`, which only a superuser may), its `search_path` is
//! pinned, only `auth_user` may execute it, and it answers nothing for a role that
//! cannot log in (suspended, deleted and purged tenants' roles are NOLOGIN or gone),
//! a superuser, a replication or BYPASSRLS role, or the control role itself.

use std::time::Duration;

use super::{Ident, Literal};
use crate::secrets::{ExposeSecret, SecretString};

/// The schema the lookup function lives in (owned by the control role; only
/// `auth_user` has USAGE on it).
pub const SCHEMA: &str = "berqenas_pgbouncer";
/// What `auth_query` calls: `SELECT usename, passwd FROM berqenas_pgbouncer.user_lookup($1)`.
pub const AUTH_QUERY: &str = "SELECT usename, passwd FROM berqenas_pgbouncer.user_lookup($1)";

/// How berqenas works with a PgBouncer in front of its tenants. Both parts are
/// optional: without `auth_user` no lookup function is installed, without
/// `admin_url` the admin console is never called.
#[derive(Debug, Clone, Default)]
pub struct PgBouncer {
    /// The role PgBouncer's `auth_user` logs in as.
    pub auth_user: Option<Ident>,
    /// The admin console, e.g. `postgresql://pgbouncer_admin:pw@pgbouncer:6432/pgbouncer`.
    pub admin_url: Option<SecretString>,
}

/// The body of the lookup function; `extra` is one more condition on `a` (the
/// `pg_authid` row), e.g. the control database's check of the tenant's status.
fn body(extra: &str) -> String {
    format!(
        "
  SELECT a.rolname::text, a.rolpassword
    FROM pg_catalog.pg_authid a
   WHERE a.rolname = p_user
     AND a.rolcanlogin
     AND NOT a.rolsuper AND NOT a.rolreplication AND NOT a.rolbypassrls
     AND a.rolpassword IS NOT NULL
     AND (a.rolvaliduntil IS NULL OR a.rolvaliduntil > pg_catalog.now())
     AND a.rolname <> CURRENT_USER
     AND a.rolname NOT LIKE 'pg\\_%'{extra}
"
    )
}

/// A query telling whether the function is installed as [`install_sql`] would install
/// it (same body, pinned `search_path`, executable by `auth_user` and nobody else), so
/// a restart rewrites no catalog row. Parameters: the body, the auth user.
pub const INSTALLED_SQL: &str = "SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'berqenas_pgbouncer' AND p.proname = 'user_lookup'
       AND n.nspowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER)
       AND p.prosecdef AND p.prosrc = $1
       AND p.proconfig = ARRAY['search_path=pg_catalog, pg_temp']
       AND pg_catalog.has_function_privilege($2, p.oid, 'EXECUTE')
       AND NOT pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE')
       AND pg_catalog.has_schema_privilege($2, n.oid, 'USAGE')
       AND NOT pg_catalog.has_schema_privilege('public', n.oid, 'USAGE'))";

/// The function's body for [`INSTALLED_SQL`]'s first parameter.
pub fn installed_body(extra: &str) -> String {
    body(extra)
}

/// Installs (or replaces) the lookup function in the connected database, one
/// transaction. A schema of that name the control role does not own is refused: it
/// could be someone else's trap.
pub fn install_sql(auth_user: &Ident, extra: &str) -> String {
    let schema = Ident::new(SCHEMA).expect("a valid identifier");
    format!(
        "BEGIN;
SET LOCAL lock_timeout = '5s';
SELECT pg_catalog.pg_advisory_xact_lock({LOCK});
DO $berqenas$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace
              WHERE nspname = {schema_lit}
                AND nspowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER)) THEN
    RAISE EXCEPTION 'schema % exists and belongs to another role', {schema_lit};
  END IF;
END $berqenas$;
CREATE SCHEMA IF NOT EXISTS {schema};
REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;
CREATE OR REPLACE FUNCTION {schema}.user_lookup(p_user text)
  RETURNS TABLE (usename text, passwd text)
  LANGUAGE sql STABLE STRICT SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
AS $fn${body}$fn$;
REVOKE ALL ON FUNCTION {schema}.user_lookup(text) FROM PUBLIC;
GRANT USAGE ON SCHEMA {schema} TO {auth_user};
GRANT EXECUTE ON FUNCTION {schema}.user_lookup(text) TO {auth_user};
COMMIT;",
        schema_lit = Literal(SCHEMA),
        body = body(extra),
    )
}

/// Any constant; serialises installs of servers starting together. In a database-mode
/// tenant's database the tenant could hold it too: the wait is bounded
/// (`lock_timeout`), so it can only keep its own database's install from happening.
const LOCK: i64 = 0x6265_7271_7067_626f; // "berqpgbo"

/// Creates the auth user as a NOLOGIN role unless it exists (the operator gives it
/// LOGIN and a password: PgBouncer needs the password in its `auth_file`).
pub fn ensure_auth_user_sql(auth_user: &Ident) -> String {
    super::ensure_nologin_role_sql(auth_user)
}

/// `GRANT CONNECT` on a database to the auth user (PUBLIC has none on berqenas's
/// databases): `auth_query` runs in the database the client asks for. Under the
/// install's lock, run in that database: two servers starting together would
/// otherwise update its catalog row at once ("tuple concurrently updated").
pub fn grant_connect_sql(database: &Ident, auth_user: &Ident) -> String {
    format!(
        "BEGIN;
SET LOCAL lock_timeout = '5s';
SELECT pg_catalog.pg_advisory_xact_lock({LOCK});
GRANT CONNECT ON DATABASE {database} TO {auth_user};
COMMIT;"
    )
}

/// What the admin console is asked to do to one database's pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A database that is the tenant's alone: every client and server connection goes
    /// (`KILL`), then the database takes new connections again (`RESUME`).
    Kill,
    /// A database tenants share: its server connections are replaced as soon as they
    /// are released (`RECONNECT`); the other tenants notice nothing.
    Reconnect,
}

/// The admin-console commands for one database. `None` for a name the console's
/// parser would not take as one word.
pub fn admin_commands(database: &str, how: End) -> Option<Vec<String>> {
    let word = !database.is_empty()
        && database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    word.then(|| match how {
        End::Kill => vec![format!("KILL {database}"), format!("RESUME {database}")],
        End::Reconnect => vec![format!("RECONNECT {database}")],
    })
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("the PgBouncer admin console did not answer within {0:?}")]
    Timeout(Duration),
    #[error("invalid PgBouncer admin URL")]
    Url(#[source] tokio_postgres::Error),
    #[error("PgBouncer admin console: {0}")]
    Console(#[source] tokio_postgres::Error),
}

/// Runs `commands` on the admin console (simple query protocol, the only one it
/// speaks), all within `deadline`. A database the console does not know (no client
/// ever connected to it through PgBouncer) is not an error.
pub async fn admin(
    url: &SecretString,
    commands: &[String],
    deadline: Duration,
) -> Result<(), AdminError> {
    let config: tokio_postgres::Config = url.expose_secret().parse().map_err(AdminError::Url)?;
    let run = async {
        let (client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(AdminError::Console)?;
        let driver = tokio::spawn(conn);
        for c in commands {
            match client.simple_query(c).await {
                Ok(_) => {}
                Err(e) if unknown_database(&e) => {
                    tracing::debug!(command = %c, "PgBouncer has no pool for this database")
                }
                Err(e) => {
                    driver.abort();
                    return Err(AdminError::Console(e));
                }
            }
        }
        drop(client);
        let _ = driver.await;
        Ok(())
    };
    tokio::time::timeout(deadline, run)
        .await
        .map_err(|_| AdminError::Timeout(deadline))?
}

fn unknown_database(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|d| d.message().contains("no such database"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_only_for_plain_names() {
        assert_eq!(
            admin_commands("tenant_acme", End::Kill).unwrap(),
            ["KILL tenant_acme", "RESUME tenant_acme"]
        );
        assert_eq!(
            admin_commands("berqenas", End::Reconnect).unwrap(),
            ["RECONNECT berqenas"]
        );
        assert!(admin_commands("a; SHUTDOWN", End::Reconnect).is_none());
        assert!(admin_commands("", End::Kill).is_none());
    }

    #[test]
    fn install_pins_search_path_and_grants_only_the_auth_user() {
        let sql = install_sql(&Ident::new("pgbouncer_auth").unwrap(), "");
        assert!(sql.contains("SECURITY DEFINER"));
        assert!(sql.contains("SET search_path = pg_catalog, pg_temp"));
        assert!(sql.contains("REVOKE ALL ON FUNCTION"));
        assert!(sql.contains("TO \"pgbouncer_auth\""));
    }
}
