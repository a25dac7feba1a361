//! The `integrations` step of a tenant create (docs/onboarding-steps.md): every
//! onboarding step the create matched (decided in its first step, in the transaction
//! that registers the tenant) is called in turn, signed, after the database work and
//! before activation; the tenant stays `provisioning` meanwhile. Before each call the
//! step journals which steps have answered and which it is calling (`Run::intend`);
//! each answer is stored on the tenant (`integrations.<name>`) under the tenant's lock.
//! A step that fails or times out fails the create, and the engine undoes it: this
//! step's compensation calls the `compensate_url` of every step that answered (and of
//! one a crash left without a known answer), then the database work is dropped.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{failed, Runtime};
use crate::integrations::{self, call};
use crate::ops::{fence, Run, StepError, StepFuture};
use crate::problem::{Kind as ProblemKind, Problem};
use crate::store::onboarding::{self as store, StepRow};

/// This step's journaled intent.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    /// Steps that answered 2xx, in call order.
    #[serde(default)]
    done: Vec<String>,
    /// The step being called (its answer unknown to the journal), or that answered
    /// 202 and has not settled.
    #[serde(default)]
    calling: Option<String>,
    /// Set once `calling` answered 202: the step is waiting for its callback until then
    /// (journaled `waiting`: a restart waits on, see `Run::wait`).
    #[serde(default)]
    until: Option<DateTime<Utc>>,
}

/// How often a waiting step looks for its callback in the control database (the
/// callback may reach any server of the control plane).
const POLL: Duration = Duration::from_millis(200);

/// The path a step calls back on, under the server's API.
pub fn callback_path(operation: Uuid, step: &str) -> String {
    format!("/api/v1/operations/{operation}/steps/{step}/complete")
}

/// The names of the steps the create matched, as its first step journaled them.
fn matched(run: &Run) -> Vec<String> {
    let first = run.steps()[0];
    run.outcome::<Value>(first)
        .and_then(|v| serde_json::from_value(v["onboarding"].clone()).ok())
        .unwrap_or_default()
}

/// The create's `integrations` step is skipped when its plan and mode match none.
pub(crate) fn none_matched(run: &Run) -> bool {
    matched(run).is_empty()
}

fn tenant_ref(run: &Run) -> Value {
    let first = run.steps()[0];
    let registered = run.outcome::<Value>(first).unwrap_or(Value::Null);
    json!({"id": run.tenant_id, "name": run.tenant_name, "plan": registered["plan"],
           "isolation": registered.get("isolation").cloned().unwrap_or(json!("database"))})
}

async fn registration(rt: &Runtime, name: &str) -> Result<Option<StepRow>, StepError> {
    let c = rt.pool.get().await.map_err(failed)?;
    store::find(&c, name).await.map_err(failed)
}

fn refusal(kind: ProblemKind, code: &str, message: String) -> StepError {
    StepError::Rejected(Problem::new(kind, code, message))
}

pub(crate) fn integrations<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let names = matched(run);
        if names.is_empty() {
            return Ok(Value::Null);
        }
        let tenant_id = run
            .tenant_id
            .ok_or_else(|| StepError::Fenced("the operation names no tenant".into()))?;
        let mut progress: Progress = run.intent("integrations").unwrap_or_default();
        for name in names {
            if progress.done.contains(&name) {
                continue;
            }
            // Removed since the create began: the operator no longer wants it called.
            let Some(step) = registration(rt, &name).await? else {
                continue;
            };
            let timeout = Duration::from_millis(step.timeout_ms as u64);
            // Resumed after a restart while waiting for this step's callback: wait on.
            let resumed = progress.calling.as_deref() == Some(&name) && progress.until.is_some();
            let answer = if resumed {
                call::Answer::Accepted
            } else {
                progress.calling = Some(name.clone());
                progress.until = None;
                run.intend(vec![], serde_json::to_value(&progress).map_err(failed)?)
                    .await?;
                let secret = integrations::secret(rt, &step).map_err(failed)?;
                let path = callback_path(run.id, &name);
                let url = rt.public_url.as_deref().map(|u| format!("{u}{path}"));
                let body = json!({"operation_id": run.id, "step": name, "tenant": tenant_ref(run),
                                  "callback_url": url, "callback_path": path});
                let id = format!("{}_{name}", run.id);
                call::post(&step.url, &secret, &id, &body, timeout).await
            };
            let answer = match answer {
                call::Answer::Done(v) => v,
                call::Answer::Accepted => {
                    if progress.until.is_none() {
                        let wait = chrono::Duration::from_std(timeout).map_err(failed)?;
                        progress.until = Some(Utc::now() + wait);
                        run.wait(serde_json::to_value(&progress).map_err(failed)?)
                            .await?;
                    }
                    let until = progress.until.expect("set above");
                    // It accepted the work: its compensation is called whatever comes
                    // (`calling` stays set until it is settled as done).
                    await_callback(rt, run, &name, until, step.timeout_ms).await?
                }
                other => {
                    // Its answer is known: nothing of it to undo.
                    progress.calling = None;
                    run.intend(vec![], serde_json::to_value(&progress).map_err(failed)?)
                        .await?;
                    return Err(match other {
                        call::Answer::TimedOut => refusal(
                            ProblemKind::Timeout,
                            "onboarding_step_timeout",
                            format!("onboarding step {name:?} did not answer within {}s; the tenant was not created",
                                step.timeout_ms as f64 / 1000.0),
                        ),
                        call::Answer::Failed(why) => refusal(
                            ProblemKind::BadGateway,
                            "onboarding_step_failed",
                            format!("onboarding step {name:?} failed: {why}; the tenant was not created"),
                        ),
                        call::Answer::Done(_) | call::Answer::Accepted => unreachable!(),
                    });
                }
            };
            let mut client = rt.pool.get().await.map_err(failed)?;
            let tx = client.transaction().await.map_err(failed)?;
            fence::lock_name(&tx, &run.tenant_name).await?;
            fence::check(&tx, run).await?;
            crate::store::tenants::set_integration(&tx, tenant_id, &name, &answer)
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            progress.done.push(name);
            progress.calling = None;
            progress.until = None;
        }
        let outcome = json!({"answered": progress.done});
        Ok(outcome)
    })
}

