//! Offboarding on the engine (the stages are in [`crate::tenant::offboarding`]).
//!
//! - `tenant.delete`: `cut` (logins off, the delete recorded `pending`, the tenant
//!   owned; one transaction), `end_sessions`, `final_backup` (the archive: its row,
//!   the dump, its row `succeeded`), `mark_deleted` (`deleted` with its purge date, the
//!   tenant given back, the operation closed; one transaction). Until that commits a
//!   failure or a crash undoes it: the logins come back, and a final backup already
//!   taken is kept only until its provisional expiry... set to now (the backup worker
//!   deletes it); one still running is failed and its object deleted.
//! - `tenant.purge`: `own` (the tenant checked and owned), then forward only:
//!   `integrations` (each onboarding step's `compensate_url`), `vector_store` (the
//!   tenant's collection), `drop_database` (database mode), `drop_objects` (roles, schema or pool rows,
//!   status `purged`, the operation closed; one transaction).
//! - `tenant.rebuild` (restore of a purged tenant from its archive): `own` (the roles,
//!   and the schema or pool mapping, created in the transaction that takes the
//!   tenant), `clone` and `configure` (database mode), `load` (the archive restored),
//!   `finish` (its previous status back, the operation closed). Until `finish`
//!   commits it is undone: everything it made is dropped, the tenant stays `purged`.
//! - `tenant.restore` (of a deleted tenant) and `tenant.release_name` (a purged
//!   tenant whose archive expired leaves the registry) are one transaction each.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::backups::backup_error;
use super::{commit_one, failed, lock_tenant, run_kind, step_error, Error, Runtime};
use crate::backup::{self, BackupKind};
use crate::ops::{fence, Kind, Object, Run, Step, StepError, StepFuture};
use crate::store::{backups, offboarding as records, tenants};
use crate::tenant::offboarding::{self as domain, DeleteOptions, DEFAULT_RETENTION_DAYS};
use crate::tenant::{access, database_mode, service, Isolation, Status, Tenant};

pub const DELETE: &str = "tenant.delete";
pub const PURGE: &str = super::PURGE_KIND;
pub const REBUILD: &str = "tenant.rebuild";
pub const RESTORE: &str = "tenant.restore";
pub const RELEASE_NAME: &str = "tenant.release_name";

pub fn kinds() -> Vec<Kind<Runtime>> {
    vec![
        Kind {
            name: DELETE,
            steps: vec![
                Step {
                    name: "cut",
                    reaches_out: false,
                    apply: cut,
                    compensate: Some(uncut),
                    skip: None,
                },
                Step {
                    name: "end_sessions",
                    reaches_out: true,
                    apply: super::end_cut_sessions,
                    compensate: None,
                    skip: None,
                },
                Step {
                    name: "final_backup",
                    reaches_out: true,
                    apply: final_backup,
                    compensate: Some(drop_final_backup),
                    skip: None,
                },
                Step {
                    name: "mark_deleted",
                    reaches_out: false,
                    apply: mark_deleted,
                    compensate: None,
                    skip: None,
                },
            ],
            point_of_no_return: 4,
        },
        Kind {
            name: PURGE,
            steps: vec![
                Step {
                    name: "own",
                    reaches_out: false,
                    apply: own_for_purge,
                    compensate: None,
                    skip: None,
                },
                // Each onboarding step's compensate_url (docs/onboarding-steps.md).
                Step {
                    name: "integrations",
                    reaches_out: false,
                    apply: super::onboarding::release_integrations,
                    compensate: None,
                    skip: None,
                },
                // The tenant's vector collection (docs/vector-store.md).
                Step {
                    name: super::vector_store::STEP,
                    reaches_out: true,
                    apply: super::vector_store::purge,
                    compensate: None,
                    skip: None,
                },
                Step {
                    name: "drop_database",
                    reaches_out: true,
                    apply: drop_database,
                    compensate: None,
                    skip: None,
                },
                Step {
                    name: "drop_objects",
                    reaches_out: false,
                    apply: drop_objects,
                    compensate: None,
                    skip: None,
                },
            ],
            point_of_no_return: 1,
        },
        Kind {
            name: REBUILD,
            steps: vec![
                Step {
                    name: "own",
                    reaches_out: false,
                    apply: own_for_rebuild,
                    compensate: Some(unbuild),
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
                    name: "load",
                    reaches_out: true,
                    apply: load,
                    compensate: None,
                    skip: None,
                },
                Step {
                    name: "finish",
                    reaches_out: false,
                    apply: finish_rebuild,
                    compensate: None,
                    skip: None,
                },
            ],
            point_of_no_return: 5,
        },
        Kind::single(RESTORE),
        Kind::single(RELEASE_NAME),
    ]
}

