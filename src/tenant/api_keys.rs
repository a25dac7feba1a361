//! A tenant's API keys: create (the plaintext is shown once), list (never a secret),
//! revoke, and rotate with an overlap: the new key works at once, the old one until
//! its new expiry. Whether a key works is decided in SQL on every request
//! (`store::tenants::find_by_api_key`), so a revoked or expired key stops at once.

use deadpool_postgres::{GenericClient, Transaction};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::service::Error;
use super::{Status, Tenant};
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::secrets::SecretString;
pub use crate::store::api_keys::{ApiKey, KeyState};
use crate::store::outbox::data::{ApiKeyCreated, ApiKeyRevoked, ApiKeyRotated};
use crate::store::{api_keys as keys, outbox, tenants};
use crate::{apikey, audit};

type Result<T, E = Error> = std::result::Result<T, E>;

pub const MAX_NAME: usize = 64;
/// The overlap a rotation gives the old key when the request names none.
pub const DEFAULT_OVERLAP: &str = "24h";

/// `POST /api/v1/tenants/{name}/api-keys`; the body may be omitted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// A label to tell keys apart (1 to 64 characters).
    #[serde(default)]
    pub name: Option<String>,
    /// The key stops working this long from now: `30m`, `1h`, `7d` [default: never].
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// `POST /api/v1/tenants/{name}/api-keys/{id}/rotate`; the body may be omitted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateApiKey {
    /// How long the old key keeps working [default: 24h]. An earlier expiry it already
    /// had is kept.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// A new key and, this once, its plaintext.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewApiKey {
    #[serde(flatten)]
    pub key: ApiKey,
    /// `bqk_...`: shown only here; only a keyed hash is stored.
    #[serde(serialize_with = "crate::secrets::serialize_exposed")]
    #[schema(value_type = String)]
    pub api_key: SecretString,
}

/// The answer to a rotation: the new key (plaintext shown once) and the old one with
/// the expiry it now has.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RotatedApiKey {
    #[serde(flatten)]
    pub key: ApiKey,
    #[serde(serialize_with = "crate::secrets::serialize_exposed")]
    #[schema(value_type = String)]
    pub api_key: SecretString,
    pub replaced: ApiKey,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKey>,
}

fn validate_name(name: Option<&str>) -> Result<Option<String>> {
    let Some(n) = name else { return Ok(None) };
    let n = n.trim();
    if n.is_empty() || n.chars().count() > MAX_NAME || n.chars().any(|c| c.is_control()) {
        return Err(Error::Rejected(Problem::bad_field(
            "name",
            format!(
                "name must be 1 to {MAX_NAME} characters without control characters (or omitted)"
            ),
        )));
    }
    Ok(Some(n.to_string()))
}

fn seconds(field: &str, value: Option<&str>) -> Result<Option<f64>> {
    value
        .map(|v| crate::duration::parse(field, v).map(|d| d.as_secs_f64()))
        .transpose()
        .map_err(Error::Rejected)
}

/// How a path names a key: its id, its public id (16 hex), or its prefix `bqk_<hex>`.
enum KeyRef {
    Id(Uuid),
    Public(String),
}

fn key_ref(s: &str) -> Result<KeyRef> {
    if let Ok(id) = s.parse::<Uuid>() {
        return Ok(KeyRef::Id(id));
    }
    let public = s.strip_prefix(apikey::PREFIX).unwrap_or(s);
    if public.len() == 16 && public.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(KeyRef::Public(public.to_ascii_lowercase()));
    }
    Err(Error::Rejected(Problem::bad_field(
        "id",
        format!("{s:?} is neither an API key id nor a key prefix (bqk_ and 16 hex digits)"),
    )))
}

fn key_not_found(s: &str) -> Error {
    Error::Rejected(Problem::new(
        Kind::NotFound,
        "api_key_not_found",
        format!("this tenant has no API key {s:?}"),
    ))
}

fn key_conflict(code: &str, message: String) -> Error {
    Error::Rejected(Problem::new(Kind::Conflict, code, message))
}

/// Keys are issued to a tenant that exists and may come back into use.
fn issuable(t: &Tenant) -> Result<()> {
    match t.status {
        Status::Active | Status::Trial | Status::Suspended => Ok(()),
        other => {
            let mut p = Problem::new(
                Kind::Conflict,
                "invalid_state",
                format!(
                    "cannot issue API keys to tenant {}: it is {}",
                    t.name,
                    other.as_str()
                ),
            );
            p.field = Some("status".into());
            Err(Error::Rejected(p))
        }
    }
}

async fn find_key(
    c: &impl GenericClient,
    tenant_id: Uuid,
    given: &str,
    lock: bool,
) -> Result<ApiKey> {
    let (id, public) = match key_ref(given)? {
        KeyRef::Id(id) => (Some(id), None),
        KeyRef::Public(p) => (None, Some(p)),
    };
    keys::find(c, tenant_id, id, public.as_deref(), lock)
        .await?
        .ok_or_else(|| key_not_found(given))
}

