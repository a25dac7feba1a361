//! Suspend, resume, activate. Suspending takes LOGIN from exactly the tenant's login
//! roles that had it, and revokes the memberships other roles (a pooled connection
//! role, say) held in them, since `SET ROLE` ignores NOLOGIN; both are recorded with the
//! time and the reason, and resuming gives back exactly those. API keys stop working
//! through the tenant's status (the key extractor admits only `active` and `trial`
//! tenants). Each change, its status and its audit row commit together (the
//! `tenant.suspend`, `tenant.resume` and `tenant.activate` workflows own the
//! transaction); sessions are ended after the commit.

use deadpool_postgres::{GenericClient, Transaction};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::login_roles;
use super::service::Error;
use super::{access, state, Status, Tenant};
use crate::audit;
use crate::pg::Ident;
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
pub use crate::store::offboarding::Membership;
use crate::store::outbox::data::{TenantActivated, TenantResumed, TenantSuspended};
use crate::store::{offboarding, outbox, tenants};

type Result<T, E = Error> = std::result::Result<T, E>;

pub const MAX_REASON: usize = 500;

/// `POST /api/v1/tenants/{name}/suspend`; the body may be omitted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendTenant {
    /// Why, for the record (1 to 500 characters), e.g. `payment overdue`.
    #[serde(default)]
    pub reason: Option<String>,
}

fn validate_reason(reason: Option<&str>) -> Result<Option<String>> {
    let Some(r) = reason else { return Ok(None) };
    let r = r.trim();
    if r.is_empty() || r.chars().count() > MAX_REASON || r.chars().any(|c| c.is_control()) {
        return Err(Error::Rejected(Problem::bad_field(
            "reason",
            format!("reason must be 1 to {MAX_REASON} characters without control characters (or omitted)"),
        )));
    }
    Ok(Some(r.to_string()))
}

/// Everything a suspension takes away, to be given back by [`restore`].
pub struct Cut {
    /// Login roles that lost LOGIN.
    pub roles: Vec<String>,
    /// Memberships revoked.
    pub memberships: Vec<Membership>,
}

/// Takes LOGIN from the tenant's login roles that have it ([`access::disable`]) and
/// revokes the memberships outside roles hold in any of its login roles. The control
/// plane's own memberships (URL mode) and the tenant's roles among themselves stay.
pub async fn cut(c: &impl GenericClient, t: &Tenant, superuser: bool) -> crate::store::Result<Cut> {
    let logins = login_roles(c, t).await?;
    Ok(cut_logins(c, t, &logins, superuser).await?)
}

/// [`cut`] of the logins the caller names (read from the registry): on the tenant's
/// own server, which has no registry (docs/servers.md).
pub async fn cut_logins(
    c: &impl GenericClient,
    t: &Tenant,
    logins: &[Ident],
    superuser: bool,
) -> Result<Cut, tokio_postgres::Error> {
    let roles = access::disable_roles(c, logins).await?;
    let mut own: Vec<Ident> = t.name.fixed_roles();
    own.extend(logins.iter().cloned());
    let rows = c
        .query(
            "SELECT r.rolname::text, m.rolname::text, g.rolname::text, am.admin_option
               FROM pg_auth_members am
               JOIN pg_roles r ON r.oid = am.roleid
               JOIN pg_roles m ON m.oid = am.member
               LEFT JOIN pg_roles g ON g.oid = am.grantor
              WHERE r.rolname = ANY($1) AND m.rolname <> current_user AND NOT m.rolname = ANY($2)
              ORDER BY 1, 2",
            &[&logins, &own],
        )
        .await?;
    let memberships: Vec<Membership> = rows
        .iter()
        .map(|r| Membership {
            role: r.get(0),
            member: r.get(1),
            grantor: r.get(2),
            admin_option: r.get(3),
        })
        .collect();
    for m in &memberships {
        c.batch_execute(&format!(
            "REVOKE {} FROM {}{}",
            ident(&m.role),
            ident(&m.member),
            granted_by(m, superuser, c).await?
        ))
        .await?;
    }
    Ok(Cut { roles, memberships })
}

