//! The `api_keys` table: a keyed hash per key (never the secret), with its expiry,
//! revocation and rotation. Whether a key works is decided here, in SQL, on the
//! database's clock. The caller owns the transaction.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{found, Result};
use crate::apikey;
use crate::store::tenants::Tenant;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const KEY_COLUMNS: &str = "id, prefix, name, created_at, expires_at, revoked_at, replaced_by,
    CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
         WHEN expires_at IS NOT NULL AND expires_at <= now() THEN 'expired'
         ELSE 'active' END AS state";

fn key_row(r: &Row) -> ApiKey {
    ApiKey {
        id: r.get("id"),
        prefix: format!("{}{}", apikey::PREFIX, r.get::<_, &str>("prefix")),
        name: r.get("name"),
        created_at: r.get("created_at"),
        expires_at: r.get("expires_at"),
        revoked_at: r.get("revoked_at"),
        replaced_by: r.get("replaced_by"),
        state: match r.get::<_, &str>("state") {
            "revoked" => KeyState::Revoked,
            "expired" => KeyState::Expired,
            _ => KeyState::Active,
        },
    }
}

/// Records a new key (its public id and keyed hash); `expires_in`: seconds from now.
pub async fn insert(
    c: &impl GenericClient,
    tenant_id: Uuid,
    name: Option<&str>,
    expires_in: Option<f64>,
    public_id: &str,
    hash: &[u8],
) -> Result<ApiKey> {
    insert_with_id(
        c,
        Uuid::now_v7(),
        tenant_id,
        name,
        expires_in,
        public_id,
        hash,
    )
    .await
}

/// [`insert`] under an id the caller chose (a create names its first key in its
/// event before the key's insert has answered: they are pipelined).
pub async fn insert_with_id(
    c: &impl GenericClient,
    id: Uuid,
    tenant_id: Uuid,
    name: Option<&str>,
    expires_in: Option<f64>,
    public_id: &str,
    hash: &[u8],
) -> Result<ApiKey> {
    let stmt = c
        .prepare_cached(&format!(
            "INSERT INTO berqenas.api_keys (id, tenant_id, prefix, hash, name, expires_at)
             VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
             RETURNING {KEY_COLUMNS}"
        ))
        .await?;
    let row = c
        .query_one(
            &stmt,
            &[&id, &tenant_id, &public_id, &hash, &name, &expires_in],
        )
        .await?;
    Ok(key_row(&row))
}

/// A tenant's key by id or by public id, optionally locked.
pub async fn find(
    c: &impl GenericClient,
    tenant_id: Uuid,
    id: Option<Uuid>,
    public_id: Option<&str>,
    lock: bool,
) -> Result<Option<ApiKey>> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM berqenas.api_keys
          WHERE tenant_id = $1 AND (id = $2 OR prefix = $3){}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(c.query_opt(&sql, &[&tenant_id, &id, &public_id])
        .await?
        .as_ref()
        .map(key_row))
}

/// Every key of the tenant, newest first.
pub async fn list(c: &impl GenericClient, tenant_id: Uuid) -> Result<Vec<ApiKey>> {
    let rows = c
        .query(
            &format!(
                "SELECT {KEY_COLUMNS} FROM berqenas.api_keys WHERE tenant_id = $1 ORDER BY id DESC"
            ),
            &[&tenant_id],
        )
        .await?;
    Ok(rows.iter().map(key_row).collect())
}

/// Revokes a key now; returns it as it is then.
pub async fn revoke(c: &impl GenericClient, id: Uuid) -> Result<ApiKey> {
    let row = c
        .query_opt(
            &format!(
                "UPDATE berqenas.api_keys SET revoked_at = now() WHERE id = $1 RETURNING {KEY_COLUMNS}"
            ),
            &[&id],
        )
        .await?;
    Ok(key_row(&found(row)?))
}

/// The key `id` was replaced by `by`: it expires after `overlap_secs` (or earlier, at
/// an expiry it already had).
pub async fn mark_replaced(
    c: &impl GenericClient,
    id: Uuid,
    overlap_secs: Option<f64>,
    by: Uuid,
) -> Result<ApiKey> {
    let row = c
        .query_opt(
            &format!(
                "UPDATE berqenas.api_keys
                    SET expires_at = least(expires_at, now() + make_interval(secs => $2)), replaced_by = $3
                  WHERE id = $1 RETURNING {KEY_COLUMNS}"
            ),
            &[&id, &overlap_secs, &by],
        )
        .await?;
    Ok(key_row(&found(row)?))
}

/// A stored API key found by its public id, with the tenant it belongs to
/// ([`super::tenants::find_by_api_key`]).
pub struct StoredKey {
    pub id: Uuid,
    pub hash: Vec<u8>,
    /// Revoked, or past its expiry: as of the database's clock.
    pub usable: bool,
    pub tenant: Tenant,
    /// The tenant's firewall ranges that open the data API (`api` and `all` rules).
    pub api_ranges: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Active,
    Revoked,
    Expired,
}

/// A key as listed: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    /// The key's public start, `bqk_<16 hex>`: how to recognise it.
    pub prefix: String,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The key that replaced this one in a rotation.
    pub replaced_by: Option<Uuid>,
    /// As of the database's clock when read.
    pub state: KeyState,
}
