//! A user added to, or removed from, a tenant on a server other than `default`
//! (docs/servers.md): the user's login lives on the tenant's server, its row and
//! sealed password in the registry on `default`.
//!
//! On `default` each is one transaction (`workflows::changes`). Here no transaction
//! spans both, so each is an operation of `changes_placed`'s shape:
//!
//! 1. `own` (control): the tenant locked, the change checked (a refusal changes
//!    nothing), the tenant owned by the operation;
//! 2. `on_server` (reaches out): the login made there (its name and password chosen
//!    and journaled, sealed, before the operation began) or dropped there; idempotent.
//!    Its undoing drops the new login, or makes the removed one again with the
//!    password the registry still holds;
//! 3. `record` (control): the user's row, invitation, event and audit row (or their
//!    removal), the tenant given back. Until it commits, a failure or a crash undoes
//!    `on_server`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::on_server::{unavailable, view_for};
use super::{failed, hold_owned, step_error, Error, Runtime};
use crate::ops::{fence, Kind, Run, StepError, StepFuture};
use crate::pg::{hardening, Ident};
use crate::platform::Platform;
use crate::secrets::SecretString;
use crate::tenant::credentials;
use crate::tenant::users::{self, AddUser, AddedUser, TenantUser};
use crate::tenant::Tenant;

pub const ADD: &str = "user.add.placed";
pub const REMOVE: &str = "user.remove.placed";

pub fn kinds() -> Vec<Kind<Runtime>> {
    [ADD, REMOVE]
        .into_iter()
        .map(|name| super::placed_change(name, own, on_server, off_server, record))
        .collect()
}

/// Which change; journaled with the operation. The password, its verifier and an
/// invitation's token are journaled sealed only (the platform key).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
enum Change {
    Add {
        req: AddUser,
        /// The login's name is the tenant's user role with this suffix.
        suffix: String,
        /// The password as the registry holds it (sealed).
        sealed: Vec<u8>,
        verifier: Vec<u8>,
        token: Option<Vec<u8>>,
    },
    Remove {
        email: String,
    },
}

type Params = super::PlacedParams<Change>;

/// What `own` journals: the login to make or drop.
#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    db_user: Ident,
}

/// `POST /api/v1/tenants/{name}/users` for a tenant on another server.
pub async fn add_user(
    rt: &Runtime,
    t: &Tenant,
    req: &AddUser,
    actor: &str,
) -> Result<AddedUser, Error> {
    let shape = users::shape(req)?;
    let view = view_for(rt, t).await.map_err(unavailable)?;
    let (password, verifier) = crate::secrets::new_password();
    let (suffix, db_user) = users::new_db_user(t);
    let verifier = verifier
        .await
        .expect("computing a SCRAM verifier does not panic");
    let token = shape.invites().then(crate::secrets::random_token);
    let change = Change::Add {
        req: req.clone(),
        suffix,
        sealed: rt.key.seal(&credentials::seal_password(&password)?),
        verifier: rt.key.seal(verifier.as_bytes()),
        token: token.as_ref().map(|t| rt.key.seal(t.as_bytes())),
    };
    let done = super::run_placed(rt, ADD, t, change, actor).await?;
    rules_follow(rt).await;
    let user: TenantUser = serde_json::from_value(done["user"].clone())
        .map_err(|e| Error::Tenant(crate::tenant::service::Error::from(e)))?;
    debug_assert_eq!(user.db_user, db_user);
    let invitation = token.map(|token| crate::tenant::invitations::Issued {
        url: crate::tenant::invitations::url(&rt.platform, &token),
        expires_at: serde_json::from_value(done["invitation_expires_at"].clone())
            .unwrap_or_else(|_| chrono::Utc::now()),
    });
    Ok(users::added(&view, t, user, password, invitation))
}

/// `DELETE /api/v1/tenants/{name}/users/{email}` for a tenant on another server.
pub async fn remove_user(
    rt: &Runtime,
    t: &Tenant,
    email: &str,
    actor: &str,
) -> Result<TenantUser, Error> {
    let change = Change::Remove {
        email: email.to_string(),
    };
    let done = super::run_placed(rt, REMOVE, t, change, actor).await?;
    rules_follow(rt).await;
    serde_json::from_value(done["user"].clone())
        .map_err(|e| Error::Tenant(crate::tenant::service::Error::from(e)))
}

/// Renders the network rules again if the change moved them (the user's login in the
/// tenant's pg_hba lines on its server); a failure is logged, the worker catches up.
async fn rules_follow(rt: &Runtime) {
    if let Err(e) = super::network::catch_up(rt).await {
        tracing::error!(error = %e, "rendering network rules after a user change failed; the worker catches up");
    }
}

fn open_text(rt: &Runtime, sealed: &[u8]) -> Result<String, StepError> {
    let bytes = rt.key.open(sealed).map_err(failed)?;
    String::from_utf8(bytes).map_err(failed)
}

/// 1. The change checked and the tenant owned.
fn own<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = super::lock_tenant_on(&tx, p.tenant, &p.server).await?;
        let db_user = match &p.change {
            Change::Add { req, suffix, .. } => {
                let shape = users::shape(req).map_err(step_error)?;
                users::admissible(&tx, &t, &shape)
                    .await
                    .map_err(step_error)?;
                t.name.user_role(suffix)
            }
            Change::Remove { email } => {
                users::find_locked(&tx, &t, email)
                    .await
                    .map_err(step_error)?
                    .db_user
            }
        };
        fence::acquire(&tx, run, t.id).await?;
        let outcome = serde_json::to_value(Plan { db_user }).map_err(failed)?;
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

