//! Tenant users (seed 001 section 4.1): a login role per person, member of one of the
//! tenant's default group roles, with credentials returned once and kept sealed.

use deadpool_postgres::{GenericClient, Transaction};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::roles::DefaultRole;
use super::service::{self, credentials_for, Credentials, Error};
use super::Tenant;
use crate::pg::{Ident, Literal};
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::quota::Quotas;
use crate::secrets::{random_bytes, SecretString};
use crate::store::outbox::data::{UserInvited, UserRemoved};
pub use crate::store::users::TenantUser;
use crate::store::{self, outbox, tenants};
use crate::{audit, pg::hardening};

type Result<T, E = Error> = std::result::Result<T, E>;

/// `POST /api/v1/tenants/{name}/users`. With `invite: true` or an `invited_by`, the
/// user is invited (seed 001): it starts `invited`, and the answer carries a one-time
/// `invitation_url` instead of the credentials. Otherwise it is added directly, and
/// the answer carries the credentials.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddUser {
    pub email: String,
    /// `tenant_admin`, `application_manager`, `developer` or `auditor`.
    pub role: String,
    /// Teams the user belongs to (seed 001), e.g. `["data-science"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<String>,
    /// Who invited the user (an email or a name); implies `invite: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
    /// Invite the user (an invitation link) rather than answer the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<bool>,
}

impl AddUser {
    /// Whether the request asks for an invitation rather than a direct add.
    pub fn invites(&self) -> bool {
        self.invite.unwrap_or(self.invited_by.is_some())
    }
}

/// The new user and, this once, their credentials (added directly) or their
/// invitation link (invited).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AddedUser {
    #[serde(flatten)]
    pub user: TenantUser,
    /// A direct add's credentials (absent for an invitation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// An invitation's one-time link: `GET` it (no authentication) to take the
    /// credentials, once, before `invitation_expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserList {
    pub users: Vec<TenantUser>,
}

fn validate_email(email: &str) -> Result<String> {
    let e = email.trim().to_lowercase();
    let ok = e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(e.split_once('@'), Some((local, domain)) if !local.is_empty() && domain.contains('.')
            && !domain.starts_with('.') && !domain.ends_with('.') && !domain.contains('@'));
    if ok {
        Ok(e)
    } else {
        Err(Error::Rejected(Problem::bad_field(
            "email",
            format!("email {email:?} is not an email address"),
        )))
    }
}

fn validate_role(role: &str) -> Result<DefaultRole> {
    DefaultRole::parse(role).ok_or_else(|| {
        let all: Vec<_> = DefaultRole::ALL.iter().map(|r| r.as_str()).collect();
        Error::Rejected(Problem::bad_field(
            "role",
            format!("role must be one of {}, got {role:?}", all.join(", ")),
        ))
    })
}

fn user_not_found(email: &str) -> Error {
    Error::Rejected(Problem::new(
        Kind::NotFound,
        "user_not_found",
        format!("no user {email:?} in this tenant"),
    ))
}

/// An add request, checked for shape (no database read).
pub struct Shape {
    email: String,
    role: DefaultRole,
    teams: Vec<String>,
    invited_by: Option<String>,
    invites: bool,
}

impl Shape {
    /// Whether the user is invited (a link) rather than added directly.
    pub fn invites(&self) -> bool {
        self.invites
    }

    pub fn role(&self) -> DefaultRole {
        self.role
    }
}

/// Checks the request's fields: a bad one is refused before anything is read or made.
pub fn shape(req: &AddUser) -> Result<Shape> {
    let email = validate_email(&req.email)?;
    let role = validate_role(&req.role)?;
    let teams = super::invitations::validate_teams(&req.teams)?;
    let invited_by = super::invitations::validate_invited_by(req.invited_by.as_deref())?;
    if req.invite == Some(false) && invited_by.is_some() {
        return Err(Error::invalid(
            "invite",
            "invite is false but invited_by is given: leave one out",
        ));
    }
    Ok(Shape {
        email,
        role,
        teams,
        invited_by,
        invites: req.invites(),
    })
}

/// Whether `tenant` (locked by the caller) may get this user now; the quotas its
/// login gets.
pub async fn admissible(tx: &Transaction<'_>, tenant: &Tenant, s: &Shape) -> Result<Quotas> {
    if !matches!(tenant.status, super::Status::Active | super::Status::Trial) {
        // A new login would defeat a suspension (and resume would not know of it).
        let mut p = Problem::new(
            Kind::Conflict,
            "invalid_state",
            format!(
                "cannot add a user to tenant {}: it is {}",
                tenant.name,
                tenant.status.as_str()
            ),
        );
        p.field = Some("status".into());
        return Err(Error::Rejected(p));
    }
    if store::users::find(tx, tenant.id, &s.email).await?.is_some() {
        return Err(Error::Rejected(Problem::new(
            Kind::Conflict,
            "user_exists",
            format!(
                "user {:?} already exists in tenant {:?}",
                s.email, tenant.name
            ),
        )));
    }
    let quotas = store::quotas::effective(tx, tenant.id)
        .await?
        .ok_or_else(|| Error::not_found(tenant.name.as_str()))?;
    let users = store::users::count(tx, tenant.id).await?;
    if users >= quotas.max_users as i64 {
        return Err(Error::Rejected(Problem::new(
            Kind::Conflict,
            "quota_exceeded",
            format!(
                "tenant {:?} has {users} of its max_users {} users; raise the quota first",
                tenant.name, quotas.max_users
            ),
        )));
    }
    Ok(quotas)
}

