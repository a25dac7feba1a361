//! The sampled usage history behind the console's charts: every `--usage-sample-interval`
//! the quota round samples each live tenant's disk bytes (as last measured), open
//! connections and API calls of the last minute (as this server counted them), writing
//! a tenant's row when one of them moved or its last row is older than
//! `--usage-sample-hold`, and drops samples older than `--usage-retention`. One server
//! samples at a time (the round's lock), and when the last sampling ran is read from
//! the table itself, so several servers together still sample once per interval.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::rate::RateLimits;
use super::worker;
use crate::platform::Platform;
use crate::store::usage_samples as store;
pub use crate::store::usage_samples::Sample;
use crate::tenant::service::Error;

/// `--usage-sample-interval`, `--usage-retention`, `--usage-sample-hold`.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub every: Duration,
    pub keep: Duration,
    /// An unchanged tenant's row is written again once its last one is this old.
    pub hold: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(300),
            keep: Duration::from_secs(30 * 86_400),
            hold: Duration::from_secs(3600),
        }
    }
}

/// Samples per tenant a chart shows at most (the newest).
pub const CHART_POINTS: i64 = 500;

/// A sample of every live tenant if one is due (and no other server is sampling),
/// and the old ones pruned. Answers the rows written (`None`: not due, or not ours;
/// `Some(0)`: sampled, and nothing moved).
pub async fn sample_round(
    p: &Platform,
    limits: &RateLimits,
    s: Settings,
) -> Result<Option<u64>, Error> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    if !worker::lead_round(&tx).await? || !store::due(&tx, s.every.as_secs_f64()).await? {
        return Ok(None);
    }
    let api: Vec<(Uuid, i32)> = store::sampled_tenants(&tx)
        .await?
        .into_iter()
        .map(|id| {
            let calls = limits.this_minute(id);
            (id, i32::try_from(calls).unwrap_or(i32::MAX))
        })
        .collect();
    let written = store::sample(&tx, &api, s.hold.as_secs_f64()).await?;
    store::mark_sampled(&tx).await?;
    store::prune(&tx, s.keep.as_secs_f64()).await?;
    tx.commit().await?;
    Ok(Some(written))
}

/// A tenant's samples since `since`, oldest first (the newest [`CHART_POINTS`]).
pub async fn of_tenant(
    p: &Platform,
    tenant: Uuid,
    since: DateTime<Utc>,
) -> Result<Vec<Sample>, Error> {
    let c = p.pool.get().await?;
    Ok(store::history(&c, tenant, since, CHART_POINTS).await?)
}

/// Tenants created and deleted per UTC day over the last `days`.
pub async fn changes_per_day(p: &Platform, days: i32) -> Result<Vec<(NaiveDate, i64, i64)>, Error> {
    let c = p.pool.get().await?;
    Ok(store::changes_per_day(&c, days).await?)
}
