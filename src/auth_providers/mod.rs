//! L3: a tenant's sign-in providers (seed 001 section 4.2; docs/auth-providers.md):
//! GitHub, Microsoft Entra ID and generic OIDC. Settings are checked on save (required
//! fields, URL shapes, and for Entra ID and OIDC the issuer's discovery document and
//! its JWKS); the client secret is sealed at rest and never answered, logged, audited
//! or emitted: only the platform's auth service reads it back, with the integration
//! token.

pub mod discovery;
pub mod settings;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::store::auth_providers::{self as store, StoredProvider};
use crate::store::tenants::Tenant;
pub use settings::{ProviderKind, ProviderRequest, Validated};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", .0.message)]
    Rejected(Problem),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// A provider as the admin API shows it: its settings, never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuthProvider {
    pub kind: String,
    /// The settings as saved, without the client secret.
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Always true: a provider is saved only with its secret, which is never shown.
    pub client_secret_set: bool,
    /// When its settings were last checked (saved or `POST .../test`).
    pub checked_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&StoredProvider> for AuthProvider {
    fn from(s: &StoredProvider) -> Self {
        Self {
            kind: s.kind.clone(),
            settings: s.settings.clone(),
            client_secret_set: !s.client_secret.is_empty(),
            checked_at: s.checked_at,
            updated_at: s.updated_at,
        }
    }
}

/// A provider with its secret, for the platform's auth service only.
#[derive(Clone, Serialize, ToSchema)]
pub struct ProviderWithSecret {
    pub kind: String,
    #[schema(value_type = Object)]
    pub settings: Value,
    #[serde(serialize_with = "crate::secrets::serialize_exposed")]
    #[schema(value_type = String)]
    pub client_secret: SecretString,
}

/// What `GET /api/v1/integration/tenants/{name}/auth-providers` answers.
#[derive(Clone, Serialize, ToSchema)]
pub struct IntegrationView {
    pub tenant: String,
    pub tenant_id: Uuid,
    pub providers: Vec<ProviderWithSecret>,
}

/// The result of a check (`POST .../test`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckResult {
    pub kind: String,
    pub ok: bool,
    /// What was checked: the discovery document's issuer and the keys in its JWKS
    /// (Entra ID and OIDC), or the settings' shape (GitHub).
    #[schema(value_type = Object)]
    pub checked: Value,
}

fn not_configured(t: &Tenant, kind: ProviderKind) -> Error {
    Error::Rejected(Problem::new(
        Kind::NotFound,
        "auth_provider_not_found",
        format!("tenant {} has no {} provider", t.name, kind.as_str()),
    ))
}

pub async fn get(c: &impl GenericClient, t: &Tenant, kind: ProviderKind) -> Result<AuthProvider> {
    let s = store::find(c, t.id, kind.as_str())
        .await?
        .ok_or_else(|| not_configured(t, kind))?;
    Ok(AuthProvider::from(&s))
}

/// Saves a checked provider (the caller ran [`discovery::check`] first), sealing its
/// secret. Audited without the secret.
pub async fn put_locked(
    p: &Platform,
    tx: &Transaction<'_>,
    t: &Tenant,
    v: &Validated,
    actor: &str,
    op: Uuid,
) -> Result<AuthProvider> {
    let sealed = p.key.seal(v.client_secret.expose_secret().as_bytes());
    let saved = store::put(tx, t.id, v.kind.as_str(), &v.settings, &sealed).await?;
    crate::audit::record(
        tx,
        &crate::audit::Entry {
            actor,
            action: "auth_provider_saved",
            tenant_id: Some(t.id),
            tenant_name: Some(&t.name),
            operation_id: Some(op),
            details: json!({"kind": v.kind.as_str(), "settings": v.settings}),
        },
    )
    .await?;
    Ok(AuthProvider::from(&saved))
}

pub async fn delete_locked(
    tx: &Transaction<'_>,
    t: &Tenant,
    kind: ProviderKind,
    actor: &str,
    op: Uuid,
) -> Result<()> {
    if !store::delete(tx, t.id, kind.as_str()).await? {
        return Err(not_configured(t, kind));
    }
    crate::audit::record(
        tx,
        &crate::audit::Entry {
            actor,
            action: "auth_provider_removed",
            tenant_id: Some(t.id),
            tenant_name: Some(&t.name),
            operation_id: Some(op),
            details: json!({"kind": kind.as_str()}),
        },
    )
    .await?;
    Ok(())
}

/// The stored settings of a provider, for a re-check.
pub async fn stored_settings(
    c: &impl GenericClient,
    t: &Tenant,
    kind: ProviderKind,
) -> Result<Value> {
    Ok(store::find(c, t.id, kind.as_str())
        .await?
        .ok_or_else(|| not_configured(t, kind))?
        .settings)
}

/// Records a passed re-check.
pub async fn mark_checked(c: &impl GenericClient, t: &Tenant, kind: ProviderKind) -> Result<()> {
    Ok(store::checked(c, t.id, kind.as_str()).await?)
}

/// Every provider of the tenant with its secret opened, and the read audited (in the
/// caller's transaction: no read goes unrecorded).
pub async fn read_with_secrets(
    p: &Platform,
    tx: &Transaction<'_>,
    t: &Tenant,
    actor: &str,
) -> Result<IntegrationView> {
    let stored = store::list(tx, t.id).await?;
    let mut providers = Vec::with_capacity(stored.len());
    for s in &stored {
        let opened = p.key.open(&s.client_secret)?;
        providers.push(ProviderWithSecret {
            kind: s.kind.clone(),
            settings: s.settings.clone(),
            client_secret: SecretString::from(String::from_utf8_lossy(&opened).into_owned()),
        });
    }
    crate::audit::record(
        tx,
        &crate::audit::Entry {
            actor,
            action: "auth_provider_secrets_read",
            tenant_id: Some(t.id),
            tenant_name: Some(&t.name),
            operation_id: None,
            details: json!({"kinds": stored.iter().map(|s| s.kind.as_str()).collect::<Vec<_>>()}),
        },
    )
    .await?;
    Ok(IntegrationView {
        tenant: t.name.to_string(),
        tenant_id: t.id,
        providers,
    })
}
