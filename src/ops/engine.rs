//! Running operations: forward step by step, journaled; compensated in reverse when
//! one fails (or the process died) before the kind's point of no return; finished
//! forward after it. One engine per process: it registers the process as an instance,
//! keeps the leases of the operations it runs alive (one keeper), and settles the
//! operations of processes that are gone (the reconciler, [`Engine::reconcile`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use serde_json::Value;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::failpoint::{self, Armed, At};
use super::kind::{Kind, Plan, Registry};
use super::run::Run;
use super::{lease_secs, Begin, Idempotency, NewOperation, StepError, StoredResponse};
use crate::problem::Problem;
use crate::store::operations as store;

mod resume;
use resume::plan_of;

/// What the engine needs of the layer that registers kinds.
pub trait Context: Clone + Send + Sync + 'static {
    /// Seals an answer kept for replaying an idempotent request (it may carry a secret
    /// shown once).
    fn seal(&self, plaintext: &[u8]) -> Vec<u8>;
}

/// A new operation.
pub struct NewOp<'a> {
    pub kind: &'static str,
    pub tenant_id: Option<Uuid>,
    pub tenant_name: &'a str,
    pub params: Value,
    pub idempotency: Option<&'a Idempotency>,
}

/// How an operation ended for its caller.
#[derive(Debug)]
pub enum Done {
    /// It ran to the end: the last step's outcome.
    Finished(Value),
    /// The same idempotent request was answered before: its sealed answer.
    Replay(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The request cannot be done (a conflict, a bad field): nothing of it is left.
    #[error("{}", .0.message)]
    Rejected(Problem),
    #[error("a request with this Idempotency-Key is still in progress")]
    InProgress,
    #[error("this Idempotency-Key was already used with a different request")]
    Mismatch,
    /// It failed and was undone.
    #[error("operation {op} failed and was undone: {source}")]
    Failed {
        op: Uuid,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// It failed past its point of no return, or its undoing failed: it stays in the
    /// journal, and a reconciler finishes it.
    #[error("operation {op} did not finish; the worker will: {source}")]
    Unfinished {
        op: Uuid,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server is stopping: the operation stopped at a step boundary and is
    /// finished or undone at the next start.
    #[error("operation {0} was interrupted by the server stopping")]
    Stopping(Uuid),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
}

impl From<StepError> for OpError {
    fn from(e: StepError) -> Self {
        match e {
            StepError::Rejected(p) => OpError::Rejected(p),
            other => OpError::Failed {
                op: Uuid::nil(),
                source: Box::new(other),
            },
        }
    }
}

pub(super) struct Inner<C: Context> {
    pub(super) pool: Pool,
    pub(super) instance: Uuid,
    registry: Registry<C>,
    /// Operations this process is driving (their leases are renewed).
    pub(super) active: Mutex<HashMap<Uuid, Running>>,
    stopping: AtomicBool,
    armed: Armed,
    keeper: Mutex<Option<JoinHandle<()>>>,
}

/// An operation this process drives: its task, and the flag the keeper sets when an
/// operator asks to abort it.
pub(super) struct Running {
    task: tokio::task::AbortHandle,
    pub(super) abort: Arc<AtomicBool>,
}

/// The operation engine of one process. Cheap to clone.
pub struct Engine<C: Context> {
    inner: Arc<Inner<C>>,
}

impl<C: Context> Clone for Engine<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

/// Removes an operation from the active set when its driver ends, however it ends.
struct Active<C: Context>(Engine<C>, Uuid);

impl<C: Context> Drop for Active<C> {
    fn drop(&mut self) {
        self.0
            .inner
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

impl<C: Context> Engine<C> {
    /// Registers this process (`identity`: what makes a restart of it the same server,
    /// e.g. host and data directory; the instances of that identity still marked
    /// running are dead for certain, and their operations are taken over by the next
    /// reconciliation at once) and starts the keeper.
    pub async fn start(pool: Pool, identity: &str, registry: Registry<C>) -> Result<Self, OpError> {
        let instance = Uuid::new_v4();
        let replaced = store::register_instance(
            &pool.get().await?,
            instance,
            identity,
            std::process::id() as i32,
        )
        .await?;
        if replaced > 0 {
            tracing::warn!(
                identity,
                "a previous process of this server is gone: its operations are settled now"
            );
        }
        let engine = Self {
            inner: Arc::new(Inner {
                pool,
                instance,
                registry,
                active: Mutex::new(HashMap::new()),
                stopping: AtomicBool::new(false),
                armed: Armed::default(),
                keeper: Mutex::new(None),
            }),
        };
        let keeper = tokio::spawn(super::keeper::keep(engine.downgrade()));
        *engine
            .inner
            .keeper
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(keeper);
        Ok(engine)
    }

    fn downgrade(&self) -> std::sync::Weak<Inner<C>> {
        Arc::downgrade(&self.inner)
    }

    pub fn instance(&self) -> Uuid {
        self.inner.instance
    }

    pub fn registry(&self) -> &Registry<C> {
        &self.inner.registry
    }

    /// Failpoints armed on this engine (tests).
    pub fn failpoints(&self) -> &Armed {
        &self.inner.armed
    }

    /// Commits the transaction of a one-transaction operation ([`Kind::single`]),
    /// through its step boundary's failpoints.
    pub async fn commit(
        &self,
        tx: deadpool_postgres::Transaction<'_>,
        kind: &'static str,
    ) -> Result<(), tokio_postgres::Error> {
        debug_assert!(
            self.kind(kind).is_single(),
            "{kind} is not a one-transaction kind"
        );
        self.inner
            .armed
            .reach(&failpoint::boundary(kind, super::kind::COMMIT, At::Before))
            .await;
        tx.commit().await?;
        self.inner
            .armed
            .reach(&failpoint::boundary(kind, super::kind::COMMIT, At::After))
            .await;
        Ok(())
    }

    /// Runs a new operation to its end (or its undoing) and returns how it ended. It
    /// runs on a task of its own: a caller that goes away (an HTTP client hanging up)
    /// does not stop it half way.
    pub async fn run(&self, cx: &C, new: NewOp<'_>) -> Result<Done, OpError> {
        let idempotent = new.idempotency.is_some();
        let begun = {
            let c = self.inner.pool.get().await?;
            self.begin_on(&c, new).await?
        };
        match begun {
            Ok(run) => self.spawn(cx, run, idempotent, Start::Fresh).await,
            Err(sealed) => Ok(Done::Replay(sealed)),
        }
    }

    /// Begins a new operation inside the caller's transaction, beside whatever else the
    /// caller writes there (a record its clients poll, keyed by the operation's id). Once
    /// that transaction commits, [`Engine::launch`] drives it; if the process dies in
    /// between, the operation is this instance's, and the next start settles it. If the
    /// caller rolls back, there is no operation.
    pub async fn begin_in(
        &self,
        tx: &impl deadpool_postgres::GenericClient,
        new: NewOp<'_>,
    ) -> Result<Begun, OpError> {
        match self.begin_on(tx, new).await? {
            Ok(run) => Ok(Begun(run)),
            // A replay has nothing to drive: the caller's request is still in progress.
            Err(_) => Err(OpError::InProgress),
        }
    }

    /// The operation's row, written on `c`, and its run; or the sealed answer of an
    /// earlier request with the same idempotency key.
    async fn begin_on(
        &self,
        c: &impl deadpool_postgres::GenericClient,
        new: NewOp<'_>,
    ) -> Result<Result<Run, Vec<u8>>, OpError> {
        let kind = self.kind(new.kind);
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err(OpError::Stopping(Uuid::nil()));
        }
        let id = Uuid::now_v7();
        let names = kind.step_names();
        let begun = super::begin(
            c,
            &NewOperation {
                id,
                kind: new.kind,
                tenant_id: new.tenant_id,
                tenant_name: new.tenant_name,
                idempotency: new.idempotency,
                params: Some(&new.params),
                instance: Some(self.inner.instance),
                plan: Some((&names, kind.point_of_no_return as i32)),
            },
        )
        .await?;
        match begun {
            Begin::Started => Ok(Ok(Run::new(
                id,
                kind.name,
                names,
                new.tenant_id,
                new.tenant_name.to_string(),
                new.params,
                self.inner.pool.clone(),
            ))),
            Begin::Replay(sealed) => Ok(Err(sealed)),
            Begin::InProgress => Err(OpError::InProgress),
            Begin::Mismatch => Err(OpError::Mismatch),
        }
    }

    /// Drives an operation [`Engine::begin_in`] began (its transaction committed) on a
    /// task of its own, and returns that task: the caller may answer before it ends.
    pub fn launch(&self, cx: &C, begun: Begun) -> JoinHandle<Result<Done, OpError>> {
        let (engine, cx) = (self.clone(), cx.clone());
        tokio::spawn(async move { engine.spawn(&cx, begun.0, false, Start::Fresh).await })
    }

    fn kind(&self, name: &str) -> &Kind<C> {
        self.inner
            .registry
            .get(name)
            .unwrap_or_else(|| panic!("operation kind {name} is not registered"))
    }

    async fn spawn(
        &self,
        cx: &C,
        run: Run,
        idempotent: bool,
        start: Start,
    ) -> Result<Done, OpError> {
        let (id, abort) = (run.id, run.abort.clone());
        let (engine, cx) = (self.clone(), cx.clone());
        let task = tokio::spawn(async move {
            let _active = Active(engine.clone(), id);
            engine.drive(&cx, run, idempotent, start).await
        });
        self.inner
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Running {
                    task: task.abort_handle(),
                    abort,
                },
            );
        match task.await {
            Ok(result) => result,
            // Killed (a test's crash) or panicked: the lease lapses, a reconciler settles it.
            Err(e) => Err(OpError::Unfinished {
                op: id,
                source: Box::new(e),
            }),
        }
    }

    async fn drive(
        &self,
        cx: &C,
        mut run: Run,
        idempotent: bool,
        start: Start,
    ) -> Result<Done, OpError> {
        let kind = self.kind(run.kind);
        let plan = plan_of(kind, &run);
        if let Start::Compensate = start {
            return self.undo(cx, &mut run, &plan, None, idempotent).await;
        }
        while run.seq < plan.steps.len() {
            if self.inner.stopping.load(Ordering::SeqCst) {
                return Err(OpError::Stopping(run.id));
            }
            if run.seq < plan.point_of_no_return && run.abort_requested() {
                tracing::warn!(operation.id = %run.id, operation.kind = kind.name,
                    "aborted on request: undoing the operation");
                // Undone from the last step applied: the next one has not begun.
                run.seq = run.seq.saturating_sub(1);
                return self
                    .undo(cx, &mut run, &plan, Some(super::aborted()), idempotent)
                    .await;
            }
            let step = plan.steps[run.seq];
            self.inner
                .armed
                .reach(&failpoint::boundary(kind.name, step.name, At::Before))
                .await;
            if run.steps[run.seq].state.is_none() && step.skip.is_some_and(|skip| skip(&run)) {
                // Nothing to do: nothing journaled (see `Step::skip`). Its boundaries
                // are still reached, so the crash matrix kills a run there too.
                self.inner
                    .armed
                    .reach(&failpoint::boundary(kind.name, step.name, At::After))
                    .await;
                run.seq += 1;
                continue;
            }
            if step.reaches_out && run.steps[run.seq].state.is_none() {
                let c = self.inner.pool.get().await?;
                store::put_step(&c, run.id, run.seq as i32, step.name, "started", None, None)
                    .await?;
                run.steps[run.seq].state = Some("started".into());
            }
            run.recorded = false;
            let began = std::time::Instant::now();
            match (step.apply)(cx, &mut run).await {
                Ok(outcome) => {
                    tracing::debug!(
                        operation.kind = kind.name,
                        step = step.name,
                        elapsed_us = began.elapsed().as_micros() as u64,
                        "step applied"
                    );
                    if !run.recorded {
                        let c = self.inner.pool.get().await?;
                        store::put_step(
                            &c,
                            run.id,
                            run.seq as i32,
                            step.name,
                            "applied",
                            None,
                            Some(&outcome),
                        )
                        .await?;
                    }
                    let s = &mut run.steps[run.seq];
                    s.state = Some("applied".into());
                    s.outcome = Some(outcome);
                    self.inner
                        .armed
                        .reach(&failpoint::boundary(kind.name, step.name, At::After))
                        .await;
                    run.seq += 1;
                }
                Err(e) if run.seq >= plan.point_of_no_return => {
                    // Forward only: a reconciler retries once the lease lapses.
                    tracing::error!(operation.id = %run.id, operation.kind = kind.name, step = step.name, error = %e,
                        "a step past the point of no return failed; the worker will finish the operation");
                    // The operations API shows this: no database's text, only where.
                    let c = self.inner.pool.get().await?;
                    c.execute(
                        "UPDATE berqenas.operations SET error = $2 WHERE id = $1",
                        &[&run.id, &public_failure(step.name, true)],
                    )
                    .await?;
                    return Err(OpError::Unfinished {
                        op: run.id,
                        source: Box::new(e),
                    });
                }
                Err(e) => {
                    tracing::warn!(operation.id = %run.id, operation.kind = kind.name, step = step.name, error = %e,
                        "a step failed: undoing the operation");
                    return self.undo(cx, &mut run, &plan, Some(e), idempotent).await;
                }
            }
        }
        let answer = run
            .steps
            .last()
            .and_then(|s| s.outcome.clone())
            .unwrap_or(Value::Null);
        self.clean(cx, &run).await?;
        if !run.closed {
            let response = idempotent.then(|| {
                cx.seal(
                    &serde_json::to_vec(&StoredResponse::Success(answer.clone()))
                        .expect("plain data serialises"),
                )
            });
            let c = self.inner.pool.get().await?;
            let closed = store::close(&c, run.id, "succeeded", None, response.as_deref()).await?;
            observe(closed, "succeeded");
        } else {
            crate::metrics::operation_finished(kind.name, "succeeded", 0.0);
        }
        Ok(Done::Finished(answer))
    }

    /// Compensates every step that was applied or started, last first, then closes
    /// the operation as failed. `cause`: the error that started it (`None`: a dead
    /// process's operation).
    async fn undo(
        &self,
        cx: &C,
        run: &mut Run,
        plan: &Plan<'_, C>,
        cause: Option<StepError>,
        idempotent: bool,
    ) -> Result<Done, OpError> {
        {
            let c = self.inner.pool.get().await?;
            store::set_phase(&c, run.id, "compensating").await?;
        }
        let failed_at = run.seq;
        for i in (0..plan.steps.len()).rev() {
            let state = run.steps[i].state.clone();
            let touched = matches!(
                state.as_deref(),
                Some("applied") | Some("started") | Some("waiting")
            )
                // The step that failed: its own transaction rolled back, but a step
                // that reaches out may have done part of its work.
                || (i == failed_at && cause.is_some() && plan.steps[i].reaches_out);
            if !touched {
                continue;
            }
            let step = plan.steps[i];
            run.seq = i;
            if let Some(compensate) = step.compensate {
                if let Err(e) = compensate(cx, run).await {
                    tracing::error!(operation.id = %run.id, operation.kind = run.kind, step = step.name, error = %e,
                        "undoing a step failed; the worker will try again");
                    return Err(OpError::Unfinished {
                        op: run.id,
                        source: Box::new(e),
                    });
                }
            }
            let c = self.inner.pool.get().await?;
            store::put_step(&c, run.id, i as i32, step.name, "compensated", None, None).await?;
            run.steps[i].state = Some("compensated".into());
        }
        self.clean(cx, run).await?;
        let (message, rejection) = match &cause {
            Some(StepError::Rejected(p)) => (p.message.clone(), Some(p.clone())),
            // Logged above with its text; the row (which the operations API shows)
            // says only where it failed.
            Some(_) => (
                public_failure(plan.steps.get(failed_at).map_or("(end)", |s| s.name), false),
                None,
            ),
            None => (
                "the process running it stopped; it was undone".to_string(),
                None,
            ),
        };
        // A refusal is the answer to replay; an outage is not (the client may retry).
        let response = match (&rejection, idempotent) {
            (Some(p), true) if !p.kind.is_outage() => Some(
                cx.seal(
                    &serde_json::to_vec(&StoredResponse::Failure(p.clone()))
                        .expect("plain data serialises"),
                ),
            ),
            _ => None,
        };
        let c = self.inner.pool.get().await?;
        let closed =
            store::close(&c, run.id, "failed", Some(&message), response.as_deref()).await?;
        observe(closed, "failed");
        Err(match cause {
            Some(StepError::Rejected(p)) => OpError::Rejected(p),
            Some(e) => OpError::Failed {
                op: run.id,
                source: Box::new(e),
            },
            None => OpError::Failed {
                op: run.id,
                source: "the process running it stopped".into(),
            },
        })
    }

    /// Drops the scratch objects the operation declared (databases first: roles may
    /// own objects in them; files last).
    async fn clean(&self, cx: &C, run: &Run) -> Result<(), OpError> {
        let mut objects: Vec<_> = run
            .all_objects()
            .into_iter()
            .filter(|o| o.scratch)
            .collect();
        let order = |k: &str| match k {
            "database" => 0,
            "schema" => 1,
            "role" => 2,
            "file" => 4,
            _ => 3,
        };
        objects.sort_by_key(|o| order(&o.kind));
        for o in objects {
            let Some(clean) = self.inner.registry.cleaner_for(&o.kind) else {
                tracing::error!(object.kind = %o.kind, "no cleaner for this kind of scratch object");
                continue;
            };
            clean(cx, &o).await.map_err(|e| OpError::Unfinished {
                op: run.id,
                source: Box::new(e),
            })?;
        }
        Ok(())
    }

    /// Settles every running operation whose process is gone (its instance stopped or
    /// was replaced) or whose lease lapsed: forward past its point of no return, else
    /// undone. Returns how many it settled. Runs at start and in every worker round.
    pub async fn reconcile(&self, cx: &C) -> Result<usize, OpError> {
        let kinds: Vec<&str> = self
            .inner
            .registry
            .kinds()
            .filter(|k| !k.is_single())
            .map(|k| k.name)
            .collect();
        let mut settled = 0;
        let mut skip: Vec<Uuid> = Vec::new();
        loop {
            let active: Vec<Uuid> = self.active_ids();
            let mut not: Vec<Uuid> = skip.clone();
            not.extend(active);
            let claimed = store::claim_dead(
                &self.inner.pool.get().await?,
                self.inner.instance,
                &kinds,
                &not,
                lease_secs(),
            )
            .await?;
            let Some(row) = claimed else { break };
            skip.push(row.id);
            match self.resume(cx, row).await {
                Ok(_) | Err(OpError::Rejected(_)) | Err(OpError::Failed { .. }) => settled += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "could not settle an operation; trying again next round")
                }
            }
        }
        Ok(settled)
    }

    fn active_ids(&self) -> Vec<Uuid> {
        self.inner
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Whether the server is stopping: a long step (a migration over many tenants) stops
    /// between its units of work and fails, to be finished at the next start.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// From now on, new operations are refused and running ones stop at their next
    /// step boundary (a SIGTERM: the server stops taking requests at the same time).
    pub fn begin_stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    /// Stops taking new operations; the running ones stop at their next step boundary
    /// (waiting at most `deadline`), stay in the journal, and are settled at the next
    /// start. The instance is then marked stopped.
    pub async fn shutdown(&self, deadline: Duration) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let until = tokio::time::Instant::now() + deadline;
        while !self.active_ids().is_empty() && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = self.active_ids();
        if !left.is_empty() {
            tracing::warn!(operations = ?left, "stopping with operations mid-step: they are settled at the next start");
            self.abort_all();
        }
        if let Some(k) = self
            .inner
            .keeper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            k.abort();
        }
        if let Ok(c) = self.inner.pool.get().await {
            let _ = store::stop_instance(&c, self.inner.instance).await;
        }
    }

