//! The warm pool on servers other than `default` (docs/warm_pool.md), in each mode: a
//! member's roles and schema, database or shared-pool member rows are on its server
//! and its pool row on the control database, and no transaction spans the two, so its refill
//! and its recycling are steps of the operation engine:
//!
//! - `warm_pool.refill.placed`: `check` (the pool of that server counted under its
//!   refill lock, in one transaction with the journal), `make` (the member declared,
//!   then made on the server in one transaction there), `publish` (its password set
//!   there, then its pool row, with the operation closed, in one control
//!   transaction). A member is claimable only once `publish` commits; a refill that
//!   fails or dies before is undone (the member dropped on the server).
//! - `warm_pool.recycle.placed`: `take` (the member's row deleted, so no claim can
//!   get it), then `drop` (its schema and roles on the server), forward only.
//!
//! A claim is the `register` step of `tenant.create.placed` (workflows/create_placed.rs):
//! the member's row deleted in the registry's transaction; its `provision` step renames
//! the member on the server.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::create_placed::view_of;
use super::warm_pool::{bad_key, member_of};
use super::{failed, step_error, Error, Runtime};
use crate::names::Slug;
use crate::ops::{Kind, Run, Step, StepFuture};
use crate::store::tenants::Isolation;
use crate::store::warm_pool::{self as store, Member};
use crate::tenant::{placed, placed_members};

pub const REFILL: &str = "warm_pool.refill.placed";
pub const RECYCLE: &str = "warm_pool.recycle.placed";

pub fn kinds() -> Vec<Kind<Runtime>> {
    vec![
        Kind {
            name: REFILL,
            steps: vec![
                Step {
                    name: "check",
                    reaches_out: false,
                    apply: check,
                    compensate: None,
                    skip: None,
                },
                Step {
                    name: "make",
                    reaches_out: true,
                    apply: make,
                    compensate: Some(unmake),
                    skip: None,
                },
                Step {
                    name: "publish",
                    reaches_out: true,
                    apply: publish,
                    compensate: None,
                    skip: None,
                },
            ],
            // `publish` closes the operation in its own transaction: until it commits,
            // a crash undoes the member.
            point_of_no_return: 2,
        },
        super::warm_pool::recycle_kind(RECYCLE, take, drop_member),
    ]
}

/// The input of a refill, as journaled.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Params {
    id: Uuid,
    key: String,
    server: String,
    isolation: Isolation,
    target: i64,
}

/// One member of `isolation` (schema or database) on `server` named by `key`, unless
/// that server's pool of the mode holds `target` current members already. Returns the
/// member made.
pub async fn refill_one(
    rt: &Runtime,
    server: &str,
    isolation: Isolation,
    key: &str,
    target: i64,
) -> Result<Option<Member>, Error> {
    Slug::warm_member(key).ok_or_else(|| Error::Rejected(bad_key()))?;
    let id = Uuid::now_v7();
    let params = json!(Params {
        id,
        key: key.to_string(),
        server: server.to_string(),
        isolation,
        target
    });
    super::warm_pool::run_refill(rt, REFILL, params, (id, key), (server, isolation)).await
}

/// 1. Whether the server's pool is full, under its refill lock (refills of one server
///    serialized across instances).
fn check<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        member_of(&params.key)?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        store::lock_refill(&tx, &params.server, params.isolation)
            .await
            .map_err(failed)?;
        let ready = store::count(
            &tx,
            &params.server,
            params.isolation,
            rt.template.latest_version(),
        )
        .await
        .map_err(failed)?;
        let outcome = json!({"full": ready >= params.target});
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

fn full(run: &Run) -> bool {
    run.outcome::<Value>("check")
        .is_some_and(|o| o["full"] == true)
}

/// 2. The member on its server, declared first.
fn make<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        if full(run) {
            return Ok(Value::Null);
        }
        let params: Params = run.params()?;
        let member = member_of(&params.key)?;
        let view = view_of(rt, &params.server).await?;
        if run.intent::<Value>("make").is_none() {
            let objects = super::create_placed::declared(&member, params.isolation, &view, []);
            run.intend(objects, json!({"server": params.server}))
                .await?;
        }
        let made = (&member, params.id);
        placed_members::make(rt, &view, &params.server, made, params.isolation)
            .await
            .map_err(step_error)?;
        Ok(Value::Null)
    })
}

