//! Onboarding benchmark: the real `berqenas serve` (external-URL mode) on a throw-away
//! cluster, tenants created through the HTTP API at concurrency 1 and 8, beside the raw
//! cost of the same DDL sent straight to PostgreSQL in one transaction; then the
//! server's peak RSS once 1,000 tenants exist.
//!
//! `cargo bench --bench onboarding` (BENCH_TENANTS=N sets the tenants per series; 200).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use berqenas::isolation::{schema::SchemaPerTenant, Provision, RoleLimits, Strategy};
use berqenas::pg::cluster::{Cluster, ClusterOptions};
use berqenas::template::Template;
use berqenas::tenant::Slug;

const TOKEN: &str = "bench-admin-token-0123456789";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, mut lat: Vec<Duration>, wall: Duration) -> Duration {
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

async fn api_series(http: &reqwest::Client, url: &str, prefix: &str, n: usize, concurrency: usize) -> (Vec<Duration>, Duration) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (http, url, prefix) = (http.clone(), url.to_string(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (w..n).step_by(concurrency) {
                let t = Instant::now();
                let res = http
                    .post(format!("{url}/api/v1/tenants"))
                    .bearer_auth(TOKEN)
                    .json(&serde_json::json!({"name": format!("{prefix}-{i}"), "db_quota": "1GB"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
                let _ = res.bytes().await;
                lat.push(t.elapsed());
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

async fn raw_series(pg: &tokio_postgres::Client, prefix: &str, n: usize) -> (Vec<Duration>, Duration) {
    let template = Template::builtin().full_sql();
    let limits = RoleLimits::new(5, 30000, 1 << 30, true);
    let start = Instant::now();
    let mut lat = Vec::new();
    for i in 0..n {
        let slug = Slug::parse(&format!("{prefix}-{i}")).unwrap();
        let verifier = postgres_protocol::password::scram_sha_256(b"raw-password");
        let sql = SchemaPerTenant.create_sql(&Provision {
            slug: &slug,
            password_verifier: &verifier,
            limits: &limits,
            template_sql: &template,
            grant_owner_to_creator: false,
        });
        let t = Instant::now();
        pg.batch_execute(&format!("BEGIN;\n{sql}\nCOMMIT;")).await.unwrap();
        lat.push(t.elapsed());
    }
    (lat, start.elapsed())
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_TENANTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let dir = std::env::temp_dir().join(format!("berqenas-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cluster = Cluster::ensure(&ClusterOptions::new(&dir)).expect("starting a throw-away cluster");
    let (pg, conn) = tokio_postgres::connect(&cluster.superuser_dsn("postgres"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    // Separate calls: a multi-statement string is one implicit transaction, and
    // CREATE DATABASE refuses to run in one.
    pg.batch_execute("ALTER ROLE berqenas PASSWORD 'bench'").await.unwrap();
    pg.batch_execute("CREATE DATABASE berqenas").await.unwrap();
    let url = format!("postgresql://berqenas:bench@127.0.0.1:{}/berqenas", cluster.port());

    let data = dir.join("server");
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_berqenas"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url, "--data-dir"])
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
    let (raw_pg, conn) = tokio_postgres::connect(&cluster.superuser_dsn("berqenas"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);

    println!("berqenas onboarding benchmark: {n} schema-mode tenants per series, PostgreSQL {}", server_version(&pg).await);
    // Warm up both paths so neither pays first-use costs in its figures.
    api_series(&http, &api, "warm", 10, 1).await;
    raw_series(&raw_pg, "rawwarm", 10).await;

    let (lat, wall) = raw_series(&raw_pg, "raw", n).await;
    let raw_p50 = report("raw DDL, one transaction", lat, wall);
    let (lat, wall) = api_series(&http, &api, "cone", n, 1).await;
    let c1_p50 = report("API, concurrency 1", lat, wall);
    let (lat, wall) = api_series(&http, &api, "ceight", n, 8).await;
    let c8_p50 = report("API, concurrency 8", lat, wall);
    println!(
        "ratio API p50 / raw p50: {:.2}x at concurrency 1, {:.2}x at concurrency 8",
        c1_p50.as_secs_f64() / raw_p50.as_secs_f64(),
        c8_p50.as_secs_f64() / raw_p50.as_secs_f64()
    );

    let existing = 10 + 2 * n;
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
    cluster.stop_immediately();
    let _ = std::fs::remove_dir_all(&dir);
}

async fn server_version(pg: &tokio_postgres::Client) -> String {
    pg.query_one("SHOW server_version", &[]).await.unwrap().get(0)
}

async fn wait_for_url(data: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(url) = std::fs::read_to_string(data.join("server-url")) {
            return url.trim().to_string();
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
