//! L5: one module per operation kind, composing the domains into the steps the
//! operation engine runs (see docs/operations.md). The domains below never call each
//! other; when a change needs two of them (a delete takes a backup; a restore cuts the
//! tenant's logins), the workflow does both.

pub mod abort;
pub mod backups;
pub mod changes;
pub mod changes_placed;
pub mod create;
mod create_one;
pub mod create_placed;
pub mod create_staged;
mod create_trace;
pub mod lifecycle;
pub mod migrate;
mod migrate_servers;
mod migrate_workers;
mod move_checks;
pub mod move_mode;
pub mod move_shared;
pub mod move_tenant;
pub mod network;
pub mod offboarding;
pub mod on_server;
pub mod onboarding;
pub mod onboarding_callback;
pub mod operations;
pub mod placement;
pub mod pooler;
pub mod quotas;
pub mod rebuild_placed;
pub mod restores;
pub mod restores_placed;
pub mod role_check;
pub mod servers;
pub mod settings;
pub mod users_placed;
pub mod vector_store;
pub mod warm_pool;
mod warm_pool_database;
pub mod warm_pool_holds;
pub mod warm_pool_placed;

use std::sync::Arc;

use deadpool_postgres::Pool;
use serde_json::Value;

use crate::ops::{self, Context, Engine, Object, OpError, Registry, Run, StepError, StepFuture};
use crate::pg::Ident;
use crate::platform::Platform;
use crate::problem::{Kind as ProblemKind, Problem};

impl Context for Runtime {
    fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        self.platform.key.seal(plaintext)
    }
}

/// Every kind this binary runs and settles, and how to drop each kind of scratch
/// object.
pub fn registry() -> Registry<Runtime> {
    let mut r = Registry::default();
    for k in create::kinds()
        .into_iter()
        .chain([create_staged::kind(), create_placed::kind()])
        .chain(lifecycle::kinds())
        .chain(changes::kinds())
        .chain(changes_placed::kinds())
        .chain(users_placed::kinds())
        .chain(offboarding::kinds())
        .chain(on_server::kinds())
        .chain(backups::kinds())
        .chain(restores::kinds())
        .chain(quotas::kinds())
        .chain(migrate::kinds())
        .chain(network::kinds())
        .chain(settings::kinds())
        .chain(warm_pool::kinds())
        .chain([
            move_tenant::kind(),
            move_shared::kind(),
            restores_placed::kind(),
            rebuild_placed::kind(),
        ])
    {
        r = r.kind(k);
    }
    r.cleaner("role", clean_role)
        .cleaner("roles", clean_roles)
        .cleaner(
            migrate_servers::SERVER_ROLES,
            migrate_servers::clean_server_roles,
        )
        .cleaner("database", clean_database)
        .cleaner("schema", clean_schema)
        .cleaner(crate::backup::restore::ARCHIVE_SCHEMA, clean_archive_schema)
        .cleaner(restores_placed::ROLE_THERE, restores_placed::clean_there)
        .cleaner(
            restores_placed::DATABASE_THERE,
            restores_placed::clean_there,
        )
        .cleaner(restores_placed::SCHEMA_THERE, restores_placed::clean_there)
}

/// The platform and its operation engine: what a workflow runs with.
#[derive(Clone)]
pub struct Runtime {
    pub platform: Platform,
    pub engine: Engine<Runtime>,
    /// Sessions held ahead in database-mode warm pool members' databases.
    pub holds: Arc<warm_pool_holds::Holds>,
}

impl std::ops::Deref for Runtime {
    type Target = Platform;

    fn deref(&self) -> &Platform {
        &self.platform
    }
}

impl Runtime {
    /// Starts the engine for this process (`identity`: what makes a restart the same
    /// server: host and data directory) and settles what a previous process left.
    pub async fn start(platform: Platform, identity: &str) -> Result<Arc<Self>, OpError> {
        let engine = Engine::start(platform.pool.clone(), identity, registry()).await?;
        let rt = Arc::new(Self {
            platform,
            engine,
            holds: Arc::default(),
        });
        let settled = rt.engine.reconcile(&rt).await?;
        if settled > 0 {
            tracing::warn!(
                operations = settled,
                "settled operations a previous process left"
            );
        }
        Ok(rt)
    }

