//! Suspend, resume, activate, and the end of a trial.
//!
//! - `tenant.suspend` and `tenant.trial_end` are three steps: the change (logins off,
//!   memberships cut, status, audit row, in one transaction), the tenant's sessions
//!   ended, then the network render (a restricted tenant's rules revoked). Past the
//!   first step there is no way back: a crash leaves the rest to the reconciler, so a
//!   suspended tenant keeps no session.
//! - `tenant.resume` and `tenant.activate` are one transaction each.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{commit_one, failed, lock_tenant, lock_tenant_anywhere, step_error, Error, Runtime};
use crate::ops::{Kind, NewOp, Run, Step, StepFuture};
use crate::tenant::suspension::{self, SuspendTenant};
use crate::tenant::{access, service, state, Status, Tenant};

pub const SUSPEND: &str = "tenant.suspend";
pub const RESUME: &str = "tenant.resume";
pub const ACTIVATE: &str = "tenant.activate";
pub const TRIAL_END: &str = "tenant.trial_end";

pub fn kinds() -> Vec<Kind<Runtime>> {
    vec![
        Kind {
            name: SUSPEND,
            steps: vec![
                Step {
                    name: "suspend",
                    reaches_out: false,
                    apply: suspend_step,
                    compensate: None,
                    skip: None,
                },
                Step {
                    name: "end_sessions",
                    reaches_out: true,
                    apply: end_sessions,
                    compensate: None,
                    skip: None,
                },
                super::network::enforce_step(),
            ],
            point_of_no_return: 1,
        },
        Kind::single(RESUME),
        Kind::single(ACTIVATE),
        Kind {
            name: TRIAL_END,
            steps: vec![
                Step {
                    name: "end_trial",
                    reaches_out: false,
                    apply: end_trial_step,
                    compensate: None,
                    skip: None,
                },
                Step {
                    name: "end_sessions",
                    reaches_out: true,
                    apply: end_sessions,
                    compensate: None,
                    skip: None,
                },
                super::network::enforce_step(),
            ],
            point_of_no_return: 1,
        },
    ]
}

#[derive(Debug, Serialize, Deserialize)]
struct SuspendParams {
    tenant: Uuid,
    #[serde(default)]
    reason: Option<String>,
    actor: String,
}

/// What the change step journals: the tenant after it, and the logins whose sessions
/// the next step ends.
#[derive(Debug, Serialize, Deserialize)]
struct Changed {
    tenant: Tenant,
    logins: Vec<String>,
}

/// `POST /api/v1/tenants/{name}/suspend`.
pub async fn suspend(
    rt: &Runtime,
    key: &str,
    req: &SuspendTenant,
    actor: &str,
) -> Result<Tenant, Error> {
    let t = service::get(rt, key).await?;
    if super::on_server::placed(&t) {
        return super::on_server::suspend(rt, &t, req, actor).await;
    }
    run_two_steps(
        rt,
        SUSPEND,
        &t,
        json!(SuspendParams {
            tenant: t.id,
            reason: req.reason.clone(),
            actor: actor.to_string(),
        }),
    )
    .await
}

async fn run_two_steps(
    rt: &Runtime,
    kind: &'static str,
    t: &Tenant,
    params: Value,
) -> Result<Tenant, Error> {
    let done = rt
        .engine
        .run(
            rt,
            NewOp {
                kind,
                tenant_id: Some(t.id),
                tenant_name: t.name.as_str(),
                params,
                idempotency: None,
            },
        )
        .await?;
    match done {
        crate::ops::Done::Finished(v) => {
            // The last step (the network render) answers with the first one's outcome.
            let changed: Changed =
                serde_json::from_value(v["change"].clone()).map_err(service::Error::from)?;
            Ok(changed.tenant)
        }
        crate::ops::Done::Replay(_) => unreachable!("no idempotency key"),
    }
}

fn suspend_step<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: SuspendParams = run.params()?;
        let mut client = p.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let current = lock_tenant(&tx, &params.tenant.to_string())
            .await
            .map_err(step_error)?;
        let (tenant, logins) = suspension::suspend_locked(
            p,
            &tx,
            &current,
            &SuspendTenant {
                reason: params.reason,
            },
            run.id,
            &params.actor,
        )
        .await
        .map_err(step_error)?;
        // The render that ends this kind must see the change.
        crate::store::network::bump_if_restricted(&tx, tenant.id, tenant.vpn_enabled)
            .await
            .map_err(failed)?;
        let outcome = serde_json::to_value(Changed { tenant, logins }).map_err(failed)?;
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// Ends the sessions of the logins the change step turned off, if they are still off
/// (a resume since gave them back: its sessions are its own).
fn end_sessions<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let first = run.steps()[0];
        let changed: Changed = run
            .outcome(first)
            .ok_or_else(|| crate::ops::StepError::Fenced("no change to follow".into()))?;
        let client = p.pool.get().await.map_err(failed)?;
        let now = crate::store::tenants::get(&client, changed.tenant.id)
            .await
            .map_err(failed)?;
        if now.status == Status::Suspended {
            let ended = access::end_sessions(&client, &changed.logins)
                .await
                .map_err(failed)?;
            tracing::info!(tenant.name = %now.name, sessions = ended, "tenant suspended");
            super::pooler::end_pooled(p, &now).await;
        }
        serde_json::to_value(changed).map_err(failed)
    })
}

