//! Lifecycle changes of a tenant on a server other than `default` (docs/servers.md):
//! suspend, resume, delete, restore (of a deleted tenant) and purge.
//!
//! On `default` each of these is one transaction spanning the registry and the
//! tenant's roles (both live in one cluster). On another server no transaction spans
//! both, so each is an operation of one shape, whatever the change:
//!
//! 1. `own` (control): the tenant locked, the change checked (a refusal changes
//!    nothing), the tenant owned by the operation (no other change meanwhile), and
//!    what the server part needs (its logins, what a suspension took) journaled;
//! 2. `on_server` (reaches out): the same domain function as on `default`, run on the
//!    tenant's server (logins off or back, sessions ended, objects dropped), its
//!    intent journaled before it commits there; idempotent;
//! 3. `record` (control): status, event, audit row; the tenant given back.
//!
//! A delete has two more steps before its record (the `pending` offboarding row, and
//! the final backup, taken from the tenant's server). A failure or a crash before the
//! record commits undoes the change on the server (the logins come back, or go again),
//! except for a purge, which after `own` only goes forward (as on `default`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{failed, hold_owned, run_kind, step_error, Error, Runtime};
use crate::ops::{fence, step, Kind, Run, StepError, StepFuture};
use crate::platform::Platform;
use crate::problem::{Kind as ProblemKind, Problem};
use crate::store::offboarding as records;
use crate::store::servers::DEFAULT;
use crate::tenant::offboarding as domain;
use crate::tenant::suspension::{self, Membership, SuspendTenant};
use crate::tenant::{access, placed, state, Status, Tenant};

pub const SUSPEND: &str = "tenant.suspend.placed";
pub const RESUME: &str = "tenant.resume.placed";
pub const DELETE: &str = "tenant.delete.placed";
pub const RESTORE: &str = "tenant.restore.placed";
pub const PURGE: &str = "tenant.purge.placed";

pub fn kinds() -> Vec<Kind<Runtime>> {
    let three = |name| super::placed_change(name, own, on_server, off_server, record);
    vec![
        three(SUSPEND),
        three(RESUME),
        three(RESTORE),
        Kind {
            name: DELETE,
            steps: vec![
                step("own", false, own, Some(super::give_back)),
                step("on_server", true, on_server, Some(off_server)),
                step("pending", false, pending, Some(unpending)),
                step(
                    "final_backup",
                    true,
                    super::offboarding::final_backup,
                    Some(super::offboarding::drop_final_backup),
                ),
                step(
                    "mark_deleted",
                    false,
                    super::offboarding::mark_deleted,
                    None,
                ),
            ],
            point_of_no_return: 5,
        },
        Kind {
            name: PURGE,
            steps: vec![
                step("own", false, own, None),
                step(
                    super::vector_store::STEP,
                    true,
                    super::vector_store::purge,
                    None,
                ),
                step("on_server", true, on_server, None),
                step("record", false, record, None),
            ],
            // Dropping is not undone: from the tenant owned on, the purge finishes.
            point_of_no_return: 1,
        },
    ]
}

/// Which change; journaled with the operation (no secret in it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
enum Change {
    Suspend {
        reason: Option<String>,
        /// The worker's end of a free plan's trial: only while the trial is due.
        #[serde(default)]
        trial_ended: bool,
        /// The role check found more than berqenas gives on a tenant role there.
        #[serde(default)]
        security_violation: bool,
    },
    Resume,
    Delete,
    Restore,
    Purge,
}

/// The operation's input. `tenant`, `retention_days` and `actor` are the names the
/// delete's shared steps (`workflows::offboarding`) read.
#[derive(Debug, Serialize, Deserialize)]
struct Params {
    tenant: Uuid,
    server: String,
    #[serde(default)]
    retention_days: i64,
    actor: String,
    #[serde(flatten)]
    change: Change,
}

