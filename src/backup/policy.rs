//! Backup policies (seed 000 step 7, seed 001 section 6): a cron schedule, how long
//! backups are kept, whether they are encrypted; per tenant, with a default per plan
//! that a new tenant starts with. Schedules are standard 5-field cron, in UTC.

use chrono::{DateTime, Utc};
use croner::Cron;
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Error, Result, DEFAULT_RETENTION_DAYS};
use crate::audit;
use crate::platform::Platform;
use crate::problem::Problem;
pub use crate::store::backups::BackupPolicy;
use crate::store::tenants::Tenant;
use crate::store::{backups, plans};

pub const MAX_RETENTION_DAYS: i32 = 3650;

/// `PUT .../backup-policy`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    /// 5-field cron in UTC, e.g. `0 3 * * *` (03:00 every day); `@daily` works too.
    pub schedule: String,
    /// Days a scheduled backup is kept (1 to 3650) [default: 30]
    #[serde(default)]
    pub retention_days: Option<i32>,
    /// [default: true]
    #[serde(default)]
    pub encryption: Option<bool>,
}

/// Parses a schedule, or says what is wrong with it (field `field`).
pub fn parse_schedule(field: &str, schedule: &str) -> Result<Cron, Problem> {
    let bad = |why: String| {
        Problem::bad_field(
            field,
            format!("{field} must be a 5-field cron expression such as \"0 3 * * *\" (minute hour day month weekday, UTC): {why}"),
        )
    };
    if schedule.trim().is_empty() || schedule.len() > 100 {
        return Err(bad(format!("got {schedule:?}")));
    }
    Cron::new(schedule)
        .parse()
        .map_err(|e| bad(format!("{e} in {schedule:?}")))
}

/// The first run strictly after `after`.
pub fn next_run(cron: &Cron, after: DateTime<Utc>) -> Result<DateTime<Utc>, Problem> {
    cron.find_next_occurrence(&after, false)
        .map_err(|e| Problem::bad_field("schedule", format!("schedule never runs: {e}")))
}

fn validate(req: &PolicyRequest) -> Result<(String, i32, bool, DateTime<Utc>)> {
    let cron = parse_schedule("schedule", &req.schedule).map_err(Error::Rejected)?;
    let retention = req.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
    if !(1..=MAX_RETENTION_DAYS).contains(&retention) {
        return Err(Error::invalid(
            "retention_days",
            format!("retention_days must be between 1 and {MAX_RETENTION_DAYS}, got {retention}"),
        ));
    }
    let next = next_run(&cron, Utc::now()).map_err(Error::Rejected)?;
    Ok((
        req.schedule.trim().to_string(),
        retention,
        req.encryption.unwrap_or(true),
        next,
    ))
}

/// The tenant's policy row, if any.
pub async fn of_tenant(c: &impl GenericClient, tenant_id: Uuid) -> Result<Option<BackupPolicy>> {
    Ok(backups::policy_of_tenant(c, tenant_id).await?)
}

pub async fn of_plan(c: &impl GenericClient, plan: &str) -> Result<Option<BackupPolicy>> {
    Ok(backups::policy_of_plan(c, plan).await?)
}

/// Audits a change of a tenant's policy, or of a plan's (`tenant` None, the plan in
/// `details`); as the transaction's last change, since it takes the chain's lock.
async fn audit_change(
    c: &impl GenericClient,
    actor: &str,
    tenant: Option<&Tenant>,
    details: serde_json::Value,
) -> Result<()> {
    audit::record(
        c,
        &audit::Entry {
            actor,
            action: "backup_policy_updated",
            tenant_id: tenant.map(|t| t.id),
            tenant_name: tenant.map(|t| t.name.as_str()),
            operation_id: None,
            details,
        },
    )
    .await?;
    Ok(())
}

/// What a manual or final backup of this tenant follows: its policy, else the defaults.
pub async fn effective(c: &impl GenericClient, t: &Tenant) -> Result<BackupPolicy> {
    Ok(of_tenant(c, t.id).await?.unwrap_or_default())
}

/// At onboarding, in the create's transaction: the requested schedule (with the plan's
/// retention and encryption), else the plan's default policy, else none.
pub async fn apply_at_create(
    c: &impl GenericClient,
    tenant_id: Uuid,
    plan: &str,
    schedule: Option<&str>,
) -> Result<()> {
    let plan_default = of_plan(c, plan).await?;
    let chosen = match (schedule, plan_default) {
        (Some(s), d) => {
            let d = d.unwrap_or_default();
            Some((s.trim().to_string(), d.retention_days, d.encryption))
        }
        (None, Some(d)) => d.schedule.map(|s| (s, d.retention_days, d.encryption)),
        (None, None) => None,
    };
    let Some((schedule, retention, encryption)) = chosen else {
        return Ok(());
    };
    let cron = parse_schedule("backup_schedule", &schedule).map_err(Error::Rejected)?;
    let next = next_run(&cron, Utc::now()).map_err(Error::Rejected)?;
    Ok(backups::upsert_policy(c, tenant_id, &schedule, retention, encryption, next).await?)
}

