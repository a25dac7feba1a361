//! `tenant.move.shared`: a shared-mode tenant moved into schema or database mode, or a
//! schema- or database-mode tenant into shared mode (docs/moves.md "Out of and into
//! shared mode", issue 18 item 4), on its server or onto another, or a shared-mode
//! tenant from one server's pool into another's (`tenant::moving_pools`), by the same
//! request as every move (`POST /api/v1/tenants/{name}/move {"to_isolation",
//! "to_server"}`).
//! Replication cannot carry pool rows (see `tenant::moving_shared`): the rows are
//! copied in two passes (`tenant::moving_catch_up`), the bulk while the tenant
//! writes, then what changed since with its writes blocked, so the write gap is the
//! second pass.
//!
//! 1. `fence`: the tenant taken by this operation (as `tenant.move`).
//! 2. `prepare` (reaches out): declared first; on another server the tenant's roles
//!    (as `tenant.move` makes them); out of shared mode, the schema or database made
//!    as a create in that mode makes it; into it, the pool (built on a server
//!    without one) checked free of the tenant's rows.
//! 3. `precopy` (reaches out): the tenant's rows into the target, its writes going
//!    on, in one transaction there; the outcome says from which transaction on the
//!    source's rows may have changed since.
//! 4. `block` (reaches out): logins off, sessions ended (as `tenant.move`).
//! 5. `copy` (reaches out): the rows written, changed or deleted since `precopy`,
//!    the realtime events, sequences and realtime triggers into the target, in one
//!    transaction there.
//! 6. `switch`: the registry's server and mode, in one control transaction with the
//!    step's journal row: the point of no return.
//! 7. `login`: the roles leave or join the pool and reach the server as the new mode
//!    has it; logins back; the tenant given up (as `tenant.move`).
//! 8. `retire`: after the grace, the source: the tenant's pool rows, or its schema
//!    or database; its roles on a server it left.
//!
//! Failing or dying before `switch` commits undoes it: logins back, the target
//! dropped (out of shared mode) or the copied pool rows deleted (into it), roles
//! made on another server dropped; the source was never changed.

use serde_json::{json, Value};

use super::move_tenant::{self as mv, Params};
use super::{failed, Error, Runtime};
use crate::ops::{step, Kind, Run, StepError, StepFuture};
use crate::problem::{Kind as ProblemKind, Problem};
use crate::tenant::{moving, moving_pools, moving_shared, Isolation, Tenant};

pub const MOVE_SHARED: &str = "tenant.move.shared";

pub fn kind() -> Kind<Runtime> {
    Kind {
        name: MOVE_SHARED,
        steps: vec![
            step("fence", false, mv::fence_tenant, Some(super::give_back)),
            step("prepare", true, prepare, Some(unprepare)),
            step("precopy", true, precopy, Some(uncopy)),
            step("block", true, mv::block, Some(mv::unblock)),
            step("copy", true, copy, Some(uncopy)),
            step("switch", false, mv::switch, None),
            step("login", false, mv::login, None),
            step("retire", false, retire, None),
        ],
        // `switch` commits the registry's new mode with its own journal row.
        point_of_no_return: 6,
    }
}

fn moved(e: moving::Error) -> StepError {
    StepError::failed(e)
}

fn refused(kind: ProblemKind, code: &str, field: Option<&str>, message: String) -> Problem {
    let mut p = Problem::new(kind, code, message);
    p.field = field.map(Into::into);
    p
}

/// Whether the move goes into shared mode (else out of it).
fn into_pool(params: &Params) -> bool {
    params.target() == Isolation::Shared
}

/// Whether the move goes from one server's pool into another's.
fn between_pools(params: &Params) -> bool {
    params.isolation == Isolation::Shared && into_pool(params)
}

