//! A tenant's login credentials: how to connect, the password sealed in the registry
//! (opened in one place, [`open_password`]), reading them (audited) and rotating them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::service::Error;
use super::{Status, Tenant};
use crate::audit;
use crate::platform::Platform;
use crate::secrets::{ExposeSecret, SecretString};
use crate::store::tenants as store;

type Result<T, E = Error> = std::result::Result<T, E>;

/// How to connect as the tenant's login role. `Debug` shows no secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Credentials {
    pub user: String,
    #[serde(serialize_with = "crate::secrets::serialize_exposed")]
    #[schema(value_type = String)]
    pub password: SecretString,
    pub host: String,
    pub port: u16,
    pub database: String,
    /// `postgresql://user:password@host:port/database`
    #[serde(serialize_with = "crate::secrets::serialize_exposed")]
    #[schema(value_type = String)]
    pub dsn: SecretString,
}

/// What the password blob in the registry holds (sealed). Opened only by
/// [`open_password`].
#[derive(Serialize, Deserialize)]
struct SealedSecret {
    #[serde(serialize_with = "crate::secrets::serialize_exposed")]
    password: SecretString,
}

/// How to connect as the tenant's login role, on the server it lives on (opened by
/// this process: callers of a tenant on another server open it first, see
/// [`credentials_of`]).
pub(super) fn credentials(p: &Platform, t: &Tenant, password: SecretString) -> Credentials {
    credentials_on(
        &p.endpoint_of(&t.server),
        t.role.as_str(),
        t.database.as_str(),
        password,
    )
}

/// How to connect as `user` to `database` on this platform's `default` server.
pub(crate) fn credentials_for(
    p: &Platform,
    user: &str,
    database: &str,
    password: SecretString,
) -> Credentials {
    credentials_on(&p.endpoint, user, database, password)
}

/// How to connect as `user` to `database` at `e`.
pub(crate) fn credentials_on(
    e: &crate::platform::Endpoint,
    user: &str,
    database: &str,
    password: SecretString,
) -> Credentials {
    Credentials {
        dsn: format!(
            "postgresql://{user}:{}@{}:{}/{database}",
            password.expose_secret(),
            e.host,
            e.port
        )
        .into(),
        user: user.to_string(),
        password,
        host: e.host.clone(),
        port: e.port,
        database: database.to_string(),
    }
}

/// The registry's sealed-credentials plaintext for a password.
pub(crate) fn seal_password(password: &SecretString) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&SealedSecret {
        password: password.clone(),
    })?)
}

/// A login password sealed in the registry. Fails when it does not open: never an
/// empty password in its place.
pub fn open_password(p: &Platform, sealed: &[u8]) -> Result<SecretString> {
    let secret: SealedSecret = serde_json::from_slice(&p.key.open(sealed)?)?;
    Ok(secret.password)
}

/// A new tenant's login password, sealed as the registry keeps it.
pub(crate) struct Login {
    pub password: SecretString,
    pub sealed: Vec<u8>,
    /// The verifier to set on the login role; `None`: the role has it already.
    pub verifier: Option<String>,
}

/// The login of a tenant being made: the password a claimed warm pool member's role
/// was given at its refill (its sealed bytes kept as they are), else a new one.
pub(crate) async fn login_for(
    p: &Platform,
    member: Option<&crate::store::warm_pool::Member>,
) -> Result<Login> {
    if let Some(sealed) = member.and_then(|m| m.credentials.clone()) {
        return Ok(Login {
            password: open_password(p, &sealed)?,
            sealed,
            verifier: None,
        });
    }
    let (password, verifier) = crate::secrets::new_password();
    let sealed = p.key.seal(&seal_password(&password)?);
    Ok(Login {
        password,
        sealed,
        verifier: Some(
            verifier
                .await
                .expect("computing a SCRAM verifier does not panic"),
        ),
    })
}