/// Waits for the callback of a step that answered 202, until `until` (the step's
/// timeout after its 202); the keeper renews the operation's lease meanwhile. The
/// timeout is settled in the same table as the callback, once: whichever is written
/// first is the step's answer.
async fn await_callback(
    rt: &Runtime,
    run: &Run,
    name: &str,
    until: DateTime<Utc>,
    timeout_ms: i32,
) -> Result<Value, StepError> {
    let settled = loop {
        let c = rt.pool.get().await.map_err(failed)?;
        if let Some(row) = store::settled(&c, run.id, name).await.map_err(failed)? {
            break row;
        }
        if Utc::now() >= until {
            let timed_out = store::settle(&c, run.id, name, "timed_out", None, None)
                .await
                .map_err(failed)?;
            match timed_out {
                Some(row) => break row,
                None => continue, // the callback came in meanwhile
            }
        }
        drop(c);
        tokio::time::sleep(POLL).await;
    };
    match settled.status.as_str() {
        "succeeded" => Ok(settled.result.unwrap_or_else(|| json!({}))),
        "timed_out" => Err(refusal(
            ProblemKind::Timeout,
            "onboarding_step_timeout",
            format!(
                "onboarding step {name:?} answered 202 and did not call back within {}s; the tenant was not created",
                timeout_ms as f64 / 1000.0
            ),
        )),
        _ => Err(refusal(
            ProblemKind::BadGateway,
            "onboarding_step_failed",
            format!(
                "onboarding step {name:?} failed (its callback said so); the tenant was not created"
            ),
        )),
    }
}

/// Calls the `compensate_url` of every step that answered (last first), and of one a
/// crash left mid-call (it may have done its work). An endpoint that fails is logged:
/// the tenant's own objects are dropped whatever it answers.
pub(crate) fn undo_integrations<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let Some(progress) = run.intent::<Progress>("integrations") else {
            return Ok(Value::Null);
        };
        let mut names = progress.done.clone();
        names.extend(progress.calling.clone());
        for name in names.iter().rev() {
            let Some(step) = registration(rt, name).await? else {
                continue;
            };
            let Some(url) = step.compensate_url.as_deref() else {
                continue;
            };
            let secret = integrations::secret(rt, &step).map_err(failed)?;
            let body = json!({"operation_id": run.id, "step": name, "tenant": tenant_ref(run),
                              "compensate": true});
            let id = format!("{}_{name}_compensate", run.id);
            let timeout = Duration::from_millis(step.timeout_ms as u64);
            match call::post(url, &secret, &id, &body, timeout).await {
                call::Answer::Done(_) | call::Answer::Accepted => {}
                other => {
                    tracing::error!(operation.id = %run.id, step = %name, answer = ?other,
                        "an onboarding step's compensation failed; the tenant's own objects are dropped anyway")
                }
            }
        }
        Ok(Value::Null)
    })
}

/// The purge's `integrations` step (forward only): the `compensate_url` of every step
/// whose answer the tenant holds, each once (the journal keeps which were called). A
/// step whose registration is gone, or that has no `compensate_url`, is skipped; one
/// that fails keeps the purge retrying, as every forward step does.
pub(crate) fn release_integrations<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let id = run
            .tenant_id
            .ok_or_else(|| StepError::Fenced("the operation names no tenant".into()))?;
        let t = {
            let c = rt.pool.get().await.map_err(failed)?;
            crate::store::tenants::get(&c, id).await.map_err(failed)?
        };
        let answers = t.integrations.as_object().cloned().unwrap_or_default();
        let mut released: Vec<String> = run.intent(run.step()).unwrap_or_default();
        for (name, answer) in answers {
            if released.contains(&name) {
                continue;
            }
            let Some(step) = registration(rt, &name).await? else {
                continue;
            };
            let Some(url) = step.compensate_url.clone() else {
                continue;
            };
            run.intend(vec![], json!(released)).await?;
            let secret = integrations::secret(rt, &step).map_err(failed)?;
            let body = json!({"operation_id": run.id, "step": name, "compensate": true,
                "tenant": {"id": t.id, "name": t.name, "plan": t.plan, "isolation": t.isolation},
                "integration": answer});
            let msg = format!("{}_{name}_compensate", run.id);
            let timeout = Duration::from_millis(step.timeout_ms as u64);
            match call::post(&url, &secret, &msg, &body, timeout).await {
                call::Answer::Done(_) | call::Answer::Accepted => released.push(name),
                other => {
                    return Err(StepError::failed(std::io::Error::other(format!(
                        "onboarding step {name:?}'s compensation: {other:?}"
                    ))))
                }
            }
        }
        run.intend(vec![], json!(released)).await?;
        Ok(json!({"released": released}))
    })
}
