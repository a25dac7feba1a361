//! `migrate.run`: a template migration run over tenants (`berqenas migrate`,
//! `POST /api/v1/migrations`) as an operation. Forward only: a run a crash or a stop
//! interrupted is finished by the next start (its tenants already migrated stay
//! migrated; the others are migrated then), never undone.
//!
//! The operation's id is the run record's (`migration_runs`), inserted in the
//! transaction that begins the operation. Its one step migrates the planned tenants in
//! per-tenant units, `jobs` at a time, the canary first, then the shared pool. Each
//! unit is idempotent (the migrate domain's: the tenant schema's marker says what
//! committed), runs under the tenant's name lock, and on a session of a throw-away
//! role whose name starts with the run's prefix, declared before any is made: the
//! engine drops whatever a crash left of them. Between tenants the step stops when the
//! server is stopping; the run stays `running` and the next start finishes it. Each
//! unit runs on the tenant's own server, and the step first brings every server's
//! template database to the run's template (`migrate_servers`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::migrate_workers::{fresh_tainted, lend_for, retire, session_error, Workers};
use super::{failed, migrate_servers, step_error, Error, Runtime};
use crate::access::{Lending, Reach, TempRole, Worker};
use crate::migrate::{self, runs, MigrateRequest, Outcome, PendingTenant, Report, Selector};
use crate::migrate::{Started, Unit};
use crate::ops::failpoint::kill_if_named;
use crate::ops::{self, Kind, NewOp, OpError, Run, Step, StepError, StepFuture};
use crate::pg::open_transaction::OpenTransaction;
use crate::pg::Ident;
use crate::platform::Platform;
use crate::secrets::random_bytes;
use crate::template::Template;
use crate::tenant::service::Error as TenantError;
use crate::tenant::Isolation;

pub const RUN: &str = "migrate.run";
const TENANTS: &str = "tenants";

/// How often the run's counts are written while it goes.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

pub fn kinds() -> Vec<Kind<Runtime>> {
    vec![Kind {
        name: RUN,
        steps: vec![Step {
            name: TENANTS,
            reaches_out: true,
            apply: migrate_tenants,
            compensate: None,
            skip: None,
        }],
        point_of_no_return: 0,
    }]
}

/// The run's input, as it began: a run finished by another process, or after a
/// restart, covers the same tenants with the same SQL to the same target.
#[derive(Debug, Serialize, Deserialize)]
struct Params {
    selector: Selector,
    target: i32,
    jobs: u32,
    canary: Option<u32>,
    actor: String,
    /// The audit trail's last row when the run began: the run's `tenant_migrated` rows
    /// come after it.
    audit_from: i64,
    /// The template's migrations up to the target (file name, SQL).
    template: Vec<(String, String)>,
}

impl Params {
    fn template(&self) -> Template {
        let files: Vec<(&str, &str)> = self
            .template
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_str()))
            .collect();
        Template::from_files(&files)
    }
}

/// The prefix of every throw-away role of run `id` (what its declaration names).
fn role_prefix(id: Uuid) -> String {
    let hex = id.simple().to_string();
    format!("berqenas_migrate_{}_", &hex[20..])
}

/// Plans, and unless it is a dry run, begins the run (its record and its operation in
/// one transaction) and drives it in the background; returns the plan or the run.
pub async fn start(rt: &Arc<Runtime>, req: MigrateRequest, actor: &str) -> Result<Started, Error> {
    match begin(rt, &req, actor).await? {
        Begun::Plan(plan) => Ok(Started::Plan(plan)),
        Begun::Finished(run) => Ok(Started::Run(Box::new(run))),
        Begun::Op(run, op) => {
            drop(rt.engine.launch(rt.as_ref(), op));
            Ok(Started::Run(run))
        }
    }
}

/// Runs to the end in the caller's task and returns the finished run (or the plan of
/// a dry run): for tools and benchmarks that embed berqenas.
pub async fn run(rt: &Runtime, req: MigrateRequest, actor: &str) -> Result<Started, Error> {
    match begin(rt, &req, actor).await? {
        Begun::Plan(plan) => Ok(Started::Plan(plan)),
        Begun::Finished(run) => Ok(Started::Run(Box::new(run))),
        Begun::Op(run, op) => {
            let id = run.id;
            match rt.engine.launch(rt, op).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(e) => {
                    return Err(Error::Operation(OpError::Unfinished {
                        op: id,
                        source: Box::new(e),
                    }))
                }
            }
            Ok(Started::Run(Box::new(migrate::get(rt, id).await?)))
        }
    }
}

