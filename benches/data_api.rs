//! Data API benchmark: a 100-row SELECT through `POST /api/v1/query` (HTTP, API-key
//! lookup, quota read, rate limit, pooled tenant connection, transaction with the
//! tenant's timeout, JSON) beside the same query sent straight over a pooled
//! connection as the tenant's login role (same transport), interleaved one for one.
//! Then throughput at concurrency 8, and the rate limiter's cost per check.
//!
//! `cargo bench --bench data_api` (BENCH_QUERIES=N sets the requests per series; 2000).

use std::time::{Duration, Instant};

use berqenas::api::{self, AppState};
use berqenas::quota::rate::RateLimits;
use berqenas::secrets::SecretKey;
use berqenas::server;
use serde_json::{json, Value};

const TOKEN: &str = "bench-admin-token-0123456789";
const SQL: &str =
    "SELECT id, name, team, status, created_at FROM applications ORDER BY name LIMIT 100";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, mut lat: Vec<Duration>, wall: Duration) -> (Duration, Duration) {
    lat.sort();
    let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));
    println!(
        "{label:<44} n={:<5} p50={:>7.3}ms p99={:>7.3}ms  {:>7.0} req/s",
        lat.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        lat.len() as f64 / wall.as_secs_f64(),
    );
    (p50, p99)
}