/// Gives back what [`cut`] took (skipping roles dropped since).
pub async fn restore(
    c: &impl GenericClient,
    roles: &[String],
    memberships: &[Membership],
    superuser: bool,
) -> Result<(), tokio_postgres::Error> {
    access::enable(c, roles).await?;
    for m in memberships {
        let exist: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_roles WHERE rolname IN ($1, $2)",
                &[&m.role, &m.member],
            )
            .await?
            .get(0);
        if exist < 2 {
            continue;
        }
        c.batch_execute(&format!(
            "GRANT {} TO {}{}{}",
            ident(&m.role),
            ident(&m.member),
            if m.admin_option {
                " WITH ADMIN OPTION"
            } else {
                ""
            },
            granted_by(m, superuser, c).await?
        ))
        .await?;
    }
    Ok(())
}

fn ident(name: &str) -> Ident {
    Ident::new(name.to_string()).expect("names read from the catalog are valid identifiers")
}

/// `GRANTED BY` keeps the grant's grantor (PostgreSQL 16 revokes per grantor); only a
/// superuser may name a grantor other than itself.
async fn granted_by(
    m: &Membership,
    superuser: bool,
    c: &impl GenericClient,
) -> Result<String, tokio_postgres::Error> {
    let Some(grantor) = &m.grantor else {
        return Ok(String::new());
    };
    let me: String = c.query_one("SELECT current_user::text", &[]).await?.get(0);
    let exists = c
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[grantor])
        .await?
        .is_some();
    Ok(if exists && (superuser || *grantor == me) {
        format!(" GRANTED BY {}", ident(grantor))
    } else {
        String::new()
    })
}

/// Records a suspension on the tenant's row: status, time, reason, and what [`cut`]
/// took, in this transaction.
pub async fn mark_suspended(
    c: &impl GenericClient,
    id: Uuid,
    reason: Option<&str>,
    cut: &Cut,
) -> crate::store::Result<()> {
    let memberships = serde_json::to_value(&cut.memberships).expect("plain data serialises");
    tenants::mark_suspended(c, id, reason, &cut.roles, &memberships).await
}

fn transition(t: &Tenant, to: Status, action: &str) -> Result<()> {
    state::check(&t.name, t.status, to, action).map_err(Error::Rejected)
}

async fn reread(c: &impl GenericClient, id: Uuid) -> Result<Tenant> {
    Ok(tenants::get(c, id).await?)
}

/// `active` or `trial` -> `suspended`, inside the caller's transaction (which holds
/// the tenant's name and row). Returns the tenant and every login role of it, whose
/// sessions the caller ends once this commits (before, a terminated client could log
/// in again while NOLOGIN was still uncommitted).
pub async fn suspend_locked(
    p: &Platform,
    tx: &Transaction<'_>,
    current: &Tenant,
    req: &SuspendTenant,
    op_id: Uuid,
    actor: &str,
) -> Result<(Tenant, Vec<String>)> {
    let reason = check_suspend(tx, current, req).await?;
    let cut = cut(tx, current, p.caps.superuser).await?;
    let tenant = record_suspended(tx, current, reason, "admin", &cut, op_id, actor).await?;
    // Every login role, not only those just disabled: one that was already NOLOGIN
    // may still hold a session.
    let logins = login_roles(tx, &tenant)
        .await?
        .iter()
        .map(|r| r.as_str().to_string())
        .collect();
    Ok((tenant, logins))
}

/// Whether `current` can be suspended now (the caller holds its name and row);
/// returns the reason, cleaned.
pub async fn check_suspend(
    c: &impl GenericClient,
    current: &Tenant,
    req: &SuspendTenant,
) -> Result<Option<String>> {
    let reason = validate_reason(req.reason.as_deref())?;
    transition(current, Status::Suspended, "suspend")?;
    // The graph also lets a restore lead from `deleted` to `suspended`; suspending
    // itself applies only to a tenant in use.
    if !matches!(current.status, Status::Active | Status::Trial) {
        return Err(not_from(
            current,
            "suspend",
            "only an active or trial tenant can be suspended",
        ));
    }
    refuse_while_offboarding(c, current, "suspend").await?;
    Ok(reason)
}