/// The user's login on the tenant's server (`p` is the platform as seen from there):
/// member of its group role, the tenant's search path and quotas.
pub fn login_sql(
    p: &Platform,
    tenant: &Tenant,
    db_user: &Ident,
    role: DefaultRole,
    verifier: &str,
    quotas: &Quotas,
) -> String {
    let group = tenant.name.group_role(role);
    let mut sql = format!(
        "CREATE ROLE {db_user} LOGIN PASSWORD {} IN ROLE {group};\n",
        Literal(verifier)
    );
    if let Some(schema) = &tenant.schema {
        sql.push_str(&format!(
            "ALTER ROLE {db_user} SET search_path = {schema};\n"
        ));
    }
    sql.push_str(&quotas.role_limits(p.caps.superuser).sql(db_user));
    if !p.caps.superuser {
        sql.push_str(&format!("GRANT {db_user} TO CURRENT_USER;\n"));
    }
    if tenant.isolation == super::Isolation::Shared {
        sql.push_str(&crate::isolation::shared::map_role_sql(
            db_user,
            &tenant.id.to_string(),
        ));
    }
    sql
}

/// Drops the user's login (run where the login lives, its sessions ended first):
/// what it created passes to the tenant's owner role, so nothing of the tenant's data
/// is lost.
pub fn drop_login_sql(tenant: &Tenant, db_user: &Ident) -> String {
    let owner = tenant.name.owner_role();
    let mut sql = String::new();
    if tenant.isolation == super::Isolation::Shared {
        sql.push_str(&crate::isolation::shared::unmap_role_sql(db_user));
    }
    sql.push_str(&format!(
        "REASSIGN OWNED BY {db_user} TO {owner};\nDROP OWNED BY {db_user};\nDROP ROLE IF EXISTS {db_user};\n"
    ));
    sql
}

/// A new user's login name.
pub fn new_db_user(tenant: &Tenant) -> (String, Ident) {
    let suffix = hex::encode(random_bytes::<6>());
    let db_user = tenant.name.user_role(&suffix);
    (suffix, db_user)
}

/// The registry's half of an add, in the caller's transaction (the login exists, or
/// is made in the same transaction): the user's row with its sealed password, the
/// invitation (its token given: `invitations::new_token`), the event and the audit row.
#[allow(clippy::too_many_arguments)]
pub async fn record_add(
    p: &Platform,
    tx: &Transaction<'_>,
    tenant: &Tenant,
    s: &Shape,
    db_user: &Ident,
    sealed: &[u8],
    token: Option<&str>,
    op_id: Uuid,
    actor: &str,
) -> Result<(TenantUser, Option<super::invitations::Issued>)> {
    let Shape {
        email,
        role,
        teams,
        invited_by,
        invites,
    } = s;
    let user_id = Uuid::now_v7();
    let status = if *invites { "invited" } else { "active" };
    let created_at = store::users::insert(
        tx,
        &store::users::NewUser {
            id: user_id,
            tenant_id: tenant.id,
            email,
            role: role.as_str(),
            db_user: db_user.as_str(),
            credentials: sealed,
            status,
            teams,
            invited_by: invited_by.as_deref(),
        },
    )
    .await?;
    let invitation = match token {
        Some(token) => Some(super::invitations::issue(p, tx, tenant.id, user_id, token).await?),
        None => None,
    };
    outbox::emit(
        tx,
        tenant.id,
        tenant.name.as_str(),
        &UserInvited {
            email: email.clone(),
            role: role.as_str().to_string(),
            db_user: db_user.as_str().to_string(),
            teams: teams.clone(),
            invited_by: invited_by.clone(),
            invitation_url: invitation.as_ref().map(|i| i.url.clone()),
            invitation_expires_at: invitation.as_ref().map(|i| i.expires_at),
        },
    )
    .await?;
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: if *invites { "user_invited" } else { "user_added" },
            tenant_id: Some(tenant.id),
            tenant_name: Some(&tenant.name),
            operation_id: Some(op_id),
            // Never the link: the audit trail is read by more people than the invitee.
            details: serde_json::json!({"email": email, "role": role.as_str(), "db_user": db_user.as_str(),
                "teams": teams, "invited_by": invited_by,
                "invitation_expires_at": invitation.as_ref().map(|i| i.expires_at)}),
        },
    )
    .await?;
    let user = TenantUser {
        email: email.clone(),
        role: *role,
        db_user: db_user.clone(),
        status: status.to_string(),
        teams: teams.clone(),
        invited_by: invited_by.clone(),
        created_at,
    };
    Ok((user, invitation))
}

