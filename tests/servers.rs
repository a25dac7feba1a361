//! Issue 18 items 1-2: servers registered through the API, tenants placed on them,
//! and real effects there (docs/servers.md). Three throw-away clusters: the shared one
//! (`default`, the control database) and two more, started once for this binary.

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;

use std::sync::{Mutex, OnceLock};

use common::{cli, connect_as, stdout_json, unique, TestApp};
use extra_cluster::{on, start_cluster};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The password of the extra clusters' superuser: it must appear in no answer, no
/// log line, and not in the clear in the control database.
const PG_PASSWORD: &str = "srv-Pa55-word-never-shown";

/// Everything berqenas logs in this binary (at debug), to look for the password.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;
impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("berqenas=debug"))
            .with_writer(|| LogWriter)
            .try_init();
    });
}

/// What the bad-input checks compare: the servers table, minus health columns.
async fn servers_table() -> Vec<String> {
    common::superuser()
        .await
        .query(
            "SELECT format('%s|%s|%s|%s|%s|%s', name, host, port, database_name, labels, draining)
               FROM berqenas.servers ORDER BY name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Every answer the test saw, to look for the password in.
#[derive(Default)]
struct Seen(Mutex<String>);

impl Seen {
    async fn call(
        &self,
        app: &TestApp,
        m: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (s, b) = app.call(m, path, body).await;
        self.0.lock().unwrap().push_str(&b.to_string());
        (s, b)
    }
}

async fn server_info(app: &TestApp, name: &str) -> Value {
    let (s, b) = app
        .call(Method::GET, &format!("/api/v1/servers/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

async fn schema_exists(c: &tokio_postgres::Client, schema: &str) -> bool {
    c.query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .unwrap()
        .is_some()
}

async fn role_exists(c: &tokio_postgres::Client, role: &str) -> bool {
    c.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .unwrap()
        .is_some()
}

async fn database_exists(c: &tokio_postgres::Client, db: &str) -> bool {
    c.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .await
        .unwrap()
        .is_some()
}

/// The whole story, in order (placement by load depends on every tenant count, so
/// nothing else in this binary creates tenants meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_take_tenants_and_placement_follows_labels_load_drain_and_health() {
    capture_logs();
    let seen = Seen::default();
    let app = TestApp::spawn().await;
    let default_pg = common::superuser().await;
    let (pg2, url2) = start_cluster("pg2", PG_PASSWORD).await;
    let (pg3, url3) = start_cluster("pg3", PG_PASSWORD).await;
    let pg2_admin = on(&pg2, "postgres").await;

    // --- bad input: a clear 4xx naming the field, and the table unchanged ---
    let before = servers_table().await;
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let default_url = format!(
        "host={} port={} user={} dbname=berqenas",
        common::database()
            .await
            .cluster
            .as_ref()
            .unwrap()
            .socket_dir()
            .display(),
        common::database().await.endpoint.port,
        berqenas::pg::cluster::SUPERUSER
    );
    for (body, status, field, says) in [
        (
            json!({"name": "pg9", "url": "not a url at all"}),
            StatusCode::BAD_REQUEST,
            "url",
            "not a PostgreSQL URL",
        ),
        (
            json!({"name": "pg9", "url": ""}),
            StatusCode::BAD_REQUEST,
            "url",
            "url is required",
        ),
        (
            json!({"name": "PG 9", "url": url2}),
            StatusCode::BAD_REQUEST,
            "name",
            "name must be",
        ),
        (
            json!({"name": "pg9", "url": url2, "labels": {"Region": "eu"}}),
            StatusCode::BAD_REQUEST,
            "labels",
            "label key",
        ),
        (
            json!({"name": "pg9", "url": url2, "labels": {"region": "e u"}}),
            StatusCode::BAD_REQUEST,
            "labels",
            "value",
        ),
        (
            json!({"name": "pg9", "url": format!("postgresql://x:{PG_PASSWORD}@127.0.0.1:{closed_port}/postgres")}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "url",
            "cannot reach",
        ),
        (
            json!({"name": "pg9", "url": format!("postgresql://berqenas:wrong-{PG_PASSWORD}@127.0.0.1:{}/postgres", pg2.port())}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "url",
            "password authentication failed",
        ),
        (
            json!({"name": "pg9", "url": default_url}),
            StatusCode::CONFLICT,
            "",
            "as \"default\"",
        ),
    ] {
        let (s, b) = seen
            .call(&app, Method::POST, "/api/v1/servers", Some(body.clone()))
            .await;
        assert_eq!(s, status, "{body}: {b}");
        let msg = b["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{body}: {b}");
        if !field.is_empty() {
            assert_eq!(b["error"]["field"], field, "{b}");
        }
        assert_eq!(
            servers_table().await,
            before,
            "{body} changed the servers table"
        );
    }
    // An unknown field in the body is refused too.
    let (s, _) = seen
        .call(
            &app,
            Method::POST,
            "/api/v1/servers",
            Some(json!({"name": "pg9", "url": url2, "region": "eu"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(servers_table().await, before);

    // --- add two servers (through the API and the CLI) ---
    let (s, b) = seen
        .call(
            &app,
            Method::POST,
            "/api/v1/servers",
            Some(json!({"name": "pg2", "url": url2, "labels": {"region": "eu", "tier": "gold"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["status"], "up", "{b}");
    assert_eq!(b["port"], pg2.port() as i64, "{b}");
    assert!(b["version"].as_str().unwrap().starts_with("15"), "{b}");
    assert_eq!(b["tenants"], 0);
    // An empty server is removed (the same cluster is then added as pg3).
    let (s, b) = seen
        .call(
            &app,
            Method::POST,
            "/api/v1/servers",
            Some(json!({"name": "pg5", "url": url3})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let out = cli(&app, &["server", "remove", "pg5"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, _) = app.call(Method::GET, "/api/v1/servers/pg5", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let out = cli(
        &app,
        &[
            "server",
            "add",
            "--name",
            "pg3",
            "--url",
            &url3,
            "--labels",
            "region=us",
            "-o",
            "json",
        ],
    )
    .await;
    let b = stdout_json(&out);
    seen.0
        .lock()
        .unwrap()
        .push_str(&String::from_utf8_lossy(&out.stdout));
    seen.0
        .lock()
        .unwrap()
        .push_str(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(b["name"], "pg3", "{b}");
    assert_eq!(b["labels"], json!({"region": "us"}));
    assert_eq!(b["pgbouncer_admin"], false, "{b}");
    // The console of a PgBouncer in front of pg3: set (sealed, never shown), then
    // forgotten; a URL that is not a console is refused naming the field.
    const CONSOLE_PASSWORD: &str = "console-Pa55-1618";
    let console = format!("postgresql://admin:{CONSOLE_PASSWORD}@127.0.0.1:6432/pgbouncer");
    let out = cli(
        &app,
        &[
            "server",
            "pgbouncer",
            "pg3",
            "--admin-url",
            &console,
            "-o",
            "json",
        ],
    )
    .await;
    let b = stdout_json(&out);
    assert_eq!(b["pgbouncer_admin"], true, "{b}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(CONSOLE_PASSWORD));
    let sealed: Vec<u8> = default_pg
        .query_one(
            "SELECT pgbouncer_admin_sealed FROM berqenas.servers WHERE name = 'pg3'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!String::from_utf8_lossy(&sealed).contains(CONSOLE_PASSWORD));
    let out = cli(
        &app,
        &["server", "pgbouncer", "pg3", "--admin-url", "not a url"],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pgbouncer_admin_url"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(
        &app,
        &["server", "pgbouncer", "pg3", "--forget", "-o", "json"],
    )
    .await;
    assert_eq!(stdout_json(&out)["pgbouncer_admin"], false);
    // A name taken: 409, nothing changed.
    let before = servers_table().await;
    let (s, b) = seen
        .call(
            &app,
            Method::POST,
            "/api/v1/servers",
            Some(json!({"name": "pg2", "url": url3})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("pg2"),
        "{b}"
    );
    assert_eq!(servers_table().await, before);
    // The add hardened the server and built its template database, as `default` has.
    assert!(database_exists(&pg2_admin, "postgres_tenant_template").await);
    let public_create: bool = pg2_admin
        .query_one(
            "SELECT has_schema_privilege('public', 'public', 'CREATE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!public_create, "PUBLIC may still create in public on pg2");
    // The URL is sealed at rest.
    let sealed: Vec<u8> = default_pg
        .query_one(
            "SELECT url_sealed FROM berqenas.servers WHERE name = 'pg2'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!String::from_utf8_lossy(&sealed).contains(PG_PASSWORD));
    assert!(!String::from_utf8_lossy(&sealed).contains("127.0.0.1"));

    // --- a schema-mode tenant on pg2: its role logs in there and sees its table ---
    let acme = unique("srvs");
    let created = app
        .create_with(json!({"name": acme, "server": "pg2", "public_api": true}))
        .await;
    assert_eq!(created["server"], "pg2", "{created}");
    assert_eq!(
        created["credentials"]["port"],
        pg2.port() as i64,
        "{created}"
    );
    assert_eq!(created["credentials"]["database"], "postgres");
    let tenant = connect_as(&created["credentials"]).await;
    tenant
        .batch_execute(
            "INSERT INTO applications (name, team, created_by) VALUES ('on-pg2', 'a', 'me')",
        )
        .await
        .unwrap();
    let n: String = tenant
        .query_one("SELECT name FROM applications", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, "on-pg2");
    let schema = format!("tenant_{}", acme.replace('-', "_"));
    let owner = created["owner_role"].as_str().unwrap().to_string();
    assert!(schema_exists(&pg2_admin, &schema).await);
    let on_pg2: i64 = pg2_admin
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".applications"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(on_pg2, 1);
    assert!(
        !schema_exists(&default_pg, &schema).await,
        "schema also on default"
    );
    assert!(
        !role_exists(&default_pg, &owner).await,
        "roles also on default"
    );
    // The data API runs its queries on pg2, as the tenant.
    let (s, b) = app
        .call_with(
            Method::POST,
            "/api/v1/query",
            Some(json!({"sql": "SELECT name, current_setting('port') FROM applications"})),
            Some(created["api_key"].as_str().unwrap()),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["rows"][0][0], "on-pg2", "{b}");
    assert_eq!(b["rows"][0][1], pg2.port().to_string(), "{b}");
    // A backup on demand is taken from pg2 (docs/servers.md; restores and the rest:
    // tests/servers_backups.rs), with the row written there.
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{acme}/backups"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["status"], "succeeded", "{b}");
    assert!(
        b["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["table"] == "applications" && t["rows"].as_i64() >= Some(1)),
        "{b}"
    );
    // The tenant JSON says where it lives; its credentials (read again) too.
    let (_, got) = app
        .call(Method::GET, &format!("/api/v1/tenants/{acme}"), None)
        .await;
    assert_eq!(got["server"], "pg2");
    let (s, creds) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{acme}/credentials"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{creds}");
    assert_eq!(creds["port"], pg2.port() as i64);

    // --- a database-mode tenant on pg2 ---
    let dbt = unique("srvd");
    let created = app
        .create_with(json!({"name": dbt, "server": "pg2", "isolation": "database"}))
        .await;
    assert_eq!(created["server"], "pg2", "{created}");
    let dbname = created["database"].as_str().unwrap().to_string();
    assert!(database_exists(&pg2_admin, &dbname).await);
    assert!(
        !database_exists(&default_pg, &dbname).await,
        "database also on default"
    );
    let tenant = connect_as(&created["credentials"]).await;
    tenant
        .batch_execute(
            "INSERT INTO applications (name, team, created_by) VALUES ('on pg2', 'a', 'me')",
        )
        .await
        .unwrap();
    let v: String = on(&pg2, &dbname)
        .await
        .query_one(
            &format!(
                "SELECT name FROM {}.applications",
                created["schema"].as_str().unwrap()
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "on pg2");

    // --- shared mode there too: in pg2's own pool, nothing of it on default ---
    let sh = unique("srvh");
    let (s, b) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": sh, "server": "pg2", "isolation": "shared"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["server"], "pg2", "{b}");
    assert_eq!(b["schema"], "berqenas_shared", "{b}");
    assert_eq!(
        common::footprint(&default_pg, &sh).await,
        vec![format!("tenant:{sh}")],
        "only its registry row on default"
    );

    // --- placement by label (through the API and the CLI) ---
    let us = unique("srve");
    let b = app
        .create_with(json!({"name": us, "placement": {"region": "us"}}))
        .await;
    assert_eq!(b["server"], "pg3", "{b}");
    let eu = unique("srve");
    let out = cli(
        &app,
        &[
            "tenant",
            "create",
            "--name",
            &eu,
            "--placement",
            "region=eu,tier=gold",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(stdout_json(&out)["server"], "pg2");
    let named = unique("srve");
    let out = cli(
        &app,
        &[
            "tenant",
            "create",
            "--name",
            &named,
            "--pg-server",
            "pg3",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(stdout_json(&out)["server"], "pg3");
    let (s, b) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": unique("srvx"), "placement": {"region": "mars"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("region=mars"),
        "{b}"
    );
    let (s, b) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": unique("srvx"), "placement": "most"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["field"], "placement");
    let (s, b) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": unique("srvx"), "server": "nowhere"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "server");

    // --- placement by load: each create goes to the server with the fewest tenants ---
    for _ in 0..3 {
        let (_, list) = app.call(Method::GET, "/api/v1/servers", None).await;
        let expected = list["servers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["status"] == "up")
            .min_by_key(|s| {
                (
                    s["tenants"].as_i64().unwrap(),
                    s["name"].as_str().unwrap().to_string(),
                )
            })
            .unwrap()["name"]
            .clone();
        let b = app.create(&unique("srvl")).await;
        assert_eq!(b["server"], expected, "{list}");
    }

    // --- drain: no new tenants; undrain: takes them again ---
    let out = cli(&app, &["server", "drain", "pg3"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server_info(&app, "pg3").await["status"], "draining");
    let (s, b) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": unique("srvx"), "server": "pg3"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("draining"),
        "{b}"
    );
    let (s, b) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": unique("srvx"), "placement": {"region": "us"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pg3 is draining"),
        "{b}"
    );
    let out = cli(&app, &["server", "undrain", "pg3"]).await;
    assert!(out.status.success());
    assert_eq!(server_info(&app, "pg3").await["status"], "up");
    // A create that names no server, with `default` draining, goes to another.
    assert!(cli(&app, &["server", "drain", "default"])
        .await
        .status
        .success());
    let b = app.create(&unique("srvd")).await;
    assert_ne!(b["server"], "default", "{b}");
    assert!(cli(&app, &["server", "undrain", "default"])
        .await
        .status
        .success());

    // --- remove refuses a server with tenants, naming the count ---
    let pg2_count = server_info(&app, "pg2").await["tenants"].as_i64().unwrap();
    assert!(pg2_count >= 2);
    let (s, b) = app.call(Method::DELETE, "/api/v1/servers/pg2", None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{pg2_count} tenant")),
        "{b}"
    );
    let (s, _) = app
        .call(Method::DELETE, "/api/v1/servers/default", None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // --- a server that goes away: listed down with why, refused for placements ---
    pg3.stop_immediately();
    let out = cli(&app, &["server", "list", "-o", "json"]).await;
    let list = stdout_json(&out);
    let row = list["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "pg3")
        .unwrap()
        .clone();
    assert_eq!(row["status"], "down", "{row}");
    assert!(!row["down_reason"].as_str().unwrap().is_empty(), "{row}");
    let table = cli(&app, &["server", "list"]).await;
    let shown = String::from_utf8_lossy(&table.stdout);
    assert!(shown.contains("down:"), "{shown}");
    let (s, b) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": unique("srvx"), "server": "pg3"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("down"),
        "{b}"
    );
    let (s, b) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": unique("srvx"), "placement": {"region": "us"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pg3 is down"),
        "{b}"
    );
    // Placement by load skips it.
    let b = app.create(&unique("srvl")).await;
    assert_ne!(b["server"], "pg3");

    // --- one cluster cannot be two servers ---
    let before = servers_table().await;
    let (s, b) = seen
        .call(
            &app,
            Method::POST,
            "/api/v1/servers",
            Some(json!({"name": "pg4", "url": url2})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("pg2"),
        "{b}"
    );
    assert_eq!(servers_table().await, before);

    // --- the password appears in no answer and no log line ---
    let (_, list) = seen.call(&app, Method::GET, "/api/v1/servers", None).await;
    assert!(list.to_string().contains("pg2"));
    let answers = seen.0.lock().unwrap().clone();
    assert!(
        !answers.contains(PG_PASSWORD),
        "the password is in an answer"
    );
    assert!(!answers.contains("url_sealed"), "{answers}");
    let logs = String::from_utf8_lossy(&LOG.lock().unwrap()).to_string();
    assert!(logs.contains("server added"), "nothing logged? {logs}");
    assert!(!logs.contains(PG_PASSWORD), "the password is in the log");
}
