//! Nothing a crash leaves behind lives forever: the scratch roles, databases, schemas
//! and `.partial` files of a backup, restore or verify killed half way are registered
//! before they exist, and the sweeper removes them once their lease lapses, while a
//! live operation's scratch (its lease renewed) and the tenants' own objects stay.
//!
//! The in-process tests share this binary's cluster and run one at a time (they sweep
//! each other's rows); the crash test runs the real binary on a cluster of its own.

mod common;
#[path = "support/process.rs"]
mod process;

use std::path::Path;
use std::time::{Duration, Instant};

use berqenas::access::{Reach, TempRole};
use berqenas::backup::scratch::{Kind, Lease};
use berqenas::backup::sweep;
use berqenas::backup::temp::ScratchDb;
use berqenas::platform::Platform;
use common::{connect_as, scratch_dir, superuser, superuser_in};
use process::{Cleanup, Server, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

/// The in-process tests sweep every lapsed row: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Leases of one second, renewed every third of it (read once per process).
fn short_leases() {
    std::env::set_var("BERQENAS_LEASE_SECS", "1");
    assert_eq!(berqenas::ops::lease_secs(), 1.0);
}

async fn lapse() {
    tokio::time::sleep(Duration::from_millis(1600)).await;
}

fn hex() -> String {
    hex::encode(Uuid::new_v4().as_bytes())[..12].to_string()
}

async fn count(pg: &tokio_postgres::Client, sql: &str, arg: &str) -> i64 {
    pg.query_one(sql, &[&arg])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

async fn role_exists(pg: &tokio_postgres::Client, name: &str) -> bool {
    count(pg, "SELECT count(*) FROM pg_roles WHERE rolname = $1", name).await == 1
}

async fn database_exists(pg: &tokio_postgres::Client, name: &str) -> bool {
    count(
        pg,
        "SELECT count(*) FROM pg_database WHERE datname = $1",
        name,
    )
    .await
        == 1
}

async fn registered(pg: &tokio_postgres::Client, id: Uuid) -> bool {
    pg.query_one(
        "SELECT count(*) FROM berqenas.scratch_objects WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap()
    .get::<_, i64>(0)
        == 1
}

async fn row_id(pg: &tokio_postgres::Client, kind: &str, name: &str) -> Uuid {
    pg.query_one(
        "SELECT id FROM berqenas.scratch_objects WHERE kind = $1 AND name = $2",
        &[&kind, &name],
    )
    .await
    .unwrap_or_else(|e| panic!("no {kind} row for {name}: {e:?}"))
    .get(0)
}

async fn sweep_ok(p: &Platform, ours: &[Uuid]) -> sweep::Report {
    let report = sweep::run_once(p).await.unwrap();
    for (id, e) in &report.failed {
        assert!(!ours.contains(id), "sweeping {id} failed: {e}");
    }
    report
}

#[tokio::test]
async fn a_live_lease_keeps_its_objects_and_a_dead_ones_are_swept_with_what_the_role_owns() {
    short_leases();
    let _serial = SERIAL.lock().await;
    let p = common::platform(4).await;
    let pg = superuser().await;

    // A database outside the registry where the scratch role comes to own a table,
    // beside a table of another owner: the sweep takes the role's, and only it.
    let other = format!("sweep_other_{}", hex());
    pg.batch_execute(&format!("CREATE DATABASE {other}"))
        .await
        .unwrap();

    let db = ScratchDb::create(&p, "sweeptest").await.unwrap();
    let c = p.pool.get().await.unwrap();
    let role = TempRole::create(
        &p,
        TempRole::new_name("restore"),
        &[],
        Reach::Database(&db.name),
    )
    .await
    .unwrap();
    drop(c);
    let (db_name, role_name) = (db.name.as_str().to_string(), role.name.as_str().to_string());
    let in_other = superuser_in(&other).await;
    in_other
        .batch_execute(&format!(
            "CREATE TABLE kept (x int); INSERT INTO kept VALUES (1);
             CREATE TABLE owned_by_scratch (x int); ALTER TABLE owned_by_scratch OWNER TO {role_name};"
        ))
        .await
        .unwrap();
    let db_row = row_id(&pg, "database", &db_name).await;
    let role_row = row_id(&pg, "role", &role_name).await;

    // Alive: the leases are renewed past their length, nothing is swept.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    sweep_ok(&p, &[db_row, role_row]).await;
    assert!(
        database_exists(&pg, &db_name).await,
        "a live scratch database stays"
    );
    assert!(
        role_exists(&pg, &role_name).await,
        "a live scratch role stays"
    );
    assert!(registered(&pg, db_row).await && registered(&pg, role_row).await);

    // The process "dies": the values go without their drop methods, renewals stop.
    drop(role);
    drop(db);
    lapse().await;
    sweep_ok(&p, &[db_row, role_row]).await;
    assert!(!database_exists(&pg, &db_name).await, "database swept");
    assert!(!role_exists(&pg, &role_name).await, "role swept");
    assert!(!registered(&pg, db_row).await && !registered(&pg, role_row).await);
    let left: Vec<String> = in_other
        .query(
            "SELECT relname::text FROM pg_class WHERE relname IN ('kept', 'owned_by_scratch')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["kept"], "only the role's own table went");
    let rows: i64 = in_other
        .query_one("SELECT count(*) FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    drop(in_other);
    pg.batch_execute(&format!("DROP DATABASE {other} WITH (FORCE)"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_normal_drop_unregisters_and_leaves_nothing_to_sweep() {
    short_leases();
    let _serial = SERIAL.lock().await;
    let p = common::platform(4).await;
    let pg = superuser().await;
    let db = ScratchDb::create(&p, "sweeptest").await.unwrap();
    let role = TempRole::create(
        &p,
        TempRole::new_name("restore"),
        &[],
        Reach::Database(&db.name),
    )
    .await
    .unwrap();
    let (db_row, role_row) = (
        row_id(&pg, "database", db.name.as_str()).await,
        row_id(&pg, "role", role.name.as_str()).await,
    );
    let db_name = db.name.as_str().to_string();
    role.drop(&p, &[&db_name]).await.unwrap();
    db.drop(&p).await.unwrap();
    assert!(!registered(&pg, db_row).await && !registered(&pg, role_row).await);
    assert!(!database_exists(&pg, &db_name).await);
}

/// A crash between registering and creating leaves a row whose object never existed.
#[tokio::test]
async fn registered_but_never_created_objects_are_forgotten_without_error() {
    short_leases();
    let _serial = SERIAL.lock().await;
    let p = common::platform(4).await;
    let pg = superuser().await;
    let file = scratch_dir("sweep-never").join("x.partial");
    let mut ids = Vec::new();
    for (kind, name, database) in [
        (
            Kind::Role,
            format!("berqenas_restore_{}", hex()),
            Some("berqenas".to_string()),
        ),
        (Kind::Database, format!("berqenas_verify_{}", hex()), None),
        (
            Kind::Schema,
            format!("berqenas_backup_{}", hex()),
            Some("berqenas".to_string()),
        ),
        (
            Kind::Schema,
            format!("berqenas_backup_{}", hex()),
            Some(format!("no_such_db_{}", hex())),
        ),
        (Kind::File, file.display().to_string(), None),
    ] {
        let lease = Lease::register(&p.pool, kind, &name, database.as_deref())
            .await
            .unwrap();
        ids.push(lease.id());
        drop(lease); // killed before the CREATE
    }
    lapse().await;
    let report = sweep_ok(&p, &ids).await;
    assert!(report.forgotten >= ids.len(), "{report:?}");
    for id in &ids {
        assert!(!registered(&pg, *id).await, "row {id} swept");
    }
}

#[tokio::test]
async fn one_failure_is_retried_and_does_not_stop_the_round() {
    short_leases();
    let _serial = SERIAL.lock().await;
    let p = common::platform(4).await;
    let pg = superuser().await;
    let dir = scratch_dir("sweep-fail");
    // A directory where a file was registered cannot be removed as a file.
    let stuck = dir.join("stuck.partial");
    std::fs::create_dir(&stuck).unwrap();
    let plain = dir.join("plain.partial");
    std::fs::write(&plain, b"half a backup").unwrap();
    let first = Lease::register_file(&p.pool, &stuck).await.unwrap();
    let second = Lease::register_file(&p.pool, &plain).await.unwrap();
    let (stuck_id, plain_id) = (first.id(), second.id());
    drop((first, second));
    lapse().await;

    let report = sweep::run_once(&p).await.unwrap();
    assert!(
        report.failed.iter().any(|(id, _)| *id == stuck_id),
        "{report:?}"
    );
    assert!(!plain.exists(), "the round went on past the failure");
    assert!(!registered(&pg, plain_id).await);
    assert!(
        registered(&pg, stuck_id).await,
        "a failed row stays for the next round"
    );

    let again = sweep::run_once(&p).await.unwrap();
    assert!(again.failed.iter().any(|(id, _)| *id == stuck_id));
    std::fs::remove_dir(&stuck).unwrap();
    sweep_ok(&p, &[stuck_id]).await;
    assert!(!registered(&pg, stuck_id).await, "retried and done");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Restore roles from before the registry: certainly dead once their login expired
/// (an hour after creation); any other role is left alone.
#[tokio::test]
async fn expired_restore_roles_without_a_row_are_swept_and_nothing_else() {
    short_leases();
    let _serial = SERIAL.lock().await;
    let p = common::platform(4).await;
    let pg = superuser().await;
    let expired = format!("berqenas_restore_{}", hex());
    let valid = format!("berqenas_restore_{}", hex());
    let odd = format!("berqenas_restore_{}_x", hex());
    let table = format!("sweep_legacy_{}", hex());
    pg.batch_execute(&format!(
        "CREATE ROLE {expired} LOGIN VALID UNTIL '2001-01-01';
         CREATE ROLE {valid} LOGIN VALID UNTIL 'infinity';
         CREATE ROLE {odd} LOGIN VALID UNTIL '2001-01-01';
         CREATE TABLE public.{table} (x int); ALTER TABLE public.{table} OWNER TO {expired};"
    ))
    .await
    .unwrap();
    let report = sweep::run_once(&p).await.unwrap();
    assert!(
        report
            .removed
            .iter()
            .any(|(k, n)| *k == Kind::Role && *n == expired),
        "{report:?}"
    );
    assert!(!role_exists(&pg, &expired).await);
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM pg_class WHERE relname = $1",
            &table
        )
        .await,
        0,
        "what it owned went with it"
    );
    assert!(role_exists(&pg, &valid).await, "a login still valid stays");
    assert!(role_exists(&pg, &odd).await, "another name pattern stays");
    pg.batch_execute(&format!("DROP ROLE {valid}; DROP ROLE {odd};"))
        .await
        .unwrap();
}

// ---- the real binary, killed mid-work ----

/// The real server with one-second leases and worker rounds, maybe with a failpoint.
async fn serve(dir: &Path, failpoint: Option<&str>) -> Server {
    let mut env = vec![
        ("BERQENAS_LEASE_SECS", "1"),
        ("BERQENAS_RECONCILE_SECS", "1"),
    ];
    if let Some(point) = failpoint {
        env.push(("BERQENAS_FAILPOINT", point));
    }
    Server::start(dir, &env).await
}

async fn texts(pg: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    pg.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The scratch objects in the real catalog and on disk, and the registry's rows.
async fn scratch_state(pg: &tokio_postgres::Client, backups: &Path) -> Vec<String> {
    let mut out = texts(
        pg,
        "SELECT 'role:' || regexp_replace(rolname, '_[0-9a-f]{12}$', '') FROM pg_roles
           WHERE rolname LIKE 'berqenas\\_restore\\_%'
         UNION ALL SELECT 'database:' || regexp_replace(datname, '_[0-9a-f]{12}$', '')
           FROM pg_database WHERE datname ~ '^berqenas_(verify|restore)_[0-9a-f]{12}$'
         UNION ALL SELECT 'schema:' || nspname FROM pg_namespace WHERE nspname LIKE 'berqenas\\_backup\\_%'
         UNION ALL SELECT 'row:' || kind FROM berqenas.scratch_objects
         ORDER BY 1",
    )
    .await;
    for tenant_dir in std::fs::read_dir(backups).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(tenant_dir.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "partial") {
                out.push(format!("file:{}", f.path().display()));
            }
        }
    }
    out.sort();
    out
}

/// Rows of the tenant, as text, read as superuser.
async fn schema_rows(pg: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    texts(
        pg,
        &format!(
            "SELECT count(*)::text || ' ' || md5(string_agg(a::text, ',' ORDER BY a::text)) FROM {schema}.applications a
             UNION ALL SELECT count(*)::text FROM {schema}.deployments"
        ),
    )
    .await
}

async fn shared_rows(pg: &tokio_postgres::Client, tenant_id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["applications", "resources", "deployments"] {
        out.extend(
            texts(
                pg,
                &format!(
                    "SELECT count(*)::text || ' ' || coalesce(md5(string_agg((to_jsonb(x) - 'tenant_id')::text, ',' ORDER BY (to_jsonb(x) - 'tenant_id')::text)), '')
                       FROM berqenas_shared.{table} x WHERE tenant_id = '{tenant_id}'"
                ),
            )
            .await,
        );
    }
    out
}

async fn fill(t: &Value) {
    let c = connect_as(&t["credentials"]).await;
    c.batch_execute(
        "INSERT INTO applications (name, team, created_by, desired_state)
              SELECT 'app-' || i, 'team', 'me', jsonb_build_object('n', i) FROM generate_series(1, 20) i;
         INSERT INTO resources (application_id, type, name) SELECT id, 'db', 'r-' || name FROM applications;
         INSERT INTO deployments (application_id, version, status, triggered_by)
              SELECT id, 'v1', 'done', 'ci' FROM applications;",
    )
    .await
    .unwrap();
}

/// Polls until the scratch state is `want` (the worker loop sweeps every second).
async fn until_state(pg: &tokio_postgres::Client, backups: &Path, want: &[&str], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = scratch_state(pg, backups).await;
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn kill_9_mid_verify_restore_and_backup_leaves_scratch_that_the_next_server_sweeps() {
    use reqwest::Method;
    let dir = scratch_dir("sweep-crash");
    let _cleanup = Cleanup(dir.clone());
    let backups = dir.join("backups");

    // 1. kill -9 inside a verify: the scratch database and role exist.
    let s = serve(&dir, Some("verify.after_restore")).await;
    let keep = s
        .ok(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": "keep"})),
        )
        .await;
    fill(&keep).await;
    let pg = process::superuser_in(&dir, None).await;
    let keep_rows = schema_rows(&pg, "tenant_keep").await;
    let keep_backup = s
        .ok(Method::POST, "/api/v1/tenants/keep/backups", None)
        .await;
    let keep_bid = keep_backup["id"].as_str().unwrap().to_string();
    s.killed_by(
        "verify.after_restore",
        Method::POST,
        &format!("/api/v1/backups/{keep_bid}/verify"),
        None,
    )
    .await;
    assert_eq!(
        scratch_state(&pg, &backups).await,
        [
            "database:berqenas_verify",
            "role:berqenas_restore",
            "row:database",
            "row:role"
        ],
        "the verify's scratch database and role are left, registered"
    );

    // 2. A new server sweeps them (at start or in its worker loop); kill -9 inside a
    // shared-mode restore, after its scratch schema was filled.
    let s = serve(&dir, Some("restore.shared.after_scratch")).await;
    until_state(&pg, &backups, &[], "the verify's leftovers").await;
    assert_eq!(schema_rows(&pg, "tenant_keep").await, keep_rows);
    let pool = s
        .ok(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": "pool", "isolation": "shared"})),
        )
        .await;
    fill(&pool).await;
    let pool_id = pool["id"].as_str().unwrap().to_string();
    let pool_rows = shared_rows(&pg, &pool_id).await;
    let pool_backup = s
        .ok(Method::POST, "/api/v1/tenants/pool/backups", None)
        .await;
    let pool_bid: Uuid = pool_backup["id"].as_str().unwrap().parse().unwrap();
    let restore_schema = format!("berqenas_backup_{}", pool_bid.simple());
    s.killed_by(
        "restore.shared.after_scratch",
        Method::POST,
        &format!("/api/v1/tenants/pool/backups/{pool_bid}/restore"),
        None,
    )
    .await;
    assert_eq!(
        scratch_state(&pg, &backups).await,
        ["row:schema".to_string(), format!("schema:{restore_schema}")],
    );
    let filled = count(
        &pg,
        "SELECT count(*) FROM pg_class WHERE relnamespace = to_regnamespace($1)",
        &restore_schema,
    )
    .await;
    assert!(filled > 0, "the scratch schema holds the archive's tables");

    // 3. Swept again by the next server; kill -9 in a shared-mode backup mid-upload:
    // its scratch schema and `.partial` file are left.
    let s = serve(&dir, Some("backup.mid_upload")).await;
    until_state(&pg, &backups, &[], "the restore's scratch schema").await;
    assert_eq!(
        shared_rows(&pg, &pool_id).await,
        pool_rows,
        "the tenant's rows are untouched"
    );
    s.killed_by(
        "backup.mid_upload",
        Method::POST,
        "/api/v1/tenants/pool/backups",
        None,
    )
    .await;
    let left = scratch_state(&pg, &backups).await;
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(
        left[0].starts_with(&format!("file:{}/{pool_id}/", backups.display())),
        "{left:?}"
    );
    assert_eq!(&left[1..3], ["row:file", "row:schema"]);
    assert!(left[3].starts_with("schema:berqenas_backup_"), "{left:?}");
    assert_ne!(left[3], format!("schema:{restore_schema}"));

    // 4. A server without failpoints sweeps them and counts it; everything of the
    // tenants is as it was, and a verify now runs to its end and leaves nothing.
    let mut s = serve(&dir, None).await;
    until_state(
        &pg,
        &backups,
        &[],
        "the backup's scratch schema and partial file",
    )
    .await;
    assert_eq!(schema_rows(&pg, "tenant_keep").await, keep_rows);
    assert_eq!(shared_rows(&pg, &pool_id).await, pool_rows);
    let (status, metrics) = {
        let res = reqwest::Client::new()
            .get(format!("{}/metrics", s.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    };
    assert_eq!(status, StatusCode::OK);
    for kind in ["file", "schema"] {
        let line = format!("berqenas_scratch_swept_total{{kind=\"{kind}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    let report = s
        .ok(
            Method::POST,
            &format!("/api/v1/backups/{keep_bid}/verify"),
            None,
        )
        .await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(scratch_state(&pg, &backups).await, Vec::<String>::new());
    // The tenant logs in to the control database (schema mode) and can use its own
    // tables, but can neither read nor write the registry.
    let c = connect_as(&keep["credentials"]).await;
    c.query_one("SELECT count(*) FROM applications", &[])
        .await
        .unwrap();
    for sql in [
        "SELECT count(*) FROM berqenas.scratch_objects",
        "INSERT INTO berqenas.scratch_objects (id, kind, name, lease_until)
         VALUES (gen_random_uuid(), 'database', 'berqenas', now())",
        "DELETE FROM berqenas.scratch_objects",
    ] {
        let e = c.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {e:?}"
        );
    }
    s.stop().await;
}

/// A shared-mode scratch schema from before the registry: dead once its backup is not
/// running and no restore of that backup holds the backup's advisory lock.
#[tokio::test]
async fn unregistered_backup_schemas_are_swept_only_when_no_restore_holds_them() {
    short_leases();
    let _serial = SERIAL.lock().await;
    let p = common::platform(4).await;
    let pg = superuser().await;
    let backup_id = Uuid::new_v4();
    let schema = format!("berqenas_backup_{}", backup_id.simple());
    let odd = format!("berqenas_backup_{}_x", hex());
    pg.batch_execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.applications (x int);
         CREATE SCHEMA {odd};"
    ))
    .await
    .unwrap();
    let schema_count = |name: String| {
        let pg = &pg;
        async move {
            count(
                pg,
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                &name,
            )
            .await
        }
    };

    // A restore of that backup (another session) holds its lock: the schema is in use.
    let restorer = superuser().await;
    restorer
        .execute(
            "SELECT pg_advisory_lock(hashtextextended($1, 0))",
            &[&format!("berqenas.backup:{backup_id}")],
        )
        .await
        .unwrap();
    sweep_ok(&p, &[]).await;
    assert_eq!(schema_count(schema.clone()).await, 1, "in use: kept");
    drop(restorer);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let report = sweep_ok(&p, &[]).await;
    assert!(
        report
            .removed
            .iter()
            .any(|(k, n)| *k == Kind::Schema && *n == schema),
        "{report:?}"
    );
    assert_eq!(schema_count(schema).await, 0, "dead: swept");
    assert_eq!(schema_count(odd.clone()).await, 1, "another name stays");
    pg.batch_execute(&format!("DROP SCHEMA {odd}"))
        .await
        .unwrap();
}

/// Killed after committing its objects but before recording them: the backup stays
/// `running` until the worker records it as failed (a day later), and then its
/// objects go too.
#[tokio::test]
async fn a_backup_lost_after_committing_its_objects_keeps_none_once_recorded_failed() {
    use berqenas::backup::registry::{manifest_key, object_key};
    use tokio::io::AsyncWriteExt;
    short_leases();
    let _serial = SERIAL.lock().await;
    let p = common::platform(4).await;
    let pg = superuser().await;
    let app = common::TestApp::serve(p.clone()).await;
    let name = common::unique("lost-backup");
    let t = app.create(&name).await;
    let tenant_id: Uuid = t["id"].as_str().unwrap().parse().unwrap();
    let id = Uuid::now_v7();
    pg.execute(
        "INSERT INTO berqenas.backups (id, tenant_id, tenant_name, kind, status, isolation, encrypted, created_at)
         VALUES ($1, $2, $3, 'manual', 'running', 'schema', true, now() - interval '2 days')",
        &[&id, &tenant_id, &name],
    )
    .await
    .unwrap();
    let keys = [object_key(tenant_id, id), manifest_key(tenant_id, id)];
    for key in &keys {
        let mut w = p.backups.create(key).await.unwrap();
        w.write_all(b"committed, never recorded").await.unwrap();
        w.commit().await.unwrap();
        assert!(p.backups.open(key).await.is_ok());
    }
    berqenas::backup::worker::run_once(&p).await.unwrap();
    let status: String = pg
        .query_one("SELECT status FROM berqenas.backups WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "failed");
    for key in &keys {
        assert!(p.backups.open(key).await.is_err(), "{key} deleted");
    }
}
