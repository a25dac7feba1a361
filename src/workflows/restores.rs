//! Restores on the engine (the pieces are in [`crate::backup::restore`]):
//!
//! - `backup.restore` (in place): `own` (the tenant checked and owned, its logins off;
//!   one transaction), `end_sessions`, `load` (everything it will make declared first:
//!   the tenant's schema set aside and a new one loaded, or shared-mode rows into a
//!   scratch schema), `record` (the restore made the tenant's, its template version,
//!   its logins back, the audit entry, the tenant given back; one transaction),
//!   `drop_replaced`. Until `record` commits, a failure or a crash puts the tenant's
//!   own data back and its logins on; from it on, the restore finishes.
//! - `backup.restore_as` (into a new tenant): `create` (the tenant made by its own
//!   create operation, under an idempotency key this operation chose), `load`,
//!   `record`. Until `record` commits, the new tenant is dropped again.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::backups::{backup_error, tenant_by_id, usable};
use super::{
    failed, lock_tenant, lock_tenant_anywhere, open_value, run_kind, seal_value, step_error, Error,
    Runtime,
};
use crate::audit;
use crate::backup::restore::{self as domain, Plan, RestoreRequest};
use crate::backup::{self, Backup, Manifest};
use crate::ops::{fence, Idempotency, Kind, Run, Step, StepError, StepFuture};
use crate::problem::{Kind as ProblemKind, Problem};
use crate::store::outbox::data::RestoreCompleted;
use crate::store::tenants;
use crate::tenant::create::CreateTenant;
use crate::tenant::service::{self, CreatedTenant};
use crate::tenant::suspension::{self, Membership};
use crate::tenant::{database_mode, Isolation, Status, Tenant};

pub const RESTORE: &str = "backup.restore";
pub const RESTORE_AS: &str = "backup.restore_as";

pub fn kinds() -> Vec<Kind<Runtime>> {
    vec![
        Kind {
            name: RESTORE,
            steps: vec![
                Step {
                    name: "own",
                    reaches_out: false,
                    apply: own,
                    compensate: Some(give_back),
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
                    name: "load",
                    reaches_out: true,
                    apply: load,
                    compensate: Some(put_back),
                    skip: None,
                },
                Step {
                    name: "record",
                    reaches_out: false,
                    apply: record,
                    compensate: None,
                    skip: None,
                },
                Step {
                    name: "drop_replaced",
                    reaches_out: true,
                    apply: drop_replaced,
                    compensate: None,
                    skip: None,
                },
            ],
            point_of_no_return: 3,
        },
        Kind {
            name: RESTORE_AS,
            steps: vec![
                Step {
                    name: "create",
                    reaches_out: true,
                    apply: create_new,
                    compensate: Some(drop_new),
                    skip: None,
                },
                Step {
                    name: "load",
                    reaches_out: true,
                    apply: load_new,
                    compensate: None,
                    skip: None,
                },
                Step {
                    name: "record",
                    reaches_out: false,
                    apply: record_new,
                    compensate: None,
                    skip: None,
                },
            ],
            point_of_no_return: 2,
        },
    ]
}

/// What a restore answers: the tenant restored in place, or the new one (with its
/// secrets, shown once).
pub enum Restored {
    InPlace(Tenant),
    New(CreatedTenant),
}

#[derive(Debug, Serialize, Deserialize)]
struct Params {
    /// The tenant restored into (in place), or whose backup it is (into a new one).
    tenant: Uuid,
    backup: Uuid,
    #[serde(default)]
    as_name: Option<String>,
    actor: String,
}

