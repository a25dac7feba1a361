//! Invitations (seed 001's `InviteUser`): an invited user's login is made with a
//! generated password, sealed; the invitee receives a one-time link instead of the
//! password. Only the keyed hash of the link's token is stored; opening the link hands
//! the credentials over once, before it expires, and makes the user `active`.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::credentials::{credentials_for, open_password, Credentials};
use super::service::Error;
use super::Tenant;
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::store;

type Result<T, E = Error> = std::result::Result<T, E>;

/// The path an invitation link has under the server's address.
pub const PATH: &str = "/api/v1/invitations/";

pub fn validate_teams(teams: &[String]) -> Result<Vec<String>> {
    if teams.len() > 50 {
        return Err(Error::invalid("teams", "teams: at most 50"));
    }
    teams
        .iter()
        .map(|t| {
            let t = t.trim();
            match !t.is_empty() && t.len() <= 100 && !t.chars().any(char::is_control) {
                true => Ok(t.to_string()),
                false => Err(Error::invalid(
                    "teams",
                    format!("team {t:?} must be 1 to 100 characters without control characters"),
                )),
            }
        })
        .collect()
}

pub fn validate_invited_by(by: Option<&str>) -> Result<Option<String>> {
    by.map(|b| {
        let b = b.trim();
        match !b.is_empty() && b.len() <= 254 && !b.chars().any(char::is_control) {
            true => Ok(b.to_string()),
            false => Err(Error::invalid(
                "invited_by",
                "invited_by must be 1 to 254 characters without control characters",
            )),
        }
    })
    .transpose()
}

/// A new link.
pub struct Issued {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Makes the user's link from `token` (a fresh `secrets::random_token`), storing only
/// its keyed hash.
pub async fn issue(
    p: &Platform,
    tx: &Transaction<'_>,
    tenant_id: Uuid,
    user_id: Uuid,
    token: &str,
) -> Result<Issued> {
    let ttl = chrono::Duration::from_std(p.sign_in.invitation_ttl)
        .unwrap_or_else(|_| chrono::Duration::days(7));
    let expires_at = Utc::now() + ttl;
    store::invitations::insert(
        tx,
        &p.key.mac(token.as_bytes()),
        user_id,
        tenant_id,
        expires_at,
    )
    .await?;
    Ok(Issued {
        url: url(p, token),
        expires_at,
    })
}

/// The link of `token` under the server's public address.
pub fn url(p: &Platform, token: &str) -> String {
    let base = p.public_url.as_deref().unwrap_or("").trim_end_matches('/');
    format!("{base}{PATH}{token}")
}

/// What opening a link answers: the user's credentials, this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AcceptedInvitation {
    pub tenant: String,
    pub email: String,
    /// `active` from now on.
    pub status: String,
    pub credentials: Credentials,
}

fn unknown() -> Error {
    Error::Rejected(Problem::new(
        Kind::NotFound,
        "invitation_not_found",
        "no such invitation",
    ))
}

/// The tenant an invitation belongs to (`None`: no such invitation), read before the
/// caller takes the tenant's locks.
pub async fn tenant_of(
    p: &Platform,
    c: &impl deadpool_postgres::GenericClient,
    token: &str,
) -> Result<Uuid> {
    // A token is 43 URL-safe base64 characters; anything else cannot be one.
    if token.len() != 43
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(unknown());
    }
    Ok(
        store::invitations::find_for_update(c, &p.key.mac(token.as_bytes()))
            .await?
            .ok_or_else(unknown)?
            .tenant_id,
    )
}

/// Opens the link (the tenant locked by the caller): the credentials, once; the user
/// `active`; the link spent; the opening audited (without the link or password).
pub async fn accept_locked(
    p: &Platform,
    tx: &Transaction<'_>,
    tenant: &Tenant,
    token: &str,
    op: Uuid,
) -> Result<AcceptedInvitation> {
    let hash = p.key.mac(token.as_bytes());
    let inv = store::invitations::find_for_update(tx, &hash)
        .await?
        .filter(|i| i.tenant_id == tenant.id)
        .ok_or_else(unknown)?;
    if inv.used_at.is_some() {
        return Err(Error::Rejected(Problem::new(
            Kind::Gone,
            "invitation_used",
            "this invitation link was used already; ask for a new invitation",
        )));
    }
    if inv.expires_at <= Utc::now() {
        return Err(Error::Rejected(Problem::new(
            Kind::Gone,
            "invitation_expired",
            format!(
                "this invitation link expired at {}; ask for a new invitation",
                inv.expires_at
            ),
        )));
    }
    if !matches!(tenant.status, super::Status::Active | super::Status::Trial) {
        return Err(Error::Rejected(Problem::new(
            Kind::Conflict,
            "invalid_state",
            format!(
                "tenant {} is {}: its invitations cannot be opened now",
                tenant.name,
                tenant.status.as_str()
            ),
        )));
    }
    store::invitations::accept(tx, &hash, inv.user_id).await?;
    crate::audit::record(
        tx,
        &crate::audit::Entry {
            actor: &inv.email,
            action: "invitation_accepted",
            tenant_id: Some(tenant.id),
            tenant_name: Some(&tenant.name),
            operation_id: Some(op),
            details: serde_json::json!({"email": inv.email, "db_user": inv.db_user}),
        },
    )
    .await?;
    let password = open_password(p, &inv.credentials)?;
    Ok(AcceptedInvitation {
        tenant: tenant.name.to_string(),
        email: inv.email,
        status: "active".into(),
        credentials: credentials_for(p, &inv.db_user, tenant.database.as_str(), password),
    })
}
