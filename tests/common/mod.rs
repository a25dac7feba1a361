//! Test support: one throw-away PostgreSQL cluster per test binary (started with the
//! same cluster code `berqenas serve` uses, stopped at exit), and `TestApp::spawn()`,
//! the production router on port 0 against it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use berqenas::api::{self, AppState};
use berqenas::pg::cluster::Cluster;
use berqenas::platform::Platform;
use berqenas::secrets::SecretKey;
use berqenas::server::{self, Database};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::OnceCell;

pub const TOKEN: &str = "test-admin-token-0123456789";

static DB: OnceCell<Database> = OnceCell::const_new();
static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// At exit, passed or failed: the cluster stops, then this binary's scratch root goes
/// with everything in it (the cluster's data directory, backups, servers' data
/// directories). The test harness exits through `exit`, which runs this after failed
/// tests as well as passed ones.
extern "C" fn clean_up_at_exit() {
    if let Some(cluster) = CLUSTER.get() {
        cluster.stop_immediately();
    }
    let _ = std::fs::remove_dir_all(scratch_root());
}

/// This test binary's directory in the system's temp directory, `berqenas-test-<pid>`:
/// every scratch directory lives under it, so removing it at exit removes them all.
fn scratch_root() -> PathBuf {
    std::env::temp_dir().join(format!("berqenas-test-{}", std::process::id()))
}

/// Made once per binary: the root, the clean-up at exit, and the removal of roots that
/// binaries killed before their exit (SIGKILL, a CI timeout) left behind.
fn ensure_scratch_root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        sweep_dead_roots();
        let root = scratch_root();
        std::fs::create_dir_all(&root).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        unsafe { libc::atexit(clean_up_at_exit) };
        root
    })
}

