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
//! One statement per pass and server, for all its tenants
//! ([`crate::store::tenants::signal_overdue_sessions`]; on a server other than
//! `default`, where the registry is not, the tenants' logins and limits are given to
//! it: [`crate::store::tenants::signal_overdue_sessions_on`]).

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

/// One pass, on `default` and on every other server with tenants (one statement on
/// each; a server that cannot be reached is logged and left to the next pass);
/// returns what it did (the backends it signalled).
pub async fn run_once(p: &Platform) -> Result<Vec<Action>, service::Error> {
    let grace = BLOCKING_GRACE.as_secs_f64();
    let client = p.pool.get().await?;
    let mut signalled = crate::store::tenants::signal_overdue_sessions(&client, grace).await?;
    for (server, watched) in crate::store::tenants::watched(&client).await? {
        let there = async {
            let view = crate::quota::placed::view(p, &server).await?;
            let c = view.pool.get().await?;
            Ok::<_, service::Error>(
                crate::store::tenants::signal_overdue_sessions_on(&c, grace, &watched).await?,
            )
        };
        match there.await {
            Ok(s) => signalled.extend(s),
            Err(e) => {
                tracing::warn!(server = %server, error = %e, "watchdog pass on a server failed")
            }
        }
    }
    let actions: Vec<Action> = signalled
        .into_iter()
        .map(|s| Action {
            pid: s.pid,
            role: s.role,
            action: s.action,
            reason: s.reason,
            blocked: s.blocked,
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
