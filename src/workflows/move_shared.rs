//! `tenant.move.shared`: a shared-mode tenant moved into schema or database mode on
//! its server, or a schema- or database-mode tenant into shared mode (docs/moves.md
//! "Out of and into shared mode", issue 18 item 4), by the same request as every move
//! (`POST /api/v1/tenants/{name}/move {"to_isolation"}`). Replication cannot carry
//! pool rows (see `tenant::moving_shared`): the rows are copied in two passes
//! (`tenant::moving_catch_up`), the bulk while the tenant writes, then what changed
//! since with its writes blocked, so the write gap is the second pass.
//!
//! 1. `fence`: the tenant taken by this operation (as `tenant.move`).
//! 2. `prepare` (reaches out): out of shared mode, the schema or database made as a
//!    create in that mode makes it, declared first; into it, the pool checked free of
//!    the tenant's rows.
//! 3. `precopy` (reaches out): the tenant's rows into the target, its writes going
//!    on, in one transaction there; the outcome says from which transaction on the
//!    source's rows may have changed since.
//! 4. `block` (reaches out): logins off, sessions ended (as `tenant.move`).
//! 5. `copy` (reaches out): the rows written, changed or deleted since `precopy`,
//!    the realtime events, sequences and realtime triggers into the target, in one
//!    transaction there.
//! 6. `switch`: the registry's mode, in one control transaction with the step's
//!    journal row: the point of no return.
//! 7. `login`: the roles leave or join the pool and reach the server as the new mode
//!    has it; logins back; the tenant given up (as `tenant.move`).
//! 8. `retire`: after the grace, the source: the tenant's pool rows, or its schema
//!    or database.
//!
//! Failing or dying before `switch` commits undoes it: logins back, the target
//! dropped (out of shared mode) or the copied pool rows deleted (into it); the source
//! was never changed.

use serde_json::{json, Value};

use super::move_tenant::{self as mv, Params};
use super::{failed, Error, Runtime};
use crate::ops::{step, Kind, Run, StepError, StepFuture};
use crate::problem::{Kind as ProblemKind, Problem};
use crate::tenant::{moving, moving_shared, Isolation, Tenant};

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