/// `POST /api/v1/tenants/{name}/backups/{id}/restore`: in place, or into a new
/// tenant (`{"as": "new-name"}`, same isolation, plan and quota).
pub async fn restore(
    rt: &Runtime,
    tenant_key: &str,
    backup_id: &str,
    req: &RestoreRequest,
    actor: &str,
) -> Result<Restored, Error> {
    req.validate()?;
    let (b, m) = backup::find(rt, Some(tenant_key), backup_id).await?;
    domain::usable(&b, m)?;
    let t = service::get(rt, tenant_key).await?;
    if req.as_name.is_none() && super::on_server::placed(&t) {
        return super::restores_placed::restore(rt, &t, b.id, actor).await;
    }
    let params = Params {
        tenant: t.id,
        backup: b.id,
        as_name: req.as_name.clone(),
        actor: actor.to_string(),
    };
    match &req.as_name {
        None => {
            run_kind(rt, RESTORE, Some(t.id), t.name.as_str(), &params).await?;
            tracing::info!(tenant.name = %t.name, backup.id = %b.id, "backup restored in place");
            Ok(Restored::InPlace(
                service::get(rt, &t.id.to_string()).await?,
            ))
        }
        Some(name) => {
            // A name taken already is refused before anything is recorded (one taken
            // meanwhile is the create step's refusal, and undone).
            let slug = crate::tenant::Slug::parse(name)
                .map_err(|e| backup::Error::invalid("as", e.to_string()))?;
            if tenants::find(&rt.pool.get().await?, name)
                .await
                .map_err(service::Error::from)?
                .is_some()
            {
                let mut p = match crate::tenant::create::taken_name(&slug) {
                    service::Error::Rejected(p) => p,
                    other => return Err(other.into()),
                };
                p.field = Some("as".into());
                return Err(Error::Rejected(p));
            }
            let v = run_kind(rt, RESTORE_AS, None, name, &params).await?;
            let sealed: String =
                serde_json::from_value(v["created"].clone()).map_err(service::Error::from)?;
            let mut created: CreatedTenant = open_value(rt, &sealed)?;
            created.tenant = service::get(rt, &created.tenant.id.to_string()).await?;
            tracing::info!(tenant.name = %name, backup.id = %b.id, source = %t.name, "backup restored into a new tenant");
            Ok(Restored::New(created))
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cut {
    logins: Vec<String>,
    memberships: Vec<Membership>,
}

/// A restore in place needs a live tenant.
pub(super) fn check_restorable(t: &Tenant) -> Result<(), StepError> {
    if matches!(t.status, Status::Active | Status::Trial | Status::Suspended) {
        return Ok(());
    }
    Err(StepError::Rejected(Problem::new(
        ProblemKind::Conflict,
        "invalid_state",
        format!(
            "cannot restore a backup into tenant {}: it is {}; bring the tenant back first (POST /api/v1/tenants/{}/restore)",
            t.name,
            t.status.as_str(),
            t.name
        ),
    )))
}

/// 1. The tenant checked (live) and owned, its logins and outside memberships off.
fn own<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = lock_tenant(&tx, &p.tenant.to_string())
            .await
            .map_err(step_error)?;
        check_restorable(&t)?;
        let cut = suspension::cut(&tx, &t, rt.caps.superuser)
            .await
            .map_err(failed)?;
        fence::acquire(&tx, run, t.id).await?;
        let outcome = serde_json::to_value(Cut {
            logins: cut.roles,
            memberships: cut.memberships,
        })
        .map_err(failed)?;
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// Gives back what `own` took, and the tenant; only while this operation owns it.
fn give_back<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let cut: Cut = run.outcome("own").unwrap_or_default();
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        fence::lock_name(&tx, &run.tenant_name).await?;
        if !fence::owns(&tx, run).await? {
            return Ok(Value::Null);
        }
        suspension::restore(&tx, &cut.logins, &cut.memberships, rt.caps.superuser)
            .await
            .map_err(failed)?;
        let p: Params = run.params()?;
        audit::record(
            &tx,
            &audit::Entry {
                actor: &p.actor,
                action: "backup_restore_reverted",
                tenant_id: run.tenant_id,
                tenant_name: Some(&run.tenant_name),
                operation_id: Some(run.id),
                details: json!({"backup_id": p.backup, "into": "in_place"}),
            },
        )
        .await
        .map_err(failed)?;
        fence::release(&tx, run).await?;
        tx.commit().await.map_err(failed)?;
        Ok(Value::Null)
    })
}