#[derive(Debug, Serialize, Deserialize)]
struct Params {
    tenant: Uuid,
    #[serde(default)]
    retention_days: i64,
    actor: String,
}

fn params(run: &Run) -> Result<Params, StepError> {
    run.params()
}

/// Runs one of this module's kinds on a tenant to its end.
async fn run_on(rt: &Runtime, kind: &'static str, t: &Tenant, p: Params) -> Result<Value, Error> {
    run_kind(rt, kind, Some(t.id), t.name.as_str(), &p).await
}

/// `DELETE /api/v1/tenants/{name}`: soft delete (with `?purge=now`, then the purge).
pub async fn delete(
    rt: &Runtime,
    key: &str,
    opts: &DeleteOptions,
    actor: &str,
) -> Result<Tenant, Error> {
    domain::validate(opts)?;
    let t = service::get(rt, key).await?;
    if opts.purge_now && opts.confirm.as_deref() != Some(t.name.as_str()) {
        return Err(Error::Rejected(crate::problem::Problem::bad_field(
            "confirm",
            format!("confirm must be the tenant's name, {:?}", t.name),
        )));
    }
    let retention_days = opts.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
    if !(t.status == Status::Deleted && opts.purge_now) && super::on_server::placed(&t) {
        super::on_server::delete(rt, &t, retention_days, actor).await?;
    } else if !(t.status == Status::Deleted && opts.purge_now) {
        run_on(
            rt,
            DELETE,
            &t,
            Params {
                tenant: t.id,
                retention_days,
                actor: actor.to_string(),
            },
        )
        .await?;
    }
    if opts.purge_now {
        purge(rt, &t, actor).await?;
    }
    Ok(domain::describe(&rt.pool.get().await?, t.id).await?)
}

/// 1. Logins off, the delete recorded `pending`, the tenant owned by this operation.
fn cut<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p = params(run)?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = lock_tenant(&tx, &p.tenant.to_string())
            .await
            .map_err(step_error)?;
        let cut = domain::cut_locked(&tx, &t, p.retention_days, rt.caps.superuser, &p.actor)
            .await
            .map_err(step_error)?;
        fence::acquire(&tx, run, t.id).await?;
        let outcome = json!({"logins": cut.roles});
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// The logins and memberships back, the pending record gone, the tenant given back;
/// only while this operation owns it.
fn uncut<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        fence::lock_name(&tx, &run.tenant_name).await?;
        if !fence::owns(&tx, run).await? {
            return Ok(Value::Null);
        }
        let tenant = run.tenant_id.expect("an owned tenant");
        domain::uncut(&tx, tenant, rt.caps.superuser)
            .await
            .map_err(step_error)?;
        fence::release(&tx, run).await?;
        tx.commit().await.map_err(failed)?;
        Ok(Value::Null)
    })
}