/// The registry's half of a suspension (what [`cut`] took, the status, the event with
/// its `cause` and the audit row), in the caller's control transaction.
#[allow(clippy::too_many_arguments)]
pub async fn record_suspended(
    tx: &Transaction<'_>,
    current: &Tenant,
    reason: Option<String>,
    cause: &str,
    cut: &Cut,
    op_id: Uuid,
    actor: &str,
) -> Result<Tenant> {
    mark_suspended(tx, current.id, reason.as_deref(), cut).await?;
    announce_suspended(tx, current, cause, reason.clone()).await?;
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "tenant_suspended",
            tenant_id: Some(current.id),
            tenant_name: Some(&current.name),
            operation_id: Some(op_id),
            details: serde_json::json!({
                "reason": reason, "from": current.status.as_str(), "disabled_roles": cut.roles,
                "revoked_memberships": cut.memberships,
            }),
        },
    )
    .await?;
    reread(tx, current.id).await
}

/// `suspended` -> `active`, with LOGIN back on exactly the roles the suspension took
/// it from; inside the caller's transaction (which holds the name and the row).
pub async fn resume_locked(
    p: &Platform,
    tx: &Transaction<'_>,
    current: &Tenant,
    op_id: Uuid,
    actor: &str,
) -> Result<Tenant> {
    let (roles, memberships) = check_resume(tx, current).await?;
    restore(tx, &roles, &memberships, p.caps.superuser).await?;
    record_resumed(tx, current, &roles, &memberships, op_id, actor).await
}

/// Whether `current` can be resumed now (the caller holds its name and row); returns
/// what its suspension took: the login roles and the memberships.
pub async fn check_resume(
    c: &impl GenericClient,
    current: &Tenant,
) -> Result<(Vec<String>, Vec<Membership>)> {
    transition(current, Status::Active, "resume")?;
    if current.status != Status::Suspended {
        return Err(not_from(
            current,
            "resume",
            "only a suspended tenant can be resumed",
        ));
    }
    refuse_while_offboarding(c, current, "resume").await?;
    let (roles, memberships) = tenants::suspension_record(c, current.id).await?;
    // A suspension recorded before the roles were (no list): every login role.
    let roles: Vec<String> = match roles {
        Some(r) => r,
        None => login_roles(c, current)
            .await?
            .iter()
            .map(|r| r.as_str().to_string())
            .collect(),
    };
    let memberships: Vec<Membership> = memberships
        .map(serde_json::from_value)
        .transpose()?
        .unwrap_or_default();
    Ok((roles, memberships))
}

/// The registry's half of a resume (the suspension cleared, the event, the audit
/// row), in the caller's control transaction.
pub async fn record_resumed(
    tx: &Transaction<'_>,
    current: &Tenant,
    roles: &[String],
    memberships: &[Membership],
    op_id: Uuid,
    actor: &str,
) -> Result<Tenant> {
    tenants::clear_suspension(tx, current.id).await?;
    outbox::emit(
        tx,
        current.id,
        current.name.as_str(),
        &TenantResumed {
            suspended_at: current.suspended_at,
            reason: current.suspension_reason.clone(),
        },
    )
    .await?;
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "tenant_resumed",
            tenant_id: Some(current.id),
            tenant_name: Some(&current.name),
            operation_id: Some(op_id),
            details: serde_json::json!({
                "enabled_roles": roles,
                "restored_memberships": memberships,
                "suspended_at": current.suspended_at,
                "suspension_reason": current.suspension_reason,
            }),
        },
    )
    .await?;
    reread(tx, current.id).await
}

