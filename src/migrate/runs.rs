//! A migration run's record: its counts while it goes, its report at the end (rows of
//! [`crate::store::migration_runs`]).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::plan::MigrationPlan;
use super::{MigrateRequest, Result};
use crate::ops;
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::store::migration_runs as store;
use crate::tenant::service::Error;

/// A run of the template over tenants; poll it until `state` is not `running`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MigrationRun {
    pub id: Uuid,
    /// `running`, `succeeded`, `failed` (a tenant failed, or the canary stopped the
    /// run), or `interrupted` (the process running it died; run again to continue).
    pub state: String,
    pub actor: String,
    pub target_version: i32,
    pub selector: serde_json::Value,
    pub jobs: i32,
    pub canary: Option<i32>,
    /// Tenants below the target when the run started.
    pub total: i32,
    pub migrated: i32,
    pub already_current: i32,
    pub failed: i32,
    /// Left alone because the canary failed.
    pub not_attempted: i32,
    pub failures: Vec<TenantFailure>,
    pub migrated_tenants: Vec<String>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantFailure {
    pub tenant: String,
    pub from_version: i32,
    pub error: String,
    /// PostgreSQL's SQLSTATE, when the database refused the migration.
    pub sqlstate: Option<String>,
}

/// Counts and lists as they stand; written while the run goes and at its end.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Report {
    pub migrated: Vec<String>,
    pub already_current: i32,
    pub failures: Vec<TenantFailure>,
    pub not_attempted: i32,
}

/// Runs whose process stopped renewing their lease died: they are `interrupted`.
pub async fn expire_stale(c: &impl GenericClient) -> Result<u64> {
    Ok(store::expire_stale(c).await?)
}

pub async fn begin(
    p: &Platform,
    req: &MigrateRequest,
    plan: &MigrationPlan,
    jobs: u32,
    actor: &str,
) -> Result<MigrationRun> {
    let client = p.pool.get().await?;
    expire_stale(&client).await?;
    let selector = serde_json::json!({
        "tenant": req.tenant, "plan": req.plan, "isolation": req.isolation,
    });
    let report = Report {
        already_current: plan.already_current as i32,
        ..Report::default()
    };
    store::insert(
        &client,
        &store::NewRun {
            actor,
            target_version: plan.target_version,
            selector: &selector,
            jobs: jobs as i32,
            canary: req.canary.map(|c| c as i32),
            total: plan.pending.len() as i32,
            already_current: plan.already_current as i32,
            report: &report,
            lease_secs: ops::lease_secs(),
        },
    )
    .await
    .map_err(|e| match e {
        crate::store::Error::Conflict { .. } => Error::Rejected(Problem::new(
            Kind::Conflict,
            "migration_running",
            "a template migration run is already in progress; see GET /api/v1/migrations/status",
        )),
        other => other.into(),
    })
}

/// Writes the counts so far and renews the lease.
pub async fn progress(p: &Platform, id: Uuid, report: &Report) -> Result<()> {
    write(p, id, report, None).await
}

/// The last write: the counts and the outcome, in one statement.
pub async fn finish(p: &Platform, id: Uuid, report: &Report) -> Result<()> {
    let state = if report.failures.is_empty() && report.not_attempted == 0 {
        "succeeded"
    } else {
        "failed"
    };
    write(p, id, report, Some(state)).await
}

async fn write(p: &Platform, id: Uuid, report: &Report, finished: Option<&str>) -> Result<()> {
    let client = p.pool.get().await?;
    Ok(store::write(&client, id, report, ops::lease_secs(), finished).await?)
}

/// The run itself broke (not a tenant's migration): record why.
pub async fn abort(p: &Platform, id: Uuid, error: &str) -> Result<()> {
    let client = p.pool.get().await?;
    Ok(store::abort(&client, id, error).await?)
}

pub async fn get(p: &Platform, id: Uuid) -> Result<Option<MigrationRun>> {
    let client = p.pool.get().await?;
    expire_stale(&client).await?;
    Ok(store::find(&client, id).await?)
}
