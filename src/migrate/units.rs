//! One tenant's unit of work, and the shared pool's: the pieces a run composes (the
//! `migrate.run` operation, `workflows::migrate`, which takes the tenant's name lock,
//! declares and names the throw-away roles, runs `jobs` at a time, and finishes a run
//! a crash left). Each tenant's DDL runs in its own transaction, on a session of a
//! throw-away role that holds only the tenant owner's rights, with a lock timeout.
//! Each unit is idempotent: run again, it reads where the tenant's objects are (the
//! schema's marker) and only moves what is behind.

use std::sync::LazyLock;

use uuid::Uuid;

use super::plan::{PendingTenant, Place};
use super::Result;
use crate::audit;
use crate::isolation::shared::{POOL_OWNER, POOL_SCHEMA};
use crate::pg::{Ident, Literal};
use crate::platform::Platform;
use crate::store::migration_runs::TenantFailure;
use crate::store::outbox::{self, data::MigrationCompleted};
use crate::store::tenants::Isolation;
use crate::template::Template;
use crate::tenant::service::Error;
use crate::tenant::shared_mode;

/// The role whose members may report a migrated tenant (migration 0013).
const SESSION_ROLE: &str = "berqenas_migration_session";

/// A migration waits at most this long for a lock a tenant's session holds, then
/// fails for that tenant alone (and is retried by the next run).
pub const LOCK_TIMEOUT: &str = "5s";

/// The marker a tenant's schema carries once its DDL committed (in the same
/// transaction); older releases marked a database-mode tenant's database.
const MARKER_PREFIX: &str = crate::template::VERSION_MARKER;

/// What a unit did.
#[derive(Debug)]
pub enum Outcome {
    Migrated(Vec<String>),
    Current(Vec<String>),
    Failed(Vec<TenantFailure>),
}

/// Where one tenant's unit stands once its session is done (the caller still holds
/// the tenant's name lock in its transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// At the target already: nothing ran.
    Current,
    /// Schema mode: the DDL, the marker and the registry committed together; the
    /// caller's transaction only holds the lock.
    Migrated,
    /// Database mode, or a tenant on another server: the DDL and the marker committed
    /// in the tenant's database; the registry follows with [`record_database`] in the
    /// caller's transaction.
    Committed {
        /// The registry's version before.
        registry: i32,
        /// The version the tenant's objects were at.
        from: i32,
    },
}

/// A failure of one tenant, as the run reports it.
pub fn failure(t: &PendingTenant, e: &Error) -> TenantFailure {
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
        server: Some(t.server.clone()),
    }
}

/// The statements that run the pending migrations inside `schema`, then mark the
/// schema with the version they reached, in one transaction, as `role` (`SET LOCAL
/// ROLE`): the tenant's owner in a tenant session (whose throw-away login role only
/// inherits the owner's rights: what it created itself would go with it), the shared
/// pool's owner on the control role's own session.
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

/// The version a comment row `d` says, as a marker reads.
fn marker_version() -> String {
    let pattern = Literal(&format!("^{MARKER_PREFIX}(\\d+)$")).to_string();
    format!("substring(d.description FROM {pattern})::int")
}

/// The subquery that reads what the marker on the schema named `schema` (an SQL
/// expression) says. The comment catalog is read directly: `obj_description()` is a
/// SQL function PostgreSQL parses and plans again at every call, which made this read
/// cost more than the tenant's `ALTER TABLE` (0.27 ms a tenant, `pg_stat_statements`
/// in `cargo bench --bench migrate`).
fn schema_marker(schema: &str) -> String {
    format!(
        "(SELECT {version}
            FROM pg_catalog.pg_namespace n
            JOIN pg_catalog.pg_description d
              ON d.objoid = n.oid AND d.objsubid = 0
             AND d.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
           WHERE n.nspname = {schema})",
        version = marker_version(),
    )
}

