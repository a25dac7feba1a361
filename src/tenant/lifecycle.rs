//! Time-driven state changes the worker makes: an expired trial becomes `active` on a
//! paid plan, or `suspended` (logins disabled, sessions ended) on the free plan.

use uuid::Uuid;

use super::service::Error;
use super::{access, state, suspension, Status};
use crate::audit;
use crate::platform::Platform;
use crate::store::tenants;

type Result<T, E = Error> = std::result::Result<T, E>;

/// The plan that is not paid for: a trial that ends on it suspends the tenant.
pub const FREE_PLAN: &str = "free";

/// The suspension reason the worker records when a free trial ends.
pub const TRIAL_ENDED: &str = "trial ended on the free plan";

/// Ends every trial that is due; returns how many. Rows are claimed with SKIP LOCKED,
/// so several servers may run it at once.
pub async fn expire_trials(p: &Platform) -> Result<usize> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let due: Vec<Uuid> = tenants::claim_ended_trials(&tx, 100).await?;
    let mut disabled = Vec::new();
    for id in &due {
        let tenant = tenants::get(&tx, *id).await?;
        let to = if tenant.plan == FREE_PLAN {
            Status::Suspended
        } else {
            Status::Active
        };
        state::check(&tenant.name, tenant.status, to, "end the trial of")
            .map_err(Error::Rejected)?;
        let (outcome, action, details) = if to == Status::Suspended {
            // Recorded like an admin's suspension, so `resume` restores exactly these.
            let cut = suspension::cut(&tx, &tenant, p.caps.superuser).await?;
            suspension::mark_suspended(&tx, tenant.id, Some(TRIAL_ENDED), &cut).await?;
            let details = serde_json::json!({"reason": TRIAL_ENDED, "from": "trial", "plan": tenant.plan,
                "disabled_roles": cut.roles, "revoked_memberships": cut.memberships});
            disabled.extend(access::login_roles(&tx, &tenant).await?);
            ("suspended", "tenant_suspended", details)
        } else {
            tenants::set_status(&tx, tenant.id, Status::Active).await?;
            let details =
                serde_json::json!({"reason": "trial ended", "from": "trial", "plan": tenant.plan});
            ("active", "tenant_activated", details)
        };
        audit::record(
            &tx,
            &audit::Entry {
                actor: "worker",
                action,
                tenant_id: Some(tenant.id),
                tenant_name: Some(&tenant.name),
                operation_id: None,
                details,
            },
        )
        .await?;
        tracing::info!(tenant.name = %tenant.name, outcome, "trial ended");
    }
    tx.commit().await?;
    access::end_sessions(&client, &disabled).await?;
    Ok(due.len())
}