    pub fn pool(&self) -> &Pool {
        &self.platform.pool
    }
}

/// How a workflow fails, for the API to tell apart: the request is refused (nothing
/// changed), or the operation failed inside (it was undone, or a worker finishes it).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", .0.message)]
    Rejected(Problem),
    #[error(transparent)]
    Tenant(crate::tenant::service::Error),
    #[error(transparent)]
    Operation(OpError),
    #[error(transparent)]
    Backup(crate::backup::Error),
}

impl From<crate::tenant::service::Error> for Error {
    fn from(e: crate::tenant::service::Error) -> Self {
        match e {
            crate::tenant::service::Error::Rejected(p) => Self::Rejected(p),
            other => Self::Tenant(other),
        }
    }
}

impl From<crate::backup::Error> for Error {
    fn from(e: crate::backup::Error) -> Self {
        match (e.problem(), e) {
            (Some(p), _) => Self::Rejected(p),
            (None, crate::backup::Error::Tenant(e)) => Self::Tenant(e),
            (None, e) => Self::Backup(e),
        }
    }
}

impl From<OpError> for Error {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Rejected(p) => Self::Rejected(p),
            OpError::InProgress => Self::Rejected(Problem::new(
                ProblemKind::Conflict,
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still in progress; retry later",
            )),
            OpError::Mismatch => Self::Rejected(Problem::new(
                ProblemKind::Unprocessable,
                "idempotency_key_reused",
                "this Idempotency-Key was already used with a different request",
            )),
            other => Self::Operation(other),
        }
    }
}