/// 3. The final backup, the tenant's archive: its id and (shared mode) its scratch
///    schema declared first; its row, the dump, its row `succeeded`.
pub(super) fn final_backup<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p = params(run)?;
        let t = super::owned_tenant(rt, run).await?;
        let id = Uuid::now_v7();
        let scratch = super::backups::shared_scratch(&t, id);
        run.intend(scratch.into_iter().collect(), json!({"backup_id": id}))
            .await?;
        let client = rt.pool.get().await.map_err(failed)?;
        let policy = backup::policy::effective(&client, &t)
            .await
            .map_err(backup_error)?;
        let expires = domain::provisional_archive_expiry(&client, &t, p.retention_days)
            .await
            .map_err(step_error)?;
        backup::take::register(&client, &t, id, BackupKind::Final, policy.encryption)
            .await
            .map_err(backup_error)?;
        drop(client);
        // From the tenant's own server (docs/servers.md).
        let server = super::on_server::view_for(rt, &t).await?;
        let m = backup::take::dump(&server, &t, id, policy.encryption)
            .await
            .map_err(backup_error)?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        backup::take::record(
            &tx,
            &t,
            &m,
            BackupKind::Final,
            Some(expires),
            &p.actor,
            Some(run.id),
        )
        .await
        .map_err(backup_error)?;
        let outcome = json!({"backup_id": id});
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// A final backup of a delete that did not complete: one still running is failed and
/// its object deleted; one that succeeded expires now (the backup worker deletes it).
pub(super) fn drop_final_backup<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let Some(id) = run
            .intent::<Value>("final_backup")
            .and_then(|v| serde_json::from_value::<Uuid>(v["backup_id"].clone()).ok())
        else {
            return Ok(Value::Null);
        };
        let p = params(run)?;
        let t = super::owned_tenant(rt, run).await?;
        backup::take::delete_objects(rt, t.id, id).await;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        backup::take::discard(
            &tx,
            &t,
            id,
            BackupKind::Final,
            "the delete it was taken for did not complete",
            &p.actor,
            Some(run.id),
        )
        .await
        .map_err(backup_error)?;
        if backups::find(&tx, id)
            .await
            .map_err(failed)?
            .is_some_and(|(b, _)| b.status == backup::BackupStatus::Succeeded)
        {
            backups::set_expiry(&tx, id, Some(chrono::Utc::now()))
                .await
                .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)?;
        Ok(Value::Null)
    })
}

/// 4. `deleted`, with its purge date; the tenant given back, the operation closed.
pub(super) fn mark_deleted<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p = params(run)?;
        let archive: Uuid = run
            .outcome::<Value>("final_backup")
            .and_then(|v| serde_json::from_value(v["backup_id"].clone()).ok())
            .ok_or_else(|| StepError::Fenced("no final backup to record".into()))?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = super::hold_owned(&tx, run).await?;
        let deleted = domain::mark_deleted_locked(&tx, &t, archive, run.id, &p.actor)
            .await
            .map_err(step_error)?;
        fence::release(&tx, run).await?;
        let network = super::network::touch(rt, &tx, &deleted, false)
            .await
            .map_err(super::refusal)?;
        let outcome = json!({"tenant": deleted.id, "status": deleted.status.as_str()});
        run.finish_in(&tx, &outcome, None).await?;
        tx.commit().await.map_err(failed)?;
        drop(client);
        super::network::follow(rt, network).await;
        Ok(outcome)
    })
}

/// Purges a deleted tenant now (`?purge=now`, or the worker after the purge date).
pub async fn purge(rt: &Runtime, t: &Tenant, actor: &str) -> Result<Tenant, Error> {
    if super::on_server::placed(t) {
        return super::on_server::purge(rt, t, actor).await;
    }
    run_on(
        rt,
        PURGE,
        t,
        Params {
            tenant: t.id,
            retention_days: 0,
            actor: actor.to_string(),
        },
    )
    .await?;
    Ok(domain::describe(&rt.pool.get().await?, t.id).await?)
}

/// 1. The tenant checked (`deleted`, with a usable archive) and owned: from here on
///    the purge only goes forward, and the tenant answers 409 `purge_in_progress`.
fn own_for_purge<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p = params(run)?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = lock_tenant(&tx, &p.tenant.to_string())
            .await
            .map_err(step_error)?;
        let archive = domain::purgeable(&tx, &t).await.map_err(step_error)?;
        fence::acquire(&tx, run, t.id).await?;
        let outcome = json!({"archive": archive});
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// 2. Database mode: the tenant's database, its sessions ended. Idempotent.
fn drop_database<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let t = super::owned_tenant(rt, run).await?;
        if t.isolation == Isolation::Database {
            database_mode::drop_database(rt, &t.name)
                .await
                .map_err(step_error)?;
        }
        Ok(Value::Null)
    })
}

