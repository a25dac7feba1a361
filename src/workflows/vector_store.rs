//! The `vector_store` step of a tenant create and of a purge (docs/vector-store.md).
//!
//! The create's step works from the run's journaled params alone (`vector_store:
//! true`), so any create kind whose first step registers the tenant (and takes it)
//! can list it before its activation: it reads the tenant it owns, journals the
//! backend, the collection and where it lives (`Run::intend`), creates the
//! collection (idempotent: one that exists is fine), then records it on the tenant
//! in the step's own transaction. Its compensation deletes the collection the intent
//! names (a missing one is fine). The collection's name comes from the tenant's id,
//! which this operation made: it is never another operation's.
//!
//! The purge's step deletes the collection the tenant's row names, its intent
//! journaled first, and clears the row; forward only, like the rest of a purge.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{failed, hold_owned, Runtime};
use crate::ops::{self, Object, Run, StepError, StepFuture};
use crate::problem::{Kind as ProblemKind, Problem};
use crate::store::tenants::VectorStoreRef;
use crate::vector::{self, Backend, Target};

/// The step's name in every kind that has it.
pub const STEP: &str = "vector_store";

/// The kind of object the intent declares.
const OBJECT: &str = "vector_collection";

/// What the step journals before it reaches the backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Intent {
    backend: String,
    collection: String,
    target: TargetRecord,
    /// False once the backend is known not to have been reached (the connection was
    /// refused): there is nothing to delete, even while it stays down.
    #[serde(default = "reached")]
    reached: bool,
}

fn reached() -> bool {
    true
}

/// [`Target`], as journaled.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TargetRecord {
    tenant_id: uuid::Uuid,
    isolation: crate::tenant::Isolation,
    database: String,
    schema: Option<String>,
    owner_role: String,
    /// Its server; journals written before servers have none (`default`).
    #[serde(default = "default_server")]
    server: String,
}

fn default_server() -> String {
    crate::store::servers::DEFAULT.into()
}

impl From<&Target> for TargetRecord {
    fn from(t: &Target) -> Self {
        Self {
            tenant_id: t.tenant_id,
            isolation: t.isolation,
            database: t.database.clone(),
            schema: t.schema.clone(),
            owner_role: t.owner_role.clone(),
            server: t.server.clone(),
        }
    }
}

impl TargetRecord {
    /// The [`Target`], with its server's connection (`Target::reach`).
    async fn reach(self, rt: &Runtime) -> Result<Target, StepError> {
        Target {
            tenant_id: self.tenant_id,
            isolation: self.isolation,
            database: self.database,
            schema: self.schema,
            owner_role: self.owner_role,
            server: self.server,
            server_config: None,
        }
        .reach(rt)
        .await
        .map_err(failed)
    }
}

/// Whether the run's create asked for a vector store (its params' `vector_store`).
fn wanted(run: &Run) -> Result<bool, StepError> {
    Ok(run.params::<Value>()?["vector_store"].as_bool() == Some(true))
}

/// The create's step is skipped when the create asked for no collection.
pub(crate) fn not_asked(run: &Run) -> bool {
    matches!(wanted(run), Ok(false))
}

fn backend(rt: &Runtime) -> Result<&dyn Backend, StepError> {
    rt.vectors
        .as_deref()
        .ok_or_else(|| StepError::Rejected(vector::not_configured()))
}

/// A create's failure to make the collection: the answer the client gets (the
/// cause goes to the log), and the create is undone.
fn create_refusal(e: vector::Error) -> StepError {
    if let vector::Error::Rejected(p) = e {
        return StepError::Rejected(p);
    }
    tracing::warn!(error = %e, "creating a tenant's vector collection failed");
    let p = e.problem();
    let message = match p.kind {
        ProblemKind::Unavailable => {
            "the vector store did not answer; the tenant was not created (retry later)"
        }
        _ => "the vector store failed; the tenant was not created (the server log has the details)",
    };
    StepError::Rejected(Problem::new(p.kind, &p.code, message))
}

fn intent_of(run: &Run) -> Option<Intent> {
    run.intent(STEP)
}

/// Fails the process here when `BERQENAS_FAILPOINT` names `vector_store/<at>` (the
/// crash tests' points inside the step, between its intent and the backend's call).
fn failpoint(at: &str) {
    ops::failpoint(&format!("{STEP}/{at}"));
}

