//! What a step sees of its operation: the kind's input, what earlier steps journaled,
//! the tenant it owns (fencing), and the calls that journal: [`Run::intend`] before a
//! step reaches outside the control database, [`Run::applied_in`] and
//! [`Run::finish_in`] to record a step (and close the operation) inside the step's own
//! transaction, where the work commits.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use deadpool_postgres::{GenericClient, Pool};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::StepError;
use crate::store::operations as store;

/// Something a step will create, declared in its intent before it creates it. A
/// `scratch` object is dropped when the operation ends, however it ends (the engine
/// runs the registered cleaner for its kind); the others are the compensation's to
/// undo, which knows from the intent that the object is this operation's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    /// `role`, `database`, `schema`, `file`, or a kind a workflow registers.
    pub kind: String,
    pub name: String,
    /// The database a schema is in, or a role may own objects in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default)]
    pub scratch: bool,
}

impl Object {
    pub fn scratch(kind: &str, name: &str, database: Option<&str>) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
            database: database.map(Into::into),
            scratch: true,
        }
    }
}

/// A step's intent as journaled: the objects it will create and what else it chose
/// before reaching out (names, the state it found).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Intent {
    #[serde(default)]
    pub objects: Vec<Object>,
    #[serde(default)]
    pub data: Value,
}

/// The journal state of a step waiting on the outside world ([`Run::wait`]).
pub const WAITING: &str = "waiting";

/// The journal of one step, as far as it goes.
#[derive(Debug, Clone, Default)]
pub(super) struct StepState {
    pub state: Option<String>,
    pub intent: Option<Intent>,
    pub outcome: Option<Value>,
}

pub struct Run {
    pub id: Uuid,
    pub kind: &'static str,
    pub tenant_id: Option<Uuid>,
    pub tenant_name: String,
    pub params: Value,
    /// The tenant generation this operation took ownership at (see `ops::fence`).
    pub generation: Option<i64>,
    pub(super) names: Vec<&'static str>,
    /// Taken up by this build from one whose kind listed other steps (`names` are
    /// that build's, and its point of no return is this index): a step it did not
    /// have reads as never run.
    pub(super) listed_elsewhere: Option<usize>,
    pub(super) seq: usize,
    pub(super) steps: Vec<StepState>,
    /// The current step recorded its own outcome inside its transaction.
    pub(super) recorded: bool,
    /// The last step closed the operation inside its transaction.
    pub(super) closed: bool,
    pub(super) pool: Pool,
    /// Set by the keeper when an operator asked to abort the operation.
    pub(super) abort: Arc<AtomicBool>,
    /// Values that live only as long as this process runs the operation (a password
    /// shown once): a step that needs one after a restart must not rely on it.
    memo: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("tenant", &self.tenant_name)
            .field("step", &self.names.get(self.seq))
            .finish_non_exhaustive()
    }
}

