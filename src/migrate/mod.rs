//! Tenant template migrations across tenants: plan (one query), run (bounded
//! parallelism, one transaction per tenant as its owner role), report.
//!
//! Progress lives with each tenant: `tenants.template_version` moves in the same
//! transaction as the tenant's DDL (schema and shared modes), or right after a marker
//! on the tenant's database commits with its DDL (database mode). So a run that dies
//! leaves every tenant at its old or its new version, and running again continues.

mod plan;
pub(crate) mod runs;
mod units;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use plan::{MigrationPlan, PendingTenant};
pub use runs::{MigrationRun, TenantFailure};

use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::tenant::service::Error;
use crate::tenant::Isolation;

type Result<T, E = Error> = std::result::Result<T, E>;

/// Which tenants to migrate and how. Every field is optional: by default every live
/// tenant, with as many jobs as the server has connections to spare.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// Only this tenant (name or id).
    pub tenant: Option<String>,
    /// Only tenants on this plan.
    pub plan: Option<String>,
    /// Only tenants in this isolation mode.
    pub isolation: Option<Isolation>,
    /// Tenants migrated at once (1 to 64).
    pub jobs: Option<u32>,
    /// Return the plan; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Migrate this many tenants first and stop if any of them fails.
    pub canary: Option<u32>,
}

pub const MAX_JOBS: u32 = 64;

impl MigrateRequest {
    fn validate(&self) -> Result<(), Problem> {
        if let Some(j) = self.jobs {
            if !(1..=MAX_JOBS).contains(&j) {
                return Err(Problem::bad_field(
                    "jobs",
                    format!("jobs must be between 1 and {MAX_JOBS}, not {j}"),
                ));
            }
        }
        if self.canary == Some(0) {
            return Err(Problem::bad_field("canary", "canary must be at least 1"));
        }
        Ok(())
    }
}

/// What `POST /api/v1/migrations` answers: a plan for a dry run, else the run started.
pub enum Started {
    Plan(MigrationPlan),
    Run(MigrationRun),
}

/// A validated request: its plan, or a begun run ready to execute.
enum Prepared {
    DryRun(MigrationPlan),
    Run(Box<Begun>),
}

/// A run recorded as `running`, with what it will do.
struct Begun {
    run: MigrationRun,
    plan: MigrationPlan,
    jobs: u32,
    canary: Option<u32>,
}

impl Begun {
    /// Executes the run; a failure of the run itself (not of a tenant) is recorded.
    async fn execute(self, p: &Arc<Platform>, actor: &str) -> Result<Uuid> {
        let id = self.run.id;
        let result = units::execute(p, id, self.plan, self.jobs, self.canary, actor).await;
        if let Err(e) = &result {
            tracing::error!(run = %id, error = ?e, "template migration run failed");
            let _ = runs::abort(p, id, &e.to_string()).await;
        }
        result.map(|()| id)
    }
}

async fn prepare(p: &Platform, req: &MigrateRequest, actor: &str) -> Result<Prepared> {
    req.validate().map_err(Error::Rejected)?;
    let plan = plan::plan(p, req).await?;
    if req.dry_run {
        return Ok(Prepared::DryRun(plan));
    }
    let jobs = match req.jobs {
        Some(j) => j,
        None => default_jobs(p).await?,
    };
    let run = runs::begin(p, req, &plan, jobs, actor).await?;
    Ok(Prepared::Run(Box::new(Begun {
        run,
        plan,
        jobs,
        canary: req.canary,
    })))
}

/// Plans, and unless it is a dry run, starts a run in the background and returns it.
pub async fn start(p: Arc<Platform>, req: MigrateRequest, actor: &str) -> Result<Started> {
    match prepare(&p, &req, actor).await? {
        Prepared::DryRun(plan) => Ok(Started::Plan(plan)),
        Prepared::Run(begun) => {
            let (run, actor) = (begun.run.clone(), actor.to_string());
            tokio::spawn(async move { begun.execute(&p, &actor).await });
            Ok(Started::Run(run))
        }
    }
}

/// Runs to the end in the caller's task and returns the finished run (or the plan of
/// a dry run): for tools and benchmarks that embed berqenas.
pub async fn run(p: Arc<Platform>, req: MigrateRequest, actor: &str) -> Result<Started> {
    match prepare(&p, &req, actor).await? {
        Prepared::DryRun(plan) => Ok(Started::Plan(plan)),
        Prepared::Run(begun) => {
            let id = begun.execute(&p, actor).await?;
            Ok(Started::Run(get(&p, id).await?))
        }
    }
}

/// A run by id.
pub async fn get(p: &Platform, id: Uuid) -> Result<MigrationRun> {
    runs::get(p, id).await?.ok_or_else(|| {
        Error::Rejected(Problem::new(
            Kind::NotFound,
            "not_found",
            format!("no migration run {id}"),
        ))
    })
}

/// Tenants per template version, and what the latest is.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MigrationStatus {
    pub latest_version: i32,
    pub template_checksum: String,
    /// Live tenants (trial, active, suspended, deleted) below the latest version.
    pub pending: i64,
    pub tenants_by_version: Vec<VersionCount>,
    /// The run in progress, if any.
    pub running: Option<Uuid>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionCount {
    pub version: i32,
    pub tenants: i64,
}

pub async fn status(p: &Platform) -> Result<MigrationStatus> {
    let client = p.pool.get().await?;
    runs::expire_stale(&client).await?;
    let latest = p.template.latest_version();
    let tenants_by_version: Vec<VersionCount> =
        crate::store::tenants::count_by_version(&client, plan::LIVE)
            .await?
            .into_iter()
            .map(|(version, tenants)| VersionCount { version, tenants })
            .collect();
    let running = crate::store::migration_runs::running(&client).await?;
    Ok(MigrationStatus {
        latest_version: latest,
        template_checksum: p.template.checksum(),
        pending: tenants_by_version
            .iter()
            .filter(|v| v.version < latest)
            .map(|v| v.tenants)
            .sum(),
        tenants_by_version,
        running,
    })
}

/// After a backup replaced a tenant's objects: the tenant is at the backup's template
/// version again (so the next run migrates it), in the registry and, in database
/// mode, in its database's marker. Shared tenants keep the pool's version: their rows
/// went into the pool's current tables.
pub async fn set_restored_version(
    c: &impl deadpool_postgres::GenericClient,
    t: &crate::tenant::Tenant,
    version: i32,
) -> crate::store::Result<()> {
    if t.isolation == Isolation::Shared {
        return Ok(());
    }
    crate::store::tenants::set_template_version(c, t.id, version).await?;
    if t.isolation == Isolation::Database {
        c.batch_execute(&units::marker_sql(&t.database, version))
            .await?;
    }
    Ok(())
}

/// A quarter of the connections the server has to spare, within the control pool.
async fn default_jobs(p: &Platform) -> Result<u32> {
    let client = p.pool.get().await?;
    let spare: i64 = client
        .query_one(
            "SELECT current_setting('max_connections')::bigint
                    - current_setting('superuser_reserved_connections')::bigint
                    - (SELECT count(*) FROM pg_stat_activity)",
            &[],
        )
        .await?
        .get(0);
    let pool_room = p.pool.status().max_size.saturating_sub(2).max(1) as i64;
    Ok((spare / 4).clamp(1, pool_room.min(8)) as u32)
}
