//! `tenant.move`: a tenant moved online to another server with PostgreSQL's own
//! logical replication (docs/moves.md, issue 18 item 3). No transaction spans two
//! servers, so it is steps, each idempotent, a failpoint at every boundary:
//!
//! 1. `fence`: the tenant taken by this operation (a control transaction).
//! 2. `prepare` (reaches out): its roles (same names, same password verifier,
//!    NOLOGIN) and its schema definition (`pg_dump --schema-only`) on the target.
//! 3. `replicate` (reaches out): publication and slot on the source, subscription on
//!    the target; the names (`bq_move_<op id>`) journaled first.
//! 4. `copy`: waits for the initial copy, its progress journaled (tables, lag bytes).
//! 5. `block` (reaches out): the tenant's logins turned off on the source and its
//!    sessions ended: its writes stop.
//! 6. `catch_up` (reaches out): the target has applied the source's last position;
//!    sequences copied.
//! 7. `switch`: the registry points at the target, in one control transaction with
//!    the step's journal row: the point of no return.
//! 8. `login`: the logins back, on the target; the tenant given up.
//! 9. `cleanup`: subscription, slot and publication dropped.
//! 10. `retire`: after the grace, the source copy (schema or database, roles) dropped.
//!
//! Failing or dying before `switch` commits undoes it, last first: the source's
//! logins come back, the replication objects and the target's copy go; the source was
//! never changed otherwise. From `switch` on it finishes forward. The registry names
//! exactly one server at every instant.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{failed, hold_owned, Error, Runtime};
use crate::ops::{fence, step, Kind, NewOp, Object, Run, StepError, StepFuture};
use crate::pg::logical::{self, Link};
use crate::platform::Platform;
use crate::problem::{Kind as ProblemKind, Problem};
use crate::secrets::ExposeSecret;
use crate::tenant::{moving, moving_mode, Isolation, Slug, Status};

pub const MOVE: &str = "tenant.move";

/// The grace before the source copy is dropped, when the request names none.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(600);

/// How long the initial copy may take before the move is undone.
const COPY_WITHIN: Duration = Duration::from_secs(3600);

/// How long the cutover waits for the target to apply the source's last write.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(60);

/// Lag (bytes of WAL not yet confirmed) small enough to cut over.
const SMALL_LAG: i64 = 1024 * 1024;

pub fn kind() -> Kind<Runtime> {
    Kind {
        name: MOVE,
        steps: vec![
            step("fence", false, fence_tenant, Some(super::give_back)),
            step("prepare", true, prepare, Some(unprepare)),
            step("replicate", true, replicate, Some(unreplicate)),
            step("copy", false, copy, None),
            step("block", true, block, Some(unblock)),
            step("catch_up", true, catch_up, None),
            step("switch", false, switch, None),
            step("login", false, login, None),
            step("cleanup", false, cleanup, None),
            step("retire", false, retire, None),
        ],
        // `switch` commits the registry's new server with its own journal row: until
        // then a crash undoes the move, from then on it finishes.
        point_of_no_return: 7,
    }
}

/// `POST /api/v1/tenants/{name}/move`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// The server to move to (`GET /api/v1/servers`); default: the one it is on.
    pub to_server: Option<String>,
    /// `schema`, `database` or `shared`; default: the mode it has. Into and out of
    /// shared mode too, on its server or onto another (not from one server's pool
    /// straight into another's), the rows copied in two passes (docs/moves.md).
    pub to_isolation: Option<String>,
    /// How long the source copy is kept after the cutover (`10m`, `1h`; `0`: dropped
    /// at once). Default 10 minutes.
    pub grace: Option<String>,
}

/// The input of a move, as journaled (no secret in it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Params {
    pub tenant_id: Uuid,
    pub name: Slug,
    pub from: String,
    pub to: String,
    pub isolation: Isolation,
    /// The mode it moves into, when it changes (`move_mode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_isolation: Option<Isolation>,
    /// Every role of the tenant: its fixed roles, then its users' login roles.
    pub roles: Vec<String>,
    pub grace_secs: u64,
    pub actor: String,
}

pub(super) fn refuse(kind: ProblemKind, code: &str, field: Option<&str>, message: String) -> Error {
    let mut p = Problem::new(kind, code, message);
    p.field = field.map(Into::into);
    Error::Rejected(p)
}