/// What `own` journals: the logins (from the registry) and, for a resume or restore,
/// what the suspension or delete took.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Plan {
    #[serde(default)]
    logins: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    memberships: Vec<Membership>,
    #[serde(default)]
    reason: Option<String>,
}

/// What a cut on the server took (`on_server`'s intent and outcome of a suspend or
/// delete), to record or give back.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Taken {
    roles: Vec<String>,
    memberships: Vec<Membership>,
    #[serde(default)]
    dropped: Vec<String>,
}

/// Whether the tenant lives on a server other than `default` (its changes then run
/// here).
pub fn placed(t: &Tenant) -> bool {
    t.server != DEFAULT
}

/// The platform as seen from the tenant's server (its pool, config, endpoint).
pub(super) async fn view_for(rt: &Runtime, t: &Tenant) -> Result<Platform, StepError> {
    if !placed(t) {
        return Ok(rt.platform.clone());
    }
    let s = super::servers::opened(&rt.platform, &t.server)
        .await
        .map_err(failed)?;
    Ok(rt.platform.on(&s))
}

/// The start of a compensation of a change on another server: the tenant's name
/// locked in `tx` (held until it ends), then, while this operation still owns the
/// tenant, the tenant and the platform as seen from its server. `None`: another
/// operation owns it now, and nothing may be touched.
pub(super) async fn still_owned(
    rt: &Runtime,
    tx: &deadpool_postgres::Transaction<'_>,
    run: &Run,
) -> Result<Option<(Tenant, Platform)>, StepError> {
    fence::lock_name(tx, &run.tenant_name).await?;
    if !fence::owns(tx, run).await? {
        return Ok(None);
    }
    let t = super::owned_tenant(rt, run).await?;
    let view = view_for(rt, &t).await?;
    Ok(Some((t, view)))
}

/// A caller's answer when the tenant's server cannot be reached: 503, retry later.
pub(super) fn unavailable(e: StepError) -> Error {
    Error::Rejected(Problem::new(
        ProblemKind::Unavailable,
        "server_unavailable",
        format!("the tenant's server cannot be reached: {e}"),
    ))
}

async fn run_change(
    rt: &Runtime,
    kind: &'static str,
    t: &Tenant,
    change: Change,
    retention_days: i64,
    actor: &str,
) -> Result<Tenant, Error> {
    let params = Params {
        tenant: t.id,
        server: t.server.clone(),
        retention_days,
        actor: actor.to_string(),
        change,
    };
    run_kind(rt, kind, Some(t.id), t.name.as_str(), &params).await?;
    Ok(domain::describe(&rt.pool.get().await?, t.id).await?)
}

/// Suspends a tenant on another server.
pub async fn suspend(
    rt: &Runtime,
    t: &Tenant,
    req: &SuspendTenant,
    actor: &str,
) -> Result<Tenant, Error> {
    let change = Change::Suspend {
        reason: req.reason.clone(),
        trial_ended: false,
        security_violation: false,
    };
    run_change(rt, SUSPEND, t, change, 0, actor).await
}

/// Ends the due trial of a free-plan tenant on another server: suspended there, as
/// the worker does on `default` (409 when the trial is no longer due).
pub async fn end_free_trial(rt: &Runtime, t: &Tenant) -> Result<Tenant, Error> {
    let change = Change::Suspend {
        reason: Some(crate::tenant::lifecycle::TRIAL_ENDED.into()),
        trial_ended: true,
        security_violation: false,
    };
    run_change(rt, SUSPEND, t, change, 0, "worker").await
}

/// Suspends a tenant on another server whose roles there had more than berqenas
/// gives (the role check took it away already): its event's cause is
/// `security_violation`.
pub async fn suspend_for_violation(
    rt: &Runtime,
    t: &Tenant,
    what: &[String],
) -> Result<Tenant, Error> {
    let reason = format!("security violation: {}", what.join("; "));
    let change = Change::Suspend {
        reason: Some(reason.chars().take(suspension::MAX_REASON).collect()),
        trial_ended: false,
        security_violation: true,
    };
    run_change(rt, SUSPEND, t, change, 0, "berqenas").await
}

