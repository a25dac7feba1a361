//! `tenant.rebuild.placed`: a purged tenant of a server other than `default` restored
//! from its archive, on that server (docs/servers.md). On `default` it is
//! `tenant.rebuild` (`workflows::offboarding`); here no transaction spans the registry
//! and the tenant's server, so:
//!
//! 1. `own` (control): the tenant locked, checked (`purged`, still on that server, its
//!    archive usable) and owned;
//! 2. `make` (reaches out): its roles there (the users' too, with the passwords the
//!    registry keeps) and its schema or database, declared first, every login off;
//! 3. `load` (reaches out): the archive restored into it there, its database marked
//!    at the archive's template version (`restores::load_fresh`);
//! 4. `finish`: on the server the quotas in force set, and the logins and memberships the delete took given back; then in
//!    one control transaction the registry's version and status, the event and the
//!    audit row, the tenant given back.
//!
//! Failing or dying before `finish` commits undoes it: what `make` declared is dropped
//! on the server (only while this operation owns the tenant, which stays `purged`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::on_server::view_for;
use super::{failed, hold_owned, refusal, run_kind, step_error, Error, Runtime};
use crate::ops::{fence, step, Kind, Run, StepError, StepFuture};
use crate::pg::hardening;
use crate::problem::{Kind as ProblemKind, Problem};
use crate::store::offboarding as records;
use crate::tenant::{access, database_mode, offboarding as domain, placed, service};
use crate::tenant::{suspension, Isolation, Status, Tenant};

pub const REBUILD_PLACED: &str = "tenant.rebuild.placed";

pub fn kind() -> Kind<Runtime> {
    Kind {
        name: REBUILD_PLACED,
        steps: vec![
            step("own", false, own, Some(super::give_back)),
            step("make", true, make, Some(unmake)),
            step("load", true, load, None),
            step("finish", false, finish, None),
        ],
        // `finish` commits the registry's status with its own journal row.
        point_of_no_return: 4,
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Params {
    tenant: Uuid,
    server: String,
    actor: String,
}

/// Rebuilds the purged tenant `t` (on another server) from its archive.
pub async fn rebuild(rt: &Runtime, t: &Tenant, actor: &str) -> Result<Tenant, Error> {
    let params = Params {
        tenant: t.id,
        server: t.server.clone(),
        actor: actor.to_string(),
    };
    run_kind(rt, REBUILD_PLACED, Some(t.id), t.name.as_str(), &params).await?;
    tracing::info!(tenant.name = %t.name, server = %t.server, "purged tenant rebuilt from its archive");
    Ok(domain::describe(&rt.pool.get().await?, t.id).await?)
}

async fn offboarding_of(rt: &Runtime, t: &Tenant) -> Result<records::Offboarding, StepError> {
    records::find(&rt.pool.get().await.map_err(failed)?, t.id)
        .await
        .map_err(failed)?
        .ok_or_else(|| StepError::Fenced("the offboarding record is gone".into()))
}

/// 1. The tenant checked and owned.
fn own<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = super::lock_tenant_on(&tx, p.tenant, &p.server).await?;
        if t.status != Status::Purged {
            return Err(StepError::Rejected(Problem::new(
                ProblemKind::Conflict,
                "invalid_state",
                format!("tenant {} is not purged", t.name),
            )));
        }
        let off = domain::restorable(&tx, &t).await.map_err(step_error)?;
        super::offboarding::archive_of(rt, &t, &off)
            .await
            .map_err(refusal)?;
        fence::acquire(&tx, run, t.id).await?;
        let outcome = json!({"archive": off.final_backup_id});
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// 2. The roles (and schema, or database) on the server, declared first; every login
///    off until `finish`. Roles of the tenant's names that exist there already and
///    that this operation did not make are someone else's: a taken name.
fn make<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let t = super::owned_tenant(rt, run).await?;
        let view = view_for(rt, &t).await?;
        let slug = &t.name;
        let users = crate::store::users::sealed(&rt.pool.get().await.map_err(failed)?, t.id)
            .await
            .map_err(failed)?;
        if run.intent::<Value>("make").is_none() {
            if placed::roles_exist(&view, slug).await.map_err(step_error)? {
                run.intend(vec![], json!({"ours": false})).await?;
                return Err(step_error(service::taken_name(slug)));
            }
            let objects = super::create_placed::declared(
                slug,
                t.isolation,
                &view,
                users.iter().map(|u| u.db_user.clone()),
            );
            run.intend(objects, json!({"ours": true})).await?;
        }
        if !placed::roles_exist(&view, slug).await.map_err(step_error)? {
            let off = offboarding_of(rt, &t).await?;
            let (mut sql, roles) = {
                let mut client = rt.pool.get().await.map_err(failed)?;
                let tx = client.transaction().await.map_err(failed)?;
                domain::rebuild_sql(&view, &tx, &t, &off)
                    .await
                    .map_err(step_error)?
            };
            let logins =
                std::iter::once(slug.login_role()).chain(users.iter().map(|u| u.db_user.clone()));
            for login in logins {
                sql.push_str(&format!("ALTER ROLE {login} NOLOGIN;\n"));
            }
            let mut c = view.pool.get().await.map_err(failed)?;
            let stx = c.transaction().await.map_err(failed)?;
            stx.batch_execute(&sql)
                .await
                .map_err(|e| step_error(service::taken(e, slug)))?;
            hardening::check(&stx, &roles).await.map_err(failed)?;
            stx.commit().await.map_err(failed)?;
        }
        if t.isolation == Isolation::Database {
            if !database_mode::database_exists(&view, slug)
                .await
                .map_err(step_error)?
            {
                let plan =
                    crate::store::plans::find(&rt.pool.get().await.map_err(failed)?, &t.plan)
                        .await
                        .map_err(failed)?
                        .ok_or_else(|| StepError::Fenced(format!("plan {} is gone", t.plan)))?;
                database_mode::clone_current_on(
                    rt,
                    &view,
                    &t.server,
                    slug,
                    plan.quotas.max_connections,
                )
                .await
                .map_err(step_error)?;
            }
            database_mode::configure(&view, slug)
                .await
                .map_err(step_error)?;
            super::pooler::prepare_tenant_database(&view, t.database.as_str())
                .await
                .map_err(failed)?;
        }
        Ok(json!({"server": t.server}))
    })
}

