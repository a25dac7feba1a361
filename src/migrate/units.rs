//! Running the plan: each tenant in its own transaction, on a session of a throw-away
//! role that holds only the tenant owner's rights, with a lock timeout, `jobs` at a
//! time; the shared pool once for all shared-mode tenants.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::plan::{MigrationPlan, PendingTenant, Place};
use super::runs::{self, Report, TenantFailure};
use super::Result;
use crate::access::{Reach, TempRole};
use crate::audit;
use crate::isolation::shared::{POOL_OWNER, POOL_SCHEMA};
use crate::ops::failpoint;
use crate::pg::Ident;
use crate::platform::Platform;
use crate::tenant::service::{self, Error};
use crate::tenant::{shared_mode, Isolation};

/// The role whose members may report a migrated tenant (migration 0013).
const SESSION_ROLE: &str = "berqenas_migration_session";

/// A migration waits at most this long for a lock a tenant's session holds, then
/// fails for that tenant alone (and is retried by the next run).
pub const LOCK_TIMEOUT: &str = "5s";

/// The marker a tenant's schema carries once its DDL committed (in the same
/// transaction); older releases marked a database-mode tenant's database.
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
            let result = tenant_unit(&p, &t, target, run_id, &actor).await;
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
        tenant: t.tenant.to_string(),
        from_version: t.from_version,
        error,
        sqlstate,
    }
}

