//! A restore in place of a tenant on a server other than `default` (docs/servers.md,
//! docs/backups.md): `backup.restore.placed`.
//!
//! On `default` the registry and the tenant's roles share a cluster, so
//! `backup.restore` turns the logins off and back on inside its control transactions.
//! On another server no transaction spans both, so the logins are the server's own
//! steps, as in [`super::on_server`]:
//!
//! 1. `own` (control): the tenant locked, checked (live, still on that server) and
//!    owned; its logins journaled;
//! 2. `cut` (reaches out): the logins off on its server, what was taken journaled
//!    before that commits there, then their sessions ended;
//! 3. `load` (reaches out): the same step as `backup.restore`'s, on the tenant's
//!    server: everything it makes there declared first (the scratch objects as
//!    `<kind>@server`, cleaned on that server), the tenant's schema set aside, the
//!    backup loaded;
//! 4. `record` (control, the point of no return): the backup's template version, the
//!    event, the audit entry; the tenant stays owned;
//! 5. `finish` (reaches out, forward only): the logins back on its server, the
//!    replaced schema dropped there, the tenant given back.
//!
//! Until `record` commits, a failure or a crash puts the tenant's schema back, its
//! logins on, and gives the tenant back; from it on, the restore finishes.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::restores::{self, Restored};
use super::{failed, hold_owned, run_kind, Error, Runtime};
use crate::backup::restore::{self as domain, Plan, Scratch};
use crate::ops::{fence, step, Kind, Object, Run, StepError, StepFuture};
use crate::pg::Ident;
use crate::store::servers::DEFAULT;
use crate::tenant::suspension::{self, Membership};
use crate::tenant::{access, service, Tenant};

pub const RESTORE_PLACED: &str = "backup.restore.placed";

/// The scratch kinds of objects made on a server other than `default`: the object's
/// name is `<server>/<name>`, cleaned there by the plain kind's cleaner.
pub const ROLE_THERE: &str = "role@server";
pub const DATABASE_THERE: &str = "database@server";
pub const SCHEMA_THERE: &str = "schema@server";

pub fn kind() -> Kind<Runtime> {
    Kind {
        name: RESTORE_PLACED,
        steps: vec![
            step("own", false, own, Some(super::give_back)),
            step("cut", true, cut, Some(uncut)),
            step("load", true, restores::load, Some(restores::put_back)),
            step("record", false, record, None),
            step("finish", true, finish, None),
        ],
        point_of_no_return: 3,
    }
}

/// The operation's input (`tenant`, `backup` and `actor` are the names
/// `backup.restore`'s shared `load` reads).
#[derive(Debug, Serialize, Deserialize)]
struct Params {
    tenant: Uuid,
    backup: Uuid,
    server: String,
    actor: String,
}

/// What `cut` took on the server (its intent and outcome).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Taken {
    roles: Vec<String>,
    memberships: Vec<Membership>,
}

/// Restores `backup` into `t` (on a server other than `default`) in place.
pub(super) async fn restore(
    rt: &Runtime,
    t: &Tenant,
    backup: Uuid,
    actor: &str,
) -> Result<Restored, Error> {
    let params = Params {
        tenant: t.id,
        backup,
        server: t.server.clone(),
        actor: actor.to_string(),
    };
    run_kind(rt, RESTORE_PLACED, Some(t.id), t.name.as_str(), &params).await?;
    tracing::info!(tenant.name = %t.name, server = %t.server, backup.id = %backup, "backup restored in place");
    Ok(Restored::InPlace(
        service::get(rt, &t.id.to_string()).await?,
    ))
}

/// A scratch object of a restore into `t`, as its operation declares it: on another
/// server, a `<kind>@server` object the engine cleans there.
pub(super) fn scratch_object(t: &Tenant, s: &Scratch) -> Object {
    let there = match s.kind {
        "role" => ROLE_THERE,
        "database" => DATABASE_THERE,
        "schema" => SCHEMA_THERE,
        _ => "",
    };
    if t.server == DEFAULT || there.is_empty() {
        return Object::scratch(s.kind, &s.name, s.database.as_deref());
    }
    Object::scratch(
        there,
        &format!("{}/{}", t.server, s.name),
        s.database.as_deref(),
    )
}

/// The cleaner of the `<kind>@server` objects: the plain kind's, on that server. A
/// server no longer registered has nothing left to clean.
pub fn clean_there<'a>(rt: &'a Runtime, o: &'a Object) -> StepFuture<'a> {
    Box::pin(async move {
        let Some((server, name)) = o.name.split_once('/') else {
            return Err(StepError::Fenced(format!(
                "a scratch object on another server without one: {:?}",
                o.name
            )));
        };
        let s = match super::servers::opened(&rt.platform, server).await {
            Ok(s) => s,
            Err(crate::fleet::Error::NotFound(_)) => {
                tracing::warn!(
                    server,
                    object = name,
                    "the server of a scratch object is gone"
                );
                return Ok(Value::Null);
            }
            Err(e) => return Err(failed(e)),
        };
        let there = Runtime {
            platform: rt.platform.on(&s),
            engine: rt.engine.clone(),
            holds: Default::default(),
        };
        let one = Object {
            kind: o.kind.trim_end_matches("@server").to_string(),
            name: name.to_string(),
            ..o.clone()
        };
        match one.kind.as_str() {
            "role" => super::clean_role(&there, &one).await,
            "database" => super::clean_database(&there, &one).await,
            "schema" => super::clean_schema(&there, &one).await,
            other => Err(StepError::Fenced(format!(
                "no cleaner for {other:?} on another server"
            ))),
        }
    })
}