/// Roots of test binaries whose process is gone.
fn sweep_dead_roots() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("berqenas-test-"))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = unsafe { libc::kill(pid, 0) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A directory every user can traverse (initdb runs as `postgres` under root), under
/// this binary's scratch root: removed at exit whatever the tests' outcome, and at
/// once when a [`ScratchDir`] guard holding it is dropped.
pub fn scratch_dir(label: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = ensure_scratch_root().join(format!("{label}-{}", N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A scratch directory removed when the guard is dropped, also when the test panics
/// (a long test binary need not keep every test's files until it exits).
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(label: &str) -> Self {
        Self(scratch_dir(label))
    }
}

impl std::ops::Deref for ScratchDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The shared cluster of this test binary, started on first use.
pub async fn database() -> &'static Database {
    DB.get_or_init(|| async {
        // The server's errors always show under a failing test (a 500 says only "see
        // the server log"); RUST_LOG=berqenas=debug shows more.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("berqenas=error"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
        let dir = scratch_dir("cluster");
        let db = server::embedded_with(&dir, None, true)
            .await
            .expect("starting a throw-away cluster");
        let cluster = db.cluster.clone().expect("embedded");
        CLUSTER.set(cluster).ok();
        db
    })
    .await
}

/// A superuser connection to the shared cluster's control database.
pub async fn superuser() -> tokio_postgres::Client {
    berqenas::pg::connect(&database().await.config)
        .await
        .unwrap()
}

/// A plan of a test's own named `name`: a copy of `free` with `set` (SQL assignments
/// to its columns, or `""` for none) applied.
pub async fn plan_like_free(pg: &tokio_postgres::Client, name: &str, set: &str) {
    let set = if set.is_empty() {
        String::new()
    } else {
        format!(", {set}")
    };
    pg.batch_execute(&format!(
        "CREATE TEMP TABLE p AS SELECT * FROM berqenas.plans WHERE name = 'free';
         UPDATE p SET name = '{name}'{set};
         INSERT INTO berqenas.plans SELECT * FROM p; DROP TABLE p;"
    ))
    .await
    .unwrap();
}

/// A superuser connection to another database of the shared cluster (a tenant's own,
/// in database mode).
pub async fn superuser_in(db: &str) -> tokio_postgres::Client {
    let mut config = database().await.config.clone();
    config.dbname(db);
    berqenas::pg::connect(&config).await.unwrap()
}

/// The secret key of every `TestApp`: a platform built with another one could not read
/// the secrets the app stored.
pub fn secret_key() -> SecretKey {
    SecretKey::from_bytes([42; 32])
}

/// A platform of its own on the shared cluster, with `TestApp`'s key, for a test that
/// drives a worker round itself.
pub async fn platform(pool_size: usize) -> Platform {
    server::platform(database().await, secret_key(), pool_size)
        .await
        .unwrap()
}

/// The platform with an operation engine of its own (an instance of its own: no
/// other test's engine takes its operations over).
pub async fn runtime(platform: Platform) -> std::sync::Arc<berqenas::workflows::Runtime> {
    berqenas::workflows::Runtime::start(platform, &format!("test:{}", uuid::Uuid::new_v4()))
        .await
        .unwrap()
}

/// A platform over `db` (a control database of its own) with template `t`, and its
/// engine as the instance `identity`: a test that starts the same instance again
/// (after a stop, with a new template) finds its own operations to finish.
pub async fn runtime_over(
    db: &Database,
    t: berqenas::template::Template,
    identity: &str,
) -> std::sync::Arc<berqenas::workflows::Runtime> {
    let p = server::platform_with(db, secret_key(), 16, t)
        .await
        .unwrap();
    berqenas::workflows::Runtime::start(p, identity)
        .await
        .unwrap()
}

pub struct TestApp {
    pub url: String,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::serve(platform(16).await).await
    }

    /// The production router over this platform, on a free port.
    pub async fn serve(platform: Platform) -> Self {
        Self::over(runtime(platform).await).await
    }

    /// The production router over this runtime (its engine), on a free port.
    pub async fn over(rt: std::sync::Arc<berqenas::workflows::Runtime>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = api::router(AppState::new(rt, TOKEN));
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap()
        });
        Self {
            url,
            http: reqwest::Client::new(),
        }
    }

    /// A request with the admin token; returns the status and the JSON body (Null if none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_with(method, path, body, Some(TOKEN), &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: &'static [u8],
    ) -> (StatusCode, Value) {
        let res = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn create(&self, name: &str) -> Value {
        self.create_with(serde_json::json!({"name": name, "db_quota": "1GB", "vpn_enabled": false, "public_api": true}))
            .await
    }

    /// A tenant in one isolation mode, reachable through the data API.
    pub async fn create_in(&self, name: &str, isolation: &str) -> Value {
        self.create_with(
            serde_json::json!({"name": name, "isolation": isolation, "public_api": true}),
        )
        .await
    }

    /// Creates a tenant from this request body; returns the answer (credentials, key).
    /// Starts a template migration run (`POST /api/v1/migrations` with `body`) and
    /// follows it to its end: the finished run.
    pub async fn migrate(&self, body: Value) -> Value {
        let (status, run) = self
            .call(Method::POST, "/api/v1/migrations", Some(body))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        let id = run["id"].as_str().unwrap().to_string();
        for _ in 0..1200 {
            let (status, run) = self
                .call(Method::GET, &format!("/api/v1/migrations/{id}"), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{run}");
            if run["state"] != "running" {
                return run;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("migration run {id} did not finish");
    }

    pub async fn create_with(&self, body: Value) -> Value {
        let (status, body) = self.call(Method::POST, "/api/v1/tenants", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// `POST /api/v1/tenants/{name}/{action}` (`suspend`, `resume`, ...), which must
    /// answer 200; returns the answer.
    pub async fn lifecycle(&self, name: &str, action: &str) -> Value {
        let (status, body) = self
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/{action}"),
                Some(serde_json::json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{action}: {body}");
        body
    }

    /// The status `/api/v1/me` answers a tenant API key with.
    pub async fn me(&self, key: &str) -> StatusCode {
        self.call_with(Method::GET, "/api/v1/me", None, Some(key), &[])
            .await
            .0
    }
}

/// Runs the real binary against `app` with the admin token, as an operator would.
pub async fn cli(app: &TestApp, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_berqenas"))
        .args(args)
        .env_remove("BERQENAS_DATA_DIR")
        .env("BERQENAS_URL", &app.url)
        .env("BERQENAS_ADMIN_TOKEN", TOKEN)
        .output()
        .await
        .unwrap()
}

/// The JSON a successful CLI run printed (its stderr in the failure message if not).
pub fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A tenant's audit actions, oldest first.
pub async fn audit_actions(tenant: &str) -> Vec<String> {
    superuser()
        .await
        .query(
            "SELECT action FROM berqenas.audit_log WHERE tenant_name = $1 ORDER BY id",
            &[&tenant],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// How many times `action` was audited for a tenant.
pub async fn audit_count(pg: &tokio_postgres::Client, tenant: &str, action: &str) -> i64 {
    pg.query_one(
        "SELECT count(*) FROM berqenas.audit_log WHERE tenant_name = $1 AND action = $2",
        &[&tenant, &action],
    )
    .await
    .unwrap()
    .get(0)
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Connects as a tenant with the credentials berqenas returned.
pub async fn connect_as(credentials: &Value) -> tokio_postgres::Client {
    let dsn = credentials["dsn"].as_str().unwrap();
    let (client, conn) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// What the catalog and registry hold for tenant names starting with `tenant_<stem>`:
/// roles, schemas and registry rows, sorted, so a test can compare before and after.
pub async fn footprint(pg: &tokio_postgres::Client, name: &str) -> Vec<String> {
    let stem = format!("tenant_{}", name.replace('-', "_"));
    let rows = pg
        .query(
            "SELECT 'role:' || rolname FROM pg_roles WHERE rolname = $1 OR rolname LIKE $1 || '\\_%'
             UNION ALL SELECT 'schema:' || nspname FROM pg_namespace WHERE nspname = $1
             UNION ALL SELECT 'tenant:' || name FROM berqenas.tenants WHERE name = $2
             ORDER BY 1",
            &[&stem, &name],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// Everything berqenas could have changed, for "bad input changes nothing" checks.
pub async fn whole_state(pg: &tokio_postgres::Client) -> Vec<String> {
    let rows = pg
        .query(
            "SELECT 'role:' || rolname FROM pg_roles
             UNION ALL SELECT 'schema:' || nspname FROM pg_namespace
             UNION ALL SELECT 'tenant:' || name FROM berqenas.tenants
             UNION ALL SELECT 'keys:' || count(*) FROM berqenas.api_keys
             UNION ALL SELECT 'audit:' || count(*) FROM berqenas.audit_log
             UNION ALL SELECT 'ops:' || count(*) FROM berqenas.operations WHERE idempotency_key IS NULL
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// The default tenant template's first migration.
pub const INIT: &str = include_str!("../../templates/tenant/0001_init.sql");

/// The default template's first migration and then `extra` (file name, SQL).
pub fn template_with(extra: &[(&str, &str)]) -> berqenas::template::Template {
    let mut files = vec![("0001_init.sql", INIT)];
    files.extend_from_slice(extra);
    berqenas::template::Template::from_files(&files)
}

/// A control plane of its own in the test cluster (a test whose template differs from
/// the others', or changes mid-test): database `name`, backups in a scratch directory.
pub async fn control_database(name: &str) -> Database {
    let base = database().await;
    superuser()
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut config = base.config.clone();
    config.dbname(name);
    Database {
        config,
        endpoint: berqenas::platform::Endpoint {
            database: name.to_string(),
            ..base.endpoint.clone()
        },
        cluster: None,
        backup_dir: Some(scratch_dir("backups")),
    }
}

/// One disk round (the quota worker's). Tests run in parallel: while another test's
/// round holds the lead, wait for it to end and run one of our own.
pub async fn disk_round(rt: &berqenas::workflows::Runtime) {
    for _ in 0..600 {
        if berqenas::workflows::quotas::disk_round(rt)
            .await
            .unwrap()
            .is_some()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no disk round could run for 30 s");
}