/// The statements that run the pending migrations inside `schema`, then mark the
/// schema with the version they reached, in one transaction. `role`: `SET LOCAL ROLE`
/// first (the shared pool's owner, on the control role's own session); `None` in a
/// tenant session, which is the tenant's owner already.
///
/// The commit does not wait for its WAL flush: a tenant's DDL and its marker commit
/// together, so a server crash can only lose both, and the next run redoes them. The
/// run's own final write waits for the flush, and with it everything before. Without
/// this, commits would queue one fsync at a time behind the audit chain.
fn migration_sql(role: Option<&str>, schema: &Ident, sql: &str, marker: Option<i32>) -> String {
    let set_role = role
        .map(|r| {
            let r = Ident::new(r.to_string()).expect("static names are identifiers");
            format!("SET LOCAL ROLE {r};\n")
        })
        .unwrap_or_default();
    let marker = marker
        .map(|v| format!("COMMENT ON SCHEMA {schema} IS '{MARKER_PREFIX}{v}';\n"))
        .unwrap_or_default();
    format!(
        "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}';\n\
         SET LOCAL synchronous_commit = off;\n\
         {set_role}\
         SET LOCAL search_path = {schema};\n\
         {sql}\n;\n\
         {marker}\
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

/// Records on a tenant's database the template version its objects are at (older
/// releases marked the database; a restore still sets it, and both are read).
pub(super) fn marker_sql(db: &Ident, version: i32) -> String {
    format!("COMMENT ON DATABASE {db} IS '{MARKER_PREFIX}{version}';")
}

/// The version the tenant schema's marker (or, for a database written by an older
/// release, its database's) says its objects are at.
async fn marker_of(c: &tokio_postgres::Client, schema: &str) -> Result<Option<i32>> {
    let pattern = format!("^{MARKER_PREFIX}(\\d+)$");
    let row = c
        .query_one(
            "SELECT greatest(
                    (SELECT substring(pg_catalog.obj_description(n.oid, 'pg_namespace') FROM $1)::int
                       FROM pg_catalog.pg_namespace n WHERE n.nspname = $2),
                    (SELECT substring(pg_catalog.shobj_description(d.oid, 'pg_database') FROM $1)::int
                       FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()))",
            &[&pattern, &schema],
        )
        .await?;
    Ok(row.get(0))
}

/// A tenant's template SQL never runs on a session that could get back to a
/// privileged role: it runs on a session of a throw-away role that is a member of
/// the tenant's owner role only (see [`crate::access::temp_role`]), so a trigger, a
/// shadowing function or a default of the tenant's that runs `RESET ROLE` finds
/// nothing more than the owner's rights. The DDL and the schema's version marker
/// commit there; the registry follows in the caller's transaction, and a crash in
/// between is caught up by the next run, which reads the marker.
async fn in_tenant_session(
    p: &Platform,
    t: &PendingTenant,
    role: &TempRole,
    registry_version: i32,
    target: i32,
) -> Result<i32> {
    let place = place(t)?;
    let schema = place.schema.as_ref().ok_or_else(|| unplaced(t))?;
    let session = role
        .connect(p, place.database.as_str())
        .await
        .map_err(session_error)?;
    session.batch_execute("BEGIN").await?;
    let ran = async {
        if t.isolation == Isolation::Database {
            // Two runs never migrate one database at once (the run table allows one
            // run, but an operator may also migrate by hand). The tenant can take
            // advisory locks in its own database: wait only as long as for any lock.
            session
                .batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                .await?;
            session
                .execute(
                    "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('berqenas.migrate'))",
                    &[],
                )
                .await?;
        }
        let from = marker_of(&session, schema.as_str())
            .await?
            .unwrap_or(registry_version)
            .max(registry_version);
        let mut sql = String::new();
        if from < target {
            sql = migration_sql(None, schema, &p.template.sql_after(from), Some(target));
        }
        if t.isolation != Isolation::Database {
            // In the control database the registry moves in this transaction.
            sql.push_str("SELECT berqenas_session.record_template_version();\n");
        }
        session.batch_execute(&sql).await?;
        Ok::<_, Error>(from)
    }
    .await;
    match ran {
        Ok(from) => {
            session.batch_execute("COMMIT").await?;
            Ok(from)
        }
        Err(e) => {
            let _ = session.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Where a planned tenant's objects are; a plan read back from JSON has no place
/// and is never run.
fn place(t: &PendingTenant) -> Result<&Place> {
    t.place.as_ref().ok_or_else(|| unplaced(t))
}

fn unplaced(t: &PendingTenant) -> Error {
    Error::Rejected(crate::problem::Problem::new(
        crate::problem::Kind::Internal,
        "unplaced_tenant",
        format!(
            "the plan does not say where tenant {}'s objects are",
            t.tenant
        ),
    ))
}

fn session_error(e: crate::backup::Error) -> Error {
    match e {
        crate::backup::Error::Db(e) => Error::Db(e),
        crate::backup::Error::Pool(e) => Error::Pool(e),
        crate::backup::Error::Pg(e) => Error::Pg(e),
        crate::backup::Error::Tenant(e) => e,
        other => Error::Rejected(crate::problem::Problem::new(
            crate::problem::Kind::Internal,
            "tenant_session",
            other.to_string(),
        )),
    }
}

/// Schema and database modes: the tenant's name and row are held (the name lock, then
/// the row) while its session runs the DDL, so no other operation on the tenant runs
/// in between; the registry moves when the DDL has committed.
async fn tenant_unit(
    p: &Platform,
    t: &PendingTenant,
    target: i32,
    run_id: Uuid,
    actor: &str,
) -> Result<Outcome> {
    let place = place(t)?;
    let (owner, database) = (&place.owner_role, &place.database);
    let reporter = Ident::new(SESSION_ROLE).expect("static name");
    let (reach, member_of) = match t.isolation {
        Isolation::Database => (Reach::Database(database), vec![owner]),
        _ => (Reach::ControlDatabase, vec![owner, &reporter]),
    };
    let role = TempRole::create(p, TempRole::new_name("migrate"), &member_of, reach)
        .await
        .map_err(session_error)?;
    let outcome = locked_unit(p, t, &role, target, run_id, actor).await;
    let others: Vec<&str> = match t.isolation {
        Isolation::Database => vec![database.as_str()],
        _ => vec![],
    };
    if let Err(e) = role.drop(p, &others).await {
        tracing::warn!(tenant.name = %t.tenant, error = %e, "could not drop a migration's session role; the sweeper will");
    }
    outcome
}

/// Holds the tenant's name (not its row: in schema mode the tenant session moves it)
/// while the session runs. One pooled connection per unit.
async fn locked_unit(
    p: &Platform,
    t: &PendingTenant,
    role: &TempRole,
    target: i32,
    run_id: Uuid,
    actor: &str,
) -> Result<Outcome> {
    let slug = &t.tenant;
    let in_control_db = t.isolation != Isolation::Database;
    let mut client = p.pool.get().await?;
    if in_control_db {
        // Committed first: the session reads it. Consumed by the session's commit.
        client
            .execute(
                "INSERT INTO berqenas.migration_sessions (role, tenant_id, from_version, target_version, run_id, actor)
                 SELECT $1, id, template_version, $3, $4, $5 FROM berqenas.tenants WHERE id = $2",
                &[&role.name.as_str(), &t.id, &target, &run_id, &actor],
            )
            .await?;
    }
    let tx = client.transaction().await?;
    service::lock_name(&tx, slug).await?;
    let registry = crate::store::tenants::template_version(&tx, t.id).await?;
    let outcome = match registry.filter(|v| *v < target) {
        None => Ok(None),
        Some(registry) => in_tenant_session(p, t, role, registry, target)
            .await
            .map(|from| Some((registry, from))),
    };
    if in_control_db {
        tx.commit().await?;
        if !matches!(outcome, Ok(Some(_))) {
            client
                .execute(
                    "DELETE FROM berqenas.migration_sessions WHERE role = $1",
                    &[&role.name.as_str()],
                )
                .await?;
        }
        failpoint("migrate.tenant_committed");
        return Ok(match outcome? {
            None => Outcome::Current(vec![t.tenant.to_string()]),
            Some(_) => Outcome::Migrated(vec![t.tenant.to_string()]),
        });
    }
    let Some((registry, from)) = outcome? else {
        return Ok(Outcome::Current(vec![t.tenant.to_string()]));
    };
    failpoint("migrate.database_committed");
    crate::store::tenants::set_template_version(&tx, t.id, target).await?;
    audit::record(
        &tx,
        &audit_entry(
            actor,
            t.id,
            t.tenant.as_str(),
            from.min(registry),
            target,
            run_id,
        ),
    )
    .await?;
    tx.commit().await?;
    failpoint("migrate.tenant_committed");
    Ok(Outcome::Migrated(vec![t.tenant.to_string()]))
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
        let pool = Ident::new(POOL_SCHEMA).expect("static name");
        tx.batch_execute(&migration_sql(
            Some(POOL_OWNER),
            &pool,
            &p.template.sql_after(from),
            None,
        ))
        .await?;
        shared_mode::tenantize(&tx).await?;
        crate::quota::disk::extend_shared_guard(&tx).await?;
        shared_mode::set_pool_version(&tx, target, &p.template.checksum()).await?;
    }
    let moved = crate::store::tenants::move_shared_to_version(&tx, target).await?;
    for (id, name, old) in &moved {
        audit::record(&tx, &audit_entry(actor, *id, name, *old, target, run_id)).await?;
    }
    tx.commit().await?;
    failpoint("migrate.tenant_committed");
    let names: Vec<String> = moved.into_iter().map(|(_, name, _)| name).collect();
    if names.is_empty() {
        return Ok(Outcome::Current(
            tenants.iter().map(|t| t.tenant.to_string()).collect(),
        ));
    }
    Ok(Outcome::Migrated(names))
}
