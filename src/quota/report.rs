//! `usage.reported`: every `--usage-report-interval` (default hourly) each live
//! tenant's usage, as the quota code measures it, for billing. Each report covers the
//! period since the tenant's last one (or its creation), so periods follow each other
//! without gaps or overlaps; the period is claimed with its event under the tenant's
//! name, so several servers report each period once.

use std::sync::Arc;
use std::time::Duration;

use super::rate::RateLimits;
use super::usage::collect_with;
use crate::platform::Platform;
use crate::store::outbox::{self, data::UsageReported};
use crate::store::{breaches, quotas, tenants};
use crate::tenant::service::Error;

/// Tenants reported per round at most; the rest are due at the next.
const PER_ROUND: i64 = 500;

/// Reports every tenant whose period of `every` has ended. Returns how many.
pub async fn report_due(
    p: &Platform,
    limits: &RateLimits,
    every: Duration,
) -> Result<usize, Error> {
    let secs = every.as_secs_f64();
    let due = breaches::reports_due(&p.pool.get().await?, secs, PER_ROUND).await?;
    let mut n = 0;
    for id in due {
        match report_one(p, limits, id, secs).await {
            Ok(true) => n += 1,
            Ok(false) => {}
            // Busy (its name held long) or gone: the next round.
            Err(Error::Rejected(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

async fn report_one(
    p: &Platform,
    limits: &RateLimits,
    id: uuid::Uuid,
    every_secs: f64,
) -> Result<bool, Error> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let Some(t) = tenants::find(&tx, &id.to_string()).await? else {
        return Ok(false);
    };
    crate::tenant::service::lock_name(&tx, &t.name).await?;
    let Some(q) = quotas::effective(&tx, t.id).await? else {
        return Ok(false);
    };
    let Some((start, end)) = breaches::claim_report(&tx, t.id, every_secs).await? else {
        return Ok(false);
    };
    let (resources, writes_blocked) = collect_with(p, limits, &t, &q, false).await?;
    let disk_measured_at = resources
        .iter()
        .find(|r| r.resource_type == "storage_bytes")
        .and_then(|r| r.updated_at);
    outbox::emit(
        &tx,
        t.id,
        t.name.as_str(),
        &UsageReported {
            period_start: start,
            period_end: end,
            plan: t.plan.clone(),
            status: t.status,
            usage: resources
                .iter()
                .map(|r| (r.resource_type.clone(), r.used))
                .collect(),
            quotas: q,
            writes_blocked,
            disk_measured_at,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// The reporter: a round every `every` (at most a minute apart, so a period ends
/// close to its time whichever server reports it). Runs until aborted.
pub async fn run_forever(p: Platform, limits: Arc<RateLimits>, every: Duration) {
    let mut tick = tokio::time::interval(every.min(Duration::from_secs(60)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match report_due(&p, &limits, every).await {
            Ok(n) if n > 0 => tracing::info!(tenants = n, "usage reported"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reporting usage failed; retrying at the next tick")
            }
        }
    }
}