/// A move into or out of shared mode checked before anything changes (the request's
/// 422 or 409): on `default` only (its pool is in the control database, where the
/// copy's transactions run), never from one server's pool to another's, the template
/// versions equal, and, into shared mode, nothing in the tenant's schema the pool has
/// no room for. Other moves pass.
pub(super) async fn check(
    rt: &Runtime,
    t: &Tenant,
    to: &str,
    to_isolation: Isolation,
) -> Result<(), Error> {
    use ProblemKind::{Conflict, Unprocessable};
    let (from_pool, into) = (
        t.isolation == Isolation::Shared,
        to_isolation == Isolation::Shared,
    );
    if !from_pool && !into {
        return Ok(());
    }
    if from_pool && into {
        return Err(Error::Rejected(refused(
            Unprocessable,
            "move_unsupported",
            Some("to_server"),
            format!("to_server: a shared-mode tenant does not move between servers' pools; on \"default\" it moves into schema or database mode first (docs/moves.md); tenant {} is in the pool of server {:?}", t.name, t.server),
        )));
    }
    if to != t.server || t.server != crate::store::servers::DEFAULT {
        return Err(Error::Rejected(refused(
            Unprocessable,
            "move_unsupported",
            Some("to_server"),
            "to_server: a tenant moves into or out of shared mode on server \"default\" only, and not between servers (docs/moves.md)".into(),
        )));
    }
    let c = rt.pool.get().await?;
    let pool = crate::tenant::shared_mode::pool_version(&c).await?;
    // The target is made at the template's version (out), or the rows land in the
    // pool's tables (in): the tenant's tables must be at that version.
    let want = if into {
        pool
    } else {
        rt.platform.template.latest_version()
    };
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
    if into {
        let extra = moving_shared::extras(&rt.platform, &t.name, t.isolation)
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

/// 2. The target, declared first. A schema or database of the tenant's name there
///    already is someone else's: refused, never dropped.
fn prepare<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let s = mv::sides(p, run).await?;
        let (slug, iso) = (&s.params.name, s.params.target());
        if into_pool(&s.params) {
            // Nothing to make: the pool is there. Rows of the tenant's id in it would
            // be someone else's to keep (the copy's undoing deletes the tenant's).
            let there = moving_shared::pool_rows(&s.dst, s.params.tenant_id)
                .await
                .map_err(moved)?;
            if there > 0 {
                return Err(StepError::Rejected(Problem::new(
                    ProblemKind::Conflict,
                    "target_not_empty",
                    format!("the shared pool holds {there} row(s) of tenant {slug} already; nothing was changed"),
                )));
            }
            return Ok(json!({"isolation": "shared", "database": s.dst_db}));
        }
        if run.intent::<Value>("prepare").is_none() {
            if moving::data_exists(&s.dst, slug, iso)
                .await
                .map_err(moved)?
            {
                return Err(StepError::Rejected(Problem::new(
                    ProblemKind::Conflict,
                    "target_not_empty",
                    format!(
                        "a {} named for tenant {slug} exists already; nothing was changed",
                        if iso == Isolation::Database {
                            "database"
                        } else {
                            "schema"
                        }
                    ),
                )));
            }
            run.intend(vec![s.target_object()], json!({"ours": true}))
                .await?;
        }
        let limit = super::move_mode::max_connections(p, s.params.tenant_id).await?;
        moving_shared::make_target(&s.dst, slug, iso, limit)
            .await
            .map_err(moved)?;
        Ok(json!({"isolation": iso.as_str(), "database": s.dst_db}))
    })
}

/// Drops the target, if the intent says it was ours (the tenant's roles stay: they
/// are its shared-mode roles).
fn unprepare<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        if !run
            .intent::<Value>("prepare")
            .is_some_and(|i| i["ours"] == true)
        {
            return Ok(Value::Null);
        }
        let s = mv::sides(p, run).await?;
        if into_pool(&s.params) {
            return Ok(Value::Null);
        }
        moving::drop_copy(&s.dst, &s.params.name, s.params.target(), &[])
            .await
            .map_err(moved)?;
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
        let outcome = if into_pool(&s.params) {
            moving_shared::precopy_into_pool(&s.dst, slug, id, s.params.isolation).await
        } else {
            moving_shared::precopy_rows(&s.dst, slug, id, s.params.target()).await
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
        let outcome = if into_pool(&s.params) {
            // Checked again with the writes blocked: a table or column made since the
            // request would be lost.
            let extra = moving_shared::extras(&s.src, slug, s.params.isolation)
                .await
                .map_err(moved)?;
            if !extra.is_empty() {
                return Err(StepError::Rejected(unfit(slug, &extra)));
            }
            moving_shared::copy_into_pool(&s.dst, slug, id, s.params.isolation, since).await
        } else {
            moving_shared::copy_rows(&s.dst, slug, id, s.params.target(), since).await
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
///    database (unless the registry has it in its old mode again).
fn retire<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        mv::wait_grace(run, &params).await?;
        let back = {
            let c = p.pool.get().await.map_err(failed)?;
            crate::store::tenants::get(&c, params.tenant_id)
                .await
                .map(|t| t.isolation == params.isolation)
                .unwrap_or(false)
        };
        let s = mv::sides(p, run).await?;
        if !back {
            if into_pool(&params) {
                moving::drop_copy(&s.src, &params.name, params.isolation, &[])
                    .await
                    .map_err(moved)?;
            } else {
                moving_shared::purge_pool_rows(&s.src, params.tenant_id)
                    .await
                    .map_err(moved)?;
            }
        }
        Ok(json!({"source_dropped": !back, "from": params.isolation.as_str()}))
    })
}
