//! A migration run's record: its counts while it goes, its report at the end (rows of
//! [`crate::store::migration_runs`]). The run itself is an operation (`migrate.run`)
//! whose id is the record's: the record says what happened, the operation engine sees
//! that it finishes, also after a crash.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::plan::MigrationPlan;
use super::{MigrateRequest, Result};
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::store::migration_runs as store;
pub use crate::store::migration_runs::{MigrationRun, Report, ServerFailure, TenantFailure};
use crate::tenant::service::Error;

/// The selection as the client asked for it (a tenant by the name or id it gave).
fn selector_json(req: &MigrateRequest) -> serde_json::Value {
    serde_json::json!({"tenant": req.tenant, "plan": req.plan, "isolation": req.isolation})
}

fn already_running() -> Error {
    Error::Rejected(Problem::new(
        Kind::Conflict,
        "migration_running",
        "a template migration run is already in progress; see GET /api/v1/migrations/status",
    ))
}

fn running_conflict(e: crate::store::Error) -> Error {
    match e {
        crate::store::Error::Conflict { .. } => already_running(),
        other => other.into(),
    }
}

/// The record of a run with tenants to migrate, `running`, in the caller's
/// transaction (the one that begins its operation, `id`). A run already running is a
/// 409.
pub async fn begin(
    tx: &impl GenericClient,
    id: Uuid,
    req: &MigrateRequest,
    plan: &MigrationPlan,
    jobs: u32,
    actor: &str,
) -> Result<MigrationRun> {
    let report = Report {
        already_current: plan.already_current as i32,
        ..Report::default()
    };
    store::insert(
        tx,
        &store::NewRun {
            id,
            state: "running",
            actor,
            target_version: plan.target_version,
            selector: &selector_json(req),
            jobs: jobs as i32,
            canary: req.canary.map(|c| c as i32),
            total: plan.pending.len() as i32,
            already_current: plan.already_current as i32,
            report: &report,
        },
    )
    .await
    .map_err(running_conflict)
}

/// A run with nothing to migrate: recorded as succeeded at once, in one statement (no
/// operation: there is nothing a crash could leave half done). A run already running
/// is a 409 all the same.
pub async fn record_noop(
    p: &Platform,
    req: &MigrateRequest,
    plan: &MigrationPlan,
    jobs: u32,
    actor: &str,
) -> Result<MigrationRun> {
    let report = Report {
        already_current: plan.already_current as i32,
        ..Report::default()
    };
    let c = p.pool.get().await?;
    if store::running(&c).await?.is_some() {
        return Err(already_running());
    }
    store::insert(
        &c,
        &store::NewRun {
            id: Uuid::now_v7(),
            state: "succeeded",
            actor,
            target_version: plan.target_version,
            selector: &selector_json(req),
            jobs: jobs as i32,
            canary: req.canary.map(|c| c as i32),
            total: 0,
            already_current: plan.already_current as i32,
            report: &report,
        },
    )
    .await
    .map_err(running_conflict)
}

/// Where the audit trail stands before a run starts: the run's `tenant_migrated` rows
/// all come after it.
pub async fn audit_mark(c: &impl GenericClient) -> Result<i64> {
    Ok(crate::store::audit::last_id(c).await?)
}

/// The run's report as last written, with every tenant the audit trail says it
/// migrated (rows after `audit_from`).
pub async fn load(c: &impl GenericClient, id: Uuid, audit_from: i64) -> Result<Report> {
    let mut report = store::report(c, id).await?.unwrap_or_default();
    let audited = crate::store::audit::tenants_of(c, "tenant_migrated", id, audit_from).await?;
    report.merge_migrated(audited);
    // Tenants the audit trail added (a crash before the progress write) get their
    // server from the registry.
    let unknown: Vec<&str> = report
        .migrated
        .iter()
        .filter(|n| !report.servers.contains_key(*n))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let rows = c
            .query(
                "SELECT name::text, server FROM berqenas.tenants WHERE name = ANY($1)",
                &[&unknown],
            )
            .await
            .map_err(crate::store::Error::from)?;
        for r in rows {
            report.servers.insert(r.get(0), r.get(1));
        }
    }
    Ok(report)
}

/// Writes the counts so far.
pub async fn progress(c: &impl GenericClient, id: Uuid, report: &Report) -> Result<()> {
    Ok(store::write(c, id, report, None).await?)
}

/// The last write: the counts and the outcome, and a `migration.failed` event for
/// each tenant the run could not migrate (in the caller's transaction: the run
/// finishes once, so each failure is announced once).
pub async fn finish(c: &impl GenericClient, id: Uuid, report: &Report, target: i32) -> Result<()> {
    for f in &report.failures {
        let Some(t) = crate::store::tenants::find(c, &f.tenant).await? else {
            continue;
        };
        crate::store::outbox::emit(
            c,
            t.id,
            t.name.as_str(),
            &crate::store::outbox::data::MigrationFailed {
                run_id: id,
                from_version: f.from_version,
                to_version: target,
                error: crate::store::outbox::data::redact(&f.error),
                sqlstate: f.sqlstate.clone(),
            },
        )
        .await?;
    }
    Ok(store::write(c, id, report, Some(report.state())).await?)
}

pub async fn get(p: &Platform, id: Uuid) -> Result<Option<MigrationRun>> {
    let client = p.pool.get().await?;
    Ok(store::find(&client, id).await?)
}

impl Report {
    /// Counts what a unit did on `server`.
    pub fn record(&mut self, outcome: super::units::Outcome, server: &str) {
        use super::units::Outcome;
        let named: Vec<&String> = match &outcome {
            Outcome::Migrated(names) => names.iter().collect(),
            Outcome::Failed(f) => f.iter().map(|f| &f.tenant).collect(),
            Outcome::Current(_) => Vec::new(),
        };
        for name in named {
            self.servers.insert(name.clone(), server.to_string());
        }
        match outcome {
            Outcome::Migrated(names) => self.migrated.extend(names),
            Outcome::Current(names) => self.already_current += names.len() as i32,
            Outcome::Failed(f) => self.failures.extend(f),
        }
    }

    /// Tenants this run has dealt with (migrated or failed).
    pub fn done(&self) -> usize {
        self.migrated.len() + self.failures.len()
    }

    /// Whether this tenant failed in this run already (it is not tried again).
    pub fn failed(&self, tenant: &str) -> bool {
        self.failures.iter().any(|f| f.tenant == tenant)
    }

    /// The run's outcome once it is over.
    pub fn state(&self) -> &'static str {
        if self.failures.is_empty() && self.not_attempted == 0 && self.template_failures.is_empty()
        {
            "succeeded"
        } else {
            "failed"
        }
    }

    /// Adds the tenants the audit trail says this run migrated and the report does not
    /// list yet (progress written less often than tenants commit, and a crash between).
    fn merge_migrated(&mut self, audited: Vec<String>) {
        let known: std::collections::HashSet<String> = self.migrated.iter().cloned().collect();
        self.migrated
            .extend(audited.into_iter().filter(|n| !known.contains(n)));
    }
}