/// A move into or out of shared mode checked before anything changes (the request's
/// 422 or 409): the template versions equal, and, into shared mode from a schema or
/// database, nothing in the tenant's schema the pool has no room for. The pool is on
/// the tenant's server (out of it) or on `to` (into it, from another server's pool
/// too), the other side on the same server or another. Other moves pass.
pub(super) async fn check(
    rt: &Runtime,
    t: &Tenant,
    to: &str,
    to_isolation: Isolation,
) -> Result<(), Error> {
    use ProblemKind::Conflict;
    let (from_pool, into) = (
        t.isolation == Isolation::Shared,
        to_isolation == Isolation::Shared,
    );
    if !from_pool && !into {
        return Ok(());
    }
    let view_of = |server: String| async move {
        rt.platform.view_of(&server).await.map_err(|_| {
            Error::Rejected(refused(
                Conflict,
                "server_down",
                Some("to_server"),
                format!("to_server: server {server:?} cannot be reached"),
            ))
        })
    };
    let view = view_of(t.server.clone()).await?;
    let pool_server = if into { to } else { t.server.as_str() };
    let pool_side = if pool_server == t.server {
        view.clone()
    } else {
        view_of(pool_server.to_string()).await?
    };
    let latest = rt.platform.template.latest_version();
    // The pool the rows land in or leave, and its version. A server without a pool
    // yet gets one at the template's version when the move begins; until then its
    // shape is `default`'s pool's, when that is at the same version.
    let (pool, pool_view) = if pool_server == crate::store::servers::DEFAULT {
        let c = rt.pool.get().await?;
        (
            crate::tenant::shared_mode::pool_version(&c).await?,
            Some(&rt.platform),
        )
    } else {
        let c = pool_side.pool.get().await?;
        match crate::tenant::shared_mode::pool_version_on(&c).await? {
            Some(v) => (v, Some(&pool_side)),
            None => {
                let c = rt.pool.get().await?;
                let home = crate::tenant::shared_mode::pool_version(&c).await?;
                (latest, (home == latest).then_some(&rt.platform))
            }
        }
    };
    // The target is made at the template's version (out), or the rows land in the
    // pool's tables (in): the tenant's tables must be at that version.
    let want = if into { pool } else { latest };
    if t.template_version != want {
        return Err(Error::Rejected(refused(
            Conflict,
            "template_not_current",
            None,
            format!(
                "tenant {} is at template version {}, {} at {want}: migrate first (docs/moves.md)",
                t.name,
                t.template_version,
                if into {
                    "the shared pool"
                } else {
                    "the template"
                }
            ),
        )));
    }
    // Without a pool to compare with, the `copy` step's check (against the pool
    // built by then) is the only one. A tenant from another pool has no schema of
    // its own: its rows fit any pool at its version.
    if let (true, false, Some(pool_view)) = (into, from_pool, pool_view) {
        let extra = moving_shared::extras(&view, pool_view, &t.name, t.isolation)
            .await
            .map_err(unreached)?;
        if !extra.is_empty() {
            return Err(Error::Rejected(unfit(&t.name, &extra)));
        }
    }
    Ok(())
}

/// A failure reading the tenant's schema for [`check`]: the server's, not the request's.
fn unreached(e: moving::Error) -> Error {
    match e {
        moving::Error::Db(e) => e.into(),
        moving::Error::Pool(e) => e.into(),
        moving::Error::Pg(e) => Error::Tenant(e.into()),
        other => Error::Rejected(Problem::new(
            ProblemKind::Unavailable,
            "server_unreachable",
            format!("the tenant's schema could not be read: {other}"),
        )),
    }
}

fn unfit(name: &crate::tenant::Slug, extra: &[String]) -> Problem {
    refused(
        ProblemKind::Unprocessable,
        "unsupported_in_shared_mode",
        Some("to_isolation"),
        format!(
            "to_isolation: tenant {name} has objects the shared pool has not ({}); shared mode has no room for them, and they would be lost with its schema: drop them, or keep the tenant in its mode",
            extra.join(", ")
        ),
    )
}