async fn api_query(http: &reqwest::Client, url: &str, key: &str) -> Duration {
    let t = Instant::now();
    let res = http
        .post(format!("{url}/api/v1/query"))
        .bearer_auth(key)
        .json(&json!({"sql": SQL}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["row_count"], 100);
    t.elapsed()
}

/// The same rows over a pooled connection as the tenant, decoded (cached statement).
async fn direct_query(pool: &deadpool_postgres::Pool) -> Duration {
    let t = Instant::now();
    let c = pool.get().await.unwrap();
    let stmt = c.prepare_cached(SQL).await.unwrap();
    let rows = c.query(&stmt, &[]).await.unwrap();
    assert_eq!(rows.len(), 100);
    let out: Vec<(uuid::Uuid, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    std::hint::black_box(out);
    t.elapsed()
}

/// What the API does in the database per request, sent directly: BEGIN with the
/// timeout, the statement, COMMIT and the session reset (no HTTP, auth or JSON).
async fn direct_hygiene(pool: &deadpool_postgres::Pool) -> Duration {
    let t = Instant::now();
    let c = pool.get().await.unwrap();
    let (begun, stmt) = tokio::join!(
        c.batch_execute("BEGIN; SET LOCAL statement_timeout = 30000"),
        c.prepare(SQL)
    );
    begun.unwrap();
    let rows = c.query(&stmt.unwrap(), &[]).await.unwrap();
    assert_eq!(rows.len(), 100);
    // As the API ends a request: the commit and the session reset, pipelined.
    let (committed, reset) = tokio::join!(
        c.batch_execute("COMMIT"),
        c.batch_execute(berqenas::dataapi::pools::RESET)
    );
    committed.unwrap();
    reset.unwrap();
    t.elapsed()
}

/// `n` calls of `each` spread over `concurrency` tasks at once; every call's latency,
/// and the wall time of them all. Each call gets its own clone of `state` (cheap
/// handles), since a spawned task must own what it uses.
async fn concurrently<S, F, Fut>(
    concurrency: usize,
    n: usize,
    state: S,
    each: F,
) -> (Vec<Duration>, Duration)
where
    S: Clone + Send + 'static,
    F: Fn(S) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = Duration> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let state = state.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for _ in 0..n / concurrency {
                    lat.push(each(state.clone()).await);
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    (lat, start.elapsed())
}

fn limiter_cost(keys: usize, n: usize) -> f64 {
    let limits = RateLimits::default();
    let ids: Vec<uuid::Uuid> = (0..keys).map(|_| uuid::Uuid::now_v7()).collect();
    let t = Instant::now();
    for i in 0..n {
        std::hint::black_box(limits.api_call(ids[i % keys], 10_000_000));
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = std::env::temp_dir().join(format!("berqenas-bench-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let db = server::embedded_with(&dir, None, true).await.unwrap();
    let cluster = db.cluster.clone().unwrap();
    struct Stop(berqenas::pg::cluster::Cluster, std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.stop_immediately();
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let _stop = Stop(cluster, dir.clone());
    let platform = server::platform(&db, SecretKey::from_bytes([7; 32]), 16)
        .await
        .unwrap();
    let state = AppState::new(
        berqenas::workflows::Runtime::start(platform.clone(), "bench")
            .await
            .unwrap(),
        TOKEN,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = api::router(state);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::new();

    let tenant: Value = http
        .post(format!("{url}/api/v1/tenants"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "bench", "public_api": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = tenant["api_key"].as_str().unwrap().to_string();
    let res = http
        .put(format!("{url}/api/v1/tenants/bench/quotas"))
        .bearer_auth(TOKEN)
        .json(&json!({"api_calls_per_minute": 10_000_000, "max_connections": 20}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The direct pool connects exactly as the data API does (same transport, same role).
    let mut config = platform.config.clone();
    config
        .user(tenant["role"].as_str().unwrap())
        .password(tenant["credentials"]["password"].as_str().unwrap())
        .dbname(tenant["database"].as_str().unwrap());
    let pool = berqenas::pg::pool(config, 8).unwrap();
    pool.get()
        .await
        .unwrap()
        .batch_execute(
            "INSERT INTO applications (name, team, created_by, description)
             SELECT 'app-' || g, 'team-' || (g % 7), 'bench', repeat('x', 40) FROM generate_series(1, 100) g",
        )
        .await
        .unwrap();

    let version: String = pool
        .get()
        .await
        .unwrap()
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "berqenas data API benchmark: {n} requests per series, 100-row SELECT, PostgreSQL {version}"
    );
    for _ in 0..200 {
        api_query(&http, &url, &key).await;
        direct_query(&pool).await;
        direct_hygiene(&pool).await;
    }
    let (mut api, mut direct, mut hygiene) = (Vec::new(), Vec::new(), Vec::new());
    let (mut api_t, mut direct_t, mut hygiene_t) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        let d = api_query(&http, &url, &key).await;
        api_t += d;
        api.push(d);
        let d = direct_query(&pool).await;
        direct_t += d;
        direct.push(d);
        let d = direct_hygiene(&pool).await;
        hygiene_t += d;
        hygiene.push(d);
    }
    let (api50, _) = report("data API (HTTP), concurrency 1", api, api_t);
    let (dir50, _) = report("direct pooled, cached statement", direct, direct_t);
    let (hyg50, _) = report("direct pooled, the API's transaction", hygiene, hygiene_t);
    println!(
        "API overhead at p50: {:.3} ms over direct ({:.3} ms of it the per-request transaction and reset)",
        (api50.as_secs_f64() - dir50.as_secs_f64()) * 1e3,
        (hyg50.as_secs_f64() - dir50.as_secs_f64()) * 1e3,
    );

    for concurrency in [8] {
        let (lat, wall) = concurrently(
            concurrency,
            n,
            (http.clone(), url.clone(), key.clone()),
            |(http, url, key)| async move { api_query(&http, &url, &key).await },
        )
        .await;
        report(
            &format!("data API (HTTP), concurrency {concurrency}"),
            lat,
            wall,
        );
        let (lat, wall) = concurrently(concurrency, n, pool.clone(), |pool| async move {
            direct_query(&pool).await
        })
        .await;
        report(
            &format!("direct pooled, concurrency {concurrency}"),
            lat,
            wall,
        );
    }

    println!(
        "rate limiter check: {:.0} ns (1 tenant), {:.0} ns (10,000 tenants)",
        limiter_cost(1, 2_000_000),
        limiter_cost(10_000, 2_000_000)
    );
}