fn parse_grace(v: Option<&str>) -> Result<u64, Error> {
    match v.map(str::trim) {
        None => Ok(DEFAULT_GRACE.as_secs()),
        Some("0" | "0s") => Ok(0),
        Some(g) => crate::duration::parse("grace", g)
            .map(|d| d.as_secs())
            .map_err(Error::Rejected),
    }
}

/// Checks the request against the registry and both servers, then begins the move
/// and drives it on a task of its own; returns the operation's id at once. Bad input
/// changes nothing.
pub async fn start(rt: &Runtime, key: &str, req: MoveRequest, actor: &str) -> Result<Uuid, Error> {
    let (id, handle) = begin(rt, key, req, actor).await?;
    tokio::spawn(async move {
        match handle.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(operation.id = %id, error = %e, "a tenant move ended in error")
            }
            Err(e) => tracing::warn!(operation.id = %id, error = %e, "a tenant move stopped"),
        }
    });
    Ok(id)
}

/// As [`start`], but waits for the move to end (grace included); returns its last
/// step's outcome (tests, the crash matrix).
pub async fn run(rt: &Runtime, key: &str, req: MoveRequest, actor: &str) -> Result<Value, Error> {
    let (id, handle) = begin(rt, key, req, actor).await?;
    match handle.await {
        Ok(Ok(crate::ops::Done::Finished(v))) => Ok(v),
        Ok(Ok(crate::ops::Done::Replay(_))) => Ok(Value::Null),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(Error::Operation(crate::ops::OpError::Unfinished {
            op: id,
            source: Box::new(e),
        })),
    }
}

type Handle = tokio::task::JoinHandle<Result<crate::ops::Done, crate::ops::OpError>>;

async fn begin(
    rt: &Runtime,
    key: &str,
    req: MoveRequest,
    actor: &str,
) -> Result<(Uuid, Handle), Error> {
    use ProblemKind::{Conflict, Unprocessable};
    if req.to_server.is_none() && req.to_isolation.is_none() {
        return Err(Error::Rejected(Problem::bad_field(
            "to_server",
            "to_server or to_isolation is required",
        )));
    }
    let grace_secs = parse_grace(req.grace.as_deref())?;
    let control = rt.pool.get().await?;
    let t = crate::store::tenants::find(&control, key)
        .await
        .map_err(crate::tenant::service::Error::from)?
        .ok_or_else(|| crate::tenant::service::Error::not_found(key))?;
    let to_isolation = match req.to_isolation.as_deref() {
        None => t.isolation,
        Some(s) => Isolation::parse(s).ok_or_else(|| {
            Error::Rejected(Problem::bad_field(
                "to_isolation",
                format!("to_isolation {s:?} must be schema, database or shared"),
            ))
        })?,
    };
    let to = req.to_server.clone().unwrap_or_else(|| t.server.clone());
    let Some(row) = crate::store::servers::find(&control, &to)
        .await
        .map_err(crate::tenant::service::Error::from)?
    else {
        return Err(refuse(
            Unprocessable,
            "unknown_server",
            Some("to_server"),
            format!("to_server: there is no server {to:?} (GET /api/v1/servers lists them)"),
        ));
    };
    if to == t.server && to_isolation == t.isolation {
        return Err(refuse(
            Unprocessable,
            "move_to_same_place",
            Some("to_server"),
            format!(
                "to_server: tenant {} is already on server {to:?} in {} mode",
                t.name,
                t.isolation.as_str()
            ),
        ));
    }
    super::move_shared::check(rt, &t, &to, to_isolation).await?;
    // A draining server takes no tenants from elsewhere; a move between modes on it
    // brings it none (and is how a tenant in its pool leaves it: schema or database
    // mode there first).
    if row.draining && to != t.server {
        return Err(refuse(
            Conflict,
            "server_draining",
            Some("to_server"),
            format!("to_server: server {to:?} is draining and takes no tenants"),
        ));
    }
    if let Some(reason) = &row.down_reason {
        return Err(refuse(
            Conflict,
            "server_down",
            Some("to_server"),
            format!("to_server: server {to:?} is down: {reason}"),
        ));
    }
    if !matches!(t.status, Status::Active | Status::Trial) {
        return Err(refuse(
            Conflict,
            "tenant_not_active",
            None,
            format!(
                "tenant {} is {}: only an active (or trial) tenant can move",
                t.name,
                t.status.as_str()
            ),
        ));
    }
    super::move_checks::servers_ready(rt, &t, &to, to_isolation).await?;
    let mut roles: Vec<String> = t.name.fixed_role_names();
    roles.extend(
        crate::store::users::list(&control, t.id)
            .await
            .map_err(crate::tenant::service::Error::from)?
            .into_iter()
            .map(|u| u.db_user.as_str().to_string()),
    );
    drop(control);
    let params = Params {
        tenant_id: t.id,
        name: t.name.clone(),
        from: t.server.clone(),
        to,
        isolation: t.isolation,
        to_isolation: (to_isolation != t.isolation).then_some(to_isolation),
        roles,
        grace_secs,
        actor: actor.to_string(),
    };
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let tenant = lock_any(&tx, t.name.as_str()).await?;
    if tenant.server != params.from {
        return Err(refuse(
            Conflict,
            "tenant_busy",
            None,
            format!("tenant {} moved meanwhile; retry", t.name),
        ));
    }
    let begun = rt
        .engine
        .begin_in(
            &tx,
            NewOp {
                kind: if params.isolation == Isolation::Shared
                    || params.target() == Isolation::Shared
                {
                    super::move_shared::MOVE_SHARED
                } else {
                    MOVE
                },
                tenant_id: Some(t.id),
                tenant_name: t.name.as_str(),
                params: serde_json::to_value(&params).map_err(failed_params)?,
                idempotency: None,
            },
        )
        .await?;
    tx.commit().await?;
    let id = begun.id();
    Ok((id, rt.engine.launch(rt, begun)))
}

