//! Template migrations across tenants of every isolation mode, against the real
//! catalog: everyone gets the change, failures stay contained and are reported, a
//! re-run continues, a tampered migration is refused, kill -9 leaves nothing half done.

mod common;

use std::time::Duration;

use berqenas::server::{self, Database};
use berqenas::template::Template;
use common::{connect_as, unique, TestApp, INIT, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ADD_PRIORITY: &str =
    "ALTER TABLE applications ADD COLUMN priority integer NOT NULL DEFAULT 0;\n\
                            CREATE INDEX applications_priority_idx ON applications (priority);\n";
const UNIQUE_TEAM: &str = "CREATE UNIQUE INDEX applications_team_key ON applications (team);\n";

async fn app(db: &Database, template: Template) -> TestApp {
    let platform = server::platform_with(db, common::secret_key(), 16, template)
        .await
        .unwrap();
    TestApp::serve(platform).await
}

async fn pg(db: &str) -> tokio_postgres::Client {
    let mut config = common::database().await.config.clone();
    config.dbname(db);
    berqenas::pg::connect(&config).await.unwrap()
}

/// Creates tenants, eight at a time; returns their create responses.
async fn create_many(app: &TestApp, prefix: &str, isolation: &str, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let names: Vec<String> = (0..n).map(|_| unique(prefix)).collect();
    for chunk in names.chunks(8) {
        let calls = chunk.iter().map(|name| async move {
            let (status, body) = app
                .call(
                    Method::POST,
                    "/api/v1/tenants",
                    Some(json!({"name": name, "isolation": isolation})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body
        });
        out.extend(futures::future::join_all(calls).await);
    }
    out
}

async fn run_migration(app: &TestApp, body: Value) -> Value {
    let (status, run) = app
        .call(Method::POST, "/api/v1/migrations", Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    wait_for(app, run["id"].as_str().unwrap()).await
}

async fn wait_for(app: &TestApp, id: &str) -> Value {
    for _ in 0..1200 {
        let (status, run) = app
            .call(Method::GET, &format!("/api/v1/migrations/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{run}");
        if run["state"] != "running" {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("migration run {id} did not finish");
}

/// Whether a tenant's `applications` table has `column`, looked up in its own catalog.
async fn has_column(control: &tokio_postgres::Client, tenant: &Value, column: &str) -> bool {
    let schema = tenant["schema"].as_str().unwrap();
    let sql = "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = $1 AND c.relname = 'applications' AND a.attname = $2 AND NOT a.attisdropped";
    let n: i64 = match tenant["isolation"].as_str().unwrap() {
        "database" => pg(tenant["database"].as_str().unwrap())
            .await
            .query_one(sql, &[&schema, &column])
            .await
            .unwrap()
            .get(0),
        _ => control
            .query_one(sql, &[&schema, &column])
            .await
            .unwrap()
            .get(0),
    };
    n == 1
}

async fn has_index(control: &tokio_postgres::Client, tenant: &Value, index: &str) -> bool {
    let schema = tenant["schema"].as_str().unwrap();
    let sql = "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = $2";
    let n: i64 = match tenant["isolation"].as_str().unwrap() {
        "database" => pg(tenant["database"].as_str().unwrap())
            .await
            .query_one(sql, &[&schema, &index])
            .await
            .unwrap()
            .get(0),
        _ => control
            .query_one(sql, &[&schema, &index])
            .await
            .unwrap()
            .get(0),
    };
    n == 1
}

async fn version_of(app: &TestApp, name: &str) -> i64 {
    let (status, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    t["template_version"].as_i64().unwrap()
}

#[tokio::test]
async fn every_mode_gets_the_migration_and_a_rerun_is_a_no_op() {
    let db = common::control_database("mig_all").await;
    let before = app(&db, common::template_with(&[])).await;
    let mut tenants = create_many(&before, "ms", "schema", 40).await;
    tenants.extend(create_many(&before, "md", "database", 30).await);
    tenants.extend(create_many(&before, "mh", "shared", 30).await);

    // A new release of the application's tenant schema: the server restarts with it.
    let app = app(
        &db,
        common::template_with(&[("0002_priority.sql", ADD_PRIORITY)]),
    )
    .await;
    let (status, plan) = app
        .call(
            Method::POST,
            "/api/v1/migrations",
            Some(json!({"dry_run": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["target_version"], 2);
    assert_eq!(plan["pending"].as_array().unwrap().len(), 100, "{plan}");
    assert_eq!(
        plan["pending"][0]["migrations"],
        json!(["0002_priority.sql"])
    );
    let control = pg("mig_all").await;
    assert!(
        !has_column(&control, &tenants[0], "priority").await,
        "a dry run changes nothing"
    );

    let run = run_migration(&app, json!({"jobs": 4})).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["migrated"], 100, "{run}");
    assert_eq!(run["failed"], 0);
    for t in &tenants {
        let name = t["name"].as_str().unwrap();
        assert_eq!(version_of(&app, name).await, 2, "{name}");
        assert!(has_column(&control, t, "priority").await, "{name}");
        assert!(
            has_index(&control, t, "applications_priority_idx").await,
            "{name}"
        );
    }
    // The tenants' own login roles use the new column, in every mode.
    for t in [&tenants[0], &tenants[40], &tenants[70], &tenants[71]] {
        let tenant = connect_as(&t["credentials"]).await;
        let row = tenant
            .query_one(
                "INSERT INTO applications (name, team, created_by, priority)
                 VALUES ('billing', 'core', 'me', 7) RETURNING priority",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), 7, "{}", t["name"]);
    }
    // Migrated tables stay owned by the tenant's owner role.
    let owner: String = control
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE schemaname = $1 AND tablename = 'applications'",
            &[&tenants[0]["schema"].as_str().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        owner,
        format!("{}_owner", tenants[0]["schema"].as_str().unwrap())
    );

    // Nothing pending: a no-op run, and the status says all are current.
    let again = run_migration(&app, json!({})).await;
    assert_eq!(again["state"], "succeeded", "{again}");
    assert_eq!(again["migrated"], 0);
    assert_eq!(again["total"], 0);
    assert_eq!(again["already_current"], 100);
    let (_, status) = app
        .call(Method::GET, "/api/v1/migrations/status", None)
        .await;
    assert_eq!(status["pending"], 0, "{status}");
    assert_eq!(
        status["tenants_by_version"],
        json!([{"version": 2, "tenants": 100}])
    );

    // New tenants start at the latest version in every mode.
    for mode in ["schema", "database", "shared"] {
        let t = &create_many(&app, "mnew", mode, 1).await[0];
        assert_eq!(t["template_version"], 2, "{mode}");
        assert!(has_column(&control, t, "priority").await, "{mode}");
    }
    let audited: i64 = control
        .query_one(
            "SELECT count(*) FROM berqenas.audit_log WHERE action = 'tenant_migrated'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 100, "each migrated tenant is audited once");
}

#[tokio::test]
async fn a_failing_migration_fails_exactly_the_tenants_it_breaks() {
    let db = common::control_database("mig_fail").await;
    let before = app(&db, common::template_with(&[])).await;
    let mut tenants = create_many(&before, "fs", "schema", 6).await;
    tenants.extend(create_many(&before, "fd", "database", 3).await);
    // Two schema tenants and one database tenant hold a duplicate team.
    let bad: Vec<&Value> = vec![&tenants[1], &tenants[4], &tenants[7]];
    for t in &bad {
        let c = connect_as(&t["credentials"]).await;
        c.batch_execute(
            "INSERT INTO applications (name, team, created_by) VALUES ('a', 'dup', 'me'), ('b', 'dup', 'me')",
        )
        .await
        .unwrap();
    }
    let control = pg("mig_fail").await;
    let app = app(
        &db,
        common::template_with(&[("0002_unique_team.sql", UNIQUE_TEAM)]),
    )
    .await;

    // The CLI, as a deploy script would run it: non-zero exit and a report.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_berqenas"))
        .args([
            "migrate", "--jobs", "3", "-o", "json", "--server", &app.url, "--token", TOKEN,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "a failed tenant makes the exit non-zero"
    );
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["migrated"], 6, "{run}");
    let mut failed: Vec<&str> = run["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["tenant"].as_str().unwrap())
        .collect();
    failed.sort();
    let mut expected: Vec<&str> = bad.iter().map(|t| t["name"].as_str().unwrap()).collect();
    expected.sort();
    assert_eq!(failed, expected);
    assert_eq!(run["failures"][0]["sqlstate"], "23505", "{run}");
    for t in &tenants {
        let name = t["name"].as_str().unwrap();
        let is_bad = bad.iter().any(|b| b["name"] == t["name"]);
        assert_eq!(
            version_of(&app, name).await,
            if is_bad { 1 } else { 2 },
            "{name}"
        );
        assert_eq!(
            has_index(&control, t, "applications_team_key").await,
            !is_bad,
            "{name}: a failed tenant keeps its old schema, untouched"
        );
    }

    // Fix the data; the next run migrates exactly the three that failed.
    for t in &bad {
        let c = connect_as(&t["credentials"]).await;
        c.batch_execute("UPDATE applications SET team = name")
            .await
            .unwrap();
    }
    let run = run_migration(&app, json!({})).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["migrated"], 3);
    assert_eq!(run["already_current"], 6);
    for t in &bad {
        assert!(has_index(&control, t, "applications_team_key").await);
    }
}

#[tokio::test]
async fn a_failing_canary_stops_the_rollout() {
    let db = common::control_database("mig_canary").await;
    let before = app(&db, common::template_with(&[])).await;
    let tenants = create_many(&before, "cn", "schema", 1).await;
    let rest = create_many(&before, "cn", "schema", 5).await;
    let c = connect_as(&tenants[0]["credentials"]).await;
    c.batch_execute(
        "INSERT INTO applications (name, team, created_by) VALUES ('a', 'dup', 'me'), ('b', 'dup', 'me')",
    )
    .await
    .unwrap();
    let app = app(
        &db,
        common::template_with(&[("0002_unique_team.sql", UNIQUE_TEAM)]),
    )
    .await;
    let run = run_migration(&app, json!({"canary": 2, "jobs": 1})).await;
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["failed"], 1);
    assert_eq!(run["migrated"], 1, "the other canary went through: {run}");
    assert_eq!(run["not_attempted"], 4, "{run}");
    // Which of `rest` was the other canary depends on the order their creates
    // committed (they run at once): count, rather than assume the first.
    let mut untouched = 0;
    for t in &rest {
        if version_of(&app, t["name"].as_str().unwrap()).await == 1 {
            untouched += 1;
        }
    }
    assert_eq!(
        untouched, 4,
        "only the other canary of `rest` migrated: {run}"
    );
}

#[tokio::test]
async fn subsets_and_bad_requests() {
    let db = common::control_database("mig_subset").await;
    let before = app(&db, common::template_with(&[])).await;
    let a = create_many(&before, "sa", "schema", 2).await;
    let app = app(
        &db,
        common::template_with(&[("0002_priority.sql", ADD_PRIORITY)]),
    )
    .await;
    let control = pg("mig_subset").await;
    let audit_before: i64 = control
        .query_one("SELECT count(*) FROM berqenas.audit_log", &[])
        .await
        .unwrap()
        .get(0);
    for (body, field) in [
        (json!({"jobs": 0}), "jobs"),
        (json!({"jobs": 1000}), "jobs"),
        (json!({"canary": 0}), "canary"),
        (json!({"isolation": "cluster"}), "isolation"),
        (json!({"tenants": "x"}), "tenants"),
    ] {
        let (status, err) = app
            .call(Method::POST, "/api/v1/migrations", Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["error"]["field"], field, "{err}");
    }
    let (status, err) = app
        .call(
            Method::POST,
            "/api/v1/migrations",
            Some(json!({"tenant": "no-such-tenant"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    let (status, _) = app
        .call(Method::GET, "/api/v1/migrations/not-a-uuid", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let audit_after: i64 = control
        .query_one("SELECT count(*) FROM berqenas.audit_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(audit_before, audit_after, "refused requests change nothing");
    assert_eq!(version_of(&app, a[0]["name"].as_str().unwrap()).await, 1);

    let run = run_migration(&app, json!({"tenant": a[1]["name"]})).await;
    assert_eq!(run["migrated"], 1, "{run}");
    assert_eq!(version_of(&app, a[0]["name"].as_str().unwrap()).await, 1);
    assert_eq!(version_of(&app, a[1]["name"].as_str().unwrap()).await, 2);
}

#[tokio::test]
async fn a_changed_or_missing_applied_migration_is_refused() {
    let db = common::control_database("mig_tamper").await;
    let key = common::secret_key;
    if let Err(e) = server::platform_with(
        &db,
        key(),
        4,
        common::template_with(&[("0002_priority.sql", ADD_PRIORITY)]),
    )
    .await
    {
        panic!("{e:?}");
    }
    let changed = common::template_with(&[(
        "0002_priority.sql",
        "ALTER TABLE applications ADD COLUMN p2 int;",
    )]);
    let err = server::platform_with(&db, key(), 4, changed)
        .await
        .err()
        .expect("a changed migration is refused")
        .to_string();
    assert!(
        err.contains("0002_priority.sql") && err.contains("changed"),
        "{err}"
    );
    let err = server::platform_with(&db, key(), 4, common::template_with(&[]))
        .await
        .err()
        .expect("a missing migration is refused")
        .to_string();
    assert!(
        err.contains("0002_priority.sql") && err.contains("missing"),
        "{err}"
    );
}

/// The real binary against a control database of this test's cluster.
struct Server {
    child: tokio::process::Child,
    url: String,
}

async fn serve(dsn: &str, data: &std::path::Path, env: &[(&str, &str)]) -> Server {
    let url_file = data.join("server-url");
    let _ = std::fs::remove_file(&url_file);
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_berqenas"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            dsn,
            "--data-dir",
        ])
        .arg(data)
        .envs(env.iter().copied())
        .env("BERQENAS_ADMIN_TOKEN", TOKEN)
        .env("BERQENAS_LEASE_SECS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..1200 {
        if let Ok(url) = std::fs::read_to_string(&url_file) {
            return Server {
                child,
                url: url.trim().to_string(),
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start");
}

fn client_for(server: &Server) -> TestApp {
    TestApp {
        url: server.url.clone(),
        http: reqwest::Client::new(),
    }
}

/// Registry version and catalog agree for every tenant; returns the versions.
async fn consistent(
    app: &TestApp,
    control: &tokio_postgres::Client,
    tenants: &[Value],
) -> Vec<i64> {
    let mut versions = Vec::new();
    for t in tenants {
        let name = t["name"].as_str().unwrap();
        let v = version_of(app, name).await;
        assert_eq!(
            has_column(control, t, "priority").await,
            v >= 2,
            "{name}: registry says version {v}"
        );
        versions.push(v);
    }
    versions
}

/// The `tenant_migrated` audit rows of run `id`.
async fn migrated_rows(control: &tokio_postgres::Client, id: &str) -> i64 {
    control
        .query_one(
            "SELECT count(*) FROM berqenas.audit_log
              WHERE action = 'tenant_migrated' AND details ->> 'run_id' = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

/// Throw-away session roles of run `id` still in the cluster (which other tests share),
/// once the run's operation has ended (it drops what its units left after the run's
/// last write).
async fn session_roles_left(control: &tokio_postgres::Client, id: &str) -> i64 {
    for _ in 0..200 {
        let running: i64 = control
            .query_one(
                "SELECT count(*) FROM berqenas.operations WHERE id = $1::text::uuid AND state = 'running'",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        if running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    control
        .query_one(
            "SELECT count(*) FROM pg_roles
              WHERE starts_with(rolname, 'berqenas_migrate_' || right(replace($1, '-', ''), 12) || '_')",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn kill_9_during_a_run_is_finished_by_the_restart() {
    let db = common::control_database("mig_crash").await;
    let cluster = common::database().await.cluster.clone().unwrap();
    let dsn = cluster.superuser_dsn(&db.endpoint.database);
    let data = common::scratch_dir("mig-crash");
    let templates = data.join("template");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(templates.join("0001_init.sql"), INIT).unwrap();

    // The template of this test's own (the built-in one's first file only): its next
    // versions are the test's, not the built-in realtime table's.
    let first = serve(
        &dsn,
        &data,
        &[("BERQENAS_TEMPLATE_DIR", templates.to_str().unwrap())],
    )
    .await;
    let app = client_for(&first);
    let mut tenants = create_many(&app, "ks", "schema", 12).await;
    tenants.extend(create_many(&app, "kd", "database", 4).await);
    tenants.extend(create_many(&app, "kh", "shared", 4).await);
    // Killed, and gone: a data directory takes one server at a time.
    let mut first = first;
    first.child.kill().await.unwrap();

    std::fs::write(templates.join("0002_priority.sql"), ADD_PRIORITY).unwrap();
    let template_dir = templates.to_str().unwrap();
    let mut doomed = serve(
        &dsn,
        &data,
        &[
            ("BERQENAS_TEMPLATE_DIR", template_dir),
            ("BERQENAS_FAILPOINT", "migrate.tenant_committed"),
        ],
    )
    .await;
    let (status, run) = client_for(&doomed)
        .call(Method::POST, "/api/v1/migrations", Some(json!({"jobs": 4})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let exit = tokio::time::timeout(Duration::from_secs(60), doomed.child.wait())
        .await
        .expect("the failpoint kills the server")
        .unwrap();
    assert!(!exit.success());

    // The restart finishes the run the kill interrupted (forward: nothing is undone).
    let env = [("BERQENAS_TEMPLATE_DIR", template_dir)];
    let again = serve(&dsn, &data, &env).await;
    let app = client_for(&again);
    let control = pg(&db.endpoint.database).await;
    let id = run["id"].as_str().unwrap();
    let done = wait_for(&app, id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["migrated"], 20, "{done}");
    let versions = consistent(&app, &control, &tenants).await;
    assert!(versions.iter().all(|v| *v == 2), "{versions:?}");
    assert_eq!(
        migrated_rows(&control, id).await,
        20,
        "one audit row per tenant"
    );
    assert_eq!(session_roles_left(&control, id).await, 0);
    let again_run = run_migration(&app, json!({})).await;
    assert_eq!(again_run["state"], "succeeded", "{again_run}");
    assert_eq!(again_run["migrated"], 0, "{again_run}");
    let mut again = again;
    again.child.kill().await.unwrap();

    // Database mode: killed after a tenant database committed, before the registry
    // moved. The next run sees the marker and only moves the registry.
    std::fs::write(
        templates.join("0003_note.sql"),
        "ALTER TABLE applications ADD COLUMN note text;\n",
    )
    .unwrap();
    let mut doomed = serve(
        &dsn,
        &data,
        &[
            ("BERQENAS_TEMPLATE_DIR", template_dir),
            ("BERQENAS_FAILPOINT", "migrate.database_committed"),
        ],
    )
    .await;
    let (status, run) = client_for(&doomed)
        .call(
            Method::POST,
            "/api/v1/migrations",
            Some(json!({"isolation": "database", "jobs": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    tokio::time::timeout(Duration::from_secs(60), doomed.child.wait())
        .await
        .expect("the failpoint kills the server")
        .unwrap();
    // The restart finishes it: the database that committed before the kill only moves
    // its registry, the others migrate.
    let last = serve(&dsn, &data, &env).await;
    let app = client_for(&last);
    let id = run["id"].as_str().unwrap();
    let done = wait_for(&app, id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["migrated"], 4, "{done}");
    assert_eq!(
        migrated_rows(&control, id).await,
        4,
        "one audit row per tenant"
    );
    for t in tenants.iter().filter(|t| t["isolation"] == "database") {
        assert_eq!(version_of(&app, t["name"].as_str().unwrap()).await, 3);
        assert!(has_column(&control, t, "note").await, "{}", t["name"]);
    }
    let done = run_migration(&app, json!({})).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["migrated"], 16, "{done}");
    for t in &tenants {
        assert_eq!(version_of(&app, t["name"].as_str().unwrap()).await, 3);
        assert!(has_column(&control, t, "note").await, "{}", t["name"]);
    }
    assert_eq!(session_roles_left(&control, id).await, 0);
    let last_run = done["id"].as_str().unwrap();
    assert_eq!(session_roles_left(&control, last_run).await, 0);
    drop(last);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn a_restored_backup_takes_its_template_version_and_migrates_again() {
    let db = common::control_database("mig_restore").await;
    let before = app(&db, common::template_with(&[])).await;
    let mut tenants = create_many(&before, "rs", "schema", 1).await;
    tenants.extend(create_many(&before, "rd", "database", 1).await);
    tenants.extend(create_many(&before, "rh", "shared", 1).await);
    for t in &tenants {
        connect_as(&t["credentials"])
            .await
            .batch_execute(
                "INSERT INTO applications (name, team, created_by) VALUES ('kept', 'core', 'me')",
            )
            .await
            .unwrap();
    }
    let mut backups = Vec::new();
    for t in &tenants {
        let (s, b) = before
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{}/backups", t["name"].as_str().unwrap()),
                Some(json!({})),
            )
            .await;
        assert!(s.is_success(), "{b}");
        backups.push(b["id"].as_str().unwrap().to_string());
    }
    let app = app(
        &db,
        common::template_with(&[("0002_priority.sql", ADD_PRIORITY)]),
    )
    .await;
    assert_eq!(run_migration(&app, json!({})).await["migrated"], 3);
    let control = pg("mig_restore").await;
    for (t, id) in tenants.iter().zip(&backups) {
        let name = t["name"].as_str().unwrap();
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/backups/{id}/restore"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let rows: i64 = connect_as(&t["credentials"])
            .await
            .query_one("SELECT count(*) FROM applications WHERE name = 'kept'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 1, "{name}: the rows came back");
        if t["isolation"] == "shared" {
            // Its rows went into the pool's current tables: still at the pool's version.
            assert_eq!(version_of(&app, name).await, 2, "{name}");
            continue;
        }
        assert_eq!(
            version_of(&app, name).await,
            1,
            "{name}: the backup's version"
        );
        assert!(!has_column(&control, t, "priority").await, "{name}");
    }
    let run = run_migration(&app, json!({})).await;
    assert_eq!(run["migrated"], 2, "{run}");
    for t in &tenants {
        assert!(has_column(&control, t, "priority").await, "{}", t["name"]);
    }
}

/// A migration that creates a table: the table is the tenant owner's (the throw-away
/// role the migration ran as goes afterwards, and must not take it along).
#[tokio::test]
async fn a_table_a_migration_creates_belongs_to_the_tenant_and_stays() {
    const NOTES: &str =
        "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);\n";
    let db = common::control_database("mig_newtable").await;
    let app = app(&db, common::template_with(&[])).await;
    let tenants = [
        create_many(&app, "newtbl-s", "schema", 1).await,
        create_many(&app, "newtbl-d", "database", 1).await,
    ]
    .concat();
    drop(app);
    let app = self::app(&db, common::template_with(&[("0002_notes.sql", NOTES)])).await;
    let run = run_migration(&app, json!({})).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    for t in &tenants {
        let database = t["database"].as_str().unwrap_or("mig_newtable").to_string();
        let owner: Option<String> = pg(&database)
            .await
            .query_opt(
                "SELECT tableowner::text FROM pg_tables WHERE schemaname = $1 AND tablename = 'notes'",
                &[&t["schema"].as_str().unwrap()],
            )
            .await
            .unwrap()
            .map(|r| r.get(0));
        let expected = format!("{}_owner", t["schema"].as_str().unwrap());
        assert_eq!(owner.as_deref(), Some(expected.as_str()), "{}", t["name"]);
    }
}
