//! Tenant template migrations across tenants: the plan (one query), one tenant's unit
//! of work (its DDL and its schema's version marker in one transaction of a throw-away
//! session, then the registry), the shared pool's unit, and the run's record.
//!
//! Progress lives with each tenant: a tenant's schema carries the version its objects
//! are at (a marker committed with its DDL), and the registry follows in the control
//! transaction that holds the tenant. A tenant is at its old version or its new one;
//! a unit run again reads the marker and only moves the registry. Running a run (the
//! units, `jobs` at a time, the canary, stopping between tenants, finishing one a
//! crash left) is the `migrate.run` operation's (`workflows::migrate`).

mod plan;
pub(crate) mod runs;
pub mod units;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use plan::{plan, plan_for, MigrationPlan, PendingTenant, Place, Selector, LIVE};
pub use runs::{MigrationRun, Report, ServerFailure, TenantFailure};
pub use units::{Outcome, Unit};

use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::store::tenants::Isolation;
use crate::tenant::service::Error;

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
    pub fn validate(&self) -> Result<(), Problem> {
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
    Run(Box<MigrationRun>),
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
/// mode on `default`, in its database's marker (`c` is the control database). A
/// tenant on another server gets its marker there ([`mark_restored`], by the caller:
/// `COMMENT ON DATABASE` of a database this cluster lacks is only a warning, and one
/// of the same name here is not the tenant's). Shared tenants keep the pool's
/// version: their rows went into the pool's current tables.
pub async fn set_restored_version(
    c: &impl deadpool_postgres::GenericClient,
    t: &crate::store::tenants::Tenant,
    version: i32,
) -> crate::store::Result<()> {
    if t.isolation == Isolation::Shared {
        return Ok(());
    }
    crate::store::tenants::set_template_version(c, t.id, version).await?;
    if t.server != crate::store::servers::DEFAULT {
        return Ok(());
    }
    mark_restored(c, t, version).await
}

/// [`set_restored_version`]'s mark on a database-mode tenant's database, on a
/// connection to its server (nothing in the other modes).
pub async fn mark_restored(
    c: &impl deadpool_postgres::GenericClient,
    t: &crate::store::tenants::Tenant,
    version: i32,
) -> crate::store::Result<()> {
    if t.isolation == Isolation::Database {
        c.batch_execute(&units::marker_sql(&t.database, version))
            .await?;
    }
    Ok(())
}

/// A quarter of the connections the server has to spare, within the control pool.
pub async fn default_jobs(p: &Platform) -> Result<u32> {
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
