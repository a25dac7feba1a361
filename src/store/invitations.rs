//! The `invitations` table: one link per invited user, kept as the keyed hash of its
//! token (the token itself is only ever in the answer and the `user.invited` event).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::Result;

pub async fn insert(
    c: &impl GenericClient,
    token_hash: &[u8],
    user_id: Uuid,
    tenant_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    c.execute(
        "INSERT INTO berqenas.invitations (token_hash, user_id, tenant_id, expires_at)
         VALUES ($1, $2, $3, $4)",
        &[&token_hash, &user_id, &tenant_id, &expires_at],
    )
    .await?;
    Ok(())
}

/// An invitation, its row locked, with what opening it needs.
pub struct Invitation {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub email: String,
    pub db_user: String,
    pub credentials: Vec<u8>,
}

/// The invitation whose token hashes to `token_hash`, locked (`None`: unknown).
pub async fn find_for_update(
    c: &impl GenericClient,
    token_hash: &[u8],
) -> Result<Option<Invitation>> {
    let r = c
        .query_opt(
            "SELECT i.user_id, i.tenant_id, i.expires_at, i.used_at, u.email, u.db_user, u.credentials
               FROM berqenas.invitations i JOIN berqenas.tenant_users u ON u.id = i.user_id
              WHERE i.token_hash = $1 FOR UPDATE OF i",
            &[&token_hash],
        )
        .await?;
    r.map(|r| {
        Ok(Invitation {
            user_id: r.try_get(0)?,
            tenant_id: r.try_get(1)?,
            expires_at: r.try_get(2)?,
            used_at: r.try_get(3)?,
            email: r.try_get(4)?,
            db_user: r.try_get(5)?,
            credentials: r.try_get(6)?,
        })
    })
    .transpose()
}

/// Marks it used and its user active (one statement).
pub async fn accept(c: &impl GenericClient, token_hash: &[u8], user_id: Uuid) -> Result<()> {
    c.execute(
        "WITH used AS (UPDATE berqenas.invitations SET used_at = now() WHERE token_hash = $1)
         UPDATE berqenas.tenant_users SET status = 'active' WHERE id = $2",
        &[&token_hash, &user_id],
    )
    .await?;
    Ok(())
}
