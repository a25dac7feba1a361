//! The one-transaction changes of a tenant's settings beside its data: its
//! configuration (`tenant.config`), its sign-in providers (`auth_provider.put`,
//! `auth_provider.delete`), and the opening of an invitation (`invitation.accept`).
//! Each takes the tenant's name, then its row, refuses a tenant a running operation
//! owns, and commits its change, audit row and operation row together. A provider's
//! issuer is checked before the transaction begins: no lock is held over the network.

use serde_json::Value;
use uuid::Uuid;

use super::{commit_one, lock_tenant_anywhere, Error, Runtime};
use crate::auth_providers::{
    self as providers, discovery, AuthProvider, CheckResult, IntegrationView, ProviderKind,
};
use crate::ops::Kind;
use crate::tenant::invitations::{self, AcceptedInvitation};
use crate::tenant::service;
use crate::tenantconfig::{self, PlanConfigDefaults, TenantConfig};

pub const CONFIG: &str = "tenant.config";
pub const PROVIDER_PUT: &str = "auth_provider.put";
pub const PROVIDER_DELETE: &str = "auth_provider.delete";
pub const INVITATION_ACCEPT: &str = "invitation.accept";

pub fn kinds() -> Vec<Kind<Runtime>> {
    [CONFIG, PROVIDER_PUT, PROVIDER_DELETE, INVITATION_ACCEPT]
        .into_iter()
        .map(Kind::single)
        .collect()
}

impl From<tenantconfig::Error> for Error {
    fn from(e: tenantconfig::Error) -> Self {
        match e {
            tenantconfig::Error::Rejected(p) => Self::Rejected(p),
            tenantconfig::Error::Store(e) => Self::Tenant(e.into()),
        }
    }
}

impl From<providers::Error> for Error {
    fn from(e: providers::Error) -> Self {
        match e {
            providers::Error::Rejected(p) => Self::Rejected(p),
            providers::Error::Store(e) => Self::Tenant(e.into()),
            providers::Error::Secret(e) => Self::Tenant(e.into()),
        }
    }
}

/// The tenant `key` names, read without locks (for the reads below).
async fn find(
    c: &impl deadpool_postgres::GenericClient,
    key: &str,
) -> Result<crate::tenant::Tenant, Error> {
    Ok(crate::store::tenants::find(c, key)
        .await
        .map_err(service::Error::from)?
        .ok_or_else(|| service::Error::not_found(key))?)
}

/// `GET /api/v1/tenants/{name}/config`.
pub async fn config(rt: &Runtime, key: &str) -> Result<TenantConfig, Error> {
    let c = rt.pool.get().await?;
    let t = find(&c, key).await?;
    Ok(tenantconfig::get(&c, &t).await?)
}

/// `GET /api/v1/tenants/{name}/config/history`.
pub async fn config_history(rt: &Runtime, key: &str) -> Result<tenantconfig::ConfigHistory, Error> {
    let c = rt.pool.get().await?;
    let t = find(&c, key).await?;
    Ok(tenantconfig::history(&c, &t).await?)
}

/// `PATCH /api/v1/tenants/{name}/config`.
pub async fn patch_config(
    rt: &Runtime,
    key: &str,
    patch: &Value,
    actor: &str,
) -> Result<TenantConfig, Error> {
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let t = lock_tenant_anywhere(&tx, key).await?;
    let op = Uuid::now_v7();
    let changed = tenantconfig::patch_locked(&tx, &t, patch, actor, op).await?;
    commit_one(rt, tx, CONFIG, op, &t).await?;
    Ok(changed)
}

/// `PUT /api/v1/plans/{name}/config-defaults` (no tenant: one transaction, no
/// operation row).
pub async fn put_plan_defaults(
    rt: &Runtime,
    plan: &str,
    req: &PlanConfigDefaults,
    actor: &str,
) -> Result<PlanConfigDefaults, Error> {
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let saved = tenantconfig::put_plan_defaults(&tx, plan, req, actor).await?;
    tx.commit().await?;
    Ok(saved)
}

/// `GET /api/v1/plans/{name}/config-defaults`.
pub async fn plan_defaults(rt: &Runtime, plan: &str) -> Result<PlanConfigDefaults, Error> {
    let c = rt.pool.get().await?;
    if crate::store::plans::find(&c, plan)
        .await
        .map_err(service::Error::from)?
        .is_none()
    {
        return Err(Error::Rejected(crate::problem::Problem::new(
            crate::problem::Kind::NotFound,
            "plan_not_found",
            format!("plan {plan:?} not found"),
        )));
    }
    Ok(tenantconfig::plan_defaults(&c, plan).await?)
}