enum Begun {
    Plan(migrate::MigrationPlan),
    /// Nothing to migrate: recorded as succeeded at once.
    Finished(migrate::MigrationRun),
    Op(Box<migrate::MigrationRun>, ops::Begun),
}

async fn begin(rt: &Runtime, req: &MigrateRequest, actor: &str) -> Result<Begun, Error> {
    req.validate().map_err(Error::Rejected)?;
    let (selector, plan) = migrate::plan(rt, req).await?;
    if req.dry_run {
        return Ok(Begun::Plan(plan));
    }
    let jobs = match req.jobs {
        Some(j) => j,
        None => migrate::default_jobs(rt).await?,
    };
    // Nothing to migrate, and every server's template database current: a no-op.
    if plan.pending.is_empty() && migrate_servers::stale_templates(rt).await?.is_empty() {
        return Ok(Begun::Finished(
            runs::record_noop(rt, req, &plan, jobs, actor).await?,
        ));
    }
    // A run of one tenant is named after it in the journal; a run of many, after none.
    let tenant_name = match (selector.tenant, plan.pending.first()) {
        (Some(_), Some(t)) => t.tenant.to_string(),
        _ => String::new(),
    };
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let params = Params {
        selector,
        target: plan.target_version,
        jobs,
        canary: req.canary,
        actor: actor.to_string(),
        audit_from: runs::audit_mark(&tx).await?,
        template: rt
            .template
            .pending_until(0, plan.target_version)
            .iter()
            .map(|m| (m.name.clone(), m.sql.clone()))
            .collect(),
    };
    let op = rt
        .engine
        .begin_in(
            &tx,
            NewOp {
                kind: RUN,
                tenant_id: plan
                    .pending
                    .first()
                    .filter(|_| !tenant_name.is_empty())
                    .map(|t| t.id),
                tenant_name: &tenant_name,
                params: serde_json::to_value(&params).expect("plain data"),
                idempotency: None,
            },
        )
        .await?;
    let record = runs::begin(&tx, op.id(), req, &plan, jobs, actor).await?;
    tx.commit().await?;
    Ok(Begun::Op(Box::new(record), op))
}

/// The run's one step: every planned tenant not dealt with yet, then the record's
/// final write with the step's journal row.
fn migrate_tenants<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        let prefix = role_prefix(run.id);
        let template = params.template();
        let mut report = {
            let c = rt.pool.get().await.map_err(failed)?;
            runs::load(&c, run.id, params.audit_from)
                .await
                .map_err(step_error)?
        };
        let mut pending = migrate::plan_for(rt, &params.selector, params.target)
            .await
            .map_err(step_error)?
            .pending;
        // A tenant that failed in this run is not tried again when it is finished.
        pending.retain(|t| !report.failed(t.tenant.as_str()));
        // Declared before any role is made, on each server of a tenant left to do.
        let views = migrate_servers::declare(rt, run, TENANTS, &prefix, &pending).await?;
        // Every server's template database first: a database-mode create there
        // clones the template the tenants are migrated to, whatever the tenants do.
        report.template_failures = migrate_servers::refresh_templates(rt, &template).await?;
        let (shared, mut own): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|t| t.isolation == Isolation::Shared);
        let cx = Batch {
            rt: Arc::new(rt.clone()),
            run_id: run.id,
            target: params.target,
            actor: params.actor.clone(),
            template: Arc::new(template),
            prefix,
            views: Arc::new(views),
            workers: Arc::default(),
        };
        if let Some(canary) = params.canary.filter(|_| !report.canary_passed) {
            let left = (canary as usize)
                .saturating_sub(report.done())
                .min(own.len());
            let rest = own.split_off(left);
            report = cx.units(own, report, params.jobs).await?;
            if !report.failures.is_empty() {
                report.not_attempted = (rest.len() + shared.len()) as i32;
                return finish(rt, run, &report).await;
            }
            report.canary_passed = true;
            cx.progress(&report).await;
            own = rest;
        }
        report = cx.units(own, report, params.jobs).await?;
        // Each server's pool moves its tenants together (docs/servers.md).
        let mut pools: BTreeMap<String, Vec<PendingTenant>> = BTreeMap::new();
        for t in shared {
            pools.entry(t.server.clone()).or_default().push(t);
        }
        for (server, shared) in pools {
            if rt.engine.is_stopping() {
                return Err(stopping(&cx, &report).await);
            }
            let outcome = match (server.as_str(), cx.views.get(&server)) {
                (crate::store::servers::DEFAULT, _) => {
                    migrate::units::shared(
                        rt,
                        &shared,
                        &cx.template,
                        cx.target,
                        cx.run_id,
                        &cx.actor,
                    )
                    .await
                }
                (_, Some(view)) => {
                    async {
                        migrate::units::shared_pool_on(view, &cx.template, cx.target).await?;
                        // The pool moved there; the registry follows here.
                        kill_if_named("migrate.pool_committed");
                        migrate::units::shared_registry_on(
                            rt,
                            &server,
                            &shared,
                            cx.target,
                            (cx.run_id, &cx.actor),
                        )
                        .await
                    }
                    .await
                }
                (_, None) => Err(TenantError::Rejected(crate::problem::Problem::new(
                    crate::problem::Kind::Unavailable,
                    "server_unavailable",
                    format!("server {server:?} cannot be reached"),
                ))),
            }
            .unwrap_or_else(|e| {
                Outcome::Failed(
                    shared
                        .iter()
                        .map(|t| migrate::units::failure(t, &e))
                        .collect(),
                )
            });
            kill_if_named("migrate.tenant_committed");
            report.record(outcome, &server);
        }
        finish(rt, run, &report).await
    })
}

