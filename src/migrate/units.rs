//! Running the plan: each tenant in its own transaction as its owner role, with a lock
//! timeout, `jobs` at a time; the shared pool once for all shared-mode tenants.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::plan::{MigrationPlan, PendingTenant};
use super::runs::{self, Report, TenantFailure};
use super::Result;
use crate::audit;
use crate::isolation::shared::{POOL_OWNER, POOL_SCHEMA};
use crate::ops::failpoint;
use crate::pg::{self, Ident};
use crate::platform::Platform;
use crate::tenant::service::Error;
use crate::tenant::{shared_mode, Isolation};

/// A migration waits at most this long for a lock a tenant's session holds, then
/// fails for that tenant alone (and is retried by the next run).
pub const LOCK_TIMEOUT: &str = "5s";

/// The marker a database-mode tenant's database carries once its DDL committed.
const MARKER_PREFIX: &str = "berqenas template_version=";

enum Outcome {
    Migrated(Vec<String>),
    Current(Vec<String>),
    Failed(Vec<TenantFailure>),
}

type Shared = Arc<Mutex<Report>>;

pub(super) async fn execute(
    p: &Arc<Platform>,
    run_id: Uuid,
    plan: MigrationPlan,
    jobs: u32,
    canary: Option<u32>,
    actor: &str,
) -> Result<()> {
    let target = plan.target_version;
    let (shared, mut own): (Vec<_>, Vec<_>) = plan
        .pending
        .into_iter()
        .partition(|t| t.isolation == Isolation::Shared);
    let report: Shared = Arc::new(Mutex::new(Report {
        already_current: plan.already_current as i32,
        ..Report::default()
    }));
    let (stop, stopped_rx) = tokio::sync::watch::channel(false);
    let flusher = tokio::spawn(flush_every(p.clone(), run_id, report.clone(), stopped_rx));

    let canary = canary.map_or(0, |c| c as usize).min(own.len());
    let rest = own.split_off(canary);
    let mut stopped = false;
    if canary > 0 {
        run_units(p, own, jobs, &report, run_id, actor, target).await;
        stopped = !report.lock().expect("not poisoned").failures.is_empty();
    }
    if stopped {
        let mut r = report.lock().expect("not poisoned");
        r.not_attempted = (rest.len() + shared.len()) as i32;
    } else {
        run_units(p, rest, jobs, &report, run_id, actor, target).await;
        if !shared.is_empty() {
            let outcome = shared_unit(p, &shared, target, run_id, actor)
                .await
                .unwrap_or_else(|e| {
                    Outcome::Failed(shared.iter().map(|t| failure(t, &e)).collect())
                });
            record(&report, outcome);
        }
    }
    // Joined, not aborted: a progress write in flight must land before the final one.
    let _ = stop.send(true);
    let _ = flusher.await;
    let report = report.lock().expect("not poisoned").clone();
    runs::finish(p, run_id, &report).await?;
    crate::metrics::migration_finished("migrated", report.migrated.len() as u64);
    crate::metrics::migration_finished("failed", report.failures.len() as u64);
    crate::metrics::migration_finished("not_attempted", report.not_attempted as u64);
    tracing::info!(
        run = %run_id,
        migrated = report.migrated.len(),
        failed = report.failures.len(),
        not_attempted = report.not_attempted,
        "template migration run finished"
    );
    Ok(())
}

async fn flush_every(
    p: Arc<Platform>,
    run_id: Uuid,
    report: Shared,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let snapshot = report.lock().expect("not poisoned").clone();
        if let Err(e) = runs::progress(&p, run_id, &snapshot).await {
            tracing::warn!(run = %run_id, error = %e, "could not record migration progress");
        }
    }
}

fn record(report: &Shared, outcome: Outcome) {
    let mut r = report.lock().expect("not poisoned");
    match outcome {
        Outcome::Migrated(names) => r.migrated.extend(names),
        Outcome::Current(names) => r.already_current += names.len() as i32,
        Outcome::Failed(f) => r.failures.extend(f),
    }
}

