//! The warm pool's database mode (docs/warm_pool.md): a member is its six roles and a
//! database cloned from the template, configured under the member's names. `CREATE
//! DATABASE` and `DROP DATABASE` cannot run in a transaction, so its refill and its
//! recycling are steps of the operation engine, not one transaction:
//!
//! - `warm_pool.refill.database`: `roles` (NOLOGIN, in one transaction with the
//!   step's journal row), `clone` (its database declared first), `configure` (inside
//!   the new database), `publish` (the pool row, with the operation closed, in one
//!   transaction). A member is claimable only once `publish` commits; a refill that
//!   fails or dies before is undone, last step first (the database, then the roles).
//! - `warm_pool.recycle.database`: `take` (the stale member's row deleted, so no
//!   claim can get it, in one transaction with the journal), then `drop` (its
//!   database, then its roles), forward only: a crash after `take` is finished.
//!
//! A claim is the `register` step of `tenant.create.database`
//! (workflows/create.rs): the member's row, its roles and its database renamed in one
//! transaction; the schema inside it is renamed by the create's `configure` step.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::warm_pool::{bad_key, member_of};
use super::{failed, step_error, Error, Runtime};
use crate::isolation::schema::SchemaPerTenant;
use crate::isolation::warm::{self, Mode};
use crate::isolation::Strategy;
use crate::names::Slug;
use crate::ops::{Kind, Object, Run, Step, StepError, StepFuture};
use crate::store::tenants::Isolation;
use crate::store::warm_pool::{self as store, Member, DEFAULT_SERVER as DEFAULT};
use crate::tenant::{database_mode, service};

pub const REFILL: &str = "warm_pool.refill.database";
pub const RECYCLE: &str = "warm_pool.recycle.database";

pub fn kinds() -> Vec<Kind<Runtime>> {
    vec![
        Kind {
            name: REFILL,
            steps: vec![
                Step {
                    name: "roles",
                    reaches_out: false,
                    apply: roles,
                    compensate: Some(drop_roles),
                    skip: None,
                },
                Step {
                    name: "clone",
                    reaches_out: true,
                    apply: clone,
                    compensate: Some(drop_clone),
                    skip: None,
                },
                Step {
                    name: "configure",
                    reaches_out: true,
                    apply: configure,
                    compensate: None,
                    skip: None,
                },
                Step {
                    name: "publish",
                    reaches_out: false,
                    apply: publish,
                    compensate: None,
                    skip: None,
                },
            ],
            // `publish` closes the operation in its own transaction: until it commits,
            // a crash undoes the member.
            point_of_no_return: 3,
        },
        super::warm_pool::recycle_kind(RECYCLE, take, drop_member),
    ]
}

/// The input of a database-mode refill, as journaled.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Params {
    id: Uuid,
    key: String,
    target: i64,
}

/// One database-mode member named by `key`, unless the pool holds `target` current
/// members already. Returns the member made.
pub async fn refill_one(rt: &Runtime, key: &str, target: i64) -> Result<Option<Member>, Error> {
    let id = Uuid::now_v7();
    member_of(key).map_err(|_| Error::Rejected(bad_key()))?;
    let params = json!(Params {
        id,
        key: key.to_string(),
        target
    });
    let at = (DEFAULT, Isolation::Database);
    super::warm_pool::run_refill(rt, REFILL, params, (id, key), at).await
}

/// 1. The member's roles, unless the pool is full: NOLOGIN, in one transaction with
///    the journal (refills of the mode serialized by the refill lock).
fn roles<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        let member = member_of(&params.key)?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        store::lock_refill(&tx, DEFAULT, Isolation::Database)
            .await
            .map_err(failed)?;
        let ready = store::count(
            &tx,
            DEFAULT,
            Isolation::Database,
            rt.template.latest_version(),
        )
        .await
        .map_err(failed)?;
        let outcome = if ready >= params.target {
            json!({"full": true})
        } else {
            let sql = warm::member_sql(Mode::Database, &member, "", "", !rt.caps.superuser);
            tx.batch_execute(&sql).await.map_err(failed)?;
            // The check a create's `register` runs, run here: a claim changes no
            // privilege of the roles.
            crate::pg::hardening::check(&tx, &member.fixed_role_names())
                .await
                .map_err(failed)?;
            json!({"full": false})
        };
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

