//! Onboarding benchmark: the real `berqenas serve` (external-URL mode) on a throw-away
//! cluster, tenants created through the HTTP API at concurrency 1 and 8, beside the raw
//! cost of the same DDL sent straight to PostgreSQL in one transaction; then the
//! server's peak RSS once 1,000 tenants exist.
//!
//! `cargo bench --bench onboarding` (BENCH_TENANTS=N sets the tenants per series; 200).
//!
//! `cargo bench --bench onboarding -- --pool`: the same server with a warm pool
//! (docs/warm_pool.md, `--warm-pool schema=200,database=10,shared=100`): creates that
//! claim a prepared member, each figure printed beside issue 17's target
//! (benches/onboarding/pool.rs).
//!
//! `cargo bench --bench onboarding -- scale`: 10,000 schema-mode tenants on one server
//! (BENCH_TENANTS sets the number), and issue 17's figures at that size
//! (benches/onboarding/scale.rs).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use berqenas::isolation::{schema::SchemaPerTenant, Provision, RoleLimits, Strategy};
use berqenas::pg::cluster::{Cluster, ClusterOptions};
use berqenas::template::Template;
use berqenas::tenant::Slug;

#[path = "onboarding/pool.rs"]
mod onboarding_pool;
#[path = "onboarding/scale.rs"]
mod onboarding_scale;
#[path = "onboarding/scale_backups.rs"]
mod onboarding_scale_backups;

pub(crate) const TOKEN: &str = "bench-admin-token-0123456789";

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub(crate) fn report(label: &str, mut lat: Vec<Duration>, wall: Duration) -> Duration {
    lat.sort();
    let p50 = percentile(&lat, 0.50);
    println!(
        "{label:<28} n={:<5} p50={:>7.2}ms p95={:>7.2}ms p99={:>7.2}ms  {:>6.1} tenants/s",
        lat.len(),
        p50.as_secs_f64() * 1e3,
        percentile(&lat, 0.95).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.len() as f64 / wall.as_secs_f64(),
    );
    p50
}

async fn api_create(http: &reqwest::Client, url: &str, name: &str) -> Duration {
    api_create_in(http, url, name, "schema").await
}