/// 3. Roles, schema or pool rows dropped, `purged`; the tenant given back.
fn drop_objects<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p = params(run)?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = super::hold_owned(&tx, run).await?;
        let purged = domain::purge_locked(rt, &tx, &t, run.id, &p.actor)
            .await
            .map_err(step_error)?;
        let network = forget(rt, &tx, &t, run).await?;
        let outcome = json!({"tenant": purged.id, "status": purged.status.as_str()});
        run.finish_in(&tx, &outcome, None).await?;
        tx.commit().await.map_err(failed)?;
        drop(client);
        super::network::follow(rt, network).await;
        Ok(outcome)
    })
}

/// What a purge ends with in the control database, after the tenant's objects are
/// gone: the tenant given back, its network (subnet, peers, rules) and sign-in
/// providers' secrets dropped; returns the network render to follow after the commit.
pub(super) async fn forget(
    rt: &Runtime,
    tx: &deadpool_postgres::Transaction<'_>,
    t: &Tenant,
    run: &Run,
) -> Result<Option<crate::ops::Begun>, StepError> {
    fence::release(tx, run).await?;
    // The subnet, the peers and the rules go with the tenant's roles.
    let network = super::network::touch(rt, tx, t, false)
        .await
        .map_err(super::refusal)?;
    crate::network::pool::free(tx, t.id).await.map_err(failed)?;
    crate::store::network::clear_peers(tx, t.id)
        .await
        .map_err(failed)?;
    crate::store::network::clear_rules(tx, t.id)
        .await
        .map_err(failed)?;
    // Its sign-in providers' sealed secrets go too (docs/auth-providers.md).
    crate::store::auth_providers::clear(tx, t.id)
        .await
        .map_err(failed)?;
    Ok(network)
}

/// `POST /api/v1/tenants/{name}/restore`: a deleted tenant back as it was (one
/// transaction), or a purged one rebuilt from its archive (`tenant.rebuild`).
pub async fn restore(rt: &Runtime, key: &str, actor: &str) -> Result<Tenant, Error> {
    let placed = service::get(rt, key).await?;
    if super::on_server::placed(&placed) {
        if placed.status == Status::Purged {
            return super::rebuild_placed::rebuild(rt, &placed, actor).await;
        }
        return super::on_server::restore(rt, &placed, actor).await;
    }
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let t = lock_tenant(&tx, key).await?;
    let off = domain::restorable(&tx, &t).await?;
    if t.status == Status::Purged {
        tx.rollback().await?;
        archive_of(rt, &t, &off).await?;
        run_on(
            rt,
            REBUILD,
            &t,
            Params {
                tenant: t.id,
                retention_days: 0,
                actor: actor.to_string(),
            },
        )
        .await?;
        return Ok(domain::describe(&rt.pool.get().await?, t.id).await?);
    }
    let op = Uuid::now_v7();
    let restored = domain::undelete_locked(&tx, &t, &off, rt.caps.superuser, op, actor).await?;
    let network = super::network::touch(rt, &tx, &restored, false).await?;
    commit_one(rt, tx, RESTORE, op, &restored).await?;
    drop(client);
    super::network::follow(rt, network).await;
    Ok(restored)
}

/// A purged tenant's archive and its manifest, if it can still be restored.
pub(super) async fn archive_of(
    rt: &Runtime,
    t: &Tenant,
    off: &records::Offboarding,
) -> Result<(backup::Backup, backup::Manifest), Error> {
    let id = off.final_backup_id.ok_or_else(domain::archive_gone)?;
    let client = rt.pool.get().await?;
    let (archive, manifest) = backups::find(&client, id)
        .await
        .map_err(service::Error::from)?
        .ok_or_else(domain::archive_gone)?;
    if archive.status != backup::BackupStatus::Succeeded || archive.tenant_id != t.id {
        return Err(domain::archive_gone().into());
    }
    let manifest = backup::restore::usable(&archive, manifest).map_err(|e| match e {
        backup::Error::Rejected(p) => Error::Rejected(p),
        _ => domain::archive_gone().into(),
    })?;
    Ok((archive, manifest))
}

