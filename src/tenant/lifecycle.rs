//! Time-driven state changes the worker makes: an expired trial becomes `active` on a
//! paid plan, or `suspended` (logins disabled, sessions ended) on the free plan.

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::service::Error;
use super::{access, state, suspension, Status, Tenant};
use crate::audit;
use crate::platform::Platform;
use crate::store::tenants;

type Result<T, E = Error> = std::result::Result<T, E>;

/// The plan that is not paid for: a trial that ends on it suspends the tenant.
pub const FREE_PLAN: &str = "free";

/// The suspension reason the worker records when a free trial ends.
pub const TRIAL_ENDED: &str = "trial ended on the free plan";

/// Ends a due trial inside the caller's transaction (which holds the tenant's name
/// and row): `active` on a paid plan, else `suspended` like an admin's suspension (so
/// `resume` restores exactly what it took). Returns the tenant and, when suspended, the
/// logins whose sessions the caller ends once this commits.
pub async fn end_trial_locked(
    p: &Platform,
    tx: &Transaction<'_>,
    tenant: &Tenant,
    op_id: Uuid,
) -> Result<(Tenant, Vec<String>)> {
    let to = if tenant.plan == FREE_PLAN {
        Status::Suspended
    } else {
        Status::Active
    };
    state::check(&tenant.name, tenant.status, to, "end the trial of").map_err(Error::Rejected)?;
    let mut logins = Vec::new();
    let (outcome, action, details) = if to == Status::Suspended {
        let cut = suspension::cut(tx, tenant, p.caps.superuser).await?;
        suspension::mark_suspended(tx, tenant.id, Some(TRIAL_ENDED), &cut).await?;
        suspension::announce_suspended(tx, tenant, "trial_ended", Some(TRIAL_ENDED.into())).await?;
        let details = serde_json::json!({"reason": TRIAL_ENDED, "from": "trial", "plan": tenant.plan,
            "disabled_roles": cut.roles, "revoked_memberships": cut.memberships});
        logins = access::login_roles(tx, tenant)
            .await?
            .iter()
            .map(|r| r.as_str().to_string())
            .collect();
        ("suspended", "tenant_suspended", details)
    } else {
        tenants::set_status(tx, tenant.id, Status::Active).await?;
        suspension::announce_activated(tx, tenant, "trial_ended").await?;
        let details =
            serde_json::json!({"reason": "trial ended", "from": "trial", "plan": tenant.plan});
        ("active", "tenant_activated", details)
    };
    audit::record(
        tx,
        &audit::Entry {
            actor: "worker",
            action,
            tenant_id: Some(tenant.id),
            tenant_name: Some(&tenant.name),
            operation_id: Some(op_id),
            details,
        },
    )
    .await?;
    tracing::info!(tenant.name = %tenant.name, outcome, "trial ended");
    Ok((tenants::get(tx, tenant.id).await?, logins))
}
