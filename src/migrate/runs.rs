//! The `migration_runs` table: a run's counts while it goes, its report at the end.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::plan::MigrationPlan;
use super::{MigrateRequest, Result};
use crate::ops;
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
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

const COLUMNS: &str = "id, state, actor, target_version, selector, jobs, canary, total, migrated, \
                       already_current, failed, not_attempted, report, error, started_at, finished_at";

fn run(r: &Row) -> MigrationRun {
    let report: Report = serde_json::from_value(r.get("report")).unwrap_or_default();
    MigrationRun {
        id: r.get("id"),
        state: r.get("state"),
        actor: r.get("actor"),
        target_version: r.get("target_version"),
        selector: r.get("selector"),
        jobs: r.get("jobs"),
        canary: r.get("canary"),
        total: r.get("total"),
        migrated: r.get("migrated"),
        already_current: r.get("already_current"),
        failed: r.get("failed"),
        not_attempted: r.get("not_attempted"),
        failures: report.failures,
        migrated_tenants: report.migrated,
        error: r.get("error"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
    }
}

/// Runs whose process stopped renewing their lease died: they are `interrupted`.
pub async fn expire_stale(c: &impl GenericClient) -> Result<u64> {
    Ok(c.execute(
        "UPDATE berqenas.migration_runs SET state = 'interrupted', finished_at = now(),
                error = 'the process running it stopped; run again to continue'
          WHERE state = 'running' AND lease_until < now()",
        &[],
    )
    .await?)
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
    let row = client
        .query_one(
            &format!(
                "INSERT INTO berqenas.migration_runs
                    (id, state, actor, target_version, selector, jobs, canary, total, already_current,
                     report, lease_until)
                 VALUES ($1, 'running', $2, $3, $4, $5, $6, $7, $8, $9,
                         now() + make_interval(secs => $10))
                 RETURNING {COLUMNS}"
            ),
            &[
                &Uuid::now_v7(),
                &actor,
                &plan.target_version,
                &selector,
                &(jobs as i32),
                &req.canary.map(|c| c as i32),
                &(plan.pending.len() as i32),
                &(plan.already_current as i32),
                &serde_json::to_value(&report).expect("plain data"),
                &ops::lease_secs(),
            ],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                Error::Rejected(Problem::new(
                    Kind::Conflict,
                    "migration_running",
                    "a template migration run is already in progress; see GET /api/v1/migrations/status",
                ))
            } else {
                e.into()
            }
        })?;
    Ok(run(&row))
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
    client
        .execute(
            "UPDATE berqenas.migration_runs
                SET migrated = $2, already_current = $3, failed = $4, not_attempted = $5, report = $6,
                    lease_until = now() + make_interval(secs => $7),
                    state = coalesce($8, state),
                    finished_at = CASE WHEN $8::text IS NULL THEN finished_at ELSE now() END
              WHERE id = $1 AND state = 'running'",
            &[
                &id,
                &(report.migrated.len() as i32),
                &report.already_current,
                &(report.failures.len() as i32),
                &report.not_attempted,
                &serde_json::to_value(report).expect("plain data"),
                &ops::lease_secs(),
                &finished,
            ],
        )
        .await?;
    Ok(())
}

/// The run itself broke (not a tenant's migration): record why.
pub async fn abort(p: &Platform, id: Uuid, error: &str) -> Result<()> {
    let client = p.pool.get().await?;
    client
        .execute(
            "UPDATE berqenas.migration_runs SET state = 'failed', error = $2, finished_at = now()
              WHERE id = $1 AND state = 'running'",
            &[&id, &error],
        )
        .await?;
    Ok(())
}

pub async fn get(p: &Platform, id: Uuid) -> Result<Option<MigrationRun>> {
    let client = p.pool.get().await?;
    expire_stale(&client).await?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM berqenas.migration_runs WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(run))
}