/// The tenant locked in the one lock order (name, then row) and free of running
/// operations, on whatever server it is (a move fences any tenant).
async fn lock_any(
    tx: &deadpool_postgres::Transaction<'_>,
    name: &str,
) -> Result<crate::tenant::Tenant, Error> {
    use crate::tenant::service::Error as E;
    match fence::lock_name(tx, name).await {
        Ok(()) => {}
        Err(fence::LockError::Busy(p)) => return Err(Error::Rejected(p)),
        Err(fence::LockError::Db(e)) => return Err(e.into()),
    }
    let t = crate::store::tenants::find_for_update(tx, name)
        .await
        .map_err(E::from)?
        .ok_or_else(|| E::not_found(name))?;
    match fence::free(tx, t.id, name).await {
        Ok(()) => Ok(t),
        Err(fence::FreeError::Busy { problem, .. }) => Err(Error::Rejected(problem)),
        Err(fence::FreeError::Db(e)) => Err(e.into()),
    }
}

fn failed_params(e: serde_json::Error) -> Error {
    Error::Tenant(e.into())
}

/// A server's view of the platform (its pool, config, endpoint), opened once.
async fn view_of(p: &Runtime, server: &str) -> Result<Platform, StepError> {
    let s = super::servers::opened(&p.platform, server)
        .await
        .map_err(failed)?;
    Ok(p.platform.on(&s))
}

pub(crate) struct Sides {
    pub params: Params,
    pub src: Platform,
    pub dst: Platform,
    pub src_db: String,
    pub dst_db: String,
}

impl Sides {
    /// What the move makes on the target, as its intent names it: the tenant's
    /// database, or its schema in the target server's database.
    pub(super) fn target_object(&self) -> Object {
        let kind = match self.params.target() {
            Isolation::Database => "database",
            _ => "schema",
        };
        Object {
            kind: kind.into(),
            name: self.params.name.schema().as_str().to_string(),
            database: Some(self.dst_db.clone()),
            scratch: false,
        }
    }
}

pub(super) async fn sides(p: &Runtime, run: &Run) -> Result<Sides, StepError> {
    let params: Params = run.params()?;
    let src = view_of(p, &params.from).await?;
    let dst = view_of(p, &params.to).await?;
    let src_db = moving::database_on(&src, &params.name, params.isolation);
    let dst_db = moving::database_on(&dst, &params.name, params.target());
    Ok(Sides {
        params,
        src,
        dst,
        src_db,
        dst_db,
    })
}

fn moved(e: moving::Error) -> StepError {
    StepError::failed(e)
}

