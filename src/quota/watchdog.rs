//! The watchdog behind the per-role timeouts, and against tenants that hold others up.
//!
//! A tenant can `SET statement_timeout = 0` or `SET idle_in_transaction_session_timeout
//! = 0` in its own session, so the server cancels statements that run past the tenant's
//! `statement_timeout_ms`, ends the session if a cancelled statement still runs at twice
//! that, and ends sessions idle in a transaction for longer than twice that.
//!
//! Those bound neither a transaction's age nor what it blocks: a transaction that runs
//! `SELECT 1` every few seconds is never idle for long nor slow, and keeps every lock it
//! took. PostgreSQL offers no way to stop a role that may UPDATE a table from taking
//! `LOCK TABLE ... ACCESS EXCLUSIVE` on it, and in shared mode every tenant may UPDATE
//! the pool tables all tenants share. So the watchdog also ends a tenant session whose
//! transaction is older than the tenant's `transaction_timeout_ms`, and, sooner, one that
//! has held up a session of another tenant (or of berqenas itself) for longer than
//! [`BLOCKING_GRACE`].
//!
//! One statement per pass, for all tenants.

use std::time::Duration;

use crate::metrics;
use crate::platform::Platform;
use crate::tenant::service;

/// How long a tenant session may keep a session that is not its own tenant's waiting
/// for a lock before the watchdog ends it. Long enough for ordinary lock queues (a
/// short UPDATE another tenant waits behind) to clear on their own; short enough that
/// the waiting side (a data API request, 30 s at the least) still completes.
pub const BLOCKING_GRACE: Duration = Duration::from_secs(5);

/// What one pass did to one backend.
#[derive(Debug, Clone)]
pub struct Action {
    pub pid: i32,
    pub role: String,
    /// `cancel` or `terminate`
    pub action: String,
    /// `statement`, `idle_in_transaction`, `transaction` or `blocking`
    pub reason: String,
    /// For `blocking`: the backends it kept waiting.
    pub blocked: Vec<i32>,
}

/// `$1`: [`BLOCKING_GRACE`] in seconds. `pg_blocking_pids` is not cheap (it takes the
/// lock manager's partition locks), so it is asked only about backends that have waited
/// longer than the grace; `waiting` is materialized to keep that order.
const PASS: &str = "
WITH logins AS (
    SELECT t.id, t.login_role AS role FROM berqenas.tenants t
    UNION ALL
    SELECT u.tenant_id, u.db_user FROM berqenas.tenant_users u
), backends AS MATERIALIZED (
    SELECT a.pid, a.usename::text AS role, l.id AS tenant_id, a.state, a.query_start,
           a.state_change, a.xact_start, q.statement_timeout_ms, q.transaction_timeout_ms
      FROM pg_stat_activity a
      JOIN logins l ON l.role = a.usename
      JOIN berqenas.effective_quotas q ON q.tenant_id = l.id
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

/// One pass; returns what it did (the backends it signalled).
pub async fn run_once(p: &Platform) -> Result<Vec<Action>, service::Error> {
    let client = p.pool.get().await?;
    let stmt = client.prepare_cached(PASS).await?;
    let rows = client
        .query(&stmt, &[&BLOCKING_GRACE.as_secs_f64()])
        .await?;
    let actions: Vec<Action> = rows
        .iter()
        .filter(|r| r.get::<_, Option<bool>>(5).unwrap_or(false))
        .map(|r| Action {
            pid: r.get(0),
            role: r.get(1),
            action: r.get(2),
            reason: r.get(3),
            blocked: r.get(4),
        })
        .collect();
    for a in &actions {
        metrics::watchdog_action(&a.action, &a.reason);
        if a.reason == "blocking" {
            tracing::warn!(pid = a.pid, role = %a.role, blocked = ?a.blocked,
                grace_secs = BLOCKING_GRACE.as_secs(),
                "watchdog: ended a tenant session that kept another tenant's or berqenas's sessions waiting for a lock");
        } else {
            tracing::info!(pid = a.pid, role = %a.role, action = %a.action, reason = %a.reason,
                "watchdog: over the tenant's hard time limit");
        }
    }
    Ok(actions)
}