/// 2. The target, declared first: out of the pool, the schema or database; on
///    another server, the tenant's roles too (the same names and password verifiers,
///    NOLOGIN), before it. Roles, a schema or a database of the tenant's names there
///    already, or rows of its id in the pool, are someone else's: refused, never
///    dropped.
fn prepare<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let s = mv::sides(p, run).await?;
        let (slug, iso) = (&s.params.name, s.params.target());
        let into = into_pool(&s.params);
        // On a server other than `default` without one yet, the pool, built as a
        // shared-mode create there builds it (it stays, as it does once its last
        // tenant goes).
        if into && s.params.to != crate::store::servers::DEFAULT {
            crate::tenant::shared_mode::ensure_pool_on(&s.dst)
                .await
                .map_err(StepError::failed)?;
        }
        if run.intent::<Value>("prepare").is_none() {
            let roles = moving::existing_roles(&s.dst, s.params.own_roles())
                .await
                .map_err(moved)?;
            let taken = if !roles.is_empty() {
                Some(format!("server {:?} already has roles named for tenant {slug} (a previous copy still in its grace?)", s.params.to))
            } else if into {
                let rows = moving_shared::pool_rows(&s.dst, s.params.tenant_id)
                    .await
                    .map_err(moved)?;
                (rows > 0).then(|| {
                    format!("the shared pool holds {rows} row(s) of tenant {slug} already")
                })
            } else {
                moving::data_exists(&s.dst, slug, iso)
                    .await
                    .map_err(moved)?
                    .then(|| {
                        format!(
                            "a {} named for tenant {slug} exists already",
                            if iso == Isolation::Database {
                                "database"
                            } else {
                                "schema"
                            }
                        )
                    })
            };
            if let Some(taken) = taken {
                return Err(StepError::Rejected(Problem::new(
                    ProblemKind::Conflict,
                    "target_not_empty",
                    format!("{taken}; nothing was changed"),
                )));
            }
            let mut objects = s.params.own_role_objects();
            if !into {
                objects.push(s.target_object());
            }
            run.intend(objects, json!({"ours": true, "server": s.params.to}))
                .await?;
        }
        if !s.params.same_server() {
            moving::copy_roles(&s.src, &s.dst, &s.params.roles, None, &s.dst_db)
                .await
                .map_err(moved)?;
        }
        if !into {
            let limit = super::move_mode::max_connections(p, s.params.tenant_id).await?;
            moving_shared::make_target(&p.platform, &s.dst, &s.params.to, slug, iso, limit)
                .await
                .map_err(moved)?;
        }
        Ok(json!({
            "isolation": iso.as_str(), "server": s.params.to, "database": s.dst_db,
            "roles": s.params.own_roles().len(),
        }))
    })
}

/// Drops what [`prepare`] made, if its intent says it was ours: the target schema or
/// database (out of the pool), and the roles copied to another server (the source's
/// roles stay: they are the tenant's).
fn unprepare<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        if !run
            .intent::<Value>("prepare")
            .is_some_and(|i| i["ours"] == true)
        {
            return Ok(Value::Null);
        }
        let s = mv::sides(p, run).await?;
        let roles = s.params.own_roles();
        if into_pool(&s.params) {
            moving::drop_roles(&s.dst, roles).await.map_err(moved)?;
        } else {
            moving::drop_copy(&s.dst, &s.params.name, s.params.target(), roles)
                .await
                .map_err(moved)?;
        }
        Ok(Value::Null)
    })
}