/// 1. The tenant locked, checked and owned; its logins journaled.
fn own<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = super::lock_tenant_on(&tx, p.tenant, &p.server).await?;
        restores::check_restorable(&t)?;
        let logins: Vec<String> = access::login_roles(&tx, &t)
            .await
            .map_err(failed)?
            .iter()
            .map(|r| r.as_str().to_string())
            .collect();
        fence::acquire(&tx, run, t.id).await?;
        let outcome = json!({ "logins": logins });
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

fn logins_of(run: &Run) -> Vec<String> {
    run.outcome::<Value>("own")
        .and_then(|v| serde_json::from_value(v["logins"].clone()).ok())
        .unwrap_or_default()
}

/// 2. The logins off on the tenant's server (what was taken journaled before that
///    commits, so a rerun or its undoing works from that record), then their sessions
///    ended there.
fn cut<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let logins = logins_of(run);
        let t = super::owned_tenant(rt, run).await?;
        let view = super::on_server::view_for(rt, &t).await?;
        let su = view.caps.superuser;
        let mut c = view.pool.get().await.map_err(failed)?;
        let stx = c.transaction().await.map_err(failed)?;
        let taken = match run.intent::<Taken>("cut") {
            Some(before) => {
                suspension::take_back(&stx, &before.roles, &before.memberships, su)
                    .await
                    .map_err(failed)?;
                before
            }
            None => {
                let idents: Vec<Ident> = logins
                    .iter()
                    .map(|l| Ident::new(l.clone()))
                    .collect::<Result<_, _>>()
                    .map_err(failed)?;
                let cut = suspension::cut_logins(&stx, &t, &idents, su)
                    .await
                    .map_err(failed)?;
                let taken = Taken {
                    roles: cut.roles,
                    memberships: cut.memberships,
                };
                run.intend(vec![], serde_json::to_value(&taken).map_err(failed)?)
                    .await?;
                taken
            }
        };
        stx.commit().await.map_err(failed)?;
        // After the commit: before it, a terminated client could log in again.
        access::end_sessions(&c, &logins).await.map_err(failed)?;
        serde_json::to_value(&taken).map_err(failed)
    })
}

/// The logins `cut` took back on, while this operation owns the tenant.
fn uncut<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let Some(taken) = run.intent::<Taken>("cut") else {
            return Ok(Value::Null);
        };
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let Some((_, view)) = super::on_server::still_owned(rt, &tx, run).await? else {
            return Ok(Value::Null);
        };
        let c = view.pool.get().await.map_err(failed)?;
        suspension::restore(&c, &taken.roles, &taken.memberships, view.caps.superuser)
            .await
            .map_err(failed)?;
        Ok(Value::Null)
    })
}

fn plan_of(run: &Run) -> Result<Plan, StepError> {
    run.intent("load")
        .ok_or_else(|| StepError::Fenced("no restore plan journaled".into()))
}

/// 4. The backup's template version, the event and the audit entry, in one control
///    transaction: the point of no return. The tenant stays owned until `finish`.
fn record<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let plan = plan_of(run)?;
        let (b, m) = super::backups::usable(rt, p.backup).await?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = hold_owned(&tx, run).await?;
        // Nothing of the tenant's is in this transaction's cluster (a shared-mode
        // tenant's rows are in its own server's pool).
        domain::commit_in(&tx, &t, &b, &plan)
            .await
            .map_err(super::backups::backup_error)?;
        restores::recorded(
            &tx,
            run,
            &p.actor,
            &t,
            &m,
            json!({"backup_id": b.id, "into": "in_place", "server": t.server}),
        )
        .await?;
        let outcome = json!({"tenant": t.id, "template_version": m.template_version});
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// 5. The logins back on the tenant's server, the replaced schema dropped there, the
///    tenant given back. Idempotent.
fn finish<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let plan = plan_of(run)?;
        let taken: Taken = run.outcome("cut").unwrap_or_default();
        let t = super::owned_tenant(rt, run).await?;
        let view = super::on_server::view_for(rt, &t).await?;
        {
            let c = view.pool.get().await.map_err(failed)?;
            suspension::restore(&c, &taken.roles, &taken.memberships, view.caps.superuser)
                .await
                .map_err(failed)?;
        }
        domain::drop_replaced(&view, &t, &plan)
            .await
            .map_err(super::backups::backup_error)?;
        if let Some(version) = run
            .outcome::<Value>("record")
            .and_then(|v| v["template_version"].as_i64())
        {
            restores::mark_there(&view, &t, version as i32).await?;
        }
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        fence::lock_name(&tx, &run.tenant_name).await?;
        if fence::owns(&tx, run).await? {
            fence::release(&tx, run).await?;
        }
        let outcome = json!({"tenant": t.id, "server": t.server});
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}