/// The answer to an add: the credentials (`p` as seen from the tenant's server) for
/// a direct add, the link for an invitation.
pub fn added(
    p: &Platform,
    tenant: &Tenant,
    user: TenantUser,
    password: SecretString,
    invitation: Option<super::invitations::Issued>,
) -> AddedUser {
    if let Some(invitation) = invitation {
        return AddedUser {
            user,
            credentials: None,
            invitation_url: Some(invitation.url),
            invitation_expires_at: Some(invitation.expires_at),
        };
    }
    let credentials = credentials_for(p, user.db_user.as_str(), tenant.database.as_str(), password);
    AddedUser {
        user,
        credentials: Some(credentials),
        invitation_url: None,
        invitation_expires_at: None,
    }
}

/// Adds the user on `default`: its login and its registry rows in one transaction.
pub async fn add_locked(
    p: &Platform,
    tx: &Transaction<'_>,
    tenant: &Tenant,
    req: &AddUser,
    op_id: Uuid,
    actor: &str,
) -> Result<AddedUser> {
    let s = shape(req)?;
    let (password, verifier) = crate::secrets::new_password();
    let quotas = admissible(tx, tenant, &s).await?;
    let (_, db_user) = new_db_user(tenant);
    let verifier = verifier
        .await
        .expect("computing a SCRAM verifier does not panic");
    tx.batch_execute(&login_sql(p, tenant, &db_user, s.role, &verifier, &quotas))
        .await?;
    hardening::check(tx, &[db_user.as_str().to_string()]).await?;
    let sealed = p.key.seal(&service::seal_password(&password)?);
    let token = s.invites.then(crate::secrets::random_token);
    let (user, invitation) = record_add(
        p,
        tx,
        tenant,
        &s,
        &db_user,
        &sealed,
        token.as_deref(),
        op_id,
        actor,
    )
    .await?;
    Ok(added(p, tenant, user, password, invitation))
}

pub async fn list(p: &Platform, key: &str) -> Result<UserList> {
    let client = p.pool.get().await?;
    let tenant = tenants::find(&client, key)
        .await?
        .ok_or_else(|| Error::not_found(key))?;
    Ok(UserList {
        users: store::users::list(&client, tenant.id).await?,
    })
}

/// The user `email` of `tenant` (locked by the caller); 404 `user_not_found`.
pub async fn find_locked(tx: &Transaction<'_>, tenant: &Tenant, email: &str) -> Result<TenantUser> {
    let email_lc = email.trim().to_lowercase();
    store::users::find(tx, tenant.id, &email_lc)
        .await?
        .ok_or_else(|| user_not_found(email))
}

/// The registry's half of a removal: the row, the event, the audit row.
pub async fn record_remove(
    tx: &Transaction<'_>,
    tenant: &Tenant,
    user: &TenantUser,
    op_id: Uuid,
    actor: &str,
) -> Result<()> {
    store::users::delete(tx, tenant.id, &user.email).await?;
    outbox::emit(
        tx,
        tenant.id,
        tenant.name.as_str(),
        &UserRemoved {
            email: user.email.clone(),
            role: user.role.as_str().to_string(),
            db_user: user.db_user.as_str().to_string(),
        },
    )
    .await?;
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "user_removed",
            tenant_id: Some(tenant.id),
            tenant_name: Some(&tenant.name),
            operation_id: Some(op_id),
            details: serde_json::json!({"email": user.email, "db_user": user.db_user}),
        },
    )
    .await?;
    Ok(())
}

/// Revokes the user on `default`: their sessions end, their login is dropped
/// ([`drop_login_sql`]) and their rows go, in one transaction.
pub async fn remove_locked(
    tx: &Transaction<'_>,
    tenant: &Tenant,
    email: &str,
    op_id: Uuid,
    actor: &str,
) -> Result<TenantUser> {
    let user = find_locked(tx, tenant, email).await?;
    service::terminate_sessions(tx, &[user.db_user.as_str()]).await?;
    tx.batch_execute(&drop_login_sql(tenant, &user.db_user))
        .await?;
    record_remove(tx, tenant, &user, op_id, actor).await?;
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_roles_are_validated() {
        assert_eq!(
            validate_email(" Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "a da@example.com",
            "ada@.com",
            "a@b@c.com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad:?}");
        }
        assert_eq!(validate_role("developer").unwrap(), DefaultRole::Developer);
        assert!(validate_role("superuser").is_err());
    }
}
