//! The `auth_providers` table: a tenant's sign-in providers, their settings, and
//! their client secrets sealed (the caller seals and opens them).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use uuid::Uuid;

use super::Result;

/// A stored provider; `client_secret` is sealed.
#[derive(Clone)]
pub struct StoredProvider {
    pub kind: String,
    pub settings: Value,
    pub client_secret: Vec<u8>,
    pub checked_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for StoredProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredProvider")
            .field("kind", &self.kind)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn row(r: &tokio_postgres::Row) -> Result<StoredProvider> {
    Ok(StoredProvider {
        kind: r.try_get("kind")?,
        settings: r.try_get("settings")?,
        client_secret: r.try_get("client_secret")?,
        checked_at: r.try_get("checked_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const COLUMNS: &str = "kind, settings, client_secret, checked_at, updated_at";

pub async fn find(
    c: &impl GenericClient,
    tenant_id: Uuid,
    kind: &str,
) -> Result<Option<StoredProvider>> {
    let r = c
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM berqenas.auth_providers WHERE tenant_id = $1 AND kind = $2"
            ),
            &[&tenant_id, &kind],
        )
        .await?;
    r.as_ref().map(row).transpose()
}

/// A tenant's providers, by kind.
pub async fn list(c: &impl GenericClient, tenant_id: Uuid) -> Result<Vec<StoredProvider>> {
    c.query(
        &format!(
            "SELECT {COLUMNS} FROM berqenas.auth_providers WHERE tenant_id = $1 ORDER BY kind"
        ),
        &[&tenant_id],
    )
    .await?
    .iter()
    .map(row)
    .collect()
}

/// Creates or replaces the tenant's provider of this kind.
pub async fn put(
    c: &impl GenericClient,
    tenant_id: Uuid,
    kind: &str,
    settings: &Value,
    sealed_secret: &[u8],
) -> Result<StoredProvider> {
    let r = c
        .query_one(
            &format!(
                "INSERT INTO berqenas.auth_providers (tenant_id, kind, settings, client_secret, checked_at)
                 VALUES ($1, $2, $3, $4, now())
                 ON CONFLICT (tenant_id, kind) DO UPDATE SET settings = EXCLUDED.settings,
                     client_secret = EXCLUDED.client_secret, checked_at = now(), updated_at = now()
                 RETURNING {COLUMNS}"
            ),
            &[&tenant_id, &kind, &settings, &sealed_secret],
        )
        .await?;
    row(&r)
}

/// Records a successful re-check.
pub async fn checked(c: &impl GenericClient, tenant_id: Uuid, kind: &str) -> Result<()> {
    c.execute(
        "UPDATE berqenas.auth_providers SET checked_at = now() WHERE tenant_id = $1 AND kind = $2",
        &[&tenant_id, &kind],
    )
    .await?;
    Ok(())
}

/// Removes it; whether there was one.
pub async fn delete(c: &impl GenericClient, tenant_id: Uuid, kind: &str) -> Result<bool> {
    Ok(c.execute(
        "DELETE FROM berqenas.auth_providers WHERE tenant_id = $1 AND kind = $2",
        &[&tenant_id, &kind],
    )
    .await?
        > 0)
}

/// Removes every provider of the tenant (its purge: the secrets go with it).
pub async fn clear(c: &impl GenericClient, tenant_id: Uuid) -> Result<()> {
    c.execute(
        "DELETE FROM berqenas.auth_providers WHERE tenant_id = $1",
        &[&tenant_id],
    )
    .await?;
    Ok(())
}