    /// What `kill -9` does to this engine: every operation stops where it is, the
    /// keeper stops; nothing is written. (Tests in one process.)
    pub fn kill(&self) {
        self.abort_all();
        if let Some(k) = self
            .inner
            .keeper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            k.abort();
        }
    }

    fn abort_all(&self) {
        for (_, h) in self
            .inner
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            h.task.abort();
        }
    }
}

/// An operation begun in a caller's transaction, not yet driven (see [`Engine::begin_in`]).
pub struct Begun(Run);

impl Begun {
    pub fn id(&self) -> Uuid {
        self.0.id
    }
}

enum Start {
    Fresh,
    Compensate,
}

/// What an operation's row says of a failure that was not a refusal: the step, and
/// where the details are. A database's or a tool's own text may name objects or hold
/// parts of statements: it goes to the log, never to the row the API shows.
fn public_failure(step: &str, retried: bool) -> String {
    if retried {
        format!("step {step} failed past the point of no return; the server retries it (the server log has the details)")
    } else {
        format!("step {step} failed and the operation was undone (the server log has the details)")
    }
}

fn observe(closed: Option<(String, f64)>, outcome: &str) {
    if let Some((kind, secs)) = closed {
        crate::metrics::operation_finished(&kind, outcome, secs);
    }
}