/// Resumes a suspended tenant on another server.
pub async fn resume(rt: &Runtime, t: &Tenant, actor: &str) -> Result<Tenant, Error> {
    run_change(rt, RESUME, t, Change::Resume, 0, actor).await
}

/// Soft-deletes a tenant on another server (its final backup taken from there).
pub async fn delete(
    rt: &Runtime,
    t: &Tenant,
    retention_days: i64,
    actor: &str,
) -> Result<Tenant, Error> {
    run_change(rt, DELETE, t, Change::Delete, retention_days, actor).await
}

/// Restores a deleted tenant on another server.
pub async fn restore(rt: &Runtime, t: &Tenant, actor: &str) -> Result<Tenant, Error> {
    run_change(rt, RESTORE, t, Change::Restore, 0, actor).await
}

/// Purges a deleted tenant on another server: its objects dropped there.
pub async fn purge(rt: &Runtime, t: &Tenant, actor: &str) -> Result<Tenant, Error> {
    run_change(rt, PURGE, t, Change::Purge, 0, actor).await
}

fn logins_of(roles: Vec<crate::pg::Ident>) -> Vec<String> {
    roles.iter().map(|r| r.as_str().to_string()).collect()
}

/// 1. The change checked and the tenant owned, in one control transaction.
fn own<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = super::lock_tenant_on(&tx, p.tenant, &p.server).await?;
        let logins = logins_of(access::login_roles(&tx, &t).await.map_err(failed)?);
        let plan = match &p.change {
            Change::Suspend {
                reason,
                trial_ended,
                ..
            } => {
                let due = t.status == Status::Trial
                    && t.trial_ends_at.is_some_and(|at| at <= chrono::Utc::now());
                if *trial_ended && !due {
                    return Err(StepError::Rejected(Problem::new(
                        ProblemKind::Conflict,
                        "invalid_state",
                        "the trial is not due",
                    )));
                }
                let req = SuspendTenant {
                    reason: reason.clone(),
                };
                let reason = suspension::check_suspend(&tx, &t, &req)
                    .await
                    .map_err(step_error)?;
                Plan {
                    logins,
                    reason,
                    ..Plan::default()
                }
            }
            Change::Resume => {
                let (roles, memberships) = suspension::check_resume(&tx, &t)
                    .await
                    .map_err(step_error)?;
                Plan {
                    logins,
                    roles,
                    memberships,
                    ..Plan::default()
                }
            }
            Change::Delete => {
                state::check(&t.name, t.status, Status::Deleted, "delete")
                    .map_err(StepError::Rejected)?;
                Plan {
                    logins,
                    ..Plan::default()
                }
            }
            Change::Restore => {
                let off = domain::restorable(&tx, &t).await.map_err(step_error)?;
                if t.status == Status::Purged {
                    // A purged tenant is rebuilt from its archive (`rebuild_placed`).
                    return Err(StepError::Rejected(Problem::new(
                        ProblemKind::Conflict,
                        "invalid_state",
                        format!("tenant {} is purged: it is rebuilt, not restored", t.name),
                    )));
                }
                Plan {
                    logins,
                    roles: off.disabled_roles,
                    memberships: off.disabled_memberships,
                    ..Plan::default()
                }
            }
            Change::Purge => {
                domain::purgeable(&tx, &t).await.map_err(step_error)?;
                Plan {
                    logins,
                    ..Plan::default()
                }
            }
        };
        fence::acquire(&tx, run, t.id).await?;
        let outcome = serde_json::to_value(&plan).map_err(failed)?;
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

fn plan_of(run: &Run) -> Result<Plan, StepError> {
    run.outcome("own")
        .ok_or_else(|| StepError::Fenced("the change was not checked".into()))
}