async fn run_units(
    p: &Arc<Platform>,
    tenants: Vec<PendingTenant>,
    jobs: u32,
    report: &Shared,
    run_id: Uuid,
    actor: &str,
    target: i32,
) {
    let permits = Arc::new(Semaphore::new(jobs as usize));
    let mut set = JoinSet::new();
    for t in tenants {
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let (p, report, actor) = (p.clone(), report.clone(), actor.to_string());
        set.spawn(async move {
            let result = match t.isolation {
                Isolation::Database => database_unit(&p, &t, target, run_id, &actor).await,
                _ => schema_unit(&p, &t, target, run_id, &actor).await,
            };
            let outcome = result.unwrap_or_else(|e| Outcome::Failed(vec![failure(&t, &e)]));
            record(&report, outcome);
            drop(permit);
        });
    }
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined {
            tracing::error!(error = %e, "a tenant migration task panicked");
        }
    }
}

fn failure(t: &PendingTenant, e: &Error) -> TenantFailure {
    let (error, sqlstate) = match e {
        Error::Db(db) => match db.as_db_error() {
            Some(d) => (
                format!("{}: {}", d.severity(), d.message()),
                Some(d.code().code().to_string()),
            ),
            None => (db.to_string(), None),
        },
        other => (other.to_string(), None),
    };
    tracing::warn!(tenant.name = %t.tenant, %error, "template migration failed for a tenant");
    TenantFailure {
        tenant: t.tenant.clone(),
        from_version: t.from_version,
        error,
        sqlstate,
    }
}

/// The statements that run the pending migrations as `owner` inside `schema`.
///
/// The commit does not wait for its WAL flush: a tenant's DDL and its new version
/// commit together, so a server crash can only lose both, and the next run redoes
/// them. The run's own final write waits for the flush, and with it everything before.
/// Without this, commits would queue one fsync at a time behind the audit chain.
fn as_owner(owner: &str, schema: &str, sql: &str) -> String {
    let owner = Ident::new(owner.to_string()).expect("registry holds valid names");
    let schema = Ident::new(schema.to_string()).expect("registry holds valid names");
    format!(
        "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}';\n\
         SET LOCAL synchronous_commit = off;\n\
         SET LOCAL ROLE {owner};\n\
         SET LOCAL search_path = {schema};\n\
         {sql}\n;\n\
         RESET ROLE;\n\
         RESET search_path;\n"
    )
}

fn audit_entry<'a>(
    actor: &'a str,
    t_id: Uuid,
    name: &'a str,
    from: i32,
    to: i32,
    run_id: Uuid,
) -> audit::Entry<'a> {
    audit::Entry {
        actor,
        action: "tenant_migrated",
        tenant_id: Some(t_id),
        tenant_name: Some(name),
        operation_id: None,
        details: serde_json::json!({"from_version": from, "to_version": to, "run_id": run_id}),
    }
}

/// Records on a tenant's database the template version its objects are at. The
/// database belongs to the control role, so the tenant cannot change this.
pub(super) fn marker_sql(database: &str, version: i32) -> String {
    let db = Ident::new(database.to_string()).expect("registry holds valid names");
    format!("COMMENT ON DATABASE {db} IS '{MARKER_PREFIX}{version}';")
}

/// Schema mode: the DDL and the version move in one control-database transaction.
async fn schema_unit(
    p: &Platform,
    t: &PendingTenant,
    target: i32,
    run_id: Uuid,
    actor: &str,
) -> Result<Outcome> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    // The row lock keeps a concurrent update or delete of the tenant out meanwhile.
    let from: Option<i32> = tx
        .query_opt(
            "SELECT template_version FROM berqenas.tenants WHERE id = $1 FOR UPDATE",
            &[&t.id],
        )
        .await?
        .map(|r| r.get(0));
    let Some(from) = from.filter(|v| *v < target) else {
        return Ok(Outcome::Current(vec![t.tenant.clone()]));
    };
    tx.batch_execute(&as_owner(
        &t.owner_role,
        &t.schema,
        &p.template.sql_after(from),
    ))
    .await?;
    tx.execute(
        "UPDATE berqenas.tenants SET template_version = $2, updated_at = now() WHERE id = $1",
        &[&t.id, &target],
    )
    .await?;
    audit::record(
        &tx,
        &audit_entry(actor, t.id, &t.tenant, from, target, run_id),
    )
    .await?;
    tx.commit().await?;
    failpoint("migrate.tenant_committed");
    Ok(Outcome::Migrated(vec![t.tenant.clone()]))
}