pub(crate) async fn api_create_in(
    http: &reqwest::Client,
    url: &str,
    name: &str,
    isolation: &str,
) -> Duration {
    let t = Instant::now();
    let res = http
        .post(format!("{url}/api/v1/tenants"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"name": name, "db_quota": "1GB", "isolation": isolation}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let _ = res.bytes().await;
    t.elapsed()
}

async fn api_series(
    http: &reqwest::Client,
    url: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> (Vec<Duration>, Duration) {
    api_series_in(http, url, prefix, n, concurrency, "schema").await
}

pub(crate) async fn api_series_in(
    http: &reqwest::Client,
    url: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
    isolation: &'static str,
) -> (Vec<Duration>, Duration) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (http, url, prefix) = (http.clone(), url.to_string(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (w..n).step_by(concurrency) {
                lat.push(api_create_in(&http, &url, &format!("{prefix}-{i}"), isolation).await);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, start.elapsed())
}

/// The DDL berqenas renders for a tenant, sent straight to PostgreSQL in one transaction.
pub(crate) async fn raw_create(
    pg: &tokio_postgres::Client,
    template: &str,
    name: &str,
) -> Duration {
    let slug = Slug::parse(name).unwrap();
    let verifier = postgres_protocol::password::scram_sha_256(b"raw-password");
    let sql = SchemaPerTenant.create_sql(&Provision {
        slug: &slug,
        password_verifier: &verifier,
        limits: &RoleLimits::new(5, 30000, 1 << 30, true),
        template_sql: template,
        grant_owner_to_creator: false,
    });
    let t = Instant::now();
    pg.batch_execute(&format!("BEGIN;\n{sql}\nCOMMIT;"))
        .await
        .unwrap();
    t.elapsed()
}

pub(crate) fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Stops the throw-away cluster and removes its directory, even when a step panics.
struct Scratch(Cluster, PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        self.0.stop_immediately();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[tokio::main]
async fn main() {
    let pool = std::env::args().any(|a| a == "--pool");
    let scale = std::env::args().any(|a| a == "scale");
    let n: usize = std::env::var("BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = std::env::temp_dir().join(format!("berqenas-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cluster =
        Cluster::ensure(&ClusterOptions::new(&dir)).expect("starting a throw-away cluster");
    let _scratch = Scratch(cluster.clone(), dir.clone());
    let (pg, conn) =
        tokio_postgres::connect(&cluster.superuser_dsn("postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    // Separate calls: a multi-statement string is one implicit transaction, and
    // CREATE DATABASE refuses to run in one.
    pg.batch_execute("ALTER ROLE berqenas PASSWORD 'bench'")
        .await
        .unwrap();
    pg.batch_execute("CREATE DATABASE berqenas").await.unwrap();
    let url = format!(
        "postgresql://berqenas:bench@127.0.0.1:{}/berqenas",
        cluster.port()
    );

    if pool {
        // Servers of its own (benches/onboarding/pool.rs).
        return onboarding_pool::run(&url, &dir, n).await;
    }
    if scale {
        onboarding_scale::run(&url, &dir).await;
        return;
    }

    let data = dir.join("server");
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_berqenas"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url])
        .arg("--data-dir")
        .arg(&data)
        .env("BERQENAS_ADMIN_TOKEN", TOKEN)
        .env("BERQENAS_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let api = wait_for_url(&data).await;
    let pid = server.id().unwrap();
    let http = reqwest::Client::new();
    // The same transport as the server's pool: TCP with SCRAM.
    let (raw_pg, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let template = Template::builtin().full_sql();

    println!(
        "berqenas onboarding benchmark: {n} schema-mode tenants per series, PostgreSQL {}",
        server_version(&pg).await
    );
    for i in 0..10 {
        api_create(&http, &api, &format!("warm-{i}")).await;
        raw_create(&raw_pg, &template, &format!("rawwarm-{i}")).await;
    }
    // Raw and API creations alternate, so both see the same disk noise and catalog size.
    let (mut raw, mut via_api) = (Vec::new(), Vec::new());
    for i in 0..n {
        raw.push(raw_create(&raw_pg, &template, &format!("raw-{i}")).await);
        via_api.push(api_create(&http, &api, &format!("cone-{i}")).await);
    }
    let raw_total: Duration = raw.iter().sum();
    let api_total: Duration = via_api.iter().sum();
    let raw_p50 = report("raw DDL, one transaction", raw, raw_total);
    let c1_p50 = report("API, concurrency 1", via_api, api_total);
    let (lat, c8_wall) = api_series(&http, &api, "ceight", n, 8).await;
    let c8_p50 = report("API, concurrency 8", lat, c8_wall);
    println!(
        "ratio API p50 / raw p50 (interleaved): {:.2}x at concurrency 1; at concurrency 8 the p50 is {:.2}x raw (2 cores, queueing)",
        c1_p50.as_secs_f64() / raw_p50.as_secs_f64(),
        c8_p50.as_secs_f64() / raw_p50.as_secs_f64()
    );

    // The other isolation modes, through the same API.
    let per_mode = n / 2;
    for (mode, prefix) in [("database", "dbm"), ("shared", "shm")] {
        for concurrency in [1, 8] {
            let (lat, wall) = api_series_in(
                &http,
                &api,
                &format!("{prefix}{concurrency}"),
                per_mode,
                concurrency,
                mode,
            )
            .await;
            report(&format!("API {mode}, concurrency {concurrency}"), lat, wall);
        }
    }

    let existing = 10 + 2 * n + 2 * per_mode * 2;
    if existing < 1000 {
        api_series(&http, &api, "fill", 1000 - existing, 8).await;
    }
    println!(
        "server RSS with >= 1000 tenants: now {:.1} MB, peak {:.1} MB",
        rss_kb(pid, "VmRSS:") as f64 / 1024.0,
        rss_kb(pid, "VmHWM:") as f64 / 1024.0
    );
    let _ = server.start_kill();
    let _ = server.wait().await;
}

async fn server_version(pg: &tokio_postgres::Client) -> String {
    pg.query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0)
}

pub(crate) async fn wait_for_url(data: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(url) = std::fs::read_to_string(data.join("server-url")) {
            return url.trim().to_string();
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