/// The record's last write (counts and outcome) and the step's journal row, in one
/// transaction.
async fn finish(rt: &Runtime, run: &mut Run, report: &Report) -> Result<Value, StepError> {
    let outcome = json!({
        "state": report.state(),
        "migrated": report.migrated.len(),
        "failed": report.failures.len(),
        "not_attempted": report.not_attempted,
    });
    let mut c = rt.pool.get().await.map_err(failed)?;
    let tx = c.transaction().await.map_err(failed)?;
    let target = run.params::<Params>()?.target;
    runs::finish(&tx, run.id, report, target)
        .await
        .map_err(step_error)?;
    run.applied_in(&tx, &outcome).await?;
    tx.commit().await.map_err(failed)?;
    crate::metrics::migration_finished("migrated", report.migrated.len() as u64);
    crate::metrics::migration_finished("failed", report.failures.len() as u64);
    crate::metrics::migration_finished("not_attempted", report.not_attempted as u64);
    tracing::info!(
        run = %run.id,
        migrated = report.migrated.len(),
        failed = report.failures.len(),
        not_attempted = report.not_attempted,
        "template migration run finished"
    );
    Ok(outcome)
}

/// The server is stopping between tenants: the counts so far are written, and the
/// step fails (forward only: the next start finishes the run).
async fn stopping(cx: &Batch, report: &Report) -> StepError {
    cx.progress(report).await;
    tracing::warn!(run = %cx.run_id, "the server is stopping: the migration run is finished at the next start");
    StepError::failed(std::io::Error::other(
        "the server is stopping; the migration run is finished at the next start",
    ))
}

/// What every unit of one run shares.
struct Batch {
    rt: Arc<Runtime>,
    run_id: Uuid,
    target: i32,
    actor: String,
    template: Arc<Template>,
    prefix: String,
    /// The servers of the run's tenants that answered when it started, declared.
    views: Arc<HashMap<String, Platform>>,
    workers: Arc<Workers>,
}

impl Batch {
    /// Migrates `tenants`, `jobs` at a time, writing the counts every
    /// [`PROGRESS_EVERY`]; stops starting units when the server is stopping.
    async fn units(
        &self,
        tenants: Vec<PendingTenant>,
        report: Report,
        jobs: u32,
    ) -> Result<Report, StepError> {
        let total = tenants.len();
        let shared = Arc::new(Mutex::new(report));
        let permits = Arc::new(Semaphore::new(jobs.max(1) as usize));
        let mut set = JoinSet::new();
        let mut started = 0;
        let mut last = Instant::now();
        for t in tenants {
            let permit = permits.clone().acquire_owned().await.expect("never closed");
            if self.rt.engine.is_stopping() {
                break;
            }
            started += 1;
            let (unit, report) = (self.unit(), shared.clone());
            set.spawn(async move {
                let outcome = unit
                    .tenant(&t)
                    .await
                    .unwrap_or_else(|e| Outcome::Failed(vec![migrate::units::failure(&t, &e)]));
                report
                    .lock()
                    .expect("not poisoned")
                    .record(outcome, &t.server);
                drop(permit);
            });
            while let Some(joined) = set.try_join_next() {
                joined_ok(joined);
            }
            if last.elapsed() >= PROGRESS_EVERY {
                let snapshot = shared.lock().expect("not poisoned").clone();
                self.progress(&snapshot).await;
                last = Instant::now();
            }
        }
        while let Some(joined) = set.join_next().await {
            joined_ok(joined);
        }
        self.workers.retire_all(&self.views).await;
        let report = shared.lock().expect("not poisoned").clone();
        if started < total {
            return Err(stopping(self, &report).await);
        }
        Ok(report)
    }