/// The statement that reads the version the tenant schema's marker (or, for a
/// database written by an older release, its database's) says its objects are at.
/// Literals, not parameters: it goes in one round trip with the `BEGIN` before it.
fn marker_query(schema: &str) -> String {
    format!(
        "SELECT greatest({schema_marker},
                (SELECT {version}
                   FROM pg_catalog.pg_database db
                   JOIN pg_catalog.pg_shdescription d
                     ON d.objoid = db.oid
                    AND d.classoid = 'pg_catalog.pg_database'::pg_catalog.regclass
                  WHERE db.datname = pg_catalog.current_database()));\n",
        schema_marker = schema_marker(&Literal(schema).to_string()),
        version = marker_version(),
    )
}

/// A tenant's server and template version in the registry, and what its schema's
/// marker says when it is in the control database (`$2`: the schema's name).
static REGISTRY_AND_MARKER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT t.server, t.template_version, {} FROM berqenas.tenants t WHERE t.id = $1",
        schema_marker("$2")
    )
});

/// The last row's first value among a simple query's messages, as a version.
fn last_version(messages: &[tokio_postgres::SimpleQueryMessage]) -> Result<Option<i32>> {
    let value = messages.iter().rev().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
        _ => None,
    });
    match value.flatten() {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            Error::Rejected(crate::problem::Problem::new(
                crate::problem::Kind::Internal,
                "bad_version_marker",
                format!("a tenant's version marker reads {v:?}, not a version"),
            ))
        }),
    }
}