/// 2. The change on the tenant's server. A cut journals what it took before its
///    transaction there commits, so a rerun (or its undoing) works from that record
///    and not from what is left.
fn on_server<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let plan = plan_of(run)?;
        let t = super::owned_tenant(rt, run).await?;
        let view = view_for(rt, &t).await?;
        let su = view.caps.superuser;
        let mut c = view.pool.get().await.map_err(failed)?;
        let taken = match p.change {
            Change::Suspend { .. } | Change::Delete => {
                let stx = c.transaction().await.map_err(failed)?;
                let taken = match run.intent::<Taken>("on_server") {
                    Some(before) => {
                        suspension::take_back(&stx, &before.roles, &before.memberships, su)
                            .await
                            .map_err(failed)?;
                        before
                    }
                    None => {
                        let logins: Vec<crate::pg::Ident> = plan
                            .logins
                            .iter()
                            .map(|l| crate::pg::Ident::new(l.clone()))
                            .collect::<Result<_, _>>()
                            .map_err(failed)?;
                        let cut = suspension::cut_logins(&stx, &t, &logins, su)
                            .await
                            .map_err(failed)?;
                        let taken = Taken {
                            roles: cut.roles,
                            memberships: cut.memberships,
                            dropped: vec![],
                        };
                        run.intend(vec![], serde_json::to_value(&taken).map_err(failed)?)
                            .await?;
                        taken
                    }
                };
                stx.commit().await.map_err(failed)?;
                // After the commit: before it, a terminated client could log in again.
                access::end_sessions(&c, &plan.logins)
                    .await
                    .map_err(failed)?;
                super::pooler::end_pooled(rt, &t).await;
                taken
            }
            Change::Resume | Change::Restore => {
                suspension::restore(&c, &plan.roles, &plan.memberships, su)
                    .await
                    .map_err(failed)?;
                Taken::default()
            }
            Change::Purge => {
                drop(c);
                // The users' login roles (the tenant's own is among the fixed ones).
                let users: Vec<crate::pg::Ident> = plan
                    .logins
                    .iter()
                    .filter(|l| **l != t.role.as_str())
                    .map(|l| crate::pg::Ident::new(l.clone()))
                    .collect::<Result<_, _>>()
                    .map_err(failed)?;
                let dropped = placed::purge(&view, &t.name, t.isolation, &users)
                    .await
                    .map_err(step_error)?;
                Taken {
                    dropped,
                    ..Taken::default()
                }
            }
        };
        tracing::info!(tenant.name = %t.name, server = %t.server, step = "on_server", "changed on its server");
        serde_json::to_value(&taken).map_err(failed)
    })
}

/// Undoes [`on_server`] there, while this operation owns the tenant: a cut's logins
/// and memberships come back; a resume's or restore's go again (their sessions end).
fn off_server<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let Some(plan) = run.outcome::<Plan>("own") else {
            return Ok(Value::Null);
        };
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let Some((_, view)) = still_owned(rt, &tx, run).await? else {
            return Ok(Value::Null);
        };
        let su = view.caps.superuser;
        let c = view.pool.get().await.map_err(failed)?;
        match p.change {
            Change::Suspend { .. } | Change::Delete => {
                if let Some(taken) = run.intent::<Taken>("on_server") {
                    suspension::restore(&c, &taken.roles, &taken.memberships, su)
                        .await
                        .map_err(failed)?;
                }
            }
            Change::Resume | Change::Restore => {
                suspension::take_back(&c, &plan.roles, &plan.memberships, su)
                    .await
                    .map_err(failed)?;
                access::end_sessions(&c, &plan.roles)
                    .await
                    .map_err(failed)?;
            }
            Change::Purge => {}
        }
        Ok(Value::Null)
    })
}