pub async fn create_locked(
    p: &Platform,
    tx: &Transaction<'_>,
    t: &Tenant,
    req: &CreateApiKey,
    op_id: Uuid,
    actor: &str,
) -> Result<NewApiKey> {
    let name = validate_name(req.name.as_deref())?;
    let expires_in = seconds("expires_in", req.expires_in.as_deref())?;
    issuable(t)?;
    let plain = apikey::generate(&p.key);
    let key = keys::insert(
        tx,
        t.id,
        name.as_deref(),
        expires_in,
        &plain.public_id,
        &plain.hash,
    )
    .await?;
    outbox::emit(
        tx,
        t.id,
        t.name.as_str(),
        &ApiKeyCreated {
            key_id: key.id,
            prefix: key.prefix.clone(),
            name: key.name.clone(),
            expires_at: key.expires_at,
        },
    )
    .await?;
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "api_key_created",
            tenant_id: Some(t.id),
            tenant_name: Some(&t.name),
            operation_id: Some(op_id),
            details: serde_json::json!({
                "key_id": key.id, "prefix": key.prefix, "name": key.name, "expires_at": key.expires_at,
            }),
        },
    )
    .await?;
    Ok(NewApiKey {
        key,
        api_key: plain.plaintext,
    })
}

/// Every key of the tenant, newest first.
pub async fn list(p: &Platform, tenant: &str) -> Result<ApiKeyList> {
    let client = p.pool.get().await?;
    let t = tenants::find(&client, tenant)
        .await?
        .ok_or_else(|| Error::not_found(tenant))?;
    Ok(ApiKeyList {
        api_keys: keys::list(&client, t.id).await?,
    })
}

/// Revokes a key; it stops working with this commit. Revoking a revoked key changes
/// nothing and answers the key as it is.
pub async fn revoke_locked(
    tx: &Transaction<'_>,
    t: &Tenant,
    id: &str,
    op_id: Uuid,
    actor: &str,
) -> Result<ApiKey> {
    let key = find_key(tx, t.id, id, true).await?;
    if key.revoked_at.is_some() {
        return Ok(key);
    }
    let key = keys::revoke(tx, key.id).await?;
    outbox::emit(
        tx,
        t.id,
        t.name.as_str(),
        &ApiKeyRevoked {
            key_id: key.id,
            prefix: key.prefix.clone(),
            name: key.name.clone(),
        },
    )
    .await?;
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "api_key_revoked",
            tenant_id: Some(t.id),
            tenant_name: Some(&t.name),
            operation_id: Some(op_id),
            details: serde_json::json!({"key_id": key.id, "prefix": key.prefix, "name": key.name}),
        },
    )
    .await?;
    Ok(key)
}

/// A new key for an active one; the old key keeps working for the overlap (or until
/// an earlier expiry it already had).
pub async fn rotate_locked(
    p: &Platform,
    tx: &Transaction<'_>,
    t: &Tenant,
    id: &str,
    req: &RotateApiKey,
    op_id: Uuid,
    actor: &str,
) -> Result<RotatedApiKey> {
    let overlap = seconds(
        "expires_in",
        Some(req.expires_in.as_deref().unwrap_or(DEFAULT_OVERLAP)),
    )?;
    issuable(t)?;
    let old = find_key(tx, t.id, id, true).await?;
    match (old.state, old.replaced_by) {
        (KeyState::Revoked, _) => {
            return Err(key_conflict(
                "api_key_revoked",
                format!(
                    "API key {} is revoked; create a new key instead",
                    old.prefix
                ),
            ))
        }
        (KeyState::Expired, _) => {
            return Err(key_conflict(
                "api_key_expired",
                format!(
                    "API key {} has expired; create a new key instead",
                    old.prefix
                ),
            ))
        }
        (_, Some(by)) => {
            return Err(key_conflict(
                "api_key_replaced",
                format!(
                    "API key {} was already rotated (replaced by {by}); rotate its replacement",
                    old.prefix
                ),
            ))
        }
        (KeyState::Active, None) => {}
    }
    let plain = apikey::generate(&p.key);
    let new = keys::insert(
        tx,
        t.id,
        old.name.as_deref(),
        None,
        &plain.public_id,
        &plain.hash,
    )
    .await?;
    let replaced = keys::mark_replaced(tx, old.id, overlap, new.id).await?;
    outbox::emit(
        tx,
        t.id,
        t.name.as_str(),
        &ApiKeyRotated {
            key_id: new.id,
            prefix: new.prefix.clone(),
            name: new.name.clone(),
            replaced_key_id: replaced.id,
            replaced_prefix: replaced.prefix.clone(),
            replaced_expires_at: replaced.expires_at,
        },
    )
    .await?;
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "api_key_rotated",
            tenant_id: Some(t.id),
            tenant_name: Some(&t.name),
            operation_id: Some(op_id),
            details: serde_json::json!({
                "key_id": new.id, "prefix": new.prefix,
                "replaced_key_id": replaced.id, "replaced_prefix": replaced.prefix,
                "replaced_expires_at": replaced.expires_at,
            }),
        },
    )
    .await?;
    Ok(RotatedApiKey {
        key: new,
        api_key: plain.plaintext,
        replaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_key_references_are_checked() {
        assert_eq!(validate_name(Some(" ci ")).unwrap().as_deref(), Some("ci"));
        assert!(validate_name(Some("")).is_err());
        assert!(validate_name(Some(&"x".repeat(MAX_NAME + 1))).is_err());
        assert!(matches!(
            key_ref("bqk_0123456789ABCDEF").unwrap(),
            KeyRef::Public(p) if p == "0123456789abcdef"
        ));
        assert!(matches!(
            key_ref("018f0000-0000-7000-8000-000000000000").unwrap(),
            KeyRef::Id(_)
        ));
        for bad in ["", "bqk_", "bqk_xyz", "0123456789abcdeg", "1; DROP"] {
            assert!(key_ref(bad).is_err(), "{bad:?}");
        }
        assert!(seconds("expires_in", Some("soon")).is_err());
        assert_eq!(seconds("expires_in", Some("1m")).unwrap(), Some(60.0));
    }
}
