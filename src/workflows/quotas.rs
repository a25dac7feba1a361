//! Disk quota enforcement on the engine (the pieces are in [`crate::quota::disk`]):
//!
//! - `quota.disk`: `decide` (the tenant held in the one lock order, its measurement
//!   compared with its quota; what the control database holds is changed, and in
//!   database mode what will be taken is recorded first; one transaction), `apply`
//!   (what is left outside that transaction: privileges in the tenant's own database,
//!   sessions holding temporary tables), `finish` (a give-back recorded, the tenant
//!   given back). Forward-only once `decide` committed: what it recorded is done.
//!
//! And the disk round that runs it for every tenant over its quota or blocked.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use super::on_server::view_for;
use super::{failed, lock_tenant_anywhere, run_kind, step_error, Error, Runtime};
use crate::dataapi::DataApi;
use crate::ops::{fence, Kind, Run, Step, StepError, StepFuture};
use crate::pg::election::Elected;
use crate::quota::disk::{self, Outcome, Remaining};
use crate::quota::rate::RateLimits;
use crate::quota::worker;
use crate::store::tenants;

pub const DISK: &str = "quota.disk";

pub fn kinds() -> Vec<Kind<Runtime>> {
    vec![Kind {
        name: DISK,
        steps: vec![
            Step {
                name: "decide",
                reaches_out: false,
                apply: decide,
                compensate: None,
                skip: None,
            },
            Step {
                name: "apply",
                reaches_out: true,
                apply: apply_rest,
                compensate: None,
                skip: None,
            },
            Step {
                name: "finish",
                reaches_out: false,
                apply: finish,
                compensate: None,
                skip: None,
            },
        ],
        point_of_no_return: 1,
    }]
}

/// Enforces the tenant's disk quota now, as one `quota.disk` operation.
pub async fn enforce_disk(rt: &Runtime, tenant: Uuid) -> Result<Outcome, Error> {
    let name = match tenants::find(&rt.pool.get().await?, &tenant.to_string())
        .await
        .map_err(crate::tenant::service::Error::from)?
    {
        Some(t) => t.name.as_str().to_string(),
        None => return Ok(Outcome::Unchanged),
    };
    let v = run_kind(rt, DISK, Some(tenant), &name, &json!({})).await?;
    Ok(match v["outcome"].as_str() {
        Some("blocked") => Outcome::Blocked,
        Some("restored") => Outcome::Restored,
        _ => Outcome::Unchanged,
    })
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Blocked => "blocked",
        Outcome::Restored => "restored",
        Outcome::Unchanged => "unchanged",
    }
}

/// 1. The decision, and what the control database holds of it; the tenant owned
///    while anything is left to do.
fn decide<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let id = run.tenant_id.expect("an enforcement names its tenant");
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        // On whichever server the tenant lives: the view reaches its objects there.
        let t = lock_tenant_anywhere(&tx, &id.to_string())
            .await
            .map_err(step_error)?;
        let view = view_for(rt, &t).await?;
        let (outcome, rest) = disk::enforce_locked(&view, &tx, &t)
            .await
            .map_err(step_error)?;
        if !matches!(rest, Remaining::Nothing) {
            fence::acquire(&tx, run, t.id).await?;
        }
        let out = json!({"outcome": outcome_name(outcome), "rest": rest});
        run.applied_in(&tx, &out).await?;
        tx.commit().await.map_err(failed)?;
        Ok(out)
    })
}

fn rest_of(run: &Run) -> Result<(Value, Remaining), StepError> {
    let v: Value = run
        .outcome("decide")
        .ok_or_else(|| StepError::Fenced("no decision journaled".into()))?;
    let rest = serde_json::from_value(v["rest"].clone()).map_err(failed)?;
    Ok((v, rest))
}

/// 2. What is left outside the decision's transaction (idempotent).
fn apply_rest<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let (_, rest) = rest_of(run)?;
        if matches!(rest, Remaining::Nothing) {
            return Ok(Value::Null);
        }
        let client = rt.pool.get().await.map_err(failed)?;
        let t = tenants::get(&client, run.tenant_id.expect("named"))
            .await
            .map_err(failed)?;
        drop(client);
        let view = view_for(rt, &t).await?;
        disk::apply_remaining(&view, &t, &rest)
            .await
            .map_err(step_error)?;
        Ok(Value::Null)
    })
}