impl Run {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        id: Uuid,
        kind: &'static str,
        names: Vec<&'static str>,
        tenant_id: Option<Uuid>,
        tenant_name: String,
        params: Value,
        pool: Pool,
    ) -> Self {
        let steps = vec![StepState::default(); names.len()];
        Self {
            id,
            kind,
            tenant_id,
            tenant_name,
            params,
            generation: None,
            names,
            listed_elsewhere: None,
            seq: 0,
            steps,
            recorded: false,
            closed: false,
            pool,
            abort: Arc::new(AtomicBool::new(false)),
            memo: HashMap::new(),
        }
    }

    /// Whether an operator asked to abort this operation. The engine checks it at each
    /// step boundary before the point of no return; a step that waits long checks it
    /// between its waits and answers [`super::aborted`].
    pub fn abort_requested(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }

    /// The kind's input, as the workflow passed it.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        serde_json::from_value(self.params.clone()).map_err(StepError::failed)
    }

    /// The steps this run follows, in order: its kind's in this build, or those of
    /// the build that began it (docs/operations.md, "Upgrades").
    pub fn steps(&self) -> &[&'static str] {
        &self.names
    }

    /// The step running now.
    pub fn step(&self) -> &'static str {
        self.names[self.seq]
    }

    /// A step's journal. A name not among the steps is a mistake in this build's
    /// code, unless the run follows another build's list, which may lack the step.
    fn journal(&self, step: &str) -> Option<&StepState> {
        match self.names.iter().position(|n| *n == step) {
            Some(i) => Some(&self.steps[i]),
            None if self.listed_elsewhere.is_some() => None,
            None => panic!("{}: no step {step}", self.kind),
        }
    }

    /// What a step journaled as its outcome (`None`: it did not finish).
    pub fn outcome<T: DeserializeOwned>(&self, step: &str) -> Option<T> {
        let v = self.journal(step)?.outcome.clone()?;
        serde_json::from_value(v).ok()
    }

    /// What a step declared before it reached out (`None`: it never got that far).
    pub fn intent<T: DeserializeOwned>(&self, step: &str) -> Option<T> {
        let v = self.journal(step)?.intent.as_ref()?.data.clone();
        serde_json::from_value(v).ok()
    }

    /// The objects a step declared.
    pub fn objects(&self, step: &str) -> Vec<Object> {
        self.journal(step)
            .and_then(|s| s.intent.as_ref())
            .map(|i| i.objects.clone())
            .unwrap_or_default()
    }

    /// Every object any step declared, in declaration order.
    pub fn all_objects(&self) -> Vec<Object> {
        self.steps
            .iter()
            .filter_map(|s| s.intent.as_ref())
            .flat_map(|i| i.objects.clone())
            .collect()
    }

    /// Journals, committed, what the current step is about to create and what it
    /// decided: before it creates anything outside the control database.
    pub async fn intend(&mut self, objects: Vec<Object>, data: Value) -> Result<(), StepError> {
        let intent = Intent { objects, data };
        let c = self.pool.get().await.map_err(StepError::failed)?;
        store::put_step(
            &c,
            self.id,
            self.seq as i32,
            self.step(),
            "started",
            Some(&serde_json::to_value(&intent).map_err(StepError::failed)?),
            None,
        )
        .await
        .map_err(StepError::failed)?;
        self.steps[self.seq].intent = Some(intent);
        self.steps[self.seq].state = Some("started".into());
        Ok(())
    }

    /// Journals, committed, that the current step is waiting on the outside world
    /// (`data`: what it waits for, and until when), keeping the objects it declared. A
    /// process that dies meanwhile does not undo the operation: the reconciler runs the
    /// step again, which finds this intent and waits on. The step must bound its wait.
    pub async fn wait(&mut self, data: Value) -> Result<(), StepError> {
        let intent = Intent {
            objects: self.objects(self.step()),
            data,
        };
        let c = self.pool.get().await.map_err(StepError::failed)?;
        store::put_step(
            &c,
            self.id,
            self.seq as i32,
            self.step(),
            WAITING,
            Some(&serde_json::to_value(&intent).map_err(StepError::failed)?),
            None,
        )
        .await
        .map_err(StepError::failed)?;
        self.steps[self.seq].intent = Some(intent);
        self.steps[self.seq].state = Some(WAITING.into());
        Ok(())
    }

    /// Adds objects to the current step's intent (committed), for a step that creates
    /// them a few at a time.
    pub async fn declare(&mut self, objects: Vec<Object>) -> Result<(), StepError> {
        let mut intent = self.steps[self.seq].intent.clone().unwrap_or_default();
        intent.objects.extend(objects);
        let Intent { objects, data } = intent;
        self.intend(objects, data).await
    }

    /// Records the current step as applied inside the caller's transaction, the one
    /// its work commits in: the journal can never say otherwise than the database.
    pub async fn applied_in(
        &mut self,
        tx: &impl GenericClient,
        outcome: &Value,
    ) -> Result<(), StepError> {
        store::put_step(
            tx,
            self.id,
            self.seq as i32,
            self.step(),
            "applied",
            None,
            Some(outcome),
        )
        .await
        .map_err(StepError::failed)?;
        self.recorded = true;
        Ok(())
    }

    /// Records the last step and closes the operation as succeeded inside the caller's
    /// transaction (`response`: sealed, for a replay of an idempotent request); one
    /// that declared scratch objects is closed by the engine once they are dropped.
    pub async fn finish_in(
        &mut self,
        tx: &impl GenericClient,
        outcome: &Value,
        response: Option<&[u8]>,
    ) -> Result<(), StepError> {
        self.applied_in(tx, outcome).await?;
        if self.all_objects().iter().any(|o| o.scratch) {
            // Its scratch objects go first: the engine drops them, then closes it, so
            // a crash in between still finds the operation open and them declared.
            return Ok(());
        }
        let closed = store::close(tx, self.id, "succeeded", None, response)
            .await
            .map_err(StepError::failed)?;
        if closed.is_none() {
            // Someone else (a reconciler that thought this process dead) closed it.
            return Err(StepError::Fenced(format!(
                "operation {} was closed by another process",
                self.id
            )));
        }
        self.closed = true;
        Ok(())
    }

    /// Keeps a value for later steps of this run, in memory only.
    pub fn remember<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.memo.insert(key, Box::new(value));
    }

    /// A value a previous step of this run remembered.
    pub fn recall<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.memo.get(key).and_then(|v| v.downcast_ref())
    }

    pub(super) fn load(&mut self, rows: &[store::StepRow]) {
        for r in rows {
            if let Some(s) = self.steps.get_mut(r.seq as usize) {
                s.state = Some(r.state.clone());
                s.intent = r
                    .intent
                    .clone()
                    .and_then(|v| serde_json::from_value(v).ok());
                s.outcome = r.outcome.clone();
            }
        }
    }
}