/// `POST /api/v1/tenants/{name}/resume`.
pub async fn resume(rt: &Runtime, key: &str, actor: &str) -> Result<Tenant, Error> {
    let t = service::get(rt, key).await?;
    if super::on_server::placed(&t) {
        return super::on_server::resume(rt, &t, actor).await;
    }
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let current = lock_tenant(&tx, key).await?;
    let op = Uuid::now_v7();
    let tenant = suspension::resume_locked(rt, &tx, &current, op, actor).await?;
    let network = super::network::touch(rt, &tx, &tenant, false).await?;
    commit_one(rt, tx, RESUME, op, &tenant).await?;
    drop(client);
    super::network::follow(rt, network).await;
    tracing::info!(tenant.name = %tenant.name, "tenant resumed");
    Ok(tenant)
}

/// `POST /api/v1/tenants/{name}/activate`.
pub async fn activate(rt: &Runtime, key: &str, actor: &str) -> Result<Tenant, Error> {
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    // The registry's change only (no role moves): the same on every server.
    let current = lock_tenant_anywhere(&tx, key).await?;
    let op = Uuid::now_v7();
    let tenant = suspension::activate_locked(&tx, &current, op, actor).await?;
    commit_one(rt, tx, ACTIVATE, op, &tenant).await?;
    Ok(tenant)
}

#[derive(Debug, Serialize, Deserialize)]
struct TrialParams {
    tenant: Uuid,
}

/// The worker's part: ends every trial that is due, one operation each. Returns how
/// many ended.
pub async fn expire_trials(rt: &Runtime) -> Result<usize, Error> {
    let due = crate::store::tenants::ended_trials(&rt.pool.get().await?, 100)
        .await
        .map_err(service::Error::from)?;
    let mut n = 0;
    for t in due {
        match end_trial(rt, &t).await {
            Ok(_) => n += 1,
            // Another server's worker, or a change of the tenant, got there first.
            Err(Error::Rejected(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Ends one tenant's trial, if it is due (else 409).
pub async fn end_trial(rt: &Runtime, t: &Tenant) -> Result<Tenant, Error> {
    if super::on_server::placed(t) && t.plan == crate::tenant::lifecycle::FREE_PLAN {
        // A suspension on its server (its logins cut there).
        return super::on_server::end_free_trial(rt, t).await;
    }
    run_two_steps(rt, TRIAL_END, t, json!(TrialParams { tenant: t.id })).await
}

fn end_trial_step<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: TrialParams = run.params()?;
        let mut client = p.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        // A paid plan's trial ends in the registry only, wherever the tenant lives; a
        // free plan's on another server is `on_server`'s suspension (`end_trial`).
        let current = lock_tenant_anywhere(&tx, &params.tenant.to_string())
            .await
            .map_err(step_error)?;
        if super::on_server::placed(&current) && current.plan == crate::tenant::lifecycle::FREE_PLAN
        {
            return Err(crate::ops::StepError::Rejected(super::not_on_this_server(
                &current,
            )));
        }
        let due = current.status == Status::Trial
            && current
                .trial_ends_at
                .is_some_and(|at| at <= chrono::Utc::now());
        if !due {
            return Err(step_error(service::Error::Rejected(
                state::check(
                    current.name.as_str(),
                    current.status,
                    Status::Active,
                    "end the trial of",
                )
                .err()
                .unwrap_or_else(|| {
                    crate::problem::Problem::new(
                        crate::problem::Kind::Conflict,
                        "invalid_state",
                        "the trial is not due",
                    )
                }),
            )));
        }
        let (tenant, logins) = crate::tenant::lifecycle::end_trial_locked(p, &tx, &current, run.id)
            .await
            .map_err(step_error)?;
        // The render that ends this kind must see the change.
        crate::store::network::bump_if_restricted(&tx, tenant.id, tenant.vpn_enabled)
            .await
            .map_err(failed)?;
        let outcome = serde_json::to_value(Changed { tenant, logins }).map_err(failed)?;
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}
