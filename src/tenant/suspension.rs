//! Suspend, resume, activate. Suspending takes LOGIN from exactly the tenant's login
//! roles that had it and records them, with the time and the reason; resuming gives
//! LOGIN back to exactly those. API keys stop working through the tenant's status (the
//! key extractor admits only `active` and `trial` tenants). Each change, its status and
//! its audit row commit together; sessions are ended after the commit.

use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::service::Error;
use super::{access, state, store, Status, Tenant};
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::{audit, ops};

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

/// Records a suspension on the tenant's row: status, time, reason, and the roles that
/// lost LOGIN. The caller has disabled them ([`access::disable`]) in this transaction.
pub async fn mark_suspended(
    c: &impl GenericClient,
    id: Uuid,
    reason: Option<&str>,
    roles: &[String],
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "UPDATE berqenas.tenants
            SET status = 'suspended', suspended_at = now(), suspension_reason = $2,
                suspended_roles = $3, updated_at = now()
          WHERE id = $1",
        &[&id, &reason, &roles],
    )
    .await?;
    Ok(())
}

fn transition(t: &Tenant, to: Status, action: &str) -> Result<()> {
    state::check(&t.name, t.status, to, action).map_err(Error::Rejected)
}

async fn reread(c: &impl GenericClient, id: Uuid) -> Result<Tenant> {
    Ok(store::find(c, &id.to_string())
        .await?
        .expect("the row is locked by this transaction"))
}

/// `active` or `trial` -> `suspended`.
pub async fn suspend(p: &Platform, key: &str, req: &SuspendTenant, actor: &str) -> Result<Tenant> {
    let reason = validate_reason(req.reason.as_deref())?;
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let current = store::find_for_update(&tx, key)
        .await?
        .ok_or_else(|| Error::not_found(key))?;
    transition(&current, Status::Suspended, "suspend")?;
    let disabled = access::disable(&tx, &current).await?;
    mark_suspended(&tx, current.id, reason.as_deref(), &disabled).await?;
    let op_id = Uuid::now_v7();
    ops::record_done(&tx, op_id, "tenant.suspend", current.id, &current.name).await?;
    audit::record(
        &tx,
        &audit::Entry {
            actor,
            action: "tenant_suspended",
            tenant_id: Some(current.id),
            tenant_name: Some(&current.name),
            operation_id: Some(op_id),
            details: serde_json::json!({
                "reason": reason, "from": current.status.as_str(), "disabled_roles": disabled,
            }),
        },
    )
    .await?;
    let tenant = reread(&tx, current.id).await?;
    // Every login role, not only those just disabled: one that was already NOLOGIN
    // may still hold a session.
    let logins = store::login_roles(&tx, &tenant).await?;
    tx.commit().await?;
    // After the commit: a session ended before it could log in again while NOLOGIN
    // was still uncommitted.
    let ended = access::end_sessions(&client, &logins).await?;
    tracing::info!(tenant.name = %tenant.name, sessions = ended, "tenant suspended");
    Ok(tenant)
}

/// `suspended` -> `active`, with LOGIN back on exactly the roles the suspension took it from.
pub async fn resume(p: &Platform, key: &str, actor: &str) -> Result<Tenant> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let current = store::find_for_update(&tx, key)
        .await?
        .ok_or_else(|| Error::not_found(key))?;
    transition(&current, Status::Active, "resume")?;
    if current.status != Status::Suspended {
        return Err(not_from(
            &current,
            "resume",
            "only a suspended tenant can be resumed",
        ));
    }
    let row = tx
        .query_one(
            "SELECT suspended_roles FROM berqenas.tenants WHERE id = $1",
            &[&current.id],
        )
        .await?;
    // A suspension recorded before the roles were (no list): every login role.
    let roles: Vec<String> = match row.get::<_, Option<Vec<String>>>(0) {
        Some(r) => r,
        None => store::login_roles(&tx, &current).await?,
    };
    access::enable(&tx, &roles).await?;
    tx.execute(
        "UPDATE berqenas.tenants
            SET status = 'active', suspended_at = NULL, suspension_reason = NULL,
                suspended_roles = NULL, updated_at = now()
          WHERE id = $1",
        &[&current.id],
    )
    .await?;
    let op_id = Uuid::now_v7();
    ops::record_done(&tx, op_id, "tenant.resume", current.id, &current.name).await?;
    audit::record(
        &tx,
        &audit::Entry {
            actor,
            action: "tenant_resumed",
            tenant_id: Some(current.id),
            tenant_name: Some(&current.name),
            operation_id: Some(op_id),
            details: serde_json::json!({
                "enabled_roles": roles,
                "suspended_at": current.suspended_at,
                "suspension_reason": current.suspension_reason,
            }),
        },
    )
    .await?;
    let tenant = reread(&tx, current.id).await?;
    tx.commit().await?;
    tracing::info!(tenant.name = %tenant.name, "tenant resumed");
    Ok(tenant)
}

/// `trial` -> `active`: the trial ends early, paid for.
pub async fn activate(p: &Platform, key: &str, actor: &str) -> Result<Tenant> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let current = store::find_for_update(&tx, key)
        .await?
        .ok_or_else(|| Error::not_found(key))?;
    transition(&current, Status::Active, "activate")?;
    if current.status != Status::Trial {
        let hint = if current.status == Status::Suspended {
            "activate ends a trial; a suspended tenant is resumed"
        } else {
            "activate ends a trial"
        };
        return Err(not_from(&current, "activate", hint));
    }
    store::set_status(&tx, current.id, Status::Active).await?;
    let op_id = Uuid::now_v7();
    ops::record_done(&tx, op_id, "tenant.activate", current.id, &current.name).await?;
    audit::record(
        &tx,
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
    let tenant = reread(&tx, current.id).await?;
    tx.commit().await?;
    Ok(tenant)
}

/// The state machine allows the move, but this action is not the way to make it.
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