fn planned(run: &Run) -> Result<Ident, StepError> {
    let plan: Plan = run
        .outcome("own")
        .ok_or_else(|| StepError::Fenced("the change was not checked".into()))?;
    Ok(plan.db_user)
}

async fn login_exists(
    tx: &deadpool_postgres::Transaction<'_>,
    db_user: &Ident,
) -> Result<bool, StepError> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM pg_roles WHERE rolname = $1",
            &[&db_user.as_str()],
        )
        .await
        .map_err(failed)?
        .is_some())
}

/// Makes the login on the tenant's server, in one transaction there: dropped first if
/// an earlier try made it (nobody has its password yet), then made and checked.
async fn make_login(
    rt: &Runtime,
    view: &Platform,
    t: &Tenant,
    db_user: &Ident,
    role: crate::tenant::roles::DefaultRole,
    verifier: &str,
) -> Result<(), StepError> {
    let quotas = crate::store::quotas::effective(&rt.pool.get().await.map_err(failed)?, t.id)
        .await
        .map_err(failed)?
        .ok_or_else(|| StepError::Fenced("the tenant has no quotas".into()))?;
    let mut c = view.pool.get().await.map_err(failed)?;
    let tx = c.transaction().await.map_err(failed)?;
    if login_exists(&tx, db_user).await? {
        tx.batch_execute(&users::drop_login_sql(t, db_user))
            .await
            .map_err(failed)?;
    }
    tx.batch_execute(&users::login_sql(view, t, db_user, role, verifier, &quotas))
        .await
        .map_err(failed)?;
    hardening::check(&tx, &[db_user.as_str().to_string()])
        .await
        .map_err(failed)?;
    tx.commit().await.map_err(failed)
}

/// Ends the login's sessions on the tenant's server and drops it; nothing when gone.
async fn drop_login(view: &Platform, t: &Tenant, db_user: &Ident) -> Result<(), StepError> {
    let mut c = view.pool.get().await.map_err(failed)?;
    let tx = c.transaction().await.map_err(failed)?;
    if !login_exists(&tx, db_user).await? {
        return Ok(());
    }
    crate::tenant::service::terminate_sessions(&tx, &[db_user.as_str()])
        .await
        .map_err(failed)?;
    tx.batch_execute(&users::drop_login_sql(t, db_user))
        .await
        .map_err(failed)?;
    tx.commit().await.map_err(failed)
}

/// 2. The login made or dropped on the tenant's server.
fn on_server<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let db_user = planned(run)?;
        let t = super::owned_tenant(rt, run).await?;
        let view = view_for(rt, &t).await?;
        match &p.change {
            Change::Add { req, verifier, .. } => {
                let role = users::shape(req).map_err(step_error)?.role();
                let verifier = open_text(rt, verifier)?;
                make_login(rt, &view, &t, &db_user, role, &verifier).await?;
            }
            Change::Remove { .. } => drop_login(&view, &t, &db_user).await?,
        }
        tracing::info!(tenant.name = %t.name, server = %t.server, step = "on_server", "user login changed on its server");
        Ok(Value::Null)
    })
}

/// Undoes [`on_server`] while this operation owns the tenant: a new login is dropped;
/// a removed one is made again with the password and role the registry still holds.
fn off_server<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        if run.outcome::<Plan>("own").is_none() {
            return Ok(Value::Null);
        }
        let db_user = planned(run)?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let Some((t, view)) = super::on_server::still_owned(rt, &tx, run).await? else {
            return Ok(Value::Null);
        };
        match p.change {
            Change::Add { .. } => drop_login(&view, &t, &db_user).await?,
            Change::Remove { .. } => {
                let held = crate::store::users::sealed(&tx, t.id)
                    .await
                    .map_err(failed)?
                    .into_iter()
                    .find(|u| u.db_user == db_user)
                    .ok_or_else(|| StepError::Fenced("the user's row is gone".into()))?;
                let password: SecretString =
                    credentials::open_password(rt, &held.credentials).map_err(step_error)?;
                let verifier = crate::secrets::verifier_of(password).await;
                make_login(rt, &view, &t, &db_user, held.role, &verifier).await?;
            }
        }
        Ok(Value::Null)
    })
}

/// 3. The registry's change, the tenant given back, the operation closed.
///
/// Its outcome is the user (no secret: the password and link stay with the caller).
fn record<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let db_user = planned(run)?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = hold_owned(&tx, run).await?;
        let outcome = match &p.change {
            Change::Add {
                req, sealed, token, ..
            } => {
                let shape = users::shape(req).map_err(step_error)?;
                let token = token.as_ref().map(|t| open_text(rt, t)).transpose()?;
                let (user, invitation) = users::record_add(
                    &rt.platform,
                    &tx,
                    &t,
                    &shape,
                    &db_user,
                    sealed,
                    token.as_deref(),
                    run.id,
                    &p.actor,
                )
                .await
                .map_err(step_error)?;
                json!({"tenant": t.id, "user": user,
                    "invitation_expires_at": invitation.map(|i| i.expires_at)})
            }
            Change::Remove { email } => {
                let user = users::find_locked(&tx, &t, email)
                    .await
                    .map_err(step_error)?;
                users::record_remove(&tx, &t, &user, run.id, &p.actor)
                    .await
                    .map_err(step_error)?;
                json!({"tenant": t.id, "user": user})
            }
        };
        // A restricted tenant's pg_hba lines name its users' logins: the render that
        // follows (`network::catch_up`, by any instance should this one stop) sees
        // this generation.
        crate::store::network::bump_if_restricted(&tx, t.id, false)
            .await
            .map_err(failed)?;
        fence::release(&tx, run).await?;
        run.finish_in(&tx, &outcome, None).await?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(tenant.name = %t.name, server = %t.server, "user changed on its server");
        Ok(outcome)
    })
}