/// Takes back what [`restore`] gave (a resume or restore undone on a tenant's own
/// server): the roles lose LOGIN again and the memberships are revoked.
pub async fn take_back(
    c: &impl GenericClient,
    roles: &[String],
    memberships: &[Membership],
    superuser: bool,
) -> Result<(), tokio_postgres::Error> {
    let idents: Vec<Ident> = roles.iter().map(|r| ident(r)).collect();
    access::disable_roles(c, &idents).await?;
    for m in memberships {
        let exist: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_auth_members am
                   JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
                  WHERE r.rolname = $1 AND m.rolname = $2",
                &[&m.role, &m.member],
            )
            .await?
            .get(0);
        if exist == 0 {
            continue;
        }
        c.batch_execute(&format!(
            "REVOKE {} FROM {}{}",
            ident(&m.role),
            ident(&m.member),
            granted_by(m, superuser, c).await?
        ))
        .await?;
    }
    Ok(())
}

/// `trial` -> `active`: the trial ends early, paid for; inside the caller's
/// transaction (which holds the name and the row).
pub async fn activate_locked(
    tx: &Transaction<'_>,
    current: &Tenant,
    op_id: Uuid,
    actor: &str,
) -> Result<Tenant> {
    transition(current, Status::Active, "activate")?;
    if current.status != Status::Trial {
        let hint = if current.status == Status::Suspended {
            "activate ends a trial; a suspended tenant is resumed"
        } else {
            "activate ends a trial"
        };
        return Err(not_from(current, "activate", hint));
    }
    tenants::set_status(tx, current.id, Status::Active).await?;
    announce_activated(tx, current, "admin").await?;
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "tenant_activated",
            tenant_id: Some(current.id),
            tenant_name: Some(&current.name),
            operation_id: Some(op_id),
            details: serde_json::json!({"from": "trial", "trial_ends_at": current.trial_ends_at}),
        },
    )
    .await?;
    reread(tx, current.id).await
}

/// The `tenant.suspended` event (`cause`: `admin`, `trial_ended` or
/// `security_violation`), before the suspension's audit row.
pub async fn announce_suspended(
    c: &impl GenericClient,
    t: &Tenant,
    cause: &str,
    reason: Option<String>,
) -> crate::store::Result<()> {
    outbox::emit(
        c,
        t.id,
        t.name.as_str(),
        &TenantSuspended {
            from: t.status,
            cause: cause.into(),
            reason,
        },
    )
    .await
}

/// The `tenant.activated` event of a trial that ends (`cause`: `admin` or
/// `trial_ended`), before its audit row.
pub async fn announce_activated(
    c: &impl GenericClient,
    t: &Tenant,
    cause: &str,
) -> crate::store::Result<()> {
    outbox::emit(
        c,
        t.id,
        t.name.as_str(),
        &TenantActivated {
            from: t.status,
            cause: cause.into(),
            plan: t.plan.clone(),
        },
    )
    .await
}

/// The state machine allows the move, but this action is not the way to make it.
/// A delete that is taking its final backup has turned the logins off and recorded
/// which; a suspend or resume in between would leave that record wrong.
async fn refuse_while_offboarding(c: &impl GenericClient, t: &Tenant, action: &str) -> Result<()> {
    if offboarding::exists(c, t.id).await? {
        return Err(not_from(
            t,
            action,
            "a delete of this tenant is in progress",
        ));
    }
    Ok(())
}

fn not_from(t: &Tenant, action: &str, hint: &str) -> Error {
    let mut p = Problem::new(
        Kind::Conflict,
        "invalid_state",
        format!(
            "cannot {action} tenant {}: it is {}; {hint}",
            t.name,
            t.status.as_str()
        ),
    );
    p.field = Some("status".into());
    Error::Rejected(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_and_printable() {
        assert_eq!(validate_reason(None).unwrap(), None);
        assert_eq!(
            validate_reason(Some(" payment overdue "))
                .unwrap()
                .as_deref(),
            Some("payment overdue")
        );
        for bad in ["", "   ", "a\u{0}b", "line\nbreak"] {
            assert!(validate_reason(Some(bad)).is_err(), "{bad:?}");
        }
        assert!(validate_reason(Some(&"x".repeat(MAX_REASON))).is_ok());
        assert!(validate_reason(Some(&"x".repeat(MAX_REASON + 1))).is_err());
    }
}