/// The create's step: the tenant's collection, journaled, made, recorded.
pub(crate) fn create<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        if !wanted(run)? {
            return Ok(Value::Null);
        }
        let backend = backend(rt)?;
        let intent = match intent_of(run) {
            Some(i) => i,
            None => {
                let target = {
                    let mut client = rt.pool.get().await.map_err(failed)?;
                    let tx = client.transaction().await.map_err(failed)?;
                    Target::of(&hold_owned(&tx, run).await?)
                };
                let collection = backend.collection(&target).map_err(create_refusal)?;
                let intent = Intent {
                    backend: backend.name().to_string(),
                    collection: collection.clone(),
                    target: TargetRecord::from(&target),
                    reached: true,
                };
                run.intend(
                    vec![Object {
                        kind: OBJECT.into(),
                        name: collection,
                        database: None,
                        scratch: false,
                    }],
                    serde_json::to_value(&intent).map_err(failed)?,
                )
                .await?;
                intent
            }
        };
        if intent.backend != backend.name() {
            return Err(StepError::Failed(
                format!(
                    "the create began with the {} vector store, and this server runs {}",
                    intent.backend,
                    backend.name()
                )
                .into(),
            ));
        }
        failpoint("intended");
        let target = intent.target.clone().reach(rt).await?;
        if let Err(e) = backend.create(&target).await {
            if matches!(e, vector::Error::NotConnected(_)) {
                let untouched = Intent {
                    reached: false,
                    ..intent
                };
                run.intend(vec![], serde_json::to_value(&untouched).map_err(failed)?)
                    .await?;
            }
            return Err(create_refusal(e));
        }
        failpoint("created");
        let store = VectorStoreRef {
            backend: intent.backend.clone(),
            collection: intent.collection.clone(),
        };
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = hold_owned(&tx, run).await?;
        crate::store::tenants::set_vector_store(&tx, t.id, Some(&store))
            .await
            .map_err(failed)?;
        let outcome = json!({"backend": store.backend, "collection": store.collection});
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// Undoes [`create`]: the collection its intent names, deleted (none declared:
/// nothing was made).
pub(crate) fn undo_create<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let Some(intent) = intent_of(run).filter(|i| i.reached) else {
            return Ok(Value::Null);
        };
        let backend = rt.vectors.as_deref().ok_or_else(|| {
            StepError::Failed(
                format!(
                    "collection {} ({}) cannot be deleted: this server has no vector store configured",
                    intent.collection, intent.backend
                )
                .into(),
            )
        })?;
        backend
            .delete(&intent.target.reach(rt).await?)
            .await
            .map_err(failed)?;
        Ok(json!({"deleted": intent.collection}))
    })
}

/// The purge's step: the tenant's collection deleted, its intent journaled first,
/// and the tenant's row cleared. Forward only: a vector store that does not answer
/// fails the step, and the purge is retried.
pub(crate) fn purge<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let intent = match intent_of(run) {
            Some(i) => i,
            None => {
                let t = {
                    let mut client = rt.pool.get().await.map_err(failed)?;
                    let tx = client.transaction().await.map_err(failed)?;
                    hold_owned(&tx, run).await?
                };
                let Some(store) = t.vector_store.clone() else {
                    return Ok(Value::Null);
                };
                let intent = Intent {
                    backend: store.backend,
                    collection: store.collection,
                    target: TargetRecord::from(&Target::of(&t)),
                    reached: true,
                };
                run.intend(
                    vec![Object {
                        kind: OBJECT.into(),
                        name: intent.collection.clone(),
                        database: None,
                        scratch: false,
                    }],
                    serde_json::to_value(&intent).map_err(failed)?,
                )
                .await?;
                intent
            }
        };
        let backend = rt
            .vectors
            .as_deref()
            .filter(|b| b.name() == intent.backend)
            .ok_or_else(|| {
                StepError::Failed(
                    format!(
                        "collection {} is in a {} vector store, and this server is not configured with one",
                        intent.collection, intent.backend
                    )
                    .into(),
                )
            })?;
        backend
            .delete(&intent.target.reach(rt).await?)
            .await
            .map_err(failed)?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = hold_owned(&tx, run).await?;
        crate::store::tenants::set_vector_store(&tx, t.id, None)
            .await
            .map_err(failed)?;
        let outcome = json!({"deleted": intent.collection});
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}