impl From<crate::network::Refusal> for Error {
    fn from(e: crate::network::Refusal) -> Self {
        match e {
            crate::network::Refusal::Rejected(p) => Self::Rejected(p),
            crate::network::Refusal::Store(e) => Self::Tenant(e.into()),
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Tenant(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Tenant(e.into())
    }
}

/// The refusal of a change that is not per server yet (docs/servers.md) for a tenant
/// outside `default`: refused, rather than made on the wrong server.
pub(crate) fn not_on_this_server(tenant: &crate::tenant::Tenant) -> Problem {
    let mut p = Problem::new(
        ProblemKind::Unprocessable,
        "not_on_this_server",
        format!(
            "tenant {:?} lives on server {:?}: this change is not available yet for tenants outside \"default\" (docs/servers.md)",
            tenant.name.as_str(),
            tenant.server
        ),
    );
    p.field = Some("server".into());
    p
}

/// Locks the tenant `key` names for a change in this transaction, in the one lock
/// order (its name, then its row), and checks that no running operation owns it.
pub(crate) async fn lock_tenant(
    tx: &deadpool_postgres::Transaction<'_>,
    key: &str,
) -> Result<crate::tenant::Tenant, crate::tenant::service::Error> {
    lock(tx, key, false).await
}

/// [`lock_tenant`] for a change that works on whichever server the tenant lives on
/// (`on_server`'s kinds: docs/servers.md).
pub(crate) async fn lock_tenant_anywhere(
    tx: &deadpool_postgres::Transaction<'_>,
    key: &str,
) -> Result<crate::tenant::Tenant, crate::tenant::service::Error> {
    lock(tx, key, true).await
}

/// The first step of a change run on another server: the tenant locked (as
/// [`lock_tenant_anywhere`]) and still on the server the request was made for.
pub(crate) async fn lock_tenant_on(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant: uuid::Uuid,
    server: &str,
) -> Result<crate::tenant::Tenant, StepError> {
    let t = lock_tenant_anywhere(tx, &tenant.to_string())
        .await
        .map_err(step_error)?;
    if t.server != server {
        return Err(StepError::Rejected(Problem::new(
            ProblemKind::Conflict,
            "tenant_moved",
            format!(
                "tenant {} moved to server {:?} meanwhile; retry",
                t.name, t.server
            ),
        )));
    }
    Ok(t)
}

async fn lock(
    tx: &deadpool_postgres::Transaction<'_>,
    key: &str,
    anywhere: bool,
) -> Result<crate::tenant::Tenant, crate::tenant::service::Error> {
    use crate::tenant::service::Error as E;
    let found = crate::store::tenants::find(tx, key)
        .await?
        .ok_or_else(|| E::not_found(key))?;
    match ops::fence::lock_name(tx, found.name.as_str()).await {
        Ok(()) => {}
        Err(ops::fence::LockError::Busy(p)) => return Err(E::Rejected(p)),
        Err(ops::fence::LockError::Db(e)) => return Err(e.into()),
    }
    let tenant = crate::store::tenants::find_for_update(tx, &found.id.to_string())
        .await?
        .ok_or_else(|| E::not_found(key))?;
    if !anywhere && tenant.server != crate::store::servers::DEFAULT {
        return Err(E::Rejected(not_on_this_server(&tenant)));
    }
    match ops::fence::free(tx, tenant.id, tenant.name.as_str()).await {
        Ok(()) => Ok(tenant),
        Err(ops::fence::FreeError::Busy { problem, kind }) => {
            Err(E::Rejected(if kind.as_deref() == Some(PURGE_KIND) {
                Problem::new(
                    ProblemKind::Conflict,
                    "purge_in_progress",
                    format!(
                        "tenant {} is being purged; once the purge has finished it can be restored from its archive",
                        tenant.name
                    ),
                )
            } else {
                problem
            }))
        }
        Err(ops::fence::FreeError::Db(e)) => Err(e.into()),
    }
}

/// Runs an operation of `kind` to its end and returns its answer (its last step's
/// outcome).
pub(crate) async fn run_kind(
    rt: &Runtime,
    kind: &'static str,
    tenant_id: Option<uuid::Uuid>,
    tenant_name: &str,
    params: &impl serde::Serialize,
) -> Result<Value, Error> {
    let params = serde_json::to_value(params).map_err(crate::tenant::service::Error::from)?;
    let done = rt
        .engine
        .run(
            rt,
            ops::NewOp {
                kind,
                tenant_id,
                tenant_name,
                params,
                idempotency: None,
            },
        )
        .await?;
    match done {
        Done::Finished(v) => Ok(v),
        Done::Replay(_) => unreachable!("no idempotency key"),
    }
}

/// The purge's kind, named in the 409 a change of a tenant being purged gets.
pub(crate) const PURGE_KIND: &str = "tenant.purge";

/// A one-transaction change: its operation row, written in the transaction, and the
/// commit through the engine (the kind's step boundary).
pub(crate) async fn commit_one(
    rt: &Runtime,
    tx: deadpool_postgres::Transaction<'_>,
    kind: &'static str,
    op: uuid::Uuid,
    tenant: &crate::tenant::Tenant,
) -> Result<(), Error> {
    ops::record_done(&tx, op, kind, tenant.id, tenant.name.as_str()).await?;
    rt.engine.commit(tx, kind).await?;
    Ok(())
}

/// A domain's refusal is the operation's answer; anything else is a failure to undo.
/// The compensation of a step that took the tenant (`fence::acquire`): the tenant
/// given back, if this operation still owns it.
pub(crate) fn give_back<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        ops::fence::lock_name(&tx, &run.tenant_name).await?;
        if ops::fence::owns(&tx, run).await? {
            ops::fence::release(&tx, run).await?;
            tx.commit().await.map_err(failed)?;
        }
        Ok(serde_json::Value::Null)
    })
}

pub(crate) fn step_error(e: crate::tenant::service::Error) -> StepError {
    match e {
        crate::tenant::service::Error::Rejected(p) => StepError::Rejected(p),
        other => StepError::failed(other),
    }
}

/// A workflow's refusal is the operation's answer; anything else is a failure.
pub(crate) fn refusal(e: Error) -> StepError {
    match e {
        Error::Rejected(p) => StepError::Rejected(p),
        other => StepError::failed(other),
    }
}

pub(crate) fn failed(e: impl std::error::Error + Send + Sync + 'static) -> StepError {
    StepError::failed(e)
}

/// The tenant the operation names, as the registry holds it now (read without its
/// locks: the operation owns it, so no other change moves it meanwhile).
pub(crate) async fn owned_tenant(
    rt: &Runtime,
    run: &Run,
) -> Result<crate::tenant::Tenant, StepError> {
    let id = run
        .tenant_id
        .ok_or_else(|| StepError::Fenced("the operation names no tenant".into()))?;
    let client = rt.pool.get().await.map_err(failed)?;
    crate::store::tenants::get(&client, id)
        .await
        .map_err(failed)
}