/// Database mode: the DDL commits in the tenant's database together with a marker on
/// that database; the registry follows. A crash in between is caught up by the next
/// run, which finds the marker and only moves the registry.
async fn database_unit(
    p: &Platform,
    t: &PendingTenant,
    target: i32,
    run_id: Uuid,
    actor: &str,
) -> Result<Outcome> {
    let mut config = p.config.clone();
    config.dbname(&t.database);
    let mut tenant_db = pg::connect(&config).await?;
    let tx = tenant_db.transaction().await?;
    // Two runs never migrate one database at once (the run table allows one run, but
    // an operator may also migrate by hand).
    // The tenant can take advisory locks in its own database: wait for this one only
    // as long as for any other lock.
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('berqenas.migrate'))",
        &[],
    )
    .await?;
    let marker: Option<i32> = tx
        .query_one(
            "SELECT substring(shobj_description(oid, 'pg_database') FROM $1)::int
               FROM pg_database WHERE datname = current_database()",
            &[&format!("^{MARKER_PREFIX}(\\d+)$")],
        )
        .await?
        .get(0);
    let from = marker.unwrap_or(t.from_version).max(t.from_version);
    if from < target {
        tx.batch_execute(&format!(
            "{}{}",
            as_owner(&t.owner_role, &t.schema, &p.template.sql_after(from)),
            marker_sql(&t.database, target)
        ))
        .await?;
    }
    tx.commit().await?;
    drop(tenant_db);
    failpoint("migrate.database_committed");

    let mut client = p.pool.get().await?;
    let ctl = client.transaction().await?;
    let moved = ctl
        .execute(
            "UPDATE berqenas.tenants SET template_version = $2, updated_at = now()
              WHERE id = $1 AND template_version < $2",
            &[&t.id, &target],
        )
        .await?;
    if moved == 0 {
        return Ok(Outcome::Current(vec![t.tenant.clone()]));
    }
    audit::record(
        &ctl,
        &audit_entry(actor, t.id, &t.tenant, t.from_version, target, run_id),
    )
    .await?;
    ctl.commit().await?;
    Ok(Outcome::Migrated(vec![t.tenant.clone()]))
}

/// Shared mode: the tenants share the pool's tables, so they move together, in one
/// transaction with the pool's DDL.
async fn shared_unit(
    p: &Platform,
    tenants: &[PendingTenant],
    target: i32,
    run_id: Uuid,
    actor: &str,
) -> Result<Outcome> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let from = shared_mode::lock_pool_version(&tx).await?;
    if from < target {
        tx.batch_execute(&as_owner(
            POOL_OWNER,
            POOL_SCHEMA,
            &p.template.sql_after(from),
        ))
        .await?;
        shared_mode::tenantize(&tx).await?;
        crate::quota::disk::extend_shared_guard(&tx).await?;
        shared_mode::set_pool_version(&tx, target, &p.template.checksum()).await?;
    }
    let moved = tx
        .query(
            "UPDATE berqenas.tenants t SET template_version = $1, updated_at = now()
               FROM (SELECT id, template_version AS old FROM berqenas.tenants
                      WHERE isolation = 'shared' AND template_version < $1 FOR UPDATE) o
              WHERE t.id = o.id
          RETURNING t.id, t.name, o.old",
            &[&target],
        )
        .await?;
    for r in &moved {
        let (id, name, old): (Uuid, String, i32) = (r.get(0), r.get(1), r.get(2));
        audit::record(&tx, &audit_entry(actor, id, &name, old, target, run_id)).await?;
    }
    tx.commit().await?;
    failpoint("migrate.tenant_committed");
    let names: Vec<String> = moved.iter().map(|r| r.get(1)).collect();
    if names.is_empty() {
        return Ok(Outcome::Current(
            tenants.iter().map(|t| t.tenant.clone()).collect(),
        ));
    }
    Ok(Outcome::Migrated(names))
}
