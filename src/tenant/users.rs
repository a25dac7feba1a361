//! Tenant users (seed 001 section 4.1): a login role per person, member of one of the
//! tenant's default group roles, with credentials returned once and kept sealed.

use deadpool_postgres::{GenericClient, Transaction};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::roles::DefaultRole;
use super::service::{self, credentials_for, Credentials, Error};
use super::Tenant;
use crate::pg::Literal;
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::secrets::random_bytes;
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

pub async fn add_locked(
    p: &Platform,
    tx: &Transaction<'_>,
    tenant: &Tenant,
    req: &AddUser,
    op_id: Uuid,
    actor: &str,
) -> Result<AddedUser> {
    let slug = tenant.name.clone();
    let key = tenant.name.as_str();
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
    let invites = req.invites();
    let (password, verifier) = crate::secrets::new_password();
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
    if store::users::find(tx, tenant.id, &email).await?.is_some() {
        return Err(Error::Rejected(Problem::new(
            Kind::Conflict,
            "user_exists",
            format!("user {email:?} already exists in tenant {:?}", tenant.name),
        )));
    }
    let quotas = store::quotas::effective(tx, tenant.id)
        .await?
        .ok_or_else(|| Error::not_found(key))?;
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
    let db_user = slug.user_role(&hex::encode(random_bytes::<6>()));
    let group = slug.group_role(role);
    let verifier = verifier
        .await
        .expect("computing a SCRAM verifier does not panic");
    let mut sql = format!(
        "CREATE ROLE {db_user} LOGIN PASSWORD {} IN ROLE {group};\n",
        Literal(&verifier)
    );
    if let Some(schema) = &tenant.schema {
        sql.push_str(&format!(
            "ALTER ROLE {db_user} SET search_path = {schema};\n"
        ));
    }
    sql.push_str(&quotas.role_limits(p.caps.superuser).sql(&db_user));
    if !p.caps.superuser {
        sql.push_str(&format!("GRANT {db_user} TO CURRENT_USER;\n"));
    }
    if tenant.isolation == super::Isolation::Shared {
        sql.push_str(&crate::isolation::shared::map_role_sql(
            &db_user,
            &tenant.id.to_string(),
        ));
    }
    tx.batch_execute(&sql).await?;
    hardening::check(tx, &[db_user.as_str().to_string()]).await?;
    let sealed = p.key.seal(&service::seal_password(&password)?);
    let user_id = Uuid::now_v7();
    let created_at = store::users::insert(
        tx,
        &store::users::NewUser {
            id: user_id,
            tenant_id: tenant.id,
            email: &email,
            role: role.as_str(),
            db_user: db_user.as_str(),
            credentials: &sealed,
            status: if invites { "invited" } else { "active" },
            teams: &teams,
            invited_by: invited_by.as_deref(),
        },
    )
    .await?;
    let invitation = match invites {
        true => Some(super::invitations::issue(p, tx, tenant.id, user_id).await?),
        false => None,
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
            action: if invites { "user_invited" } else { "user_added" },
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
        email,
        role,
        db_user,
        status: if invites { "invited" } else { "active" }.to_string(),
        teams,
        invited_by,
        created_at,
    };
    if let Some(invitation) = invitation {
        return Ok(AddedUser {
            user,
            credentials: None,
            invitation_url: Some(invitation.url),
            invitation_expires_at: Some(invitation.expires_at),
        });
    }
    let credentials = credentials_for(p, user.db_user.as_str(), tenant.database.as_str(), password);
    Ok(AddedUser {
        user,
        credentials: Some(credentials),
        invitation_url: None,
        invitation_expires_at: None,
    })
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

/// Revokes the user: their sessions end, what they created passes to the tenant's
/// owner role (nothing of the tenant's data is lost), and the login is dropped.
pub async fn remove_locked(
    tx: &Transaction<'_>,
    tenant: &Tenant,
    email: &str,
    op_id: Uuid,
    actor: &str,
) -> Result<TenantUser> {
    let slug = tenant.name.clone();
    let email_lc = email.trim().to_lowercase();
    let user = store::users::find(tx, tenant.id, &email_lc)
        .await?
        .ok_or_else(|| user_not_found(email))?;
    let db_user = &user.db_user;
    service::terminate_sessions(tx, &[db_user.as_str()]).await?;
    let owner = slug.owner_role();
    if tenant.isolation == super::Isolation::Shared {
        tx.batch_execute(&crate::isolation::shared::unmap_role_sql(db_user))
            .await?;
    }
    tx.batch_execute(&format!(
        "REASSIGN OWNED BY {db_user} TO {owner};\nDROP OWNED BY {db_user};\nDROP ROLE IF EXISTS {db_user};\n"
    ))
    .await?;
    store::users::delete(tx, tenant.id, &email_lc).await?;
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
