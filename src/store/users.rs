//! The `tenant_users` table: a tenant's people, each a login role in one of its
//! default group roles, with a sealed password. The caller owns the transaction.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Result;
use crate::names::DefaultRole;
use crate::pg::Ident;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

fn user_row(r: &Row) -> Result<TenantUser> {
    Ok(TenantUser {
        email: r.try_get("email")?,
        role: r.try_get("role")?,
        db_user: r.try_get("db_user")?,
        created_at: r.try_get("created_at")?,
    })
}

pub async fn find(
    c: &impl GenericClient,
    tenant_id: Uuid,
    email: &str,
) -> Result<Option<TenantUser>> {
    let row = c
        .query_opt(
            "SELECT email, role, db_user, created_at FROM berqenas.tenant_users WHERE tenant_id = $1 AND email = $2",
            &[&tenant_id, &email],
        )
        .await?;
    row.as_ref().map(user_row).transpose()
}

/// A tenant's users, by email.
pub async fn list(c: &impl GenericClient, tenant_id: Uuid) -> Result<Vec<TenantUser>> {
    let rows = c
        .query(
            "SELECT email, role, db_user, created_at FROM berqenas.tenant_users WHERE tenant_id = $1 ORDER BY email",
            &[&tenant_id],
        )
        .await?;
    rows.iter().map(user_row).collect()
}

/// How many users a tenant has.
pub async fn count(c: &impl GenericClient, tenant_id: Uuid) -> Result<i64> {
    Ok(c.query_one(
        "SELECT count(*) FROM berqenas.tenant_users WHERE tenant_id = $1",
        &[&tenant_id],
    )
    .await?
    .get(0))
}

/// Inserts a user; returns its creation time.
pub async fn insert(
    c: &impl GenericClient,
    id: Uuid,
    tenant_id: Uuid,
    email: &str,
    role: &str,
    db_user: &str,
    credentials: &[u8],
) -> Result<DateTime<Utc>> {
    let row = c
        .query_one(
            "INSERT INTO berqenas.tenant_users (id, tenant_id, email, role, db_user, credentials)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
            &[&id, &tenant_id, &email, &role, &db_user, &credentials],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn delete(c: &impl GenericClient, tenant_id: Uuid, email: &str) -> Result<()> {
    c.execute(
        "DELETE FROM berqenas.tenant_users WHERE tenant_id = $1 AND email = $2",
        &[&tenant_id, &email],
    )
    .await?;
    Ok(())
}

/// Every tenant user's login role, of every tenant.
pub async fn all_db_users(c: &impl GenericClient) -> Result<Vec<Ident>> {
    Ok(c.query("SELECT db_user FROM berqenas.tenant_users", &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// The login roles of the users of the tenant named `name`.
pub async fn db_users_of_name(c: &impl GenericClient, name: &str) -> Result<Vec<Ident>> {
    Ok(c.query(
        "SELECT u.db_user FROM berqenas.tenant_users u
          WHERE u.tenant_id = (SELECT id FROM berqenas.tenants WHERE name = $1)",
        &[&name],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?)
}

/// A user as a rebuild needs it: its login role, group and sealed password.
pub struct SealedUser {
    pub db_user: Ident,
    pub role: DefaultRole,
    pub credentials: Vec<u8>,
}

/// A tenant's users with their sealed passwords, by login role.
pub async fn sealed(c: &impl GenericClient, tenant_id: Uuid) -> Result<Vec<SealedUser>> {
    Ok(c.query(
        "SELECT db_user, role, credentials FROM berqenas.tenant_users WHERE tenant_id = $1 ORDER BY db_user",
        &[&tenant_id],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(SealedUser {
            db_user: r.try_get(0)?,
            role: r.try_get(1)?,
            credentials: r.try_get(2)?,
        })
    })
    .collect::<Result<_, tokio_postgres::Error>>()?)
}

/// Every user's login role, for the integrity round: (tenant, user id, login role,
/// group). A row that does not decode is left out (logged): one bad row must not stop
/// the round for every other tenant.
pub async fn all_logins(c: &impl GenericClient) -> Result<Vec<(Uuid, Uuid, Ident, DefaultRole)>> {
    Ok(c.query(
        "SELECT tenant_id, id, db_user, role FROM berqenas.tenant_users",
        &[],
    )
    .await?
    .iter()
    .filter_map(|r| {
        let decoded = (|| {
            Ok::<_, tokio_postgres::Error>((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
            ))
        })();
        decoded
            .map_err(|e| tracing::error!(error = %e, "a tenant user row does not decode; skipped"))
            .ok()
    })
    .collect())
}

/// A user's sealed password, its row locked (`None`: no such user).
pub async fn sealed_credentials_for_update(
    c: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Vec<u8>>> {
    Ok(c.query_opt(
        "SELECT credentials FROM berqenas.tenant_users WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await?
    .map(|r| r.get(0)))
}

/// Records the SHA-256 of the user's verifier as last seen.
pub async fn set_verifier_sha256(c: &impl GenericClient, id: Uuid, sha: &[u8]) -> Result<()> {
    c.execute(
        "UPDATE berqenas.tenant_users SET verifier_sha256 = $2 WHERE id = $1",
        &[&id, &sha],
    )
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantUser {
    pub email: String,
    pub role: DefaultRole,
    /// The PostgreSQL login role of this user.
    #[schema(value_type = String)]
    pub db_user: Ident,
    pub created_at: DateTime<Utc>,
}