/// Delete, 3. The offboarding row `pending`, with what the cut took.
fn pending<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let taken: Taken = run
            .outcome("on_server")
            .ok_or_else(|| StepError::Fenced("nothing was cut".into()))?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = hold_owned(&tx, run).await?;
        records::insert_pending(
            &tx,
            t.id,
            t.status,
            &taken.roles,
            &taken.memberships,
            p.retention_days as i32,
            &p.actor,
        )
        .await
        .map_err(failed)?;
        run.applied_in(&tx, &Value::Null).await?;
        tx.commit().await.map_err(failed)?;
        Ok(Value::Null)
    })
}

fn unpending<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        fence::lock_name(&tx, &run.tenant_name).await?;
        if !fence::owns(&tx, run).await? {
            return Ok(Value::Null);
        }
        let id = run.tenant_id.expect("an owned tenant");
        if records::find(&tx, id)
            .await
            .map_err(failed)?
            .is_some_and(|o| o.state == "pending")
        {
            records::delete(&tx, id).await.map_err(failed)?;
        }
        tx.commit().await.map_err(failed)?;
        Ok(Value::Null)
    })
}

/// 3. The registry's half of the change (the same domain functions as on `default`),
///    the tenant given back, the operation closed.
fn record<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let plan = plan_of(run)?;
        let taken: Taken = run.outcome("on_server").unwrap_or_default();
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = hold_owned(&tx, run).await?;
        let (after, network) = match p.change {
            Change::Suspend {
                trial_ended,
                security_violation,
                ..
            } => {
                let cut = suspension::Cut {
                    roles: taken.roles,
                    memberships: taken.memberships,
                };
                let cause = match (trial_ended, security_violation) {
                    (_, true) => "security_violation",
                    (true, _) => "trial_ended",
                    _ => "admin",
                };
                let after = suspension::record_suspended(
                    &tx,
                    &t,
                    plan.reason,
                    cause,
                    &cut,
                    run.id,
                    &p.actor,
                )
                .await
                .map_err(step_error)?;
                fence::release(&tx, run).await?;
                let network = super::network::touch(rt, &tx, &after, false)
                    .await
                    .map_err(super::refusal)?;
                (after, network)
            }
            Change::Resume => {
                let after = suspension::record_resumed(
                    &tx,
                    &t,
                    &plan.roles,
                    &plan.memberships,
                    run.id,
                    &p.actor,
                )
                .await
                .map_err(step_error)?;
                fence::release(&tx, run).await?;
                let network = super::network::touch(rt, &tx, &after, false)
                    .await
                    .map_err(super::refusal)?;
                (after, network)
            }
            Change::Restore => {
                let off = records::find(&tx, t.id)
                    .await
                    .map_err(failed)?
                    .ok_or_else(|| StepError::Fenced("the offboarding record is gone".into()))?;
                let details =
                    json!({"from": t.status.as_str(), "to": off.previous_status.as_str()});
                let after = domain::finish_restore(&tx, &t, &off, run.id, &p.actor, details)
                    .await
                    .map_err(step_error)?;
                fence::release(&tx, run).await?;
                let network = super::network::touch(rt, &tx, &after, false)
                    .await
                    .map_err(super::refusal)?;
                (after, network)
            }
            Change::Purge => {
                let after = domain::record_purged(&tx, &t, &taken.dropped, run.id, &p.actor)
                    .await
                    .map_err(step_error)?;
                let network = super::offboarding::forget(rt, &tx, &t, run).await?;
                (after, network)
            }
            Change::Delete => {
                return Err(StepError::Fenced("a delete ends with mark_deleted".into()))
            }
        };
        let outcome = json!({"tenant": after.id, "status": after.status.as_str()});
        run.finish_in(&tx, &outcome, None).await?;
        tx.commit().await.map_err(failed)?;
        drop(client);
        super::network::follow(rt, network).await;
        tracing::info!(tenant.name = %after.name, server = %after.server, status = after.status.as_str(), "changed on its server");
        Ok(outcome)
    })
}
