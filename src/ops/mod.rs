//! The operation engine: every change to a tenant is an operation, a row with its
//! kind, tenant, input and lease, plus a journal of steps (see docs/operations.md).
//! This is the only crash-recovery mechanism of berqenas: a kind is a list of steps
//! registered by the layer above ([`kind`]), the engine runs them ([`engine`]),
//! journals them ([`run`]), fences the tenant they own ([`fence`]), keeps their lease
//! (one keeper per process) and settles those of a process that is gone (one
//! reconciler). It imports no domain.

pub mod engine;
pub mod failpoint;
pub mod fence;
mod keeper;
pub mod kind;
pub mod run;

pub use engine::{Begun, Context, Done, Engine, NewOp, OpError};
pub use kind::{step, Kind, Registry, Step, StepFn, StepFuture};
pub use run::{Object, Run};

/// Why a step did not apply.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The request cannot be done (the caller's mistake, a conflict): undone, and this
    /// is the answer.
    #[error("{}", .0.message)]
    Rejected(Problem),
    /// The operation no longer owns its tenant (another one took it after this
    /// process was presumed dead): it must not change anything more.
    #[error("{0}")]
    Fenced(String),
    /// Anything else (the database, a tool, a file): undone, or retried forward past
    /// the point of no return.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl StepError {
    pub fn failed(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Failed(Box::new(e))
    }
}

/// What an operation aborted on request answers: it is undone like a refused one.
pub fn aborted() -> StepError {
    StepError::Rejected(Problem::new(
        crate::problem::Kind::Conflict,
        "aborted",
        "the operation was aborted on request: what it had done is undone",
    ))
}

use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::problem::Problem;

/// How long a running operation is presumed alive before the reconciler may look at
/// it (renewed at every step). `BERQENAS_LEASE_SECS` shortens it for crash tests.
pub fn lease_secs() -> f64 {
    static LEASE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *LEASE.get_or_init(|| {
        std::env::var("BERQENAS_LEASE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10.0)
    })
}

/// Crash testing: when `BERQENAS_FAILPOINT` names this point, the process kills
/// itself with SIGKILL right here, as an operator's `kill -9` would.
pub fn failpoint(name: &str) {
    if std::env::var("BERQENAS_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::warn!(failpoint = name, "failpoint reached: killing the process");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
    }
}

/// A client's `Idempotency-Key` and a hash of the request it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: Vec<u8>,
}

pub struct NewOperation<'a> {
    pub id: Uuid,
    pub kind: &'a str,
    pub tenant_id: Option<Uuid>,
    pub tenant_name: &'a str,
    pub idempotency: Option<&'a Idempotency>,
    /// The kind's input (engine-run operations).
    pub params: Option<&'a serde_json::Value>,
    /// The process running it (engine-run operations).
    pub instance: Option<Uuid>,
    /// Its kind's steps in this build and the index of its point of no return
    /// (engine-run operations): what a build with other steps runs it by.
    pub plan: Option<(&'a [&'a str], i32)>,
}

/// The first response to an idempotent request, replayed to later ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StoredResponse {
    Success(serde_json::Value),
    Failure(Problem),
}

pub enum Begin {
    Started,
    /// Same key, same request, already answered (sealed response).
    Replay(Vec<u8>),
    /// Same key, same request, still running.
    InProgress,
    /// Same key, another request.
    Mismatch,
}