fn unmake<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        if run.intent::<Value>("make").is_none() {
            return Ok(Value::Null);
        }
        let params: Params = run.params()?;
        let member = member_of(&params.key)?;
        let view = view_of(rt, &params.server).await?;
        placed::unmake(&view, &member, params.isolation)
            .await
            .map_err(step_error)?;
        Ok(Value::Null)
    })
}

/// 3. The member's password on the server, then its pool row with the operation
///    closed: from this commit on, claimable. The sealed password is never journaled.
fn publish<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        let made = !full(run);
        // The password is set on the server before the control transaction opens: it
        // holds no control connection across that round trip or the verifier's PBKDF2.
        let credentials = if made {
            let member = member_of(&params.key)?;
            let (verifier, credentials) = super::warm_pool::member_password(rt)
                .await
                .map_err(step_error)?;
            let view = view_of(rt, &params.server).await?;
            placed_members::set_password(&view, &member, &verifier)
                .await
                .map_err(step_error)?;
            Some(credentials)
        } else {
            None
        };
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        if let Some(credentials) = credentials {
            store::insert(
                &tx,
                &Member {
                    id: params.id,
                    key: params.key.clone(),
                    isolation: params.isolation,
                    template_version: rt.template.latest_version(),
                    server: params.server.clone(),
                    credentials: Some(credentials),
                },
            )
            .await
            .map_err(failed)?;
        }
        let outcome = json!({"made": made});
        run.finish_in(&tx, &outcome, None).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// The modes servers other than `default` pool: all three.
pub const MODES: [Isolation; 3] = [Isolation::Schema, Isolation::Shared, Isolation::Database];

/// The input of a recycle, as journaled.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Recycle {
    server: String,
    isolation: Isolation,
    /// That member only, if it is stale.
    only: Option<String>,
    /// Any member, stale or not (the server is being removed).
    any: bool,
}

/// Which members a recycle takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which<'a> {
    /// One member at another template version than the current one (`Some`: that
    /// member, if it is stale).
    Stale(Option<&'a str>),
    /// Any member: the server is being removed.
    Any,
}

/// Drops one member of `isolation` on `server` that `which` names. Returns it, or
/// `None` when there is none.
pub async fn recycle_one(
    rt: &Runtime,
    server: &str,
    isolation: Isolation,
    which: Which<'_>,
) -> Result<Option<Member>, Error> {
    let (only, any) = match which {
        Which::Stale(only) => (only.map(str::to_string), false),
        Which::Any => (None, true),
    };
    let params = Recycle {
        server: server.to_string(),
        isolation,
        only,
        any,
    };
    super::warm_pool::run_recycle(rt, RECYCLE, json!(params), (server, isolation)).await
}

/// 1. The member's row taken (deleted: no claim can get it from now on).
fn take<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Recycle = run.params()?;
        let current = (!params.any).then(|| rt.template.latest_version());
        let at = (params.server.as_str(), params.isolation);
        super::warm_pool::take_in(rt, run, at, current, params.only.as_deref()).await
    })
}

/// 2. Its schema (or database) and roles on its server (idempotent), with the
///    operation closed.
fn drop_member<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let taken = run.outcome::<Value>("take").unwrap_or_default();
        if let Some(key) = taken["key"].as_str() {
            let member = member_of(key)?;
            let params: Recycle = run.params()?;
            let view = view_of(rt, &params.server).await?;
            placed::unmake(&view, &member, params.isolation)
                .await
                .map_err(step_error)?;
        }
        super::warm_pool::finish(rt, run, taken).await
    })
}

/// The servers other than `default` whose pools a round tends: those that take new
/// tenants (refilled), and those up that hold members (their stale ones recycled).
pub async fn servers(rt: &Runtime) -> Result<Vec<(String, bool)>, Error> {
    let c = rt.pool.get().await?;
    Ok(store::servers_to_tend(&c)
        .await
        .map_err(crate::tenant::service::Error::from)?)
}

/// Before `server remove`: every member on the server dropped, if it has no tenant
/// (a server with tenants is refused anyway, and its pool is kept).
pub async fn before_remove(rt: &Runtime, server: &str) -> Result<(), Error> {
    let c = rt.pool.get().await?;
    let Some(row) = crate::store::servers::find(&c, server)
        .await
        .map_err(crate::tenant::service::Error::from)?
    else {
        return Ok(());
    };
    drop(c);
    if row.tenants > 0 || server == crate::store::servers::DEFAULT {
        return Ok(());
    }
    for isolation in MODES {
        while recycle_one(rt, server, isolation, Which::Any)
            .await?
            .is_some()
        {}
    }
    Ok(())
}
