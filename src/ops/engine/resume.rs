//! Taking up an operation another process left (a crash, a kill, a stop), by the
//! steps the build that began it listed (docs/operations.md, "Upgrades").

use std::sync::atomic::Ordering;

use serde_json::Value;

use super::{Context, Done, Engine, OpError, Start};
use crate::ops::kind::{Kind, Plan};
use crate::ops::run::Run;
use crate::store::operations as store;

impl<C: Context> Engine<C> {
    /// Takes up an operation another process left: where it stands decides whether it
    /// goes forward or is undone.
    pub(super) async fn resume(&self, cx: &C, row: store::OperationRow) -> Result<Done, OpError> {
        let kind = self.kind(&row.kind);
        let steps = store::steps(&self.inner.pool.get().await?, row.id).await?;
        let unfinished = |why: String| OpError::Unfinished {
            op: row.id,
            source: why.into(),
        };
        // Begun by a build whose kind listed other steps (an upgrade in the middle of
        // it): run by that build's list, each step by name (docs/operations.md,
        // "Upgrades"). One that list cannot be followed for, or begun before lists
        // were recorded, is left as it is for an operator: read by position it would
        // be misread, maybe undone past its point of no return.
        let listed = row.plan.as_ref().filter(|(names, ponr)| {
            *names != kind.step_names() || usize::try_from(*ponr) != Ok(kind.point_of_no_return)
        });
        let plan = match listed {
            Some((names, ponr)) => usize::try_from(*ponr)
                .map_err(|_| format!("its point of no return ({ponr}) is negative"))
                .and_then(|ponr| kind.plan_as(names, ponr))
                .map_err(unfinished)?,
            None => kind.plan(),
        };
        if let Some(r) = steps
            .iter()
            .find(|r| (plan.steps.get(r.seq as usize)).is_none_or(|s| s.name != r.name))
        {
            return Err(unfinished(format!(
                "its journal has step {} at position {}, where this build's {} has another",
                r.name, r.seq, kind.name
            )));
        }
        if listed.is_some() {
            tracing::warn!(operation.id = %row.id, operation.kind = kind.name, steps = ?plan.names(),
                "taking up an operation begun by a build whose kind listed other steps: it runs by that list");
        }
        let mut run = Run::new(
            row.id,
            kind.name,
            plan.names(),
            row.tenant_id,
            row.tenant_name.clone(),
            row.params.clone(),
            self.inner.pool.clone(),
        );
        run.load(&steps);
        run.listed_elsewhere = listed.map(|_| plan.point_of_no_return);
        run.abort.store(row.abort_requested, Ordering::SeqCst);
        // A skipped step left no row: it counts as done (a run taken up decides the
        // same skip from the same journal).
        let first_open = run
            .steps
            .iter()
            .zip(&plan.steps)
            .position(|(s, step)| {
                s.state.as_deref() != Some("applied")
                    && !(s.state.is_none() && step.skip.is_some_and(|skip| skip(&run)))
            })
            .unwrap_or(plan.steps.len());
        // A step waiting on the outside world (an answer by callback, kept in the
        // control database) is waited on again, not undone: nothing of the wait was lost.
        let waiting = run
            .steps
            .get(first_open)
            .is_some_and(|s| s.state.as_deref() == Some(crate::ops::run::WAITING));
        let forward = row.phase == "forward"
            && (first_open >= plan.point_of_no_return || (waiting && !row.abort_requested));
        tracing::warn!(operation.id = %row.id, operation.kind = kind.name, tenant.name = %row.tenant_name,
            step = plan.steps.get(first_open).map_or("(end)", |s| s.name),
            direction = if forward { "forward" } else { "undo" },
            "settling an operation its process left");
        run.seq = first_open;
        let start = if forward {
            Start::Fresh
        } else {
            Start::Compensate
        };
        if forward && waiting {
            // It may wait long (for a callback this very server must be up to take):
            // driven on a task of its own, so neither the start nor the reconciler's
            // round waits for it. Its lease is renewed as any running operation's.
            let (engine, cx) = (self.clone(), cx.clone());
            tokio::spawn(async move {
                if let Err(e) = engine.spawn(&cx, run, false, start).await {
                    tracing::warn!(error = %e, "a resumed waiting operation ended in error");
                }
            });
            return Ok(Done::Finished(Value::Null));
        }
        self.spawn(cx, run, false, start).await
    }
}

/// The steps `run` follows: this build's kind's, or (taken up from a build whose kind
/// listed other steps) that build's list, checked when it was taken up.
pub(super) fn plan_of<'k, C>(kind: &'k Kind<C>, run: &Run) -> Plan<'k, C> {
    match run.listed_elsewhere {
        None => kind.plan(),
        Some(ponr) => kind
            .plan_as(&run.names, ponr)
            .expect("checked when the run was taken up"),
    }
}
