//! The watchdog behind the per-role timeouts: a tenant can `SET statement_timeout = 0`
//! or `SET idle_in_transaction_session_timeout = 0` in its own session, so the server
//! cancels statements that run past the tenant's `statement_timeout_ms`, ends the
//! session if a cancelled statement still runs at twice that, and ends sessions idle in
//! a transaction for longer than twice that. One statement per pass, for all tenants.

use crate::metrics;
use crate::platform::Platform;
use crate::tenant::service;

/// What one pass did to one backend.
#[derive(Debug, Clone)]
pub struct Action {
    pub pid: i32,
    pub role: String,
    /// `cancel` or `terminate`
    pub action: String,
    /// `statement` or `idle_in_transaction`
    pub reason: String,
}

const PASS: &str = "
WITH logins AS (
    SELECT t.id, t.login_role AS role FROM berqenas.tenants t
    UNION ALL
    SELECT u.tenant_id, u.db_user FROM berqenas.tenant_users u
), overdue AS (
    SELECT a.pid, a.usename::text AS role,
           CASE WHEN a.state = 'active' THEN 'statement' ELSE 'idle_in_transaction' END AS reason,
           CASE WHEN a.state <> 'active'
                  OR a.query_start < clock_timestamp() - make_interval(secs => q.statement_timeout_ms * 2 / 1000.0)
                THEN 'terminate' ELSE 'cancel' END AS action
      FROM pg_stat_activity a
      JOIN logins l ON l.role = a.usename
      JOIN berqenas.effective_quotas q ON q.tenant_id = l.id
     WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
       AND ((a.state = 'active'
             AND a.query_start < clock_timestamp() - make_interval(secs => q.statement_timeout_ms / 1000.0))
         OR (a.state IN ('idle in transaction', 'idle in transaction (aborted)')
             AND a.state_change < clock_timestamp() - make_interval(secs => q.statement_timeout_ms * 2 / 1000.0)))
)
SELECT pid, role, action, reason,
       CASE WHEN action = 'terminate' THEN pg_terminate_backend(pid) ELSE pg_cancel_backend(pid) END
  FROM overdue";

/// One pass; returns what it did (the backends it signalled).
pub async fn run_once(p: &Platform) -> Result<Vec<Action>, service::Error> {
    let client = p.pool.get().await?;
    let stmt = client.prepare_cached(PASS).await?;
    let rows = client.query(&stmt, &[]).await?;
    let actions: Vec<Action> = rows
        .iter()
        .filter(|r| r.get::<_, Option<bool>>(4).unwrap_or(false))
        .map(|r| Action {
            pid: r.get(0),
            role: r.get(1),
            action: r.get(2),
            reason: r.get(3),
        })
        .collect();
    for a in &actions {
        metrics::watchdog_action(&a.action, &a.reason);
        tracing::info!(pid = a.pid, role = %a.role, action = %a.action, reason = %a.reason,
            "watchdog: over the tenant's hard time limit");
    }
    Ok(actions)
}
