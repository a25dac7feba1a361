//! The changes of a tenant on a server other than `default` that reach its roles
//! there (docs/servers.md): its quotas (`PUT .../quotas`), its plan or disk quota
//! (`PATCH /api/v1/tenants/{name}`) and its password (`POST .../credentials/rotate`).
//!
//! On `default` each is one transaction (`workflows::changes`). Here no transaction
//! spans the registry and the tenant's roles, so each is an operation of the shape of
//! `on_server`'s kinds, whatever the change:
//!
//! 1. `own` (control): the tenant locked, the change made in a savepoint and rolled
//!    back (a refusal changes nothing; what the server must get is known), the tenant
//!    owned by the operation, and that target journaled;
//! 2. `on_server` (reaches out): the target set on the tenant's roles there (the
//!    quotas' limits, or the new password's verifier); idempotent. Its undoing puts
//!    back what the registry still holds (the quotas in force, the sealed password);
//! 3. `record` (control): the same registry change for real (events, audit row), the
//!    tenant given back. Until it commits, a failure or a crash undoes `on_server`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::on_server::{unavailable, view_for};
use super::{failed, hold_owned, step_error, Error, Runtime};
use crate::ops::{fence, Kind, Run, StepError, StepFuture};
use crate::platform::Platform;
use crate::quota::service::{self as quotas, Limits, Measured, QuotaUpdate};
use crate::quota::Quotas;
use crate::secrets::SecretString;
use crate::tenant::credentials::{self, Credentials};
use crate::tenant::service::{self, UpdateTenant};
use crate::tenant::{access, Tenant};

pub const QUOTAS: &str = "tenant.quotas.placed";
pub const UPDATE: &str = "tenant.update.placed";
pub const ROTATE: &str = "credentials.rotate.placed";

pub fn kinds() -> Vec<Kind<Runtime>> {
    [QUOTAS, UPDATE, ROTATE]
        .into_iter()
        .map(|name| super::placed_change(name, own, on_server, off_server, record))
        .collect()
}

/// Which change; journaled with the operation. A new password is journaled sealed
/// only (the platform key), never in the clear.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
enum Change {
    Quotas {
        req: QuotaUpdate,
        /// What the tenant used on its server when the change was asked for.
        measured: Measured,
    },
    Update {
        req: UpdateTenant,
    },
    Rotate {
        /// The new password as the registry holds it (sealed).
        sealed: Vec<u8>,
        /// Its SCRAM verifier, sealed: the one set on the server and fingerprinted in
        /// the registry.
        verifier: Vec<u8>,
    },
}

type Params = super::PlacedParams<Change>;

/// What `own` journals: the quotas to set on the tenant's roles (none for a change
/// that does not move them).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Plan {
    #[serde(default)]
    quotas: Option<Quotas>,
}

/// Whether this key names a tenant on another server, from a lock taken in the
/// caller's transaction: the `default` path keeps its one transaction.
pub(super) fn elsewhere(t: &Tenant) -> bool {
    super::on_server::placed(t)
}