/// 1. The tenant taken by this operation, still active and on the source.
pub(super) fn fence_tenant<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        let mut client = p.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        fence::lock_name(&tx, params.name.as_str()).await?;
        let t = crate::store::tenants::find_for_update(&tx, &params.tenant_id.to_string())
            .await
            .map_err(failed)?
            .ok_or_else(|| StepError::Fenced("the tenant is gone".into()))?;
        if !matches!(t.status, Status::Active | Status::Trial) || t.server != params.from {
            return Err(StepError::Rejected(Problem::new(
                ProblemKind::Conflict,
                "tenant_not_active",
                format!("tenant {} changed before its move began; retry", t.name),
            )));
        }
        fence::acquire(&tx, run, params.tenant_id).await?;
        let mut outcome = json!({
            "from": params.from, "to": params.to, "isolation": params.isolation.as_str(),
        });
        // A move out of shared mode copies rows: no replication link.
        if params.isolation != Isolation::Shared {
            outcome["link"] = json!(Link::of(run.id).name());
        }
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// 2. Roles and schema definition on the target, declared first. Roles or data of
///    the tenant's names there already are someone else's (or a copy a previous
///    move's grace keeps): refused, never dropped.
fn prepare<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let s = sides(p, run).await?;
        let (slug, iso) = (&s.params.name, s.params.target());
        if run.intent::<Value>("prepare").is_none() {
            let there = moving::existing_roles(&s.dst, s.params.own_roles())
                .await
                .map_err(moved)?;
            if !there.is_empty()
                || moving::data_exists(&s.dst, slug, iso)
                    .await
                    .map_err(moved)?
            {
                return Err(StepError::Rejected(Problem::new(
                    ProblemKind::Conflict,
                    "target_not_empty",
                    format!(
                        "server {:?} already has roles or data named for tenant {slug} (a previous copy still in its grace?); nothing was changed",
                        s.params.to
                    ),
                )));
            }
            let mut objects = s.params.own_role_objects();
            objects.push(s.target_object());
            run.intend(objects, json!({"ours": true, "server": s.params.to}))
                .await?;
        }
        if s.params.mode_move() {
            super::move_mode::prepare_target(p, &s).await?;
            pooler_logins(&s).await?;
            return Ok(
                json!({"server": s.params.to, "roles": s.params.own_roles().len(), "isolation": iso.as_str()}),
            );
        }
        // Database mode: the database's own settings come with its `pg_dump --create`.
        let per_db = (iso != Isolation::Database).then_some(s.src_db.as_str());
        moving::copy_roles(&s.src, &s.dst, &s.params.roles, per_db, &s.dst_db)
            .await
            .map_err(moved)?;
        moving::copy_definition(&s.src, &s.dst, slug, iso)
            .await
            .map_err(moved)?;
        pooler_logins(&s).await?;
        Ok(json!({"server": s.params.to, "roles": s.params.roles.len()}))
    })
}

/// A database of its own on the target: PgBouncer's lookup there, as a create's
/// (docs/deploy.md#pgbouncer); the target server's database has it already.
async fn pooler_logins(s: &Sides) -> Result<(), StepError> {
    if s.params.target() != Isolation::Database {
        return Ok(());
    }
    super::pooler::prepare_tenant_database(&s.dst, &s.dst_db)
        .await
        .map_err(super::failed)
}

/// Drops what [`prepare`] made on the target, if its intent says it was ours.
fn unprepare<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let ours = run
            .intent::<Value>("prepare")
            .is_some_and(|i| i["ours"] == true);
        if !ours {
            return Ok(Value::Null);
        }
        let s = sides(p, run).await?;
        let (iso, roles) = (s.params.target(), s.params.own_roles());
        moving::drop_copy(&s.dst, &s.params.name, iso, roles)
            .await
            .map_err(moved)?;
        Ok(Value::Null)
    })
}

/// 3. Publication and slot on the source, subscription on the target.
fn replicate<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let s = sides(p, run).await?;
        let link = Link::of(run.id);
        if run.intent::<Value>("replicate").is_none() {
            run.intend(
                vec![
                    Object {
                        kind: "publication".into(),
                        name: link.name().into(),
                        database: Some(s.src_db.clone()),
                        scratch: false,
                    },
                    Object {
                        kind: "subscription".into(),
                        name: link.name().into(),
                        database: Some(s.dst_db.clone()),
                        scratch: false,
                    },
                ],
                json!({"link": link.name(), "from": s.params.from, "to": s.params.to}),
            )
            .await?;
        }
        let schema = s.params.name.schema();
        let (tables, only) = s.params.published(&schema);
        let src = moving::connect_db(&s.src, &s.src_db).await.map_err(moved)?;
        let full = moving::full_identity(&src, only).await.map_err(moved)?;
        logical::publish(&src, &link, tables)
            .await
            .map_err(failed)?;
        let dst = moving::connect_db(&s.dst, &s.dst_db).await.map_err(moved)?;
        let dsn = moving::source_dsn(&s.src, &s.src_db);
        logical::subscribe(&dst, &link, dsn.expose_secret())
            .await
            .map_err(failed)?;
        Ok(json!({"link": link.name(), "full_identity": full.len()}))
    })
}