fn kind_of(kind: &str) -> Result<ProviderKind, Error> {
    ProviderKind::parse(kind).map_err(Error::Rejected)
}

/// `PUT /api/v1/tenants/{name}/auth-providers/{kind}`: shape, then the issuer's
/// documents, then the save.
pub async fn put_provider(
    rt: &Runtime,
    key: &str,
    kind: &str,
    body: &Value,
    actor: &str,
) -> Result<AuthProvider, Error> {
    let kind = kind_of(kind)?;
    let allow_private = rt.sign_in.auth_allow_private;
    let v = providers::settings::validate(kind, body, allow_private).map_err(Error::Rejected)?;
    // The tenant must exist before anything is fetched on its behalf.
    find(&rt.pool.get().await?, key).await?;
    if let Some(issuer) = &v.issuer {
        discovery::check(issuer, allow_private)
            .await
            .map_err(Error::Rejected)?;
    }
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let t = lock_tenant_anywhere(&tx, key).await?;
    let op = Uuid::now_v7();
    let saved = providers::put_locked(rt, &tx, &t, &v, actor, op).await?;
    commit_one(rt, tx, PROVIDER_PUT, op, &t).await?;
    Ok(saved)
}

/// `GET /api/v1/tenants/{name}/auth-providers/{kind}` (never the secret).
pub async fn provider(rt: &Runtime, key: &str, kind: &str) -> Result<AuthProvider, Error> {
    let kind = kind_of(kind)?;
    let c = rt.pool.get().await?;
    let t = find(&c, key).await?;
    Ok(providers::get(&c, &t, kind).await?)
}

/// `DELETE /api/v1/tenants/{name}/auth-providers/{kind}`.
pub async fn delete_provider(
    rt: &Runtime,
    key: &str,
    kind: &str,
    actor: &str,
) -> Result<(), Error> {
    let kind = kind_of(kind)?;
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let t = lock_tenant_anywhere(&tx, key).await?;
    let op = Uuid::now_v7();
    providers::delete_locked(&tx, &t, kind, actor, op).await?;
    commit_one(rt, tx, PROVIDER_DELETE, op, &t).await?;
    Ok(())
}

/// `POST /api/v1/tenants/{name}/auth-providers/{kind}/test`: the saved settings'
/// check again; a pass is recorded (`checked_at`), a failure answered as on save.
pub async fn test_provider(rt: &Runtime, key: &str, kind: &str) -> Result<CheckResult, Error> {
    let kind = kind_of(kind)?;
    let c = rt.pool.get().await?;
    let t = find(&c, key).await?;
    let settings = providers::stored_settings(&c, &t, kind).await?;
    drop(c);
    let checked = match providers::settings::issuer_of(kind, &settings) {
        Some(issuer) => discovery::check(&issuer, rt.sign_in.auth_allow_private)
            .await
            .map_err(Error::Rejected)?,
        None => serde_json::json!({"settings": "well-formed"}),
    };
    providers::mark_checked(&rt.pool.get().await?, &t, kind).await?;
    Ok(CheckResult {
        kind: kind.as_str().into(),
        ok: true,
        checked,
    })
}

/// `GET /api/v1/integration/tenants/{name}/auth-providers`: every provider with its
/// secret, for the platform's auth service; the read is audited in its transaction.
pub async fn providers_with_secrets(
    rt: &Runtime,
    key: &str,
    actor: &str,
) -> Result<IntegrationView, Error> {
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let t = find(&tx, key).await?;
    let view = providers::read_with_secrets(rt, &tx, &t, actor).await?;
    tx.commit().await?;
    Ok(view)
}

/// `GET /api/v1/invitations/{token}`.
pub async fn accept_invitation(rt: &Runtime, token: &str) -> Result<AcceptedInvitation, Error> {
    let mut client = rt.pool.get().await?;
    let tenant_id = invitations::tenant_of(rt, &client, token).await?;
    let tx = client.transaction().await?;
    let t = lock_tenant_anywhere(&tx, &tenant_id.to_string()).await?;
    // The credentials name the tenant's server.
    let view = super::on_server::view_for(rt, &t)
        .await
        .map_err(super::on_server::unavailable)?;
    let op = Uuid::now_v7();
    let accepted = invitations::accept_locked(&view, &tx, &t, token, op).await?;
    commit_one(rt, tx, INVITATION_ACCEPT, op, &t).await?;
    Ok(accepted)
}