fn full(run: &Run) -> bool {
    run.outcome::<Value>("roles")
        .is_some_and(|o| o["full"] == true)
}

/// Drops the member's roles (and whatever they own here).
fn drop_roles<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        let member = member_of(&params.key)?;
        drop_member_roles(rt, &member).await?;
        Ok(Value::Null)
    })
}

async fn drop_member_roles(rt: &Runtime, member: &Slug) -> Result<(), StepError> {
    let mut client = rt.pool.get().await.map_err(failed)?;
    let tx = client.transaction().await.map_err(failed)?;
    // Only those that exist: a drop finished before a crash is run again.
    let roles = service::existing_roles(&tx, member)
        .await
        .map_err(step_error)?;
    tx.batch_execute(&SchemaPerTenant.drop_sql(member, &roles))
        .await
        .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    Ok(())
}

/// 2. The member's database, declared before it is cloned.
fn clone<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        if full(run) {
            return Ok(Value::Null);
        }
        let params: Params = run.params()?;
        let member = member_of(&params.key)?;
        if run.intent::<Value>("clone").is_none() {
            run.intend(
                vec![Object {
                    kind: "database".into(),
                    name: member.schema().as_str().to_string(),
                    database: None,
                    scratch: false,
                }],
                json!({}),
            )
            .await?;
        } else if database_mode::database_exists(rt, &member)
            .await
            .map_err(step_error)?
        {
            return Ok(Value::Null); // cloned before a crash
        }
        database_mode::clone_member(rt, &member)
            .await
            .map_err(step_error)?;
        Ok(Value::Null)
    })
}

fn drop_clone<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        if run.intent::<Value>("clone").is_none() {
            return Ok(Value::Null);
        }
        let params: Params = run.params()?;
        let member = member_of(&params.key)?;
        database_mode::drop_database(rt, &member)
            .await
            .map_err(step_error)?;
        Ok(Value::Null)
    })
}

/// 3. Inside the member's database: what a create's `configure` does, under the
///    member's names (idempotent).
fn configure<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        if full(run) {
            return Ok(Value::Null);
        }
        let params: Params = run.params()?;
        let member = member_of(&params.key)?;
        database_mode::configure_member(rt, &member)
            .await
            .map_err(step_error)?;
        Ok(Value::Null)
    })
}

/// 4. The pool row, with the operation closed: from this commit on, claimable.
fn publish<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        let made = !full(run);
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        if made {
            // The login's password with the row that makes the member claimable.
            let (verifier, credentials) = super::warm_pool::member_password(rt)
                .await
                .map_err(step_error)?;
            let member = member_of(&params.key)?;
            tx.batch_execute(&warm::member_password_sql(&member, &verifier))
                .await
                .map_err(failed)?;
            store::insert(
                &tx,
                &Member {
                    id: params.id,
                    key: params.key.clone(),
                    isolation: Isolation::Database,
                    template_version: rt.template.latest_version(),
                    server: DEFAULT.to_string(),
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

/// Drops one database-mode member whose template version is not the current one
/// (`only`: that member, if it is stale). Returns it, or `None` when none is stale.
pub async fn recycle_one(rt: &Runtime, only: Option<&str>) -> Result<Option<Member>, Error> {
    let at = (DEFAULT, Isolation::Database);
    super::warm_pool::run_recycle(rt, RECYCLE, json!({"only": only}), at).await
}

/// 1. A stale member's row taken (deleted: no claim can get it from now on).
fn take<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let only: Option<String> = run.params::<Value>()?["only"].as_str().map(str::to_string);
        let current = Some(rt.template.latest_version());
        let at = (DEFAULT, Isolation::Database);
        super::warm_pool::take_in(rt, run, at, current, only.as_deref()).await
    })
}

/// 2. Its database, then its roles (each idempotent).
fn drop_member<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let taken = run.outcome::<Value>("take").unwrap_or_default();
        if let Some(key) = taken["key"].as_str() {
            let member = member_of(key)?;
            database_mode::drop_database(rt, &member)
                .await
                .map_err(step_error)?;
            drop_member_roles(rt, &member).await?;
        }
        super::warm_pool::finish(rt, run, taken).await
    })
}