/// Drops the subscription (if the target's database is there) and the publication
/// and slot.
fn unreplicate<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        if run.intent::<Value>("replicate").is_none() {
            return Ok(Value::Null);
        }
        let s = sides(p, run).await?;
        let link = Link::of(run.id);
        let dst_there = s.params.target() != Isolation::Database
            || moving::data_exists(&s.dst, &s.params.name, s.params.target())
                .await
                .map_err(moved)?;
        let src = moving::connect_db(&s.src, &s.src_db).await.map_err(moved)?;
        if dst_there {
            let dst = moving::connect_db(&s.dst, &s.dst_db).await.map_err(moved)?;
            logical::unsubscribe(&dst, &src, &link)
                .await
                .map_err(failed)?;
        }
        logical::unpublish(&src, &link).await.map_err(failed)?;
        Ok(Value::Null)
    })
}

/// 4. Waits for the initial copy and a small lag, journaling progress (the operations
///    API shows it) about every second.
fn copy<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let s = sides(p, run).await?;
        let link = Link::of(run.id);
        let src = moving::connect_db(&s.src, &s.src_db).await.map_err(moved)?;
        let dst = moving::connect_db(&s.dst, &s.dst_db).await.map_err(moved)?;
        let until = std::time::Instant::now() + COPY_WITHIN;
        let mut last: Option<Value> = None;
        loop {
            let progress = logical::progress(&dst, &link).await.map_err(failed)?;
            let lag = logical::lag_bytes(&src, &link).await.map_err(failed)?;
            let bytes = logical::copied_bytes(&dst, &link).await.map_err(failed)?;
            let now = json!({
                "tables": progress.tables, "copied": progress.ready,
                "lag_bytes": lag, "bytes": bytes,
            });
            if progress.done() && lag.is_some_and(|l| l <= SMALL_LAG) {
                return Ok(now);
            }
            if last.as_ref() != Some(&now) {
                run.wait(now.clone()).await?;
                last = Some(now);
            }
            if run.abort_requested() {
                return Err(crate::ops::aborted());
            }
            if std::time::Instant::now() >= until {
                return Err(StepError::failed(std::io::Error::other(
                    "the initial copy did not finish within an hour",
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// 5. The tenant's writes stop on the source: the logins that can log in (journaled
///    first, for the undoing) turned off, their sessions ended.
pub(super) fn block<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let s = sides(p, run).await?;
        let logins = match run.intent::<Value>("block") {
            Some(i) => serde_json::from_value(i["logins"].clone()).map_err(failed)?,
            None => {
                let can = moving::can_login(&s.src, &s.params.roles)
                    .await
                    .map_err(moved)?;
                run.intend(Vec::new(), json!({"logins": can})).await?;
                can
            }
        };
        moving::block(&s.src, &logins, &s.params.roles)
            .await
            .map_err(moved)?;
        Ok(json!({"logins": logins}))
    })
}

/// The logins back on the source.
pub(super) fn unblock<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let Some(i) = run.intent::<Value>("block") else {
            return Ok(Value::Null);
        };
        let logins: Vec<String> = serde_json::from_value(i["logins"].clone()).map_err(failed)?;
        let s = sides(p, run).await?;
        moving::unblock(&s.src, &logins).await.map_err(moved)?;
        Ok(Value::Null)
    })
}