/// Declares what a restore into `t` will make, then stages it, on the tenant's own
/// server (its scratch objects declared to be cleaned there).
async fn declare_and_stage(
    rt: &Runtime,
    run: &mut Run,
    t: &Tenant,
    b: &Backup,
    m: &Manifest,
) -> Result<Plan, StepError> {
    let plan = Plan::new(t, m);
    let view = super::on_server::view_for(rt, t).await?;
    let objects = plan
        .scratch(&view, t)
        .iter()
        .map(|s| super::restores_placed::scratch_object(t, s))
        .collect();
    run.intend(objects, serde_json::to_value(&plan).map_err(failed)?)
        .await?;
    domain::stage(&view, t, b, m, &plan)
        .await
        .map_err(backup_error)?;
    Ok(plan)
}

/// 3. The backup loaded beside the tenant's data (the tenant's schema set aside).
pub(super) fn load<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let t = tenant_by_id(rt, p.tenant).await?;
        let (b, m) = usable(rt, p.backup).await?;
        declare_and_stage(rt, run, &t, &b, &m).await?;
        Ok(json!({"template_version": m.template_version}))
    })
}

/// The tenant's own schema back, however far `load` got (on its server).
pub(super) fn put_back<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let Some(plan) = run.intent::<Plan>("load") else {
            return Ok(Value::Null);
        };
        let t = tenant_by_id(rt, run.tenant_id.expect("an owned tenant")).await?;
        let view = super::on_server::view_for(rt, &t).await?;
        domain::put_back(&view, &t, &plan)
            .await
            .map_err(backup_error)?;
        Ok(Value::Null)
    })
}

fn plan_of(run: &Run) -> Result<Plan, StepError> {
    run.intent("load")
        .ok_or_else(|| StepError::Fenced("no restore plan journaled".into()))
}

/// 4. The restore made the tenant's (shared mode: its rows moved into the pool), the
///    backup's template version, the logins back, the audit entry; the tenant given
///    back. One transaction, the point of no return.
fn record<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let plan = plan_of(run)?;
        let cut: Cut = run.outcome("own").unwrap_or_default();
        let (b, m) = usable(rt, p.backup).await?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = super::hold_owned(&tx, run).await?;
        domain::commit_in(&tx, &t, &b, &plan)
            .await
            .map_err(backup_error)?;
        suspension::restore(&tx, &cut.logins, &cut.memberships, rt.caps.superuser)
            .await
            .map_err(failed)?;
        recorded(
            &tx,
            run,
            &p.actor,
            &t,
            &m,
            json!({"backup_id": b.id, "into": "in_place"}),
        )
        .await?;
        fence::release(&tx, run).await?;
        let outcome = json!({"tenant": t.id});
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// 5. Database mode: the replaced schema, in the tenant's database.
fn drop_replaced<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let plan = plan_of(run)?;
        let t = tenant_by_id(rt, run.tenant_id.expect("an owned tenant")).await?;
        let view = super::on_server::view_for(rt, &t).await?;
        domain::drop_replaced(&view, &t, &plan)
            .await
            .map_err(backup_error)?;
        Ok(json!({"tenant": t.id}))
    })
}

/// The new tenant's request: the source's isolation, plan, quota and settings, on the
/// source's server (docs/backups.md).
fn new_tenant(source: &Tenant, name: &str) -> CreateTenant {
    CreateTenant {
        name: name.to_string(),
        db_quota: Some(source.db_quota_bytes.to_string()),
        vpn_enabled: source.vpn_enabled,
        public_api: source.public_api,
        plan: Some(source.plan.clone()),
        isolation: Some(source.isolation.as_str().to_string()),
        trial_days: Some(0),
        metadata: Some(source.metadata.clone()),
        server: Some(source.server.clone()),
        ..Default::default()
    }
}