    fn unit(&self) -> UnitCx {
        UnitCx {
            rt: self.rt.clone(),
            run_id: self.run_id,
            target: self.target,
            actor: self.actor.clone(),
            template: self.template.clone(),
            prefix: self.prefix.clone(),
            views: self.views.clone(),
            workers: self.workers.clone(),
        }
    }

    /// Writes the counts so far (a failed write only delays them: the audit trail
    /// has every migrated tenant).
    async fn progress(&self, report: &Report) {
        let written = async {
            let c = self.rt.pool.get().await?;
            runs::progress(&c, self.run_id, report).await
        }
        .await;
        if let Err(e) = written {
            tracing::warn!(run = %self.run_id, error = %e, "could not record migration progress");
        }
    }
}

fn joined_ok(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        tracing::error!(error = %e, "a tenant migration task panicked");
    }
}

/// One unit's share of the run (owned: it runs on a task of its own).
struct UnitCx {
    rt: Arc<Runtime>,
    run_id: Uuid,
    target: i32,
    actor: String,
    template: Arc<Template>,
    prefix: String,
    views: Arc<HashMap<String, Platform>>,
    workers: Arc<Workers>,
}

impl UnitCx {
    /// One tenant, on its server: a tenant in its server's own database (schema mode)
    /// on one of the run's workers there, any other (database mode) on a throw-away
    /// role of its own. Either role is named under the run's prefix, declared there.
    async fn tenant(&self, t: &PendingTenant) -> Result<Outcome, TenantError> {
        let p = self
            .views
            .get(&t.server)
            .ok_or_else(|| unreachable_server(&t.server))?;
        let grants = migrate::units::session_grants(t)?;
        match &grants.database {
            Some(db) if db.as_str() != p.endpoint.database => {
                self.on_own_role(p, t, &grants, db).await
            }
            _ => self.on_worker(p, t, &grants).await,
        }
    }

    /// A role name under the run's prefix.
    fn role_name(&self) -> Ident {
        Ident::new(format!(
            "{}{}",
            self.prefix,
            hex::encode(random_bytes::<6>())
        ))
        .expect("a role prefix and hex digits are an identifier")
    }

