//! The quota side of the background worker: the disk round's lock (one round at a
//! time, also for direct callers; which instance schedules rounds is elected, see
//! `workflows::quotas`), the watchdog every second (elected), and the housekeeping
//! that keeps this instance's rate limiters and data API pools small.

use std::sync::Arc;
use std::time::Duration;

use super::rate::RateLimits;
use super::watchdog;
use crate::dataapi::DataApi;
use crate::pg::election::Elected;
use crate::pg::session_lock::SessionLock;
use crate::platform::Platform;
use crate::store::quotas as store;
use crate::tenant::service;

/// Any constant; only servers running a disk round at the same time contend for it.
pub const ROUND_LOCK: i64 = 0x6265_7271_7175_6f74; // "berqquot"

/// Daily usage counters are kept this long.
const KEEP_COUNTER_DAYS: i32 = 35;

/// Whether this server runs the disk round (held until `tx` ends): only one at a time.
/// For a short piece of work (a usage sample); a disk round holds [`take_round_lock`]'s.
pub async fn lead_round(tx: &deadpool_postgres::Transaction<'_>) -> Result<bool, service::Error> {
    Ok(tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&ROUND_LOCK])
        .await?
        .get(0))
}

/// The disk round's lock (see `pg::session_lock`), or `None` when another server is
/// running a round.
pub async fn take_round_lock(p: &Platform) -> Result<Option<SessionLock>, service::Error> {
    Ok(SessionLock::try_take(&p.config, "berqenas-disk-round-lock", ROUND_LOCK).await?)
}

/// Daily usage counters older than we keep go.
pub async fn prune_counters(
    c: &impl deadpool_postgres::GenericClient,
) -> Result<(), service::Error> {
    store::prune_counters(c, KEEP_COUNTER_DAYS).await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    #[error("--data-api-connections {data_api} plus --pool-size {pool} would take all {usable} connections the server allows (max_connections less superuser_reserved_connections); lower them")]
    TooMany {
        data_api: usize,
        pool: usize,
        usable: i64,
    },
    #[error(transparent)]
    Db(#[from] service::Error),
}

/// Refuses a data API cap that, with the control pool, would leave tenants no room on
/// the server; warns when it takes more than half.
pub async fn check_capacity(
    p: &Platform,
    pool_size: usize,
    data_api: usize,
) -> Result<(), CapacityError> {
    let client = p.pool.get().await.map_err(service::Error::from)?;
    let row = client
        .query_one(
            "SELECT current_setting('max_connections')::bigint - current_setting('superuser_reserved_connections')::bigint",
            &[],
        )
        .await
        .map_err(service::Error::from)?;
    let usable: i64 = row.get(0);
    let ours = (data_api + pool_size) as i64;
    if ours >= usable {
        return Err(CapacityError::TooMany {
            data_api,
            pool: pool_size,
            usable,
        });
    }
    if ours * 2 > usable {
        tracing::warn!(
            data_api,
            pool = pool_size,
            usable,
            "the data API and control pool may take more than half of the server's connections"
        );
    }
    Ok(())
}

/// Aborts the task it holds when dropped (the worker's task was aborted).
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The watchdog's job name: one elected instance runs it (docs/instances.md).
pub const WATCHDOG_JOB: &str = "watchdog";

/// The watchdog every second while this instance is elected for it, on its own task:
/// a disk round that takes long (a tenant's lock) does not hold it up.
pub async fn watchdog_forever(p: Platform, elected: Arc<Elected>) {
    let mut watch = tokio::time::interval(Duration::from_secs(1));
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        watch.tick().await;
        if !elected.holds(WATCHDOG_JOB) {
            continue;
        }
        if let Err(e) = watchdog::run_once(&p).await {
            tracing::warn!(error = %e, "watchdog pass failed");
        }
    }
}

/// What keeps the rate limiters and the data API's pools small, every ten seconds.
pub async fn housekeeping_forever(p: Platform, limits: Arc<RateLimits>, data: Arc<DataApi>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        limits.housekeeping();
        super::breaches::flush(&p, &limits);
        data.reap();
    }
}