/// The key the new tenant's create operation runs under: how this operation finds
/// the tenant it made if it died before journaling it.
fn idempotency(run: &Run) -> Idempotency {
    Idempotency {
        key: format!("berqenas:restore_as:{}", run.id),
        request_hash: run.id.as_bytes().to_vec(),
    }
}

/// 1. The new tenant, by its own create operation.
fn create_new<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let name = p.as_name.clone().expect("a restore into a new tenant");
        let source = tenant_by_id(rt, p.tenant).await?;
        let idem = idempotency(run);
        run.intend(vec![], json!({"idempotency": idem.key})).await?;
        // Quiet: the new tenant is announced once the restore into it is done.
        let req = new_tenant(&source, &name);
        let created = super::create::create_as(rt, &req, Some(&idem), &p.actor, false)
            .await
            .map_err(|e| match e {
                Error::Rejected(mut problem) => {
                    if problem.field.as_deref() == Some("name") {
                        problem.field = Some("as".into());
                    }
                    StepError::Rejected(problem)
                }
                other => StepError::failed(other),
            })?;
        Ok(json!({"tenant": created.tenant.id, "created": seal_value(rt, &created)?}))
    })
}

/// The new tenant dropped again, if this operation made it and no other owns it.
fn drop_new<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let id: Option<Uuid> = match run.outcome::<Value>("create") {
            Some(v) => serde_json::from_value(v["tenant"].clone()).ok(),
            None => made_before_a_crash(rt, run, p.as_name.as_deref().unwrap_or_default()).await?,
        };
        let Some(id) = id else {
            return Ok(Value::Null);
        };
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = match lock_tenant_anywhere(&tx, &id.to_string()).await {
            Ok(t) => t,
            Err(service::Error::Rejected(p)) if p.kind == ProblemKind::NotFound => {
                return Ok(Value::Null)
            }
            Err(e) => return Err(step_error(e)),
        };
        if super::on_server::placed(&t) {
            // Its roles and schema or database, on its server.
            let view = super::on_server::view_for(rt, &t).await?;
            crate::tenant::placed::unmake(&view, &t.name, t.isolation)
                .await
                .map_err(step_error)?;
        } else {
            if t.isolation == Isolation::Database {
                database_mode::drop_database(rt, &t.name)
                    .await
                    .map_err(step_error)?;
            }
            crate::tenant::offboarding::drop_objects(rt, &tx, &t)
                .await
                .map_err(step_error)?;
        }
        tenants::delete(&tx, t.id).await.map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok(Value::Null)
    })
}

/// The tenant this operation's create made, found by the create's idempotency key
/// (`None`: it made none). A create still running is settled first.
async fn made_before_a_crash(
    rt: &Runtime,
    run: &Run,
    name: &str,
) -> Result<Option<Uuid>, StepError> {
    if run.intent::<Value>("create").is_none() {
        return Ok(None);
    }
    let client = rt.pool.get().await.map_err(failed)?;
    let state = crate::store::operations::state_by_idempotency_key(&client, &idempotency(run).key)
        .await
        .map_err(failed)?;
    match state.as_deref() {
        Some("succeeded") => Ok(tenants::find(&client, name)
            .await
            .map_err(failed)?
            .map(|t| t.id)),
        Some("running") => Err(StepError::failed(std::io::Error::other(
            "the new tenant's create operation is still running; retried once it is settled",
        ))),
        _ => Ok(None),
    }
}

fn new_id(run: &Run) -> Result<Uuid, StepError> {
    run.outcome::<Value>("create")
        .and_then(|v| serde_json::from_value(v["tenant"].clone()).ok())
        .ok_or_else(|| StepError::Fenced("no new tenant journaled".into()))
}

