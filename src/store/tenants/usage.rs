//! Reads of the registry joined with what the server sees of each tenant: its
//! sessions (the watchdog, the metrics, connection counts), its temporary relations
//! and its sizes (the disk round).

use std::sync::LazyLock;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::pg::temp_relations::TEMP_RELATIONS;
use crate::store::tenant_sessions::TENANT_SESSIONS;
use crate::store::Result;

/// One live tenant's resources for the metrics.
pub struct ResourceRow {
    pub name: String,
    pub disk_bytes: i64,
    pub db_quota_bytes: i64,
    pub connections: i64,
    pub max_connections: i32,
    pub writes_blocked: bool,
}

/// Disk and connections against their quotas, for every live tenant, in one statement
/// (the sessions from their owners: [`TENANT_SESSIONS`]).
pub async fn resource_rows(c: &impl GenericClient) -> Result<Vec<ResourceRow>> {
    static ROWS: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT t.name, coalesce(u.bytes, 0), t.db_quota_bytes, coalesce(c.n, 0), q.max_connections,
                    coalesce(u.writes_blocked, false)
               FROM berqenas.tenants t
               JOIN berqenas.effective_quotas q ON q.tenant_id = t.id
               LEFT JOIN berqenas.disk_usage u ON u.tenant_id = t.id
               LEFT JOIN (SELECT id, sum(n)::bigint AS n FROM {TENANT_SESSIONS} o GROUP BY id) c
                 ON c.id = t.id
              WHERE t.status IN ('trial', 'active', 'suspended')"
        )
    });
    let rows = c.query(ROWS.as_str(), &[]).await?;
    Ok(rows
        .iter()
        .map(|r| ResourceRow {
            name: r.get(0),
            disk_bytes: r.get(1),
            db_quota_bytes: r.get(2),
            connections: r.get(3),
            max_connections: r.get(4),
            writes_blocked: r.get(5),
        })
        .collect())
}

/// The tenants whose data is measured and whose quota is enforced.
const LIVE: &str = "('trial', 'active', 'suspended')";