/// 3. A give-back recorded; the tenant given back.
fn finish<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let (decided, rest) = rest_of(run)?;
        if matches!(rest, Remaining::Nothing) {
            return Ok(decided);
        }
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = super::hold_owned(&tx, run).await?;
        disk::finish_locked(&tx, &t, &rest)
            .await
            .map_err(step_error)?;
        fence::release(&tx, run).await?;
        run.applied_in(&tx, &decided).await?;
        tx.commit().await.map_err(failed)?;
        Ok(decided)
    })
}

/// One disk round if no other server is running one: every tenant measured, those
/// over their quota or blocked enforced. `None` when another server runs it.
pub async fn disk_round(rt: &Runtime) -> Result<Option<(usize, usize, usize)>, Error> {
    let Some(_lock) = worker::take_round_lock(&rt.platform).await? else {
        return Ok(None);
    };
    let (measured, due) = disk::measure_round(rt).await?;
    // Connections at their limit (or free again) are seen here too.
    if let Err(e) = crate::quota::breaches::connections_round(rt).await {
        tracing::warn!(error = %e, "looking at tenants' connections failed; retrying next round");
    }
    // Realtime history past its retention pruned (and database-mode gates synced and
    // their counts mirrored, which the look at realtime limits below reads).
    if let Err(e) = crate::realtime::upkeep::round(rt).await {
        tracing::warn!(error = %e, "realtime upkeep failed; retrying next round");
    }
    // And realtime events at their per-minute or per-hour limit.
    if let Err(e) = crate::quota::breaches::realtime_round(rt).await {
        tracing::warn!(error = %e, "looking at tenants' realtime events failed; retrying next round");
    }
    let (mut blocked, mut restored) = (0, 0);
    for id in due {
        match enforce_disk(rt, id).await {
            Ok(Outcome::Blocked) => blocked += 1,
            Ok(Outcome::Restored) => restored += 1,
            Ok(Outcome::Unchanged) => {}
            Err(e) => {
                tracing::warn!(tenant.id = %id, error = %e, "disk quota enforcement failed; retrying next round")
            }
        }
    }
    worker::prune_counters(&rt.pool.get().await?).await?;
    Ok(Some((measured, blocked, restored)))
}

/// The job name of the disk round and the usage samples: one elected instance
/// schedules them (docs/instances.md).
pub const ROUND_JOB: &str = "quota-round";

/// The quota worker: while this instance is elected for [`ROUND_JOB`], a disk round
/// every `interval` (and, when one is due, a usage sample for the console's history);
/// the watchdog every second (elected on its own) and this instance's housekeeping
/// (their own tasks: a slow round holds neither up). Runs until the task is aborted;
/// an operation it started runs on to its end in the engine.
pub async fn run_forever(
    rt: Arc<Runtime>,
    limits: Arc<RateLimits>,
    data: Arc<DataApi>,
    interval: Duration,
    history: crate::quota::history::Settings,
    elected: Arc<Elected>,
) {
    let _watchdog = worker::AbortOnDrop(tokio::spawn(worker::watchdog_forever(
        rt.platform.clone(),
        elected.clone(),
    )));
    let _housekeeping = worker::AbortOnDrop(tokio::spawn(worker::housekeeping_forever(
        rt.platform.clone(),
        limits.clone(),
        data,
    )));
    let mut round = tokio::time::interval(interval);
    round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        round.tick().await;
        if !elected.holds(ROUND_JOB) {
            continue;
        }
        match disk_round(&rt).await {
            Ok(Some((measured, blocked, restored))) if blocked + restored > 0 => {
                tracing::info!(measured, blocked, restored, "disk quota round");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "disk quota round failed; retrying at the next tick")
            }
        }
        // After the disk round: the samples carry the disk as just measured.
        if let Err(e) = crate::quota::history::sample_round(&rt, &limits, history).await {
            tracing::warn!(error = %e, "usage sample failed; retrying at the next tick");
        }
    }
}