/// 2. The backup loaded into the new tenant (nobody has its credentials yet).
fn load_new<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let t = tenant_by_id(rt, new_id(run)?).await?;
        let (b, m) = usable(rt, p.backup).await?;
        load_fresh(rt, run, &t, &b, &m).await?;
        Ok(json!({"template_version": m.template_version}))
    })
}

/// A restore into a tenant nobody uses yet (declared, staged, committed); undone by
/// dropping the tenant.
pub(crate) async fn load_fresh(
    rt: &Runtime,
    run: &mut Run,
    t: &Tenant,
    b: &Backup,
    m: &Manifest,
) -> Result<(), StepError> {
    let plan = declare_and_stage(rt, run, t, b, m).await?;
    let mut client = rt.pool.get().await.map_err(failed)?;
    let tx = client.transaction().await.map_err(failed)?;
    domain::commit_in(&tx, t, b, &plan)
        .await
        .map_err(backup_error)?;
    tx.commit().await.map_err(failed)?;
    let view = super::on_server::view_for(rt, t).await?;
    domain::drop_replaced(&view, t, &plan)
        .await
        .map_err(backup_error)?;
    mark_there(&view, t, m.template_version).await
}

/// A tenant on another server: its database's marker at the restored template version,
/// on that server (the registry's follows in the caller's record,
/// `migrate::set_restored_version`). Idempotent.
pub(super) async fn mark_there(
    view: &crate::platform::Platform,
    t: &Tenant,
    version: i32,
) -> Result<(), StepError> {
    if t.server == crate::store::servers::DEFAULT {
        return Ok(());
    }
    crate::migrate::mark_restored(&view.pool.get().await.map_err(failed)?, t, version)
        .await
        .map_err(failed)
}

/// 3. The backup's template version and the audit entry; the point of no return.
fn record_new<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let (b, m) = usable(rt, p.backup).await?;
        let source = tenant_by_id(rt, p.tenant).await?;
        let created = run
            .outcome::<Value>("create")
            .and_then(|v| v["created"].as_str().map(str::to_string))
            .ok_or_else(|| StepError::Fenced("no new tenant journaled".into()))?;
        let t = tenant_by_id(rt, new_id(run)?).await?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        crate::ops::fence::lock_name(&tx, t.name.as_str()).await?;
        let key = crate::store::api_keys::list(&tx, t.id)
            .await
            .map_err(failed)?
            .into_iter()
            .min_by_key(|k| k.created_at)
            .ok_or_else(|| StepError::Fenced("the new tenant has no API key".into()))?;
        crate::tenant::create::announce_created(
            &tx,
            &t,
            crate::store::outbox::data::KeyRef {
                id: key.id,
                prefix: key.prefix,
            },
            Some(b.id),
        )
        .await
        .map_err(step_error)?;
        recorded(
            &tx,
            run,
            &p.actor,
            &t,
            &m,
            json!({"backup_id": b.id, "into": "new_tenant", "source": source.name}),
        )
        .await?;
        let outcome = json!({"tenant": t.id, "created": created});
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// A restore recorded in the caller's transaction: the tenant at the backup's template
/// version, and the audit entry.
pub(super) async fn recorded(
    tx: &deadpool_postgres::Transaction<'_>,
    run: &Run,
    actor: &str,
    t: &Tenant,
    m: &Manifest,
    details: Value,
) -> Result<(), StepError> {
    crate::migrate::set_restored_version(tx, t, m.template_version)
        .await
        .map_err(failed)?;
    let into = details["into"].as_str().unwrap_or("in_place").to_string();
    crate::store::outbox::emit(
        tx,
        t.id,
        t.name.as_str(),
        &RestoreCompleted {
            backup_id: m.id,
            into,
            source_tenant: details["source"].as_str().map(str::to_string),
            template_version: m.template_version,
        },
    )
    .await
    .map_err(failed)?;
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "backup_restored",
            tenant_id: Some(t.id),
            tenant_name: Some(&t.name),
            operation_id: Some(run.id),
            details,
        },
    )
    .await
    .map_err(failed)
}