/// The tenant's login credentials, opened from the registry; the read is audited.
pub async fn credentials_of(p: &Platform, key: &str, actor: &str) -> Result<Credentials> {
    let client = p.pool.get().await?;
    let tenant = store::find(&client, key)
        .await?
        .ok_or_else(|| Error::not_found(key))?;
    let sealed = store::sealed_credentials(&client, tenant.id).await?;
    let password = open_password(p, &sealed)?;
    if p.fleet.cached(&tenant.server).is_none() {
        // Another instance placed it: open its server here for its endpoint.
        p.fleet
            .server(&client, &p.key, &tenant.server)
            .await
            .map_err(|e| {
                Error::Rejected(crate::problem::Problem::new(
                    crate::problem::Kind::Unavailable,
                    "server_unavailable",
                    format!(
                        "the tenant's server {:?} cannot be reached: {e}",
                        tenant.server
                    ),
                ))
            })?;
    }
    audit::record(
        &client,
        &audit::Entry {
            actor,
            action: "credentials_read",
            tenant_id: Some(tenant.id),
            tenant_name: Some(&tenant.name),
            operation_id: None,
            details: serde_json::json!({}),
        },
    )
    .await?;
    Ok(credentials(p, &tenant, password))
}

/// `POST /api/v1/tenants/{name}/credentials/rotate`: a new password for the tenant's
/// login role, set as its SCRAM verifier and sealed in the registry in one
/// transaction (audited). Sessions already open stay open; new ones need the new
/// password. A tenant may also change its own password with `ALTER ROLE`; berqenas
/// puts the one it knows back at its next round (see `tenant::integrity`), so this is
/// the way to change it.
pub async fn rotate_locked(
    p: &Platform,
    tx: &Transaction<'_>,
    tenant: &Tenant,
    op_id: Uuid,
    actor: &str,
) -> Result<Credentials> {
    let (password, verifier) = crate::secrets::new_password();
    check_rotatable(tenant)?;
    let verifier = verifier
        .await
        .expect("computing a SCRAM verifier does not panic");
    tx.batch_execute(&password_sql(tenant, &verifier)).await?;
    let sealed = p.key.seal(&seal_password(&password)?);
    record_rotated(tx, tenant, &sealed, &verifier, op_id, actor).await?;
    Ok(credentials(p, tenant, password))
}

/// Whether the tenant has a login role whose password can be rotated.
pub(crate) fn check_rotatable(tenant: &Tenant) -> Result<()> {
    if matches!(
        tenant.status,
        Status::Purged | Status::Failed | Status::Provisioning
    ) {
        return Err(Error::conflict(
            "invalid_state",
            format!(
                "tenant {} is {}: it has no login role to rotate",
                tenant.name,
                tenant.status.as_str()
            ),
        ));
    }
    Ok(())
}

/// The statement that sets the tenant's login role's password (as its verifier).
pub(crate) fn password_sql(tenant: &Tenant, verifier: &str) -> String {
    format!(
        "ALTER ROLE {} PASSWORD {}",
        tenant.name.login_role(),
        crate::pg::Literal(verifier)
    )
}

/// The registry's half of a rotation, in the caller's transaction: the new password
/// (`sealed`, as [`seal_password`] and the platform key make it), the fingerprint of
/// its verifier, the event and the audit row.
pub(crate) async fn record_rotated(
    tx: &Transaction<'_>,
    tenant: &Tenant,
    sealed: &[u8],
    verifier: &str,
    op_id: Uuid,
    actor: &str,
) -> Result<()> {
    use sha2::Digest;
    let login = tenant.name.login_role();
    let seen = sha2::Sha256::digest(verifier.as_bytes()).to_vec();
    store::set_credentials(tx, tenant.id, sealed, &seen).await?;
    crate::store::outbox::emit(
        tx,
        tenant.id,
        tenant.name.as_str(),
        &crate::store::outbox::data::TenantUpdated {
            changed: vec!["credentials".into()],
            previous: Default::default(),
            tenant: crate::store::outbox::data::TenantState::of(tenant),
        },
    )
    .await?;
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "credentials_rotated",
            tenant_id: Some(tenant.id),
            tenant_name: Some(&tenant.name),
            operation_id: Some(op_id),
            details: serde_json::json!({"role": login.as_str()}),
        },
    )
    .await?;
    Ok(())
}

/// How to connect as the tenant's login role with `password` (a rotation's answer).
pub(crate) fn credentials_with(p: &Platform, t: &Tenant, password: SecretString) -> Credentials {
    credentials(p, t, password)
}