    /// A tenant in its own database: a role of its own, with CONNECT there, dropped
    /// with what it owns there after the unit.
    async fn on_own_role(
        &self,
        p: &Platform,
        t: &PendingTenant,
        grants: &migrate::units::SessionGrants,
        database: &Ident,
    ) -> Result<Outcome, TenantError> {
        // A database made before the shared realtime trigger functions existed gets
        // them before its template migration points its triggers there (0003).
        crate::tenant::database_mode::install_realtime_triggers(p, database.as_str()).await?;
        let mut member_of: Vec<&Ident> = vec![&grants.owner];
        member_of.extend(grants.always.iter());
        let role = TempRole::create(p, self.role_name(), &member_of, Reach::Database(database))
            .await
            .map_err(session_error)?;
        let outcome = match role.connect(p, database.as_str()).await {
            Ok(session) => match self.rt.platform.pool.get().await {
                Ok(c) => {
                    let open = OpenTransaction::new(c);
                    let unit = self.locked(open, None, t, &role.name, &session, None);
                    unit.await.map(|(outcome, _)| outcome)
                }
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(session_error(e)),
        };
        if let Err(e) = role.drop(p, &[database.as_str()]).await {
            tracing::warn!(tenant.name = %t.tenant, error = %e,
                "could not drop a migration's session role; the run drops it when it ends");
        }
        outcome
    }

    /// A tenant in its server's own database: on a worker of the run there (see
    /// `access::worker`), which goes back to the run's idle ones after a clean unit,
    /// and is retired after anything else. In the control database the lending is
    /// checked on the unit's own connection, and its grant goes out with the unit's
    /// opening; the worker's rest goes out on its session with the tenant's batch.
    async fn on_worker(
        &self,
        p: &Platform,
        t: &PendingTenant,
        grants: &migrate::units::SessionGrants,
    ) -> Result<Outcome, TenantError> {
        let worker = match self.workers.take(&t.server) {
            Some(w) => w,
            None => self.start_worker(p, grants).await?,
        };
        let open = OpenTransaction::new(self.rt.platform.pool.get().await?);
        let (mut worker, lending) = self.lend(p, &open, t, worker, grants).await?;
        let first = lending.as_ref().map(Lending::sql);
        let rest = Some(Worker::rest_sql());
        let unit = self
            .locked(open, first, t, worker.name(), worker.session(), rest)
            .await;
        // Clean: the unit succeeded and so did the worker's rest.
        let clean = matches!(unit, Ok((_, true)));
        let outcome = unit.map(|(outcome, _)| outcome);
        match clean {
            true => {
                if let Some(l) = lending {
                    worker.lent(l);
                }
                self.workers.put(&t.server, worker)
            }
            false => retire(p, worker).await,
        }
        outcome
    }

    /// Lends `worker` to the tenant (a replacement if it was tainted): see
    /// `migrate_workers::lend_for`.
    async fn lend(
        &self,
        p: &Platform,
        open: &OpenTransaction,
        t: &PendingTenant,
        worker: Worker,
        grants: &migrate::units::SessionGrants,
    ) -> Result<(Worker, Option<Lending>), TenantError> {
        let control = t.in_control_database();
        match lend_for(p, open, control, worker, &grants.owner).await {
            Ok(w) => Ok(w),
            Err(None) => {
                let fresh = self.start_worker(p, grants).await?;
                lend_for(p, open, control, fresh, &grants.owner)
                    .await
                    .map_err(|e| e.unwrap_or_else(fresh_tainted))
            }
            Err(Some(e)) => Err(e),
        }
    }

    async fn start_worker(
        &self,
        p: &Platform,
        grants: &migrate::units::SessionGrants,
    ) -> Result<Worker, TenantError> {
        let always: Vec<&Ident> = grants.always.iter().collect();
        Worker::start(p, self.role_name(), &always)
            .await
            .map_err(session_error)
    }

    /// The unit in `session` (of the role `role`, on the tenant's server) under the
    /// tenant's name lock, on `open`, a control database connection; `first`: the end
    /// of a transaction begun there (a lending's grant). That, the session's
    /// registration, `BEGIN`, the lock and the registry read go out in one round trip
    /// (`migrate::units::open_locked`).
    async fn locked(
        &self,
        open: OpenTransaction,
        first: Option<&str>,
        t: &PendingTenant,
        role: &Ident,
        session: &tokio_postgres::Client,
        then: Option<&str>,
    ) -> Result<(Outcome, bool), TenantError> {
        let (target, run_id, actor) = (self.target, self.run_id, self.actor.as_str());
        let unit = async {
            let c = open.client();
            let read =
                migrate::units::open_locked(c, first, t, role, target, run_id, actor).await?;
            let (unit, rested) =
                migrate::units::migrate_read(session, t, &self.template, target, read, then)
                    .await?;
            if let Unit::Committed { .. } = unit {
                kill_if_named("migrate.database_committed");
                migrate::units::record_database(c, t, unit, target, run_id, actor).await?;
            }
            Ok::<_, TenantError>((unit, rested))
        }
        .await;
        let ((unit, rested), client) = match unit {
            Ok(u) => {
                let client = open.commit().await?;
                kill_if_named("migrate.tenant_committed");
                (u, client)
            }
            Err(e) => {
                if let Some(client) = open.rollback().await {
                    let _ = migrate::units::close_session(&client, role).await;
                }
                return Err(e);
            }
        };
        let name = vec![t.tenant.to_string()];
        let outcome = match unit {
            Unit::Current => {
                migrate::units::close_session(&client, role).await?;
                Outcome::Current(name)
            }
            Unit::Migrated | Unit::Committed { .. } => Outcome::Migrated(name),
        };
        Ok((outcome, rested))
    }
}

/// A tenant whose server did not answer when the run started: nothing is made there,
/// and the next run tries again.
fn unreachable_server(server: &str) -> TenantError {
    TenantError::Rejected(crate::problem::Problem::new(
        crate::problem::Kind::Unavailable,
        "server_down",
        format!("server {server:?} could not be reached when the run started"),
    ))
}
