//! The `migration_runs` table: a template migration run's counts while it goes, and its
//! report at the end. A run is an operation (`migrate.run`) with the same id: the
//! operation engine, not this table, tells a live run from a dead one. At most one run
//! is `running` (a unique index): starting a second is a [`super::Error::Conflict`].
//! Rows of older releases may say `interrupted`. The caller owns the transaction.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
        tenant_servers: report.servers,
        template_failures: report.template_failures,
        error: r.get("error"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
    }
}

/// A new run's row: `running` (its operation begins in the same transaction), or
/// `succeeded` at once when it has nothing to do.
pub struct NewRun<'a> {
    pub id: Uuid,
    pub state: &'a str,
    pub actor: &'a str,
    pub target_version: i32,
    pub selector: &'a serde_json::Value,
    pub jobs: i32,
    pub canary: Option<i32>,
    pub total: i32,
    pub already_current: i32,
    pub report: &'a Report,
}

pub async fn insert(c: &impl GenericClient, r: &NewRun<'_>) -> Result<MigrationRun> {
    let row = c
        .query_one(
            &format!(
                "INSERT INTO berqenas.migration_runs
                    (id, state, actor, target_version, selector, jobs, canary, total, already_current,
                     report, finished_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                         CASE WHEN $2 = 'running' THEN NULL ELSE now() END)
                 RETURNING {COLUMNS}"
            ),
            &[
                &r.id,
                &r.state,
                &r.actor,
                &r.target_version,
                r.selector,
                &r.jobs,
                &r.canary,
                &r.total,
                &r.already_current,
                &serde_json::to_value(r.report).expect("plain data"),
            ],
        )
        .await?;
    Ok(run(&row))
}

/// Writes the counts so far; with `finished`, the outcome too.
pub async fn write(
    c: &impl GenericClient,
    id: Uuid,
    report: &Report,
    finished: Option<&str>,
) -> Result<()> {
    c.execute(
        "UPDATE berqenas.migration_runs
            SET migrated = $2, already_current = $3, failed = $4, not_attempted = $5, report = $6,
                state = coalesce($7, state),
                finished_at = CASE WHEN $7::text IS NULL THEN finished_at ELSE now() END
          WHERE id = $1 AND state = 'running'",
        &[
            &id,
            &(report.migrated.len() as i32),
            &report.already_current,
            &(report.failures.len() as i32),
            &report.not_attempted,
            &serde_json::to_value(report).expect("plain data"),
            &finished,
        ],
    )
    .await?;
    Ok(())
}

/// The report as last written (`None`: no such run).
pub async fn report(c: &impl GenericClient, id: Uuid) -> Result<Option<Report>> {
    Ok(c.query_opt(
        "SELECT report FROM berqenas.migration_runs WHERE id = $1",
        &[&id],
    )
    .await?
    .map(|r| serde_json::from_value(r.get(0)).unwrap_or_default()))
}

pub async fn find(c: &impl GenericClient, id: Uuid) -> Result<Option<MigrationRun>> {
    let row = c
        .query_opt(
            &format!("SELECT {COLUMNS} FROM berqenas.migration_runs WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(run))
}

/// The run in progress, if any.
pub async fn running(c: &impl GenericClient) -> Result<Option<Uuid>> {
    Ok(c.query_opt(
        "SELECT id FROM berqenas.migration_runs WHERE state = 'running'",
        &[],
    )
    .await?
    .map(|r| r.get(0)))
}

/// A run of the template over tenants; poll it until `state` is not `running`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MigrationRun {
    pub id: Uuid,
    /// `running`, `succeeded`, or `failed` (a tenant failed, or the canary stopped the
    /// run). A run whose process died is finished when the server starts again.
    /// (`interrupted`: a run of a release before the operation engine ran them.)
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
    /// The server of each tenant in `migrated_tenants` and `failures` (name -> server).
    pub tenant_servers: std::collections::BTreeMap<String, String>,
    /// Servers whose template database could not be brought to the target version.
    pub template_failures: Vec<ServerFailure>,
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
    /// The server the tenant is on (absent in runs of releases before servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// A server whose template database the run could not bring to its target (its
/// database-mode creates would clone an older template): the run fails, and running
/// it again tries again.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerFailure {
    pub server: String,
    pub error: String,
}

/// Counts and lists as they stand; written while the run goes and at its end.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Report {
    pub migrated: Vec<String>,
    pub already_current: i32,
    pub failures: Vec<TenantFailure>,
    pub not_attempted: i32,
    /// The canary tenants all migrated: the rest may go (a run finished after a
    /// restart does not run its canary again).
    #[serde(default)]
    pub canary_passed: bool,
    /// The server of each tenant migrated or failed (tenant name -> server name).
    #[serde(default)]
    pub servers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub template_failures: Vec<ServerFailure>,
}