/// 1. The tenant checked (`purged`, its archive usable) and owned, and its roles (and
///    schema or pool mapping) made, in one transaction.
fn own_for_rebuild<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p = params(run)?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = lock_tenant(&tx, &p.tenant.to_string())
            .await
            .map_err(step_error)?;
        let off = domain::restorable(&tx, &t).await.map_err(step_error)?;
        if t.status != Status::Purged {
            return Err(StepError::Rejected(crate::problem::Problem::new(
                crate::problem::Kind::Conflict,
                "invalid_state",
                format!("tenant {} is not purged", t.name),
            )));
        }
        fence::acquire(&tx, run, t.id).await?;
        domain::rebuild_roles(rt, &tx, &t, &off)
            .await
            .map_err(step_error)?;
        let outcome = json!({"archive": off.final_backup_id});
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// Everything the rebuild made is dropped (the tenant stays `purged`), and the tenant
/// given back; only while this operation owns it.
fn unbuild<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        fence::lock_name(&tx, &run.tenant_name).await?;
        if !fence::owns(&tx, run).await? {
            return Ok(Value::Null);
        }
        let t = tenants::find_for_update(&tx, &run.tenant_id.expect("owned").to_string())
            .await
            .map_err(failed)?
            .ok_or_else(|| StepError::Fenced("the tenant is gone".into()))?;
        domain::drop_objects(rt, &tx, &t)
            .await
            .map_err(step_error)?;
        fence::release(&tx, run).await?;
        tx.commit().await.map_err(failed)?;
        Ok(Value::Null)
    })
}

/// 2. Database mode: the tenant's database, cloned from the template (declared
///    first; one that exists already is not this operation's).
fn clone<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let t = super::owned_tenant(rt, run).await?;
        if t.isolation != Isolation::Database {
            return Ok(Value::Null);
        }
        if database_mode::database_exists(rt, &t.name)
            .await
            .map_err(step_error)?
        {
            run.intend(vec![], json!({"ours": false})).await?;
            return Err(StepError::Rejected(crate::problem::Problem::new(
                crate::problem::Kind::Conflict,
                "database_exists",
                format!("a database named {} exists already", t.database.as_str()),
            )));
        }
        run.intend(
            vec![Object {
                kind: "database".into(),
                name: t.database.as_str().to_string(),
                database: None,
                scratch: false,
            }],
            json!({"ours": true}),
        )
        .await?;
        let client = rt.pool.get().await.map_err(failed)?;
        let plan = crate::store::plans::find(&client, &t.plan)
            .await
            .map_err(failed)?
            .ok_or_else(|| StepError::Fenced(format!("plan {} is gone", t.plan)))?;
        database_mode::clone(rt, &t.name, plan.quotas.max_connections)
            .await
            .map_err(step_error)?;
        Ok(Value::Null)
    })
}

fn drop_clone<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        if !run
            .intent::<Value>("clone")
            .is_some_and(|i| i["ours"] == true)
        {
            return Ok(Value::Null);
        }
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        fence::lock_name(&tx, &run.tenant_name).await?;
        if fence::owns(&tx, run).await? {
            let t = super::owned_tenant(rt, run).await?;
            database_mode::drop_database(rt, &t.name)
                .await
                .map_err(step_error)?;
        }
        Ok(Value::Null)
    })
}

/// 3. Database mode: the clone made the tenant's (ownership, grants, PUBLIC's rights).
fn configure<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let t = super::owned_tenant(rt, run).await?;
        if t.isolation == Isolation::Database {
            database_mode::configure(rt, &t.name)
                .await
                .map_err(step_error)?;
            super::pooler::prepare_tenant_database(rt, t.database.as_str())
                .await
                .map_err(failed)?;
        }
        Ok(Value::Null)
    })
}