/// `GET /api/v1/tenants/{name}/backup-policy`: its policy (schedule null if none).
pub async fn get(p: &Platform, key: &str) -> Result<BackupPolicy> {
    let t = super::tenant(p, key).await?;
    let c = p.pool.get().await?;
    effective(&c, &t).await
}

/// `PUT /api/v1/tenants/{name}/backup-policy`.
pub async fn put(
    p: &Platform,
    key: &str,
    req: &PolicyRequest,
    actor: &str,
) -> Result<BackupPolicy> {
    let (schedule, retention, encryption, next) = validate(req)?;
    let t = super::tenant(p, key).await?;
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    backups::upsert_policy(&tx, t.id, &schedule, retention, encryption, next).await?;
    audit_change(
        &tx,
        actor,
        Some(&t),
        serde_json::json!({"schedule": schedule, "retention_days": retention, "encryption": encryption}),
    )
    .await?;
    let policy = of_tenant(&tx, t.id).await?.expect("just written");
    tx.commit().await?;
    Ok(policy)
}

/// `DELETE /api/v1/tenants/{name}/backup-policy`: no more scheduled backups.
pub async fn remove(p: &Platform, key: &str, actor: &str) -> Result<BackupPolicy> {
    let t = super::tenant(p, key).await?;
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    backups::delete_policy(&tx, t.id).await?;
    audit_change(&tx, actor, Some(&t), serde_json::json!({"schedule": null})).await?;
    tx.commit().await?;
    Ok(BackupPolicy::default())
}

fn unknown_plan(plan: &str) -> Error {
    Error::not_found(
        "plan_not_found",
        format!("plan {plan:?} does not exist; see GET /api/v1/plans"),
    )
}

/// `GET /api/v1/plans/{name}/backup-policy`: what the plan's new tenants start with.
pub async fn get_plan(p: &Platform, plan: &str) -> Result<BackupPolicy> {
    let c = p.pool.get().await?;
    if plans::find(&c, plan).await?.is_none() {
        return Err(unknown_plan(plan));
    }
    Ok(of_plan(&c, plan).await?.unwrap_or_default())
}

/// `PUT /api/v1/plans/{name}/backup-policy` (existing tenants keep theirs).
pub async fn put_plan(
    p: &Platform,
    plan: &str,
    req: &PolicyRequest,
    actor: &str,
) -> Result<BackupPolicy> {
    let (schedule, retention, encryption, _) = validate(req)?;
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    if plans::find(&tx, plan).await?.is_none() {
        return Err(unknown_plan(plan));
    }
    backups::upsert_plan_policy(&tx, plan, &schedule, retention, encryption).await?;
    audit_change(
        &tx,
        actor,
        None,
        serde_json::json!({"plan": plan, "schedule": schedule, "retention_days": retention, "encryption": encryption}),
    )
    .await?;
    tx.commit().await?;
    Ok(BackupPolicy {
        schedule: Some(schedule),
        retention_days: retention,
        encryption,
        next_run_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn schedules_are_standard_cron_in_utc() {
        let cron = parse_schedule("schedule", "0 3 * * *").unwrap();
        let at = Utc.with_ymd_and_hms(2030, 1, 1, 3, 0, 0).unwrap();
        assert_eq!(
            next_run(&cron, at).unwrap(),
            Utc.with_ymd_and_hms(2030, 1, 2, 3, 0, 0).unwrap(),
            "strictly after"
        );
        // Weekday 1 is Monday, as in every crontab.
        let monday = parse_schedule("schedule", "30 2 * * 1").unwrap();
        let next = next_run(&monday, at).unwrap();
        assert_eq!(next.format("%a %H:%M").to_string(), "Mon 02:30");
        for bad in ["", "0 3 * *", "61 * * * *", "every day", "0 0 3 * * *"] {
            let e = parse_schedule("schedule", bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("schedule"), "{bad:?}");
        }
    }

    #[test]
    fn retention_is_bounded() {
        let req = |days| PolicyRequest {
            schedule: "@daily".into(),
            retention_days: Some(days),
            encryption: None,
        };
        assert!(validate(&req(30)).is_ok());
        for bad in [0, -1, 3651] {
            match validate(&req(bad)) {
                Err(Error::Rejected(p)) => assert_eq!(p.field.as_deref(), Some("retention_days")),
                other => panic!("{bad}: {:?}", other.map(|_| ())),
            }
        }
    }
}
