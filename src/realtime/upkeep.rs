//! The quota round's realtime work, for every tenant whether or not anyone streams
//! its events: history past the plan's retention window is pruned, and in database
//! mode the gate's limits are copied in and its counts mirrored out (for `/metrics`
//! and `quota.exceeded`). Bounded per round: [`TENANTS_PER_ROUND`] tenants, taken in
//! id order from where the last round stopped, and at most [`PRUNE_PER_TENANT`]
//! events deleted from each.

use std::sync::Mutex;

use uuid::Uuid;

use super::gate::{self, Error};
use super::Place;
use crate::platform::Platform;
use crate::store::tenants::Isolation;

pub const TENANTS_PER_ROUND: i64 = 200;
pub const PRUNE_PER_TENANT: i64 = 10_000;

/// Where the last round stopped (this process's; a round on another server starts
/// its own walk, which only repeats work).
static CURSOR: Mutex<Option<Uuid>> = Mutex::new(None);

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub tenants: usize,
    pub pruned: u64,
}

/// One round over the next tenants; a tenant that fails is logged and skipped.
pub async fn round(p: &Platform) -> Result<Done, Error> {
    let after = *CURSOR.lock().unwrap_or_else(|e| e.into_inner());
    let ids = {
        let c = p.pool.get().await?;
        crate::store::realtime::tenants_page(&c, after, TENANTS_PER_ROUND).await?
    };
    *CURSOR.lock().unwrap_or_else(|e| e.into_inner()) = if (ids.len() as i64) < TENANTS_PER_ROUND {
        None
    } else {
        ids.last().copied()
    };
    let mut done = Done::default();
    for id in ids {
        match tenant(p, id).await {
            Ok(n) => {
                done.tenants += 1;
                done.pruned += n;
            }
            Err(e) => {
                tracing::warn!(tenant.id = %id, error = %e, "realtime upkeep failed; retrying next round")
            }
        }
    }
    Ok(done)
}

/// Prunes one tenant's history (and syncs its database-mode gate); returns how many
/// events were deleted.
pub async fn tenant(p: &Platform, id: Uuid) -> Result<u64, Error> {
    let control = p.pool.get().await?;
    let t = crate::store::tenants::get(&control, id).await?;
    let q = crate::store::found(crate::store::quotas::effective(&control, id).await?)?;
    let place = Place::of(&t);
    if !gate::elsewhere(&t) {
        return prune(&place, &control, q.max_data_retention_days).await;
    }
    let db = gate::connect(p, &t).await?;
    if t.isolation == Isolation::Database {
        crate::store::realtime_gate::sync(
            &db,
            q.realtime_events_per_minute,
            q.realtime_events_per_hour,
        )
        .await?;
        let counters = crate::store::realtime_gate::counters(&db).await?;
        crate::store::realtime::mirror(&control, id, &counters).await?;
    }
    prune(&place, &db, q.max_data_retention_days).await
}

async fn prune(place: &Place, c: &tokio_postgres::Client, days: i32) -> Result<u64, Error> {
    match place.prune(c, days, PRUNE_PER_TENANT).await {
        Ok(n) => Ok(n),
        Err(super::place::Error::Db(e)) => Err(Error::Store(e.into())),
        Err(super::place::Error::Store(e)) => Err(Error::Store(e)),
        Err(super::place::Error::Pool(e)) => Err(Error::Pool(e)),
        Err(super::place::Error::Connect(e)) => Err(Error::Connect(e)),
        Err(super::place::Error::Gate(e)) => Err(*e),
        Err(super::place::Error::Invalid(_)) => Ok(0),
    }
}
