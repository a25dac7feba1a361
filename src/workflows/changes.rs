//! The one-transaction changes of a tenant: its fields (`tenant.update`), its quotas
//! (`tenant.quotas`), its users (`user.add`, `user.remove`), its API keys
//! (`api_key.create`, `api_key.revoke`, `api_key.rotate`) and its password
//! (`credentials.rotate`). Each takes the tenant's name, then its row, refuses a tenant
//! that a running operation owns (409 `tenant_busy`), and commits its change, its
//! audit row and its operation row together. For a tenant on another server, an
//! update, a quota change and a rotation are operations instead (`changes_placed`),
//! and so are a user's addition and removal (`users_placed`); its API keys are
//! registry rows only, the same wherever it lives.

use uuid::Uuid;

use super::changes_placed::{self as placed, elsewhere};
use super::{commit_one, lock_tenant_anywhere, Error, Runtime};
use crate::ops::Kind;
use crate::quota::service::{self as quotas, Limits, QuotaUpdate};
use crate::tenant::api_keys::ApiKey;
use crate::tenant::api_keys::{self, CreateApiKey, NewApiKey, RotateApiKey, RotatedApiKey};
use crate::tenant::credentials::{self, Credentials};
use crate::tenant::service::{self, UpdateTenant};
use crate::tenant::users::{self, AddUser, AddedUser, TenantUser};
use crate::tenant::Tenant;

pub const UPDATE: &str = "tenant.update";
pub const QUOTAS: &str = "tenant.quotas";
pub const USER_ADD: &str = "user.add";
pub const USER_REMOVE: &str = "user.remove";
pub const KEY_CREATE: &str = "api_key.create";
pub const KEY_REVOKE: &str = "api_key.revoke";
pub const KEY_ROTATE: &str = "api_key.rotate";
pub const CREDENTIALS_ROTATE: &str = "credentials.rotate";

pub fn kinds() -> Vec<Kind<Runtime>> {
    [
        UPDATE,
        QUOTAS,
        USER_ADD,
        USER_REMOVE,
        KEY_CREATE,
        KEY_REVOKE,
        KEY_ROTATE,
        CREDENTIALS_ROTATE,
    ]
    .into_iter()
    .map(Kind::single)
    .collect()
}

/// `PATCH /api/v1/tenants/{name}`.
pub async fn update(
    rt: &Runtime,
    key: &str,
    req: &UpdateTenant,
    actor: &str,
) -> Result<Tenant, Error> {
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let current = lock_tenant_anywhere(&tx, key).await?;
    if elsewhere(&current) {
        // Its roles are on another server: an operation (`changes_placed`).
        drop(tx);
        return placed::update(rt, &current, req, actor).await;
    }
    let op = Uuid::now_v7();
    let limits_change = req.plan.is_some() || req.db_quota.is_some();
    let quotas_before = match limits_change {
        true => crate::store::quotas::effective(&tx, current.id)
            .await
            .map_err(service::Error::from)?,
        false => None,
    };
    let mut tenant = service::update_locked(&tx, &current, req).await?;
    tenant.vpn_subnet = crate::network::pool::follow_flag(
        &tx,
        &rt.network.pool,
        tenant.id,
        tenant.vpn_enabled,
        tenant.vpn_subnet.take(),
    )
    .await?;
    let mut quotas = None;
    if limits_change {
        // The quotas in force go to every login of the tenant, and in database mode to
        // the database's own connection limit, in the same transaction (one code path:
        // quota::apply).
        let after = crate::quota::apply::apply_limits(rt, &tx, &tenant)
            .await
            .map_err(crate::tenant::service::Error::from)?;
        quotas = quotas_before.map(|before| (before, after));
    }
    service::record_update(&tx, &current, &tenant, quotas, req, op, actor).await?;
    // After the plan's own events: the configuration follows the plan.
    if tenant.plan != current.plan {
        crate::tenantconfig::follow_plan(&tx, &tenant, actor, op).await?;
    }
    let network = super::network::touch(rt, &tx, &tenant, current.vpn_enabled).await?;
    commit_one(rt, tx, UPDATE, op, &tenant).await?;
    drop(client);
    if limits_change {
        crate::realtime::gate::follow(rt, &tenant).await;
    }
    super::network::follow(rt, network).await;
    Ok(tenant)
}