/// A tenant's template SQL never runs on a session that could get back to a
/// privileged role: it runs on a session of a throw-away role that is a member of
/// the tenant's owner role only (see `crate::access::temp_role`), so a trigger, a
/// shadowing function or a default of the tenant's that runs `RESET ROLE` finds
/// nothing more than the owner's rights. The DDL and the schema's version marker
/// commit there; the registry follows in the caller's transaction, and a crash in
/// between is caught up by the next run, which reads the marker.
///
/// `marker`: what the schema's marker says, when the caller read it already (a
/// tenant in the control database: with the registry, under the tenant's name lock,
/// which keeps every other unit of the tenant's out until this one ends); `None`: it
/// is read here, in the session's transaction.
///
/// `then`: sent on the session right after its last batch, in the same round trip
/// (a worker's rest); whether it succeeded comes back beside the version (an error
/// in the unit's batch fails it too, and the caller retires the session).
async fn in_tenant_session(
    session: &tokio_postgres::Client,
    t: &PendingTenant,
    template: &Template,
    registry_version: i32,
    target: i32,
    marker: Option<Option<i32>>,
    then: Option<&str>,
) -> Result<(i32, bool)> {
    let place = place(t)?;
    let schema = place.schema.as_ref().ok_or_else(|| unplaced(t))?;
    let ran = async {
        let mut sql = String::from("BEGIN;\n");
        let marker = match marker {
            Some(read) => read,
            None => {
                if t.isolation == Isolation::Database {
                    // Two runs never migrate one database at once (the run table
                    // allows one run, but an operator may also migrate by hand). The
                    // tenant can take advisory locks in its own database: wait only as
                    // long as for any lock. (A schema-mode tenant on another server
                    // shares its server's database, where advisory locks are not
                    // granted: the tenant's name lock, held by the caller, keeps its
                    // units apart as on `default`.)
                    sql.push_str(&format!(
                        "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}';\n\
                         SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('berqenas.migrate'));\n"
                    ));
                }
                sql.push_str(&marker_query(schema.as_str()));
                let read = last_version(&session.simple_query(&sql).await?)?;
                sql.clear();
                read
            }
        };
        let from = marker.unwrap_or(registry_version).max(registry_version);
        if from < target {
            sql.push_str(&migration_sql(
                Some(place.owner_role.as_str()),
                schema,
                &template.sql_between(from, target),
                Some(target),
            ));
        }
        if t.in_control_database() {
            // In the control database the registry moves in this transaction.
            sql.push_str("SELECT berqenas_session.record_template_version();\n");
        }
        // The commit in the same round trip: from its audit entry on, the transaction
        // holds the audit chain's head, which every other unit's entry waits for.
        sql.push_str("COMMIT;");
        let then = async {
            match then {
                Some(then) => session.batch_execute(then).await.is_ok(),
                None => true,
            }
        };
        let (ran, rested) = futures_util::future::join(session.batch_execute(&sql), then).await;
        ran?;
        Ok::<_, Error>((from, rested))
    }
    .await;
    if ran.is_err() {
        let _ = session.batch_execute("ROLLBACK").await;
    }
    ran
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

/// The session a tenant's unit runs in: a login role (the caller's: it names,
/// declares, creates and drops it, on the tenant's server) that is a member of the
/// tenant's owner and of `always` only, connected to `database` on its server.
pub struct SessionGrants {
    pub owner: Ident,
    /// In the control database: the role that lets the session report its work.
    pub always: Vec<Ident>,
    /// The tenant's database; `None`: the control database.
    pub database: Option<Ident>,
}

pub fn session_grants(t: &PendingTenant) -> Result<SessionGrants> {
    let place = place(t)?;
    let control = t.in_control_database();
    Ok(SessionGrants {
        owner: place.owner_role.clone(),
        always: match control {
            true => vec![Ident::new(SESSION_ROLE).expect("static name")],
            false => vec![],
        },
        database: (!control).then(|| place.database.clone()),
    })
}

const REGISTER_SESSION: &str = "INSERT INTO berqenas.migration_sessions
        (role, tenant_id, from_version, target_version, run_id, actor)
     SELECT $1, id, template_version, $2, $3, $4 FROM berqenas.tenants WHERE id = $5";

/// The registry row a unit reads under the tenant's name lock (its server, its
/// version and, in the control database, the schema's marker); `None`: the tenant is
/// gone.
pub struct Read {
    row: Option<tokio_postgres::Row>,
    /// Whether the row carries the schema's marker.
    marker: bool,
}

/// Opens a tenant's unit on the control connection `c`, in one round trip:
///
/// 0. `first`, if any: the end of a transaction the caller began on `c` (a worker's
///    lending); its failure is the one reported, and the rest then runs in vain (the
///    registration in a transaction already failed);
/// 1. what the session of `role` may report, once, committed (the session reads it;
///    the session's commit consumes it): schema mode on `default` only. No WAL flush
///    to wait for: the session's own commit comes later in the WAL, so a server crash
///    keeps both or neither;
/// 2. `BEGIN`, the tenant's name lock, and the registry read under it.
///
/// The requests go out in the order their futures are first polled (`join` polls in
/// order), and every statement is prepared first, so none waits for a description
/// while the ones after it go out. A failed registration aborts only its own
/// transaction: its `COMMIT` rolls it back, and the `BEGIN` after it starts afresh.
/// `Ok`: the transaction is open, holding the lock. Either way the caller ends it,
/// and after an error forgets the registration ([`close_session`]).
pub async fn open_locked(
    c: &impl deadpool_postgres::GenericClient,
    first: Option<&str>,
    t: &PendingTenant,
    role: &Ident,
    target: i32,
    run_id: Uuid,
    actor: &str,
) -> Result<Read> {
    let insert = match t.in_control_database() {
        true => Some(c.prepare_cached(REGISTER_SESSION).await?),
        false => None,
    };
    let lock = crate::store::operations::prepare_lock_name(c).await?;
    // Prepared once per connection (a statement text alone is parsed, planned and
    // described again in a round trip of its own each time). In the control database
    // the schema's marker comes with it, so the tenant's session goes straight to its
    // DDL (`$2` NULL: the tenant's schema is in a database of its own).
    let registry = c.prepare_cached(&REGISTRY_AND_MARKER).await?;
    let control_schema = if t.in_control_database() {
        place(t)?.schema.as_ref().map(Ident::as_str)
    } else {
        None
    };
    let register = async {
        let Some(insert) = &insert else {
            return Ok(());
        };
        let (begun, inserted, committed) = futures_util::future::join3(
            c.batch_execute("BEGIN; SET LOCAL synchronous_commit = off"),
            c.execute(insert, &[&role.as_str(), &target, &run_id, &actor, &t.id]),
            c.batch_execute("COMMIT"),
        )
        .await;
        begun.and(inserted.map(drop)).and(committed)
    };
    let first = async {
        match first {
            Some(sql) => c.batch_execute(sql).await,
            None => Ok(()),
        }
    };
    let (first, registered, begun, locked, read) = futures_util::future::join5(
        first,
        register,
        c.batch_execute("BEGIN"),
        crate::store::operations::lock_name_prepared(c, &lock, t.tenant.as_str()),
        c.query_opt(&registry, &[&t.id, &control_schema]),
    )
    .await;
    first?;
    registered?;
    begun?;
    locked.map_err(|e| crate::tenant::service::name_lock_error(e, t.tenant.as_str()))?;
    Ok(Read {
        row: read?,
        marker: control_schema.is_some(),
    })
}

/// After the caller's transaction ended: forgets a session registration the session
/// did not consume (it failed, or had nothing to do).
pub async fn close_session(c: &impl deadpool_postgres::GenericClient, role: &Ident) -> Result<()> {
    c.execute(
        "DELETE FROM berqenas.migration_sessions WHERE role = $1",
        &[&role.as_str()],
    )
    .await?;
    Ok(())
}

/// One tenant's migration, from what [`open_locked`] read while the caller's
/// transaction holds the tenant's name lock (not its row: in schema mode the tenant's
/// session moves it). Runs what is behind in `session` (see [`session_grants`]; it
/// reads the schema's marker: a tenant whose DDL committed before a crash only moves
/// its registry). `then`: see [`in_tenant_session`]; the `bool` is whether it
/// succeeded (`true` when nothing was sent to the session).
pub async fn migrate_read(
    session: &tokio_postgres::Client,
    t: &PendingTenant,
    template: &Template,
    target: i32,
    read: Read,
    then: Option<&str>,
) -> Result<(Unit, bool)> {
    // A tenant moved to another server since the plan is migrated by the next run,
    // on the server it is on then (the plan's is not where its objects are now).
    let Some(row) = read.row else {
        return Ok((Unit::Current, true));
    };
    let (server, registry): (String, i32) = (row.get(0), row.get(1));
    if server != t.server {
        return Err(Error::Rejected(crate::problem::Problem::new(
            crate::problem::Kind::Conflict,
            "tenant_moved",
            format!(
                "tenant {} moved from server {:?} to {server:?} during the run; run the migration again",
                t.tenant, t.server
            ),
        )));
    }
    if registry >= target {
        return Ok((Unit::Current, true));
    }
    let marker = read.marker.then(|| row.get::<_, Option<i32>>(2));
    let (from, rested) =
        in_tenant_session(session, t, template, registry, target, marker, then).await?;
    let unit = match t.in_control_database() {
        false => Unit::Committed { registry, from },
        true => Unit::Migrated,
    };
    Ok((unit, rested))
}

/// After [`Unit::Committed`] (database mode, another server): the registry follows
/// the tenant's database, with its audit row, in the caller's transaction (which holds the lock).
pub async fn record_database(
    tx: &impl deadpool_postgres::GenericClient,
    t: &PendingTenant,
    unit: Unit,
    target: i32,
    run_id: Uuid,
    actor: &str,
) -> Result<()> {
    let Unit::Committed { registry, from } = unit else {
        return Ok(());
    };
    crate::store::tenants::set_template_version(tx, t.id, target).await?;
    outbox::emit(
        tx,
        t.id,
        t.tenant.as_str(),
        &MigrationCompleted {
            run_id,
            from_version: from.min(registry),
            to_version: target,
        },
    )
    .await?;
    audit::record(
        tx,
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
    Ok(())
}

/// Shared mode: the tenants share the pool's tables, so they move together, in one
/// transaction with the pool's DDL; run again, it finds the pool at the target and
/// only moves the tenants still behind.
pub async fn shared(
    p: &Platform,
    tenants: &[PendingTenant],
    template: &Template,
    target: i32,
    run_id: Uuid,
    actor: &str,
) -> Result<Outcome> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    lock_names(&tx, tenants).await?;
    let from = shared_mode::lock_pool_version(&tx).await?;
    if from < target {
        migrate_pool(&tx, template, (from, target), None).await?;
        shared_mode::set_pool_version(&tx, target, &template.checksum()).await?;
    }
    let moved =
        crate::store::tenants::move_shared_to_version(&tx, target, crate::store::servers::DEFAULT)
            .await?;
    record_shared(tx, moved, tenants, target, run_id, actor).await
}

/// The tenants' names locked first (the one lock order: a tenant's name, then what
/// else), in one order: each tenant's event is written under its name.
async fn lock_names(
    tx: &deadpool_postgres::Transaction<'_>,
    tenants: &[PendingTenant],
) -> Result<()> {
    let mut names: Vec<&str> = tenants.iter().map(|t| t.tenant.as_str()).collect();
    names.sort_unstable();
    for name in names {
        crate::store::operations::lock_name(tx, name).await?;
    }
    Ok(())
}

/// A shared pool's DDL from one version to another, in the caller's transaction on
/// its database, then what the new tables need to be shared (`tenant_id`, row
/// security, the quota guard); `marker`: the version its schema's marker then says
/// (a pool on another server; `default`'s is recorded in the registry).
async fn migrate_pool(
    tx: &deadpool_postgres::Transaction<'_>,
    template: &Template,
    (from, target): (i32, i32),
    marker: Option<i32>,
) -> Result<()> {
    let pool = Ident::new(POOL_SCHEMA).expect("static name");
    tx.batch_execute(&migration_sql(
        Some(POOL_OWNER),
        &pool,
        &template.sql_between(from, target),
        marker,
    ))
    .await?;
    shared_mode::tenantize(tx).await?;
    crate::isolation::quota_guard::extend_shared_guard(tx).await?;
    Ok(())
}

/// The registry of the shared-mode tenants a pool's migration moved (`moved`: id,
/// name, old version), their events and audit rows, in `tx`, which it commits.
async fn record_shared(
    tx: deadpool_postgres::Transaction<'_>,
    moved: Vec<(Uuid, String, i32)>,
    tenants: &[PendingTenant],
    target: i32,
    run_id: Uuid,
    actor: &str,
) -> Result<Outcome> {
    for (id, name, old) in &moved {
        outbox::emit(
            &tx,
            *id,
            name,
            &MigrationCompleted {
                run_id,
                from_version: *old,
                to_version: target,
            },
        )
        .await?;
    }
    for (id, name, old) in &moved {
        audit::record(&tx, &audit_entry(actor, *id, name, *old, target, run_id)).await?;
    }
    tx.commit().await?;
    let names: Vec<String> = moved.into_iter().map(|(_, name, _)| name).collect();
    if names.is_empty() {
        return Ok(Outcome::Current(
            tenants.iter().map(|t| t.tenant.to_string()).collect(),
        ));
    }
    Ok(Outcome::Migrated(names))
}

/// Shared mode on a server other than `default` (`view`: that server's platform): no
/// transaction spans the pool and the registry, so the pool's DDL commits with its
/// schema's marker there, as a tenant's on another server does; then
/// [`shared_registry_on`] moves the registry of its tenants still behind. Run again
/// after a crash in between, it finds the marker at the target and changes nothing.
pub async fn shared_pool_on(view: &Platform, template: &Template, target: i32) -> Result<()> {
    let mut there = view.pool.get().await?;
    let tx = there.transaction().await?;
    shared_mode::lock_pool(&tx).await?;
    let from = shared_mode::pool_version_on(&tx).await?.unwrap_or(target);
    if from < target {
        migrate_pool(&tx, template, (from, target), Some(target)).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// After [`shared_pool_on`]: the shared-mode tenants of `server` still behind move to
/// `target` in the registry, with their events and audit rows, in one control
/// transaction.
pub async fn shared_registry_on(
    p: &Platform,
    server: &str,
    tenants: &[PendingTenant],
    target: i32,
    (run_id, actor): (Uuid, &str),
) -> Result<Outcome> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    lock_names(&tx, tenants).await?;
    let moved = crate::store::tenants::move_shared_to_version(&tx, target, server).await?;
    record_shared(tx, moved, tenants, target, run_id, actor).await
}