pub async fn begin(
    c: &impl GenericClient,
    op: &NewOperation<'_>,
) -> Result<Begin, tokio_postgres::Error> {
    let (key, hash) = match op.idempotency {
        Some(i) => (Some(i.key.as_str()), Some(i.request_hash.as_slice())),
        None => (None, None),
    };
    loop {
        let inserted = c
            .execute(
                &c.prepare_cached("INSERT INTO berqenas.operations (id, kind, tenant_id, tenant_name, state, idempotency_key, request_hash, lease_until, params, instance_id, steps, point_of_no_return)
                 VALUES ($1, $2, $3, $4, 'running', $5, $6, now() + make_interval(secs => $7), coalesce($8, '{}'::jsonb), $9, $10, $11)
                 ON CONFLICT (idempotency_key) DO NOTHING").await?,
                &[&op.id, &op.kind, &op.tenant_id, &op.tenant_name, &key, &hash, &lease_secs(), &op.params, &op.instance, &op.plan.map(|p| p.0), &op.plan.map(|p| p.1)],
            )
            .await?;
        if inserted == 1 {
            return Ok(Begin::Started);
        }
        let Some(row) = c
            .query_opt(
                "SELECT id, request_hash, state, response FROM berqenas.operations WHERE idempotency_key = $1",
                &[&key],
            )
            .await?
        else {
            continue; // the other request's row went away between our two statements
        };
        let (id, stored_hash, state, response): (Uuid, Option<Vec<u8>>, String, Option<Vec<u8>>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if stored_hash.as_deref() != hash {
            return Ok(Begin::Mismatch);
        }
        match (state.as_str(), response) {
            ("running", _) => return Ok(Begin::InProgress),
            (_, Some(sealed)) => return Ok(Begin::Replay(sealed)),
            // Failed without a stored answer (an outage): the client may try again.
            (_, None) => {
                c.execute(
                    "UPDATE berqenas.operations SET idempotency_key = NULL WHERE id = $1",
                    &[&id],
                )
                .await?;
            }
        }
    }
}

/// Closes an operation as succeeded, inside the transaction that did the work, naming
/// the tenant it made (in the same statement: no round trip of its own).
/// Fails if the reconciler already closed it (the caller must then roll back).
pub async fn succeed(
    c: &impl GenericClient,
    id: Uuid,
    tenant_id: Uuid,
    steps: &[&str],
    sealed_response: Option<&[u8]>,
) -> Result<bool, tokio_postgres::Error> {
    let steps: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
    let closed = c
        .query_opt(
            &c.prepare_cached("WITH s AS (
                 INSERT INTO berqenas.operation_steps (operation_id, seq, name, state)
                 SELECT $1, ord::int, name, 'applied' FROM unnest($2::text[]) WITH ORDINALITY AS t(name, ord))
             UPDATE berqenas.operations
                SET state = 'succeeded', response_status = 200, response = $3, finished_at = now(),
                    tenant_id = $4
              WHERE id = $1 AND state = 'running'
             RETURNING kind, extract(epoch FROM clock_timestamp() - created_at)::float8").await?,
            &[&id, &steps, &sealed_response, &tenant_id],
        )
        .await?;
    observe(closed.as_ref(), "succeeded");
    Ok(closed.is_some())
}

/// Counts a closed operation (kind, seconds since it began) in the metrics.
fn observe(closed: Option<&tokio_postgres::Row>, outcome: &str) {
    if let Some(r) = closed {
        crate::metrics::operation_finished(r.get(0), outcome, r.get(1));
    }
}

/// Records a failure. A sealed response is stored only for answers worth replaying
/// (the client's own mistakes), not for outages.
pub async fn fail(
    c: &impl GenericClient,
    id: Uuid,
    error: &str,
    sealed_response: Option<&[u8]>,
) -> Result<(), tokio_postgres::Error> {
    let closed = c
        .query_opt(
            "UPDATE berqenas.operations SET state = 'failed', error = $2, response = $3, finished_at = now()
              WHERE id = $1 AND state = 'running'
             RETURNING kind, extract(epoch FROM clock_timestamp() - created_at)::float8",
            &[&id, &error, &sealed_response],
        )
        .await?;
    observe(closed.as_ref(), "failed");
    Ok(())
}

/// Records a completed operation that needed no intent row (it ran in one transaction).
pub async fn record_done(
    c: &impl GenericClient,
    id: Uuid,
    kind: &str,
    tenant_id: Uuid,
    tenant_name: &str,
) -> Result<(), tokio_postgres::Error> {
    let closed = c
        .query_one(
            "INSERT INTO berqenas.operations (id, kind, tenant_id, tenant_name, state, lease_until, finished_at)
             VALUES ($1, $2, $3, $4, 'succeeded', now(), now())
             RETURNING kind, extract(epoch FROM clock_timestamp() - created_at)::float8",
            &[&id, &kind, &tenant_id, &tenant_name],
        )
        .await?;
    observe(Some(&closed), "succeeded");
    Ok(())
}

pub async fn count_running(c: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    Ok(c.query_one(
        "SELECT count(*) FROM berqenas.operations WHERE state = 'running'",
        &[],
    )
    .await?
    .get(0))
}