/// `PUT /api/v1/tenants/{name}/quotas`. A lowered disk quota is enforced at once, and a
/// forced lower connection quota ends the newest sessions past it.
pub async fn set_quotas(
    rt: &Runtime,
    key: &str,
    req: &QuotaUpdate,
    actor: &str,
) -> Result<Limits, Error> {
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let t = lock_tenant_anywhere(&tx, key).await?;
    if elsewhere(&t) {
        drop(tx);
        return placed::set_quotas(rt, &t, req, actor).await;
    }
    let op = Uuid::now_v7();
    let changed = quotas::update_locked(rt, &tx, &t, req, op, actor).await?;
    commit_one(rt, tx, QUOTAS, op, &t).await?;
    crate::realtime::gate::follow(rt, &t).await;
    if changed.enforce_disk {
        crate::quota::disk::measure_now(rt, t.id).await?;
        match super::quotas::enforce_disk(rt, t.id).await {
            // Busy (another operation owns the tenant): the next disk round enforces it.
            Ok(_) | Err(Error::Rejected(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(max) = changed.trim_connections {
        quotas::trim_connections(rt, &t, max).await?;
    }
    tracing::info!(tenant.name = %t.name, force = req.force, "quotas updated");
    Ok(changed.limits)
}

/// `POST /api/v1/tenants/{name}/users`.
pub async fn add_user(
    rt: &Runtime,
    key: &str,
    req: &AddUser,
    actor: &str,
) -> Result<AddedUser, Error> {
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let t = lock_tenant_anywhere(&tx, key).await?;
    if elsewhere(&t) {
        // The login lives on another server: an operation (`users_placed`).
        drop(tx);
        return super::users_placed::add_user(rt, &t, req, actor).await;
    }
    let op = Uuid::now_v7();
    let added = users::add_locked(rt, &tx, &t, req, op, actor).await?;
    let network = super::network::touch(rt, &tx, &t, false).await?;
    commit_one(rt, tx, USER_ADD, op, &t).await?;
    drop(client);
    super::network::follow(rt, network).await;
    Ok(added)
}

/// `DELETE /api/v1/tenants/{name}/users/{email}`.
pub async fn remove_user(
    rt: &Runtime,
    key: &str,
    email: &str,
    actor: &str,
) -> Result<TenantUser, Error> {
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let t = lock_tenant_anywhere(&tx, key).await?;
    if elsewhere(&t) {
        drop(tx);
        return super::users_placed::remove_user(rt, &t, email, actor).await;
    }
    let op = Uuid::now_v7();
    let removed = users::remove_locked(&tx, &t, email, op, actor).await?;
    let network = super::network::touch(rt, &tx, &t, false).await?;
    commit_one(rt, tx, USER_REMOVE, op, &t).await?;
    drop(client);
    super::network::follow(rt, network).await;
    Ok(removed)
}

/// `POST /api/v1/tenants/{name}/api-keys`.
pub async fn create_key(
    rt: &Runtime,
    key: &str,
    req: &CreateApiKey,
    actor: &str,
) -> Result<NewApiKey, Error> {
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let t = lock_tenant_anywhere(&tx, key).await?;
    let op = Uuid::now_v7();
    let made = api_keys::create_locked(rt, &tx, &t, req, op, actor).await?;
    commit_one(rt, tx, KEY_CREATE, op, &t).await?;
    Ok(made)
}

/// `DELETE /api/v1/tenants/{name}/api-keys/{id}`.
pub async fn revoke_key(rt: &Runtime, key: &str, id: &str, actor: &str) -> Result<ApiKey, Error> {
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let t = lock_tenant_anywhere(&tx, key).await?;
    let op = Uuid::now_v7();
    let revoked = api_keys::revoke_locked(&tx, &t, id, op, actor).await?;
    commit_one(rt, tx, KEY_REVOKE, op, &t).await?;
    Ok(revoked)
}

/// `POST /api/v1/tenants/{name}/api-keys/{id}/rotate`.
pub async fn rotate_key(
    rt: &Runtime,
    key: &str,
    id: &str,
    req: &RotateApiKey,
    actor: &str,
) -> Result<RotatedApiKey, Error> {
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let t = lock_tenant_anywhere(&tx, key).await?;
    let op = Uuid::now_v7();
    let rotated = api_keys::rotate_locked(rt, &tx, &t, id, req, op, actor).await?;
    commit_one(rt, tx, KEY_ROTATE, op, &t).await?;
    Ok(rotated)
}

/// `POST /api/v1/tenants/{name}/credentials/rotate`.
pub async fn rotate_credentials(
    rt: &Runtime,
    key: &str,
    actor: &str,
) -> Result<Credentials, Error> {
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let t = lock_tenant_anywhere(&tx, key).await?;
    if elsewhere(&t) {
        drop(tx);
        return placed::rotate_credentials(rt, &t, actor).await;
    }
    let op = Uuid::now_v7();
    let creds = credentials::rotate_locked(rt, &tx, &t, op, actor).await?;
    commit_one(rt, tx, CREDENTIALS_ROTATE, op, &t).await?;
    Ok(creds)
}