/// Live schema-mode tenants (or just `only`) whose schema exists: (id, schema).
pub async fn live_schemas(
    c: &impl GenericClient,
    only: Option<Uuid>,
) -> Result<Vec<(Uuid, String)>> {
    Ok(c.query(
        &format!(
            "SELECT t.id, t.schema_name::text FROM berqenas.tenants t
                   JOIN pg_namespace n ON n.nspname = t.schema_name
                  WHERE t.isolation = 'schema' AND t.status IN {LIVE} AND t.server = 'default'
                    AND ($1::uuid IS NULL OR t.id = $1)"
        ),
        &[&only],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

/// Live database-mode tenants (or just `only`) and their databases' sizes less that
/// of `template` (the catalogs every database carries): (id, bytes).
pub async fn live_database_sizes(
    c: &impl GenericClient,
    only: Option<Uuid>,
    template: &str,
) -> Result<Vec<(Uuid, i64)>> {
    Ok(c
        .query(
            &format!(
                "SELECT t.id, greatest(pg_database_size(d.oid) - coalesce(
                        (SELECT pg_database_size(x.oid) FROM pg_database x WHERE x.datname = $2), 0), 0)::bigint
                   FROM berqenas.tenants t JOIN pg_database d ON d.datname = t.database_name
                  WHERE t.isolation = 'database' AND t.status IN {LIVE} AND t.server = 'default'
                    AND ($1::uuid IS NULL OR t.id = $1)"
            ),
            &[&only, &template],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// A live schema- or database-mode tenant on a server other than `default`.
pub struct Placed {
    pub server: String,
    pub id: Uuid,
    pub name: String,
    pub database_mode: bool,
    /// In its server's shared pool (shared mode): its size is its share of the pool's.
    pub shared: bool,
    /// Its schema (schema mode), its database (database mode), or the pool's schema.
    pub object: String,
    /// Its logins (its own and its users').
    pub logins: Vec<String>,
    /// Marked over its connection quota (`quota_breaches`).
    pub connections_exceeded: bool,
}

/// Live tenants on servers other than `default` (or just `only`), by server.
pub async fn live_placed(c: &impl GenericClient, only: Option<Uuid>) -> Result<Vec<Placed>> {
    Ok(c
        .query(
            &format!(
                "SELECT t.server, t.id, t.isolation = 'database',
                        CASE WHEN t.isolation = 'database' THEN t.database_name ELSE t.schema_name END::text,
                        ARRAY(SELECT t.login_role::text UNION ALL
                              SELECT u.db_user::text FROM berqenas.tenant_users u WHERE u.tenant_id = t.id),
                        EXISTS (SELECT 1 FROM berqenas.quota_breaches b
                                 WHERE b.tenant_id = t.id AND b.quota = 'connections'),
                        t.name::text, t.isolation = 'shared'
                   FROM berqenas.tenants t
                  WHERE t.status IN {LIVE}
                    AND t.server <> 'default' AND ($1::uuid IS NULL OR t.id = $1)
                  ORDER BY t.server"
            ),
            &[&only],
        )
        .await?
        .iter()
        .map(|r| Placed {
            server: r.get(0),
            id: r.get(1),
            database_mode: r.get(2),
            object: r.get(3),
            logins: r.get(4),
            connections_exceeded: r.get(5),
            name: r.get(6),
            shared: r.get(7),
        })
        .collect())
}

/// Live shared-mode tenants of `default`'s pool (or just `only`).
pub async fn live_shared(c: &impl GenericClient, only: Option<Uuid>) -> Result<Vec<Uuid>> {
    Ok(c.query(
        &format!(
            "SELECT id FROM berqenas.tenants
                  WHERE isolation = 'shared' AND status IN {LIVE} AND server = 'default'
                    AND ($1::uuid IS NULL OR id = $1)"
        ),
        &[&only],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// Temporary relations owned by the login roles (the tenant's and its users') of
/// schema- and shared-mode tenants (or just `only`): (tenant id, relation oid).
pub async fn temp_relations(
    c: &impl GenericClient,
    only: Option<Uuid>,
) -> Result<Vec<(Uuid, u32)>> {
    let sql = format!(
        "WITH logins AS (
                 SELECT id, login_role AS role FROM berqenas.tenants
                  WHERE isolation IN ('schema', 'shared') AND server = 'default'
                    AND ($1::uuid IS NULL OR id = $1)
                 UNION ALL
                 SELECT u.tenant_id, u.db_user FROM berqenas.tenant_users u
                   JOIN berqenas.tenants t ON t.id = u.tenant_id
                  WHERE t.isolation IN ('schema', 'shared') AND t.server = 'default'
                    AND ($1::uuid IS NULL OR t.id = $1))
             SELECT l.id, t.oid FROM {} t JOIN logins l ON l.role = t.owner",
        TEMP_RELATIONS.as_str()
    );
    Ok(c.query(&sql, &[&only])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Open sessions of the tenant's login roles (its own and its users').
pub async fn open_sessions(c: &impl GenericClient, id: Uuid) -> Result<i64> {
    let stmt = c
        .prepare_cached(
            "SELECT count(*) FROM pg_stat_activity a
              WHERE a.usename IN (SELECT login_role FROM berqenas.tenants WHERE id = $1
                                  UNION ALL SELECT db_user FROM berqenas.tenant_users WHERE tenant_id = $1)",
        )
        .await?;
    Ok(c.query_one(&stmt, &[&id]).await?.get(0))
}

/// A backend one watchdog pass signalled.
pub struct Signalled {
    pub pid: i32,
    pub role: String,
    pub action: String,
    pub reason: String,
    pub blocked: Vec<i32>,
}

/// The watchdog's tenant logins and limits on a server other than `default`, where the
/// registry is not: given, as arrays (`$2`..`$6`).
const GIVEN_LOGINS: &str = "
WITH logins AS (
    SELECT * FROM unnest($2::uuid[], $3::text[]) AS l(id, role)
), limits AS (
    SELECT * FROM unnest($4::uuid[], $5::int8[], $6::int8[])
           AS q(tenant_id, statement_timeout_ms, transaction_timeout_ms)";

/// The watchdog's pass (see `quota::watchdog`) after its logins and limits, `$1`: the
/// blocking grace in seconds. `pg_blocking_pids` is not cheap (it takes the lock
/// manager's partition locks), so it is asked only about backends that have waited
/// longer than the grace; `waiting` is materialized to keep that order.
const WATCHDOG_REST: &str = "), backends AS MATERIALIZED (
    SELECT a.pid, a.usename::text AS role, l.id AS tenant_id, a.state, a.query_start,
           a.state_change, a.xact_start, q.statement_timeout_ms, q.transaction_timeout_ms
      FROM pg_stat_activity a
      JOIN logins l ON l.role = a.usename
      JOIN limits q ON q.tenant_id = l.id
     WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
), waiting AS MATERIALIZED (
    -- Any backend (a tenant's, berqenas's, anyone's) waiting past the grace, and the
    -- tenant it belongs to (NULL: none).
    SELECT DISTINCT w.pid, wl.id AS tenant_id
      FROM pg_locks w
      LEFT JOIN pg_stat_activity wa ON wa.pid = w.pid
      LEFT JOIN logins wl ON wl.role = wa.usename
     WHERE NOT w.granted AND w.pid IS NOT NULL
       AND w.waitstart < clock_timestamp() - make_interval(secs => $1::float8)
), blocked AS MATERIALIZED (
    SELECT w.pid AS waiter, w.tenant_id AS waiter_tenant, unnest(pg_blocking_pids(w.pid)) AS blocker
      FROM waiting w
), overdue AS (
    -- A tenant may hold itself up; holding up anyone else ends the session.
    SELECT b.pid, b.role, 'terminate' AS action, 'blocking' AS reason, 1 AS rank,
           array_agg(DISTINCT x.waiter) AS blocked
      FROM backends b
      JOIN blocked x ON x.blocker = b.pid
     WHERE x.waiter_tenant IS DISTINCT FROM b.tenant_id
     GROUP BY b.pid, b.role
    UNION ALL
    SELECT pid, role, 'terminate', 'transaction', 2, '{}'::int[]
      FROM backends
     WHERE xact_start < clock_timestamp() - make_interval(secs => transaction_timeout_ms / 1000.0)
    UNION ALL
    SELECT pid, role,
           CASE WHEN state <> 'active'
                  OR query_start < clock_timestamp() - make_interval(secs => statement_timeout_ms * 2 / 1000.0)
                THEN 'terminate' ELSE 'cancel' END,
           CASE WHEN state = 'active' THEN 'statement' ELSE 'idle_in_transaction' END,
           3, '{}'::int[]
      FROM backends
     WHERE (state = 'active'
            AND query_start < clock_timestamp() - make_interval(secs => statement_timeout_ms / 1000.0))
        OR (state IN ('idle in transaction', 'idle in transaction (aborted)')
            AND state_change < clock_timestamp() - make_interval(secs => statement_timeout_ms * 2 / 1000.0))
), chosen AS (
    -- One signal per backend: ending it outranks cancelling its statement.
    SELECT DISTINCT ON (pid) pid, role, action, reason, blocked
      FROM overdue
     ORDER BY pid, action = 'terminate' DESC, rank
)
SELECT pid, role, action, reason, blocked,
       CASE WHEN action = 'terminate' THEN pg_terminate_backend(pid) ELSE pg_cancel_backend(pid) END
  FROM chosen";

/// Signals every tenant session over its hard time limits, or holding up another
/// tenant's (or berqenas's) for longer than `blocking_grace_secs`, in one statement;
/// returns those the server signalled.
pub async fn signal_overdue_sessions(
    c: &impl GenericClient,
    blocking_grace_secs: f64,
) -> Result<Vec<Signalled>> {
    // The tenant logins and limits on `default`: from the registry, for the roles with
    // a session only ([`TENANT_SESSIONS`]).
    static PASS: LazyLock<String> = LazyLock::new(|| {
        format!(
            "
WITH logins AS (
    SELECT id, role FROM {TENANT_SESSIONS} o
), limits AS (
    SELECT tenant_id, statement_timeout_ms, transaction_timeout_ms FROM berqenas.effective_quotas{WATCHDOG_REST}"
        )
    });
    let stmt = c.prepare_cached(&PASS).await?;
    signalled(c.query(&stmt, &[&blocking_grace_secs]).await?)
}

/// The tenant logins on another server and their limits, as the watchdog there is
/// given them (see [`signal_overdue_sessions_on`]).
#[derive(Debug, Default)]
pub struct Watched {
    pub login_tenants: Vec<Uuid>,
    pub logins: Vec<String>,
    pub tenants: Vec<Uuid>,
    pub statement_timeout_ms: Vec<i64>,
    pub transaction_timeout_ms: Vec<i64>,
}

/// The logins (their own and their users') and limits of every tenant on a server
/// other than `default`, by server, in one statement. (The servers are named first:
/// `server <> 'default'` can use no index, and read every tenant every second.)
pub async fn watched(
    c: &impl GenericClient,
) -> Result<std::collections::BTreeMap<String, Watched>> {
    let mut out: std::collections::BTreeMap<String, Watched> = Default::default();
    for r in c
        .query(
            "SELECT t.server, t.id, q.statement_timeout_ms::int8, q.transaction_timeout_ms::int8,
                    ARRAY(SELECT t.login_role::text UNION ALL
                          SELECT u.db_user::text FROM berqenas.tenant_users u WHERE u.tenant_id = t.id)
               FROM berqenas.tenants t JOIN berqenas.effective_quotas q ON q.tenant_id = t.id
              WHERE t.server IN (SELECT s.name FROM berqenas.servers s WHERE s.name <> 'default')",
            &[],
        )
        .await?
    {
        let w = out.entry(r.get(0)).or_default();
        let id: Uuid = r.get(1);
        w.tenants.push(id);
        w.statement_timeout_ms.push(r.get(2));
        w.transaction_timeout_ms.push(r.get(3));
        for login in r.get::<_, Vec<String>>(4) {
            w.login_tenants.push(id);
            w.logins.push(login);
        }
    }
    Ok(out)
}

/// [`signal_overdue_sessions`] on a server other than `default` (`c`, a session
/// there), for the tenants `w` names.
pub async fn signal_overdue_sessions_on(
    c: &impl GenericClient,
    blocking_grace_secs: f64,
    w: &Watched,
) -> Result<Vec<Signalled>> {
    static PASS: LazyLock<String> = LazyLock::new(|| format!("{GIVEN_LOGINS}{WATCHDOG_REST}"));
    let stmt = c.prepare_cached(&PASS).await?;
    signalled(
        c.query(
            &stmt,
            &[
                &blocking_grace_secs,
                &w.login_tenants,
                &w.logins,
                &w.tenants,
                &w.statement_timeout_ms,
                &w.transaction_timeout_ms,
            ],
        )
        .await?,
    )
}

fn signalled(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Signalled>> {
    Ok(rows
        .iter()
        .filter(|r| r.get::<_, Option<bool>>(5).unwrap_or(false))
        .map(|r| Signalled {
            pid: r.get(0),
            role: r.get(1),
            action: r.get(2),
            reason: r.get(3),
            blocked: r.get(4),
        })
        .collect())
}