/// Drops what [`make`] made on the server, if the intent says it was ours and this
/// operation still owns the tenant: the database, the users' logins, then the schema
/// and the tenant's roles.
fn unmake<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        if !run
            .intent::<Value>("make")
            .is_some_and(|i| i["ours"] == true)
        {
            return Ok(Value::Null);
        }
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let Some((t, view)) = super::on_server::still_owned(rt, &tx, run).await? else {
            return Ok(Value::Null);
        };
        if t.isolation == Isolation::Database {
            database_mode::drop_database(&view, &t.name)
                .await
                .map_err(step_error)?;
        }
        let users = crate::store::users::sealed(&tx, t.id)
            .await
            .map_err(failed)?;
        let c = view.pool.get().await.map_err(failed)?;
        for u in &users {
            let gone = c
                .query_opt(
                    "SELECT 1 FROM pg_roles WHERE rolname = $1",
                    &[&u.db_user.as_str()],
                )
                .await
                .map_err(failed)?
                .is_none();
            if !gone {
                c.batch_execute(&crate::tenant::users::drop_login_sql(&t, &u.db_user))
                    .await
                    .map_err(failed)?;
            }
        }
        placed::unmake(&view, &t.name, t.isolation)
            .await
            .map_err(step_error)?;
        Ok(Value::Null)
    })
}

/// 3. The archive restored into the rebuilt tenant on its server.
fn load<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let t = super::owned_tenant(rt, run).await?;
        let off = offboarding_of(rt, &t).await?;
        let (archive, manifest) = super::offboarding::archive_of(rt, &t, &off)
            .await
            .map_err(refusal)?;
        super::restores::load_fresh(rt, run, &t, &archive, &manifest).await?;
        Ok(json!({"template_version": manifest.template_version}))
    })
}

/// 4. The server's part (quotas, logins), then the registry's; the
///    tenant given back and the operation closed.
fn finish<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let version =
            run.outcome::<Value>("load")
                .and_then(|v| v["template_version"].as_i64())
                .ok_or_else(|| StepError::Fenced("nothing loaded".into()))? as i32;
        let t = super::owned_tenant(rt, run).await?;
        let off = offboarding_of(rt, &t).await?;
        let view = view_for(rt, &t).await?;
        let (logins, quotas) = {
            let c = rt.pool.get().await.map_err(failed)?;
            let logins = access::login_roles(&c, &t).await.map_err(failed)?;
            let q = crate::store::quotas::effective(&c, t.id)
                .await
                .map_err(failed)?
                .ok_or_else(|| StepError::Fenced("the tenant has no quotas".into()))?;
            (logins, q)
        };
        {
            // (The database's version mark was set there by `load`.)
            let c = view.pool.get().await.map_err(failed)?;
            c.batch_execute(&crate::quota::apply::limits_sql(
                &view, &t, &logins, &quotas,
            ))
            .await
            .map_err(failed)?;
            // The logins the delete took (on before it) come back, and what outside
            // roles held in them.
            suspension::restore(
                &c,
                &off.disabled_roles,
                &off.disabled_memberships,
                view.caps.superuser,
            )
            .await
            .map_err(failed)?;
        }
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = hold_owned(&tx, run).await?;
        crate::migrate::set_restored_version(&tx, &t, version)
            .await
            .map_err(failed)?;
        let details = json!({"from": "purged", "to": off.previous_status.as_str(),
            "archive": off.final_backup_id, "server": t.server});
        domain::finish_restore(&tx, &t, &off, run.id, &p.actor, details)
            .await
            .map_err(step_error)?;
        fence::release(&tx, run).await?;
        let outcome = json!({"tenant": t.id});
        run.finish_in(&tx, &outcome, None).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}
