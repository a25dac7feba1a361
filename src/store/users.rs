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
        status: r.try_get("status")?,
        teams: r.try_get("teams")?,
        invited_by: r.try_get("invited_by")?,
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
            "SELECT email, role, db_user, status, teams, invited_by, created_at FROM berqenas.tenant_users WHERE tenant_id = $1 AND email = $2",
            &[&tenant_id, &email],
        )
        .await?;
    row.as_ref().map(user_row).transpose()
}

/// A tenant's users, by email.
pub async fn list(c: &impl GenericClient, tenant_id: Uuid) -> Result<Vec<TenantUser>> {
    let rows = c
        .query(
            "SELECT email, role, db_user, status, teams, invited_by, created_at FROM berqenas.tenant_users WHERE tenant_id = $1 ORDER BY email",
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

/// A user to insert.
pub struct NewUser<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: &'a str,
    pub role: &'a str,
    pub db_user: &'a str,
    pub credentials: &'a [u8],
    /// `invited` (until the invitation is opened) or `active`.
    pub status: &'a str,
    pub teams: &'a [String],
    pub invited_by: Option<&'a str>,
}

/// Inserts a user; returns its creation time.
pub async fn insert(c: &impl GenericClient, u: &NewUser<'_>) -> Result<DateTime<Utc>> {
    let row = c
        .query_one(
            "INSERT INTO berqenas.tenant_users (id, tenant_id, email, role, db_user, credentials, status, teams, invited_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING created_at",
            &[
                &u.id,
                &u.tenant_id,
                &u.email,
                &u.role,
                &u.db_user,
                &u.credentials,
                &u.status,
                &u.teams,
                &u.invited_by,
            ],
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

/// The login roles of `tenants`' users, for the integrity round: (tenant, user id,
/// login role, group). A row that does not decode is left out (logged): one bad row
/// must not stop the round for every other tenant.
pub async fn logins_of(
    c: &impl GenericClient,
    tenants: &[Uuid],
) -> Result<Vec<(Uuid, Uuid, Ident, DefaultRole)>> {
    Ok(c.query(
        "SELECT tenant_id, id, db_user, role FROM berqenas.tenant_users WHERE tenant_id = ANY($1)",
        &[&tenants],
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
    /// `invited` until the user opens their invitation link, then `active`.
    pub status: String,
    /// The teams the user was invited into (seed 001).
    pub teams: Vec<String>,
    /// Who invited the user (null: added directly).
    pub invited_by: Option<String>,
    pub created_at: DateTime<Utc>,
}