/// The input of a `placed_change` kind (`changes_placed`, `users_placed`): the
/// tenant, the server it was on when asked, who asked, and the kind's own change.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct PlacedParams<C> {
    pub tenant: uuid::Uuid,
    pub server: String,
    pub actor: String,
    #[serde(flatten)]
    pub change: C,
}

/// Runs a `placed_change` kind on `t` to its end (or its undoing).
pub(crate) async fn run_placed<C: serde::Serialize>(
    rt: &Runtime,
    kind: &'static str,
    t: &crate::tenant::Tenant,
    change: C,
    actor: &str,
) -> Result<Value, Error> {
    let params = PlacedParams {
        tenant: t.id,
        server: t.server.clone(),
        actor: actor.to_string(),
        change,
    };
    run_kind(rt, kind, Some(t.id), t.name.as_str(), &params).await
}

/// A change of a tenant on another server, as `on_server`'s, `changes_placed`'s and
/// `users_placed`'s kinds all are: `own` (control), `on_server` (reaches out; its
/// undoing puts back what the registry still holds), `record` (control). Until the
/// record commits, a failure or a crash undoes `on_server`.
pub(crate) fn placed_change(
    name: &'static str,
    own: ops::StepFn<Runtime>,
    on_server: ops::StepFn<Runtime>,
    off_server: ops::StepFn<Runtime>,
    record: ops::StepFn<Runtime>,
) -> ops::Kind<Runtime> {
    ops::Kind {
        name,
        steps: vec![
            ops::step("own", false, own, Some(give_back)),
            ops::step("on_server", true, on_server, Some(off_server)),
            ops::step("record", false, record, None),
        ],
        point_of_no_return: 3,
    }
}

/// A step's hold on the tenant its operation owns, in the step's transaction: the
/// tenant's name lock, the check that the operation still owns it, then its row (the
/// one lock order).
pub(crate) async fn hold_owned(
    tx: &deadpool_postgres::Transaction<'_>,
    run: &Run,
) -> Result<crate::tenant::Tenant, StepError> {
    ops::fence::lock_name(tx, &run.tenant_name).await?;
    ops::fence::check(tx, run).await?;
    let id = run
        .tenant_id
        .ok_or_else(|| StepError::Fenced("the operation names no tenant".into()))?;
    crate::store::tenants::find_for_update(tx, &id.to_string())
        .await
        .map_err(failed)?
        .ok_or_else(|| StepError::Fenced("the tenant is gone".into()))
}

/// The step after a cut of a tenant's logins: the sessions of the logins the kind's
/// first step turned off (its outcome's `logins`) end.
pub(crate) fn end_cut_sessions<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let first = run.steps()[0];
        let logins: Vec<String> = run
            .outcome::<Value>(first)
            .and_then(|v| serde_json::from_value(v["logins"].clone()).ok())
            .unwrap_or_default();
        let client = rt.pool.get().await.map_err(failed)?;
        let ended = crate::tenant::access::end_sessions(&client, &logins)
            .await
            .map_err(failed)?;
        if let Some(id) = run.tenant_id.filter(|_| rt.pgbouncer.admin_url.is_some()) {
            let t = crate::store::tenants::get(&client, id)
                .await
                .map_err(failed)?;
            pooler::end_pooled(rt, &t).await;
        }
        Ok(serde_json::json!({"sessions": ended}))
    })
}

/// Opens a connection as the control role to another database of the server.
pub(crate) async fn connect_to(
    p: &Platform,
    database: &str,
) -> Result<tokio_postgres::Client, StepError> {
    let mut config = p.config.clone();
    config.dbname(database);
    crate::pg::connect(&config).await.map_err(failed)
}

fn ident(name: &str) -> Result<Ident, StepError> {
    Ident::new(name.to_string()).map_err(failed)
}