/// `PUT /api/v1/tenants/{name}/quotas` for a tenant on another server.
pub async fn set_quotas(
    rt: &Runtime,
    t: &Tenant,
    req: &QuotaUpdate,
    actor: &str,
) -> Result<Limits, Error> {
    let view = view_for(rt, t).await.map_err(unavailable)?;
    let measured = measure(rt, &view, t).await?;
    let change = Change::Quotas {
        req: req.clone(),
        measured,
    };
    super::run_placed(rt, QUOTAS, t, change, actor).await?;
    let limits = quotas::limits(rt, t.id.to_string().as_str()).await?;
    if req.db_quota_bytes.is_some() {
        crate::quota::disk::measure_now(rt, t.id).await?;
        match super::quotas::enforce_disk(rt, t.id).await {
            Ok(_) | Err(Error::Rejected(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let lowered = measured.sessions > limits.limits.max_connections as i64;
    if req.force && lowered {
        let logins = access::login_roles(&rt.pool.get().await?, t)
            .await
            .map_err(service::Error::from)?;
        quotas::trim_sessions(&view, t, &logins, limits.limits.max_connections as i64).await?;
    }
    crate::realtime::gate::follow(rt, t).await;
    Ok(limits)
}

/// `PATCH /api/v1/tenants/{name}` for a tenant on another server. Turning its VPN on
/// or off renders the network after the record (its server's pg_hba.conf and the VPN
/// files), as on `default`.
pub async fn update(
    rt: &Runtime,
    t: &Tenant,
    req: &UpdateTenant,
    actor: &str,
) -> Result<Tenant, Error> {
    let change = Change::Update { req: req.clone() };
    super::run_placed(rt, UPDATE, t, change, actor).await?;
    let after = service::get(rt, t.id.to_string().as_str()).await?;
    if req.plan.is_some() || req.db_quota.is_some() {
        crate::realtime::gate::follow(rt, &after).await;
    }
    Ok(after)
}

/// `POST /api/v1/tenants/{name}/credentials/rotate` for a tenant on another server:
/// the new password works there once this returns, and the old one no longer does.
pub async fn rotate_credentials(
    rt: &Runtime,
    t: &Tenant,
    actor: &str,
) -> Result<Credentials, Error> {
    credentials::check_rotatable(t)?;
    let (password, verifier) = crate::secrets::new_password();
    let verifier = verifier
        .await
        .expect("computing a SCRAM verifier does not panic");
    let sealed = rt.key.seal(&credentials::seal_password(&password)?);
    let change = Change::Rotate {
        sealed,
        verifier: rt.key.seal(verifier.as_bytes()),
    };
    super::run_placed(rt, ROTATE, t, change, actor).await?;
    let after = service::get(rt, t.id.to_string().as_str()).await?;
    Ok(credentials::credentials_with(rt, &after, password))
}

/// What the tenant uses on its server now: its bytes (the disk round's measurement
/// of it, fresh) and its open sessions there.
async fn measure(rt: &Runtime, view: &Platform, t: &Tenant) -> Result<Measured, Error> {
    let logins = access::login_roles(&rt.pool.get().await?, t)
        .await
        .map_err(service::Error::from)?;
    let sessions: i64 = view
        .pool
        .get()
        .await?
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = ANY($1)",
            &[&logins],
        )
        .await?
        .get(0);
    let disk_bytes = crate::quota::disk::measure_now(rt, t.id)
        .await?
        .unwrap_or(0);
    Ok(Measured {
        disk_bytes,
        sessions,
    })
}

/// The registry's half of the change, in `tx` (which holds the tenant): made for
/// real by `record`, and in a rolled-back savepoint by `own`. Returns the quotas to
/// set on the server, if the change moves them.
async fn registry_change(
    rt: &Runtime,
    tx: &deadpool_postgres::Transaction<'_>,
    t: &Tenant,
    p: &Params,
    op: Uuid,
) -> Result<Option<Quotas>, StepError> {
    match &p.change {
        Change::Quotas { req, measured } => {
            let changed = quotas::update_elsewhere(rt, tx, t, req, measured, op, &p.actor)
                .await
                .map_err(step_error)?;
            Ok(Some(changed.quotas))
        }
        Change::Update { req } => {
            let limits_change = req.plan.is_some() || req.db_quota.is_some();
            let before = crate::store::quotas::effective(tx, t.id)
                .await
                .map_err(failed)?;
            let mut after = service::update_locked(tx, t, req)
                .await
                .map_err(step_error)?;
            // A full pool is refused here, in `own`'s dry run first.
            after.vpn_subnet = crate::network::pool::follow_flag(
                tx,
                &rt.network.pool,
                after.id,
                after.vpn_enabled,
                after.vpn_subnet.take(),
            )
            .await
            .map_err(|e| super::refusal(e.into()))?;
            let now = crate::store::quotas::effective(tx, t.id)
                .await
                .map_err(failed)?;
            let pair = match (limits_change, before, now.clone()) {
                (true, Some(b), Some(a)) => Some((b, a)),
                _ => None,
            };
            service::record_update(tx, t, &after, pair, req, op, &p.actor)
                .await
                .map_err(step_error)?;
            if after.plan != t.plan {
                crate::tenantconfig::follow_plan(tx, &after, &p.actor, op)
                    .await
                    .map_err(|e| super::refusal(e.into()))?;
            }
            Ok(if limits_change { now } else { None })
        }
        Change::Rotate { sealed, verifier } => {
            credentials::check_rotatable(t).map_err(step_error)?;
            let verifier = open_verifier(rt, verifier)?;
            credentials::record_rotated(tx, t, sealed, &verifier, op, &p.actor)
                .await
                .map_err(step_error)?;
            Ok(None)
        }
    }
}

fn open_verifier(rt: &Runtime, sealed: &[u8]) -> Result<String, StepError> {
    let bytes = rt.key.open(sealed).map_err(failed)?;
    String::from_utf8(bytes).map_err(failed)
}

/// 1. The change checked (made and rolled back) and the tenant owned.
fn own<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let mut tx = client.transaction().await.map_err(failed)?;
        let t = super::lock_tenant_on(&tx, p.tenant, &p.server).await?;
        let sp = tx.savepoint("dry_run").await.map_err(failed)?;
        let quotas = registry_change(rt, &sp, &t, &p, run.id).await?;
        sp.rollback().await.map_err(failed)?;
        fence::acquire(&tx, run, t.id).await?;
        let outcome = serde_json::to_value(Plan { quotas }).map_err(failed)?;
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// Sets `q` on every login of the tenant (and its database's connection limit) on
/// its server: the same SQL as on `default` (`quota::apply`).
async fn set_limits(
    rt: &Runtime,
    view: &Platform,
    t: &Tenant,
    q: &Quotas,
) -> Result<(), StepError> {
    let logins = access::login_roles(&rt.pool.get().await.map_err(failed)?, t)
        .await
        .map_err(failed)?;
    let sql = crate::quota::apply::limits_sql(view, t, &logins, q);
    let c = view.pool.get().await.map_err(failed)?;
    c.batch_execute(&sql).await.map_err(failed)
}

async fn set_password(view: &Platform, t: &Tenant, verifier: &str) -> Result<(), StepError> {
    let c = view.pool.get().await.map_err(failed)?;
    c.batch_execute(&credentials::password_sql(t, verifier))
        .await
        .map_err(failed)
}

/// 2. The target set on the tenant's server.
fn on_server<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let plan: Plan = run
            .outcome("own")
            .ok_or_else(|| StepError::Fenced("the change was not checked".into()))?;
        let t = super::owned_tenant(rt, run).await?;
        let view = view_for(rt, &t).await?;
        match (&p.change, &plan.quotas) {
            (Change::Rotate { verifier, .. }, _) => {
                set_password(&view, &t, &open_verifier(rt, verifier)?).await?;
            }
            (_, Some(q)) => set_limits(rt, &view, &t, q).await?,
            (_, None) => {}
        }
        tracing::info!(tenant.name = %t.name, server = %t.server, step = "on_server", "changed on its server");
        Ok(Value::Null)
    })
}

