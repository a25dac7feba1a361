//! What an operation kind is: a name and a list of steps, each with an idempotent
//! `apply` and, until the kind's point of no return, an idempotent `compensate`.
//! Kinds are registered with the engine by the layer above it (`workflows`); the
//! engine knows nothing of what the steps do.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use super::run::Run;
use super::StepError;

/// What a step's function returns: its outcome, journaled after it (or recorded by the
/// step itself inside its own transaction, see [`Run::applied_in`]).
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, StepError>> + Send + 'a>>;

/// A step's `apply` or `compensate`. `C` is the context the layer above hands the
/// engine (the platform: pools, keys, paths).
pub type StepFn<C> = for<'a> fn(&'a C, &'a mut Run) -> StepFuture<'a>;

/// A cleaner for a kind of scratch object (`role`, `database`, `schema`, `file`):
/// drops the object if it exists; idempotent.
pub type CleanFn<C> = for<'a> fn(&'a C, &'a super::Object) -> StepFuture<'a>;

pub struct Step<C> {
    pub name: &'static str,
    /// Whether the step reaches outside the control database (another database, a
    /// file, a process of PostgreSQL's that cannot be rolled back): its row is
    /// committed as `started` before it runs, and it declares the objects it will
    /// create ([`Run::intend`]) before creating them. A step that only changes the
    /// control database in one transaction needs neither: a crash rolls it back.
    pub reaches_out: bool,
    pub apply: StepFn<C>,
    /// Undoes what `apply` did, or the part of it done before a crash (the step may
    /// be `started` only). `None`: nothing of its own to undo.
    pub compensate: Option<StepFn<C>>,
    /// Whether the step has nothing to do in this run, decided from what the run
    /// journaled before it (its params, earlier steps' outcomes) and nothing else, so
    /// a run taken up after a crash decides the same. A step skipped is neither run
    /// nor journaled (no round trip for a step that would only record that it did
    /// nothing), and has nothing to undo. `None`: always run.
    pub skip: Option<SkipFn>,
}

/// A step's [`Step::skip`].
pub type SkipFn = fn(&Run) -> bool;

/// A step, for kinds that list many: `step("copy", false, copy, None)`.
pub fn step<C>(
    name: &'static str,
    reaches_out: bool,
    apply: StepFn<C>,
    compensate: Option<StepFn<C>>,
) -> Step<C> {
    Step {
        name,
        reaches_out,
        apply,
        compensate,
        skip: None,
    }
}

pub struct Kind<C> {
    pub name: &'static str,
    pub steps: Vec<Step<C>>,
    /// The index of the first forward-only step: an operation that failed or died
    /// before it is compensated; from it on, it is finished (retried forward).
    /// `steps.len()`: compensated whenever it does not finish.
    pub point_of_no_return: usize,
}

/// The one step of a kind whose work is one transaction (see [`Kind::single`]).
pub const COMMIT: &str = "commit";

impl<C> Kind<C> {
    /// A kind whose work is one transaction of the control database: its operation
    /// row commits with the work (`ops::record_done` or `ops::succeed` in the same
    /// transaction) and the workflow commits through [`super::Engine::commit`], so a
    /// crash leaves either all of it or nothing, and nothing for a reconciler. Its one
    /// step boundary, for the crash tests, is that commit.
    pub fn single(name: &'static str) -> Self {
        Self {
            name,
            steps: Vec::new(),
            point_of_no_return: 0,
        }
    }

    /// Whether this is a one-transaction kind.
    pub fn is_single(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn step_names(&self) -> Vec<&'static str> {
        if self.is_single() {
            return vec![COMMIT];
        }
        self.steps.iter().map(|s| s.name).collect()
    }

    /// This build's steps, as an operation begun by this build runs them.
    pub fn plan(&self) -> Plan<'_, C> {
        Plan {
            steps: self.steps.iter().collect(),
            point_of_no_return: self.point_of_no_return,
        }
    }

    /// The steps another build listed for this kind (`names`, its point of no return
    /// at index `point_of_no_return`), each one this build's step of that name: how an
    /// operation that build began is taken up after an upgrade. `Err` says why it
    /// cannot be (a step this build does not have).
    pub fn plan_as(
        &self,
        names: &[impl AsRef<str>],
        point_of_no_return: usize,
    ) -> Result<Plan<'_, C>, String> {
        let steps = names
            .iter()
            .map(|n| {
                let n = n.as_ref();
                self.steps.iter().find(|s| s.name == n).ok_or_else(|| {
                    format!(
                        "its build listed a step {n} that this build's {} has not",
                        self.name
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if point_of_no_return > steps.len() {
            return Err(format!(
                "its point of no return ({point_of_no_return}) is past its steps"
            ));
        }
        Ok(Plan {
            steps,
            point_of_no_return,
        })
    }
}

/// The steps one operation runs, in its order, and the index of its point of no
/// return: its kind's ([`Kind::plan`]), or those of the build that began it
/// ([`Kind::plan_as`]).
pub struct Plan<'k, C> {
    pub steps: Vec<&'k Step<C>>,
    pub point_of_no_return: usize,
}

impl<C> Plan<'_, C> {
    pub fn names(&self) -> Vec<&'static str> {
        self.steps.iter().map(|s| s.name).collect()
    }
}

/// The kinds a process can run and recover, and how to drop each kind of scratch
/// object.
pub struct Registry<C> {
    kinds: Vec<Kind<C>>,
    cleaners: Vec<(&'static str, CleanFn<C>)>,
}

impl<C> Default for Registry<C> {
    fn default() -> Self {
        Self {
            kinds: Vec::new(),
            cleaners: Vec::new(),
        }
    }
}

impl<C> Registry<C> {
    pub fn kind(mut self, k: Kind<C>) -> Self {
        assert!(
            self.get(k.name).is_none(),
            "operation kind {} registered twice",
            k.name
        );
        assert!(
            k.point_of_no_return <= k.steps.len(),
            "{}: point of no return past the end",
            k.name
        );
        self.kinds.push(k);
        self
    }

    pub fn cleaner(mut self, object_kind: &'static str, f: CleanFn<C>) -> Self {
        self.cleaners.push((object_kind, f));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Kind<C>> {
        self.kinds.iter().find(|k| k.name == name)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &Kind<C>> {
        self.kinds.iter()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.iter().map(|k| k.name).collect()
    }

    pub(crate) fn cleaner_for(&self, object_kind: &str) -> Option<CleanFn<C>> {
        self.cleaners
            .iter()
            .find(|(k, _)| *k == object_kind)
            .map(|(_, f)| *f)
    }
}