/// A throw-away role: what it owns in the database it reached, what it owns or was
/// granted in the control database, its sessions, then the role.
fn clean_role<'a>(p: &'a Runtime, o: &'a Object) -> StepFuture<'a> {
    Box::pin(async move {
        let role = ident(&o.name)?;
        let c = p.pool.get().await.map_err(failed)?;
        let exists = c
            .query_opt(
                "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
                &[&o.name],
            )
            .await
            .map_err(failed)?
            .is_some();
        if !exists {
            return Ok(Value::Null);
        }
        if let Some(db) = o.database.as_deref().filter(|d| *d != p.endpoint.database) {
            let there = c
                .query_opt(
                    "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
                    &[&db],
                )
                .await
                .map_err(failed)?
                .is_some();
            if there {
                connect_to(p, db)
                    .await?
                    .batch_execute(&format!("DROP OWNED BY {role} CASCADE"))
                    .await
                    .map_err(failed)?;
            }
        }
        c.batch_execute(&format!(
            "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = {};
             DROP OWNED BY {role} CASCADE; DROP ROLE IF EXISTS {role};",
            crate::pg::Literal(&o.name)
        ))
        .await
        .map_err(failed)?;
        Ok(Value::Null)
    })
}

/// Every throw-away role whose name starts with the object's name (a step that makes
/// many, one per unit of work, declares their common prefix once). Only prefixes of
/// berqenas's own throw-away roles are accepted.
fn clean_roles<'a>(p: &'a Runtime, o: &'a Object) -> StepFuture<'a> {
    Box::pin(async move {
        if !o.name.starts_with("berqenas_") || o.name.len() < 16 {
            return Err(StepError::Fenced(format!(
                "refusing to drop roles by the prefix {:?}",
                o.name
            )));
        }
        let names: Vec<String> = p
            .pool
            .get()
            .await
            .map_err(failed)?
            .query(
                "SELECT rolname::text FROM pg_catalog.pg_roles WHERE starts_with(rolname, $1)",
                &[&o.name],
            )
            .await
            .map_err(failed)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for name in names {
            let one = Object { name, ..o.clone() };
            clean_role(p, &one).await?;
        }
        Ok(Value::Null)
    })
}

fn clean_database<'a>(p: &'a Runtime, o: &'a Object) -> StepFuture<'a> {
    Box::pin(async move {
        let db = ident(&o.name)?;
        p.pool
            .get()
            .await
            .map_err(failed)?
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await
            .map_err(failed)?;
        Ok(Value::Null)
    })
}

/// An archive's own schema name, dropped under the archive's lock.
fn clean_archive_schema<'a>(p: &'a Runtime, o: &'a Object) -> StepFuture<'a> {
    Box::pin(async move {
        crate::backup::restore::drop_archive_schema(p, &ident(&o.name)?)
            .await
            .map_err(failed)?;
        Ok(Value::Null)
    })
}

fn clean_schema<'a>(p: &'a Runtime, o: &'a Object) -> StepFuture<'a> {
    Box::pin(async move {
        let schema = ident(&o.name)?;
        let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
        match o.database.as_deref() {
            Some(db) if db != p.endpoint.database => {
                let there = p
                    .pool
                    .get()
                    .await
                    .map_err(failed)?
                    .query_opt(
                        "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
                        &[&db],
                    )
                    .await
                    .map_err(failed)?
                    .is_some();
                if there {
                    connect_to(p, db)
                        .await?
                        .batch_execute(&sql)
                        .await
                        .map_err(failed)?;
                }
            }
            _ => p
                .pool
                .get()
                .await
                .map_err(failed)?
                .batch_execute(&sql)
                .await
                .map_err(failed)?,
        }
        Ok(Value::Null)
    })
}

/// The sealed form of an answer that carries secrets, for a step's journaled outcome
/// (the journal is not a place for plaintext).
pub(crate) fn seal_value(p: &Platform, v: &impl serde::Serialize) -> Result<String, StepError> {
    use base64::Engine as _;
    let bytes = serde_json::to_vec(v).map_err(failed)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(p.key.seal(&bytes)))
}

pub(crate) fn open_value<T: serde::de::DeserializeOwned>(
    p: &Platform,
    sealed: &str,
) -> Result<T, crate::tenant::service::Error> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .map_err(|_| crate::secrets::SecretError::Open)?;
    Ok(serde_json::from_slice(&p.key.open(&bytes)?)?)
}

pub use ops::Done;