/// Undoes [`on_server`] while this operation owns the tenant: what the registry
/// still holds (the record has not committed) is put back on the server.
fn off_server<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        if run.outcome::<Plan>("own").is_none() {
            return Ok(Value::Null);
        }
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let Some((t, view)) = super::on_server::still_owned(rt, &tx, run).await? else {
            return Ok(Value::Null);
        };
        match p.change {
            Change::Rotate { .. } => {
                let sealed = crate::store::tenants::sealed_credentials(&tx, t.id)
                    .await
                    .map_err(failed)?;
                let old: SecretString =
                    credentials::open_password(rt, &sealed).map_err(step_error)?;
                let verifier = crate::secrets::verifier_of(old).await;
                set_password(&view, &t, &verifier).await?;
            }
            Change::Quotas { .. } | Change::Update { .. } => {
                let q = crate::store::quotas::effective(&tx, t.id)
                    .await
                    .map_err(failed)?
                    .ok_or_else(|| StepError::Fenced("the tenant has no quotas".into()))?;
                set_limits(rt, &view, &t, &q).await?;
            }
        }
        Ok(Value::Null)
    })
}

/// 3. The registry's change for real, the tenant given back, the operation closed.
fn record<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: Params = run.params()?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = hold_owned(&tx, run).await?;
        registry_change(rt, &tx, &t, &p, run.id).await?;
        fence::release(&tx, run).await?;
        // VPN on or off changes what its server's pg_hba.conf and the VPN files hold
        // (`touch` renders when the VPN was on before or is on now).
        let network = match &p.change {
            Change::Update { req } => match req.vpn_enabled {
                Some(on) => super::network::touch(rt, &tx, &t, on)
                    .await
                    .map_err(super::refusal)?,
                None => None,
            },
            _ => None,
        };
        let outcome = json!({"tenant": t.id});
        run.finish_in(&tx, &outcome, None).await?;
        tx.commit().await.map_err(failed)?;
        drop(client);
        super::network::follow(rt, network).await;
        tracing::info!(tenant.name = %t.name, server = %t.server, "changed on its server");
        Ok(outcome)
    })
}