/// 4. The archive restored into the rebuilt tenant, its logins off meanwhile.
fn load<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let t = super::owned_tenant(rt, run).await?;
        let client = rt.pool.get().await.map_err(failed)?;
        let off = records::find(&client, t.id)
            .await
            .map_err(failed)?
            .ok_or_else(|| StepError::Fenced("the offboarding record is gone".into()))?;
        drop(client);
        let (archive, manifest) = archive_of(rt, &t, &off).await.map_err(|e| match e {
            Error::Rejected(p) => StepError::Rejected(p),
            other => StepError::failed(other),
        })?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let cut = crate::tenant::suspension::cut(&tx, &t, rt.caps.superuser)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        access::end_sessions(&client, &cut.roles)
            .await
            .map_err(failed)?;
        super::restores::load_fresh(rt, run, &t, &archive, &manifest).await?;
        crate::tenant::suspension::restore(
            &client,
            &cut.roles,
            &cut.memberships,
            rt.caps.superuser,
        )
        .await
        .map_err(failed)?;
        Ok(json!({"template_version": manifest.template_version}))
    })
}

/// 5. The archive's template version, the memberships outside roles held, the status
///    the tenant had; the tenant given back and the operation closed.
fn finish_rebuild<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p = params(run)?;
        let version: i32 =
            run.outcome::<Value>("load")
                .and_then(|v| v["template_version"].as_i64())
                .ok_or_else(|| StepError::Fenced("nothing loaded".into()))? as i32;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = super::hold_owned(&tx, run).await?;
        let off = records::find(&tx, t.id)
            .await
            .map_err(failed)?
            .ok_or_else(|| StepError::Fenced("the offboarding record is gone".into()))?;
        crate::migrate::set_restored_version(&tx, &t, version)
            .await
            .map_err(failed)?;
        // The roles were rebuilt with the plan's limits: the quotas in force (the
        // tenant's overrides included) replace them, and the database's own limit.
        crate::quota::apply::apply_limits(rt, &tx, &t)
            .await
            .map_err(failed)?;
        // The purge dropped the login roles, and with them what outside roles (an
        // application's pool role) held in them; the rebuilt roles get it back.
        crate::tenant::suspension::restore(&tx, &[], &off.disabled_memberships, rt.caps.superuser)
            .await
            .map_err(failed)?;
        let details = json!({"from": "purged", "to": off.previous_status.as_str(), "archive": off.final_backup_id});
        let restored = domain::finish_restore(&tx, &t, &off, run.id, &p.actor, details)
            .await
            .map_err(step_error)?;
        fence::release(&tx, run).await?;
        let outcome = json!({"tenant": restored.id, "status": restored.status.as_str()});
        run.finish_in(&tx, &outcome, None).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// The worker's part: purges deleted tenants past their date and frees the names of
/// purged tenants whose archive expired, one operation each. Returns (purged, freed).
pub async fn run_due(rt: &Runtime) -> Result<(usize, usize), Error> {
    let client = rt.pool.get().await?;
    let due = records::due_purges(&client, 20)
        .await
        .map_err(service::Error::from)?;
    let released = tenants::released_names(&client)
        .await
        .map_err(service::Error::from)?;
    drop(client);
    let mut purged = 0;
    for id in due {
        let Ok(t) = service::get(rt, &id.to_string()).await else {
            continue;
        };
        match purge(rt, &t, "worker").await {
            Ok(_) => purged += 1,
            // Busy (another operation owns it) or already purged: the next round.
            Err(Error::Rejected(_)) => {}
            Err(e) => {
                tracing::warn!(tenant.name = %t.name, error = %e, "purge failed; retrying at the next round")
            }
        }
    }
    let mut freed = 0;
    for id in released {
        match release_name(rt, id).await {
            Ok(()) => freed += 1,
            Err(Error::Rejected(_)) => {}
            Err(e) => {
                tracing::warn!(tenant.id = %id, error = %e, "could not free a purged tenant's name")
            }
        }
    }
    Ok((purged, freed))
}

/// A purged tenant without a live archive leaves the registry; its name is free.
pub async fn release_name(rt: &Runtime, id: Uuid) -> Result<(), Error> {
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let t = lock_tenant(&tx, &id.to_string()).await?;
    let live_archive = backups::list(&tx, t.id)
        .await
        .map_err(service::Error::from)?
        .iter()
        .any(|b| b.status == backup::BackupStatus::Succeeded);
    if live_archive {
        return Ok(());
    }
    let op = Uuid::now_v7();
    domain::release_name_locked(&tx, &t, op).await?;
    commit_one(rt, tx, RELEASE_NAME, op, &t).await?;
    Ok(())
}