/// 6. Everything the source committed is on the target; sequences copied.
fn catch_up<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let s = sides(p, run).await?;
        let link = Link::of(run.id);
        let src = moving::connect_db(&s.src, &s.src_db).await.map_err(moved)?;
        let dst = moving::connect_db(&s.dst, &s.dst_db).await.map_err(moved)?;
        let lsn = logical::position(&src).await.map_err(failed)?;
        if !logical::wait_applied(&src, &link, &lsn, CATCH_UP_WITHIN)
            .await
            .map_err(failed)?
        {
            return Err(StepError::failed(std::io::Error::other(
                "the target did not apply the source's last writes within a minute",
            )));
        }
        let schema = s.params.name.schema();
        let (_, only) = s.params.published(&schema);
        let sequences = logical::copy_sequences(&src, &dst, only)
            .await
            .map_err(failed)?;
        Ok(json!({"lsn": lsn, "sequences": sequences}))
    })
}

/// 7. The registry points at the target: the point of no return, committed with
///    this step's journal row.
pub(super) fn switch<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        let dst = view_of(p, &params.to).await?;
        let dst_db = moving::database_on(&dst, &params.name, params.target());
        let mut client = p.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        hold_owned(&tx, run).await?;
        let outcome = super::move_mode::switch_registry(&tx, &params, &dst_db).await?;
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// 8. The logins back, on the target; the tenant given up; its new address.
pub(super) fn login<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let s = sides(p, run).await?;
        let logins: Vec<String> = run
            .outcome::<Value>("block")
            .and_then(|v| serde_json::from_value(v["logins"].clone()).ok())
            .unwrap_or_default();
        super::move_mode::follow_mode(p, &s).await?;
        if s.params.same_server() && s.params.isolation == Isolation::Database {
            moving_mode::close_source_database(&s.src, &s.src_db, &s.params.roles)
                .await
                .map_err(StepError::failed)?;
        }
        if !s.params.same_server() {
            super::move_mode::follow_network(p, &s.params).await?;
        }
        moving::unblock(&s.dst, &logins).await.map_err(moved)?;
        // Sessions that reached the source meanwhile end; on one server the roles'
        // sessions are the target's already (the block step ended the source's).
        if !s.params.same_server() {
            moving::end_sessions(&s.src, &s.params.roles)
                .await
                .map_err(moved)?;
        }
        let e = &s.dst.endpoint;
        let role = s.params.name.login_role();
        let outcome = json!({
            "server": s.params.to, "host": e.host, "port": e.port, "database": s.dst_db,
            "dsn": format!("postgresql://{}@{}:{}/{}", role.as_str(), e.host, e.port, s.dst_db),
        });
        let mut client = p.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        fence::lock_name(&tx, &run.tenant_name).await?;
        if fence::owns(&tx, run).await? {
            fence::release(&tx, run).await?;
        }
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(tenant = %s.params.name, from = %s.params.from, to = %s.params.to, "tenant moved");
        Ok(outcome)
    })
}

/// 9. Subscription, slot and publication dropped.
fn cleanup<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        unreplicate(p, run).await?;
        Ok(json!({"dropped": Link::of(run.id).name()}))
    })
}

/// 10. After the grace, the source copy dropped (unless the registry points at the
///     source again).
fn retire<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let s = sides(p, run).await?;
        wait_grace(run, &s.params).await?;
        let on_source = {
            let c = p.pool.get().await.map_err(failed)?;
            crate::store::tenants::get(&c, s.params.tenant_id)
                .await
                .map(|t| t.server == s.params.from && t.isolation == s.params.isolation)
                .unwrap_or(false)
        };
        if !on_source {
            moving::drop_copy(
                &s.src,
                &s.params.name,
                s.params.isolation,
                s.params.own_roles(),
            )
            .await
            .map_err(moved)?;
        }
        Ok(json!({"source_dropped": !on_source, "server": s.params.from}))
    })
}

/// Waits out the move's grace before its source copy goes: the moment is journaled
/// once (the operation shows it), so a restarted operation waits only what is left.
pub(super) async fn wait_grace(run: &mut Run, params: &Params) -> Result<(), StepError> {
    let at = match run
        .intent::<Value>("retire")
        .and_then(|i| i["drop_source_at"].as_str().map(String::from))
    {
        Some(at) => at,
        None => {
            let at = chrono::Utc::now() + chrono::Duration::seconds(params.grace_secs as i64);
            let at = at.to_rfc3339();
            if params.grace_secs > 0 {
                run.wait(json!({"drop_source_at": at, "server": params.from}))
                    .await?;
            }
            at
        }
    };
    let at = chrono::DateTime::parse_from_rfc3339(&at).map_err(failed)?;
    let left = (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(left).await;
    Ok(())
}