/// 3. The rows, the tenant still writing: the copy's first pass, the bulk of it
///    (`tenant::moving_catch_up`). An abort asked for meanwhile is honoured before.
fn precopy<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        if run.abort_requested() {
            return Err(crate::ops::aborted());
        }
        let s = mv::sides(p, run).await?;
        if run.intent::<Value>("precopy").is_none() {
            run.intend(Vec::new(), json!({"into": s.dst_db})).await?;
        }
        let (slug, id) = (&s.params.name, s.params.tenant_id);
        let outcome = if between_pools(&s.params) {
            moving_pools::precopy(&s.src, &s.dst, id).await
        } else if into_pool(&s.params) {
            moving_shared::precopy_into_pool(&s.src, &s.dst, slug, id, s.params.isolation).await
        } else {
            moving_shared::precopy_rows(&s.src, &s.dst, slug, id, s.params.target()).await
        }
        .map_err(moved)?;
        tracing::info!(tenant = %s.params.name, ms = outcome["ms"].as_u64(), "shared move's first pass copied");
        Ok(outcome)
    })
}

/// 5. The rows written since the first pass, with the writes blocked (all of them
///    for a run journaled before there was one). An abort asked for meanwhile is
///    honoured before the copy starts.
fn copy<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        if run.abort_requested() {
            return Err(crate::ops::aborted());
        }
        let s = mv::sides(p, run).await?;
        if run.intent::<Value>("copy").is_none() {
            run.intend(Vec::new(), json!({"into": s.dst_db})).await?;
        }
        let since = run
            .outcome::<Value>("precopy")
            .and_then(|o| o["since"].as_i64());
        let (slug, id) = (&s.params.name, s.params.tenant_id);
        let outcome = if between_pools(&s.params) {
            moving_pools::copy(&s.src, &s.dst, id, since).await
        } else if into_pool(&s.params) {
            // Checked again with the writes blocked: a table or column made since the
            // request would be lost.
            let extra = moving_shared::extras(&s.src, &s.dst, slug, s.params.isolation)
                .await
                .map_err(moved)?;
            if !extra.is_empty() {
                return Err(StepError::Rejected(unfit(slug, &extra)));
            }
            moving_shared::copy_into_pool(&s.src, &s.dst, slug, id, s.params.isolation, since).await
        } else {
            moving_shared::copy_rows(&s.src, &s.dst, slug, id, s.params.target(), since).await
        }
        .map_err(moved)?;
        tracing::info!(tenant = %s.params.name, ms = outcome["ms"].as_u64(), "shared tenant's rows copied");
        Ok(outcome)
    })
}

/// Undoes either pass: into shared mode, the tenant's rows copied into the pool
/// deleted (the pool had none of them before `prepare`). Out of it, the target goes
/// with `prepare`'s undoing.
fn uncopy<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        let copied =
            run.intent::<Value>("precopy").is_some() || run.intent::<Value>("copy").is_some();
        if !copied || !into_pool(&params) {
            return Ok(Value::Null);
        }
        let s = mv::sides(p, run).await?;
        moving_shared::purge_pool_rows(&s.dst, params.tenant_id)
            .await
            .map_err(moved)?;
        Ok(Value::Null)
    })
}

/// 8. After the grace, the source goes: the tenant's pool rows, or its schema or
///    database, and, when it changed server, its roles there (unless the registry
///    has it where it was again).
fn retire<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        mv::wait_grace(run, &params).await?;
        let back = {
            let c = p.pool.get().await.map_err(failed)?;
            crate::store::tenants::get(&c, params.tenant_id)
                .await
                .map(|t| t.isolation == params.isolation && t.server == params.from)
                .unwrap_or(false)
        };
        let s = mv::sides(p, run).await?;
        if !back {
            if params.isolation != Isolation::Shared {
                moving::drop_copy(&s.src, &params.name, params.isolation, params.own_roles())
                    .await
                    .map_err(moved)?;
            } else {
                moving_shared::purge_pool_rows(&s.src, params.tenant_id)
                    .await
                    .map_err(moved)?;
                moving::drop_roles(&s.src, params.own_roles())
                    .await
                    .map_err(moved)?;
            }
        }
        Ok(json!({
            "source_dropped": !back, "from": params.isolation.as_str(), "server": params.from,
        }))
    })
}
