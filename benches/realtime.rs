//! Realtime benchmark, on a throw-away cluster, the production router in-process:
//!
//! 1. commit-to-client latency p50/p99 with SUBSCRIBERS (1,000) across TENANTS (100)
//!    at 1,000 and 5,000 events/s offered (plain INSERTs spread over the tenants by
//!    BENCH_PUBLISHERS (32) concurrent connections; a publisher that falls behind its
//!    schedule inserts what is due in one multi-row INSERT per tenant), and whether
//!    every subscriber got every event of its tenant (no loss);
//! 2. one publish through the API against one plain INSERT as the tenant's login;
//! 3. memory per subscriber (this process's RSS growth, clients included).
//!
//! `cargo bench --bench realtime` (BENCH_SECONDS=N per rate, 3; BENCH_TENANTS,
//! BENCH_SUBSCRIBERS, BENCH_PUBLISHERS to scale down).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berqenas::api::{self, AppState};
use berqenas::secrets::SecretKey;
use berqenas::server;
use serde_json::{json, Value};

const TOKEN: &str = "bench-admin-token-0123456789";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

struct Scratch(server::Database, std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(c) = &self.0.cluster {
            c.stop_immediately();
        }
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// (tenant index, event id) -> when a subscriber received it, per subscriber.
type Got = Arc<Mutex<Vec<(usize, i64, Instant)>>>;

async fn subscribe(http: reqwest::Client, url: String, key: String, tenant: usize, got: Got) {
    let mut res = http.get(url).bearer_auth(key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut buf = String::new();
    while let Ok(Some(bytes)) = res.chunk().await {
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id:")) {
                let id: i64 = id.trim().parse().unwrap();
                got.lock().unwrap().push((tenant, id, Instant::now()));
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let seconds = env("BENCH_SECONDS", 3) as u64;
    let tenants = env("BENCH_TENANTS", 100);
    let subscribers = env("BENCH_SUBSCRIBERS", 1000);
    let dir = std::env::temp_dir().join(format!("berqenas-bench-realtime-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = server::embedded_with(&dir, None, false).await.unwrap();
    let scratch = Scratch(db, dir.clone());
    let p = server::platform(&scratch.0, SecretKey::from_bytes([9; 32]), 32)
        .await
        .unwrap();
    // The publishers: BENCH_PUBLISHERS connections of their own (control role), so
    // the offered rate is not the API's pool's to limit.
    let mut publishers = Vec::new();
    for _ in 0..env("BENCH_PUBLISHERS", 32) {
        let (c, conn) = p.config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        publishers.push(Arc::new(c));
    }
    let rt = berqenas::workflows::Runtime::start(p, "bench:realtime")
        .await
        .unwrap();
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
    let http = reqwest::Client::new();
    let mut made = Vec::new();
    for i in 0..tenants {
        let name = format!("rtb-{i}");
        let t: Value = http
            .post(format!("{url}/api/v1/tenants"))
            .bearer_auth(TOKEN)
            .json(&json!({"name": name, "isolation": "schema", "public_api": true}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        http.put(format!("{url}/api/v1/tenants/{name}/quotas"))
            .bearer_auth(TOKEN)
            .json(&json!({"realtime_max_subscribers": 100000, "realtime_events_per_minute": 10000000,
                          "realtime_events_per_hour": 1000000000, "api_calls_per_minute": 10000000}))
            .send()
            .await
            .unwrap();
        made.push((format!("tenant_rtb_{i}"), t));
    }
    println!("{tenants} tenants, {subscribers} subscribers");

    // Memory per subscriber, and the subscribers themselves.
    let got: Got = Arc::default();
    let before = rss_kb();
    for s in 0..subscribers {
        let t = s % tenants;
        let key = made[t].1["api_key"].as_str().unwrap().to_string();
        tokio::spawn(subscribe(
            http.clone(),
            format!("{url}/api/v1/realtime/stream?channel=*"),
            key,
            t,
            got.clone(),
        ));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let per_sub = (rss_kb().saturating_sub(before)) as f64 / subscribers as f64;
    println!("memory per subscriber: {per_sub:.1} KiB (server and client in one process; target: none set)");

    for rate in [1000u64, 5000] {
        got.lock().unwrap().clear();
        let committed: Arc<Mutex<HashMap<(usize, i64), Instant>>> = Arc::default();
        let total = rate * seconds;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (w, c) in publishers.iter().enumerate() {
            let (c, committed, schemas) = (
                c.clone(),
                committed.clone(),
                made.iter().map(|m| m.0.clone()).collect::<Vec<_>>(),
            );
            let workers = publishers.len() as u64;
            tasks.push(tokio::spawn(async move {
                let mut n = w as u64;
                while n < total {
                    let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                    // Every event of this publisher due by now: one INSERT per tenant
                    // (several rows when it is behind), each its own transaction.
                    let now_n = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                    let mut per_tenant: HashMap<usize, i32> = HashMap::new();
                    loop {
                        *per_tenant.entry(n as usize % schemas.len()).or_default() += 1;
                        n += workers;
                        if n >= total || n > now_n {
                            break;
                        }
                    }
                    for (t, k) in per_tenant {
                        let rows = c
                            .query(
                                &format!("INSERT INTO {}.realtime_events (channel, payload) SELECT 'bench', '{{}}' FROM generate_series(1, $1) RETURNING id", schemas[t]),
                                &[&k],
                            )
                            .await
                            .unwrap();
                        let at = Instant::now();
                        let mut committed = committed.lock().unwrap();
                        for r in rows {
                            committed.insert((t, r.get(0)), at);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let took = start.elapsed().as_secs_f64();
        let mut per_tenant = vec![0usize; tenants];
        for (t, _) in committed.lock().unwrap().keys() {
            per_tenant[*t] += 1;
        }
        let expected: usize = (0..subscribers).map(|s| per_tenant[s % tenants]).sum();
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.lock().unwrap().len() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let got_now = got.lock().unwrap().clone();
        let committed = committed.lock().unwrap();
        let mut lat: Vec<f64> = got_now
            .iter()
            .filter_map(|(t, id, at)| {
                committed
                    .get(&(*t, *id))
                    .map(|c| at.saturating_duration_since(*c).as_secs_f64() * 1000.0)
            })
            .collect();
        let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
        println!(
            "{rate}/s offered ({:.0}/s committed): p50 {p50:.1} ms, p99 {p99:.1} ms (target p99 < 250 ms: {}); delivered {} of {expected} (target: no loss: {})",
            committed.len() as f64 / took,
            if p99 < 250.0 { "met" } else { "MISSED" },
            got_now.len(),
            if got_now.len() >= expected { "met" } else { "MISSED" },
        );
    }

    // One API publish against one plain INSERT as the tenant's login.
    let t = &made[0].1;
    let key = t["api_key"].as_str().unwrap();
    let n = 200;
    let start = Instant::now();
    for _ in 0..n {
        http.post(format!("{url}/api/v1/realtime/publish"))
            .bearer_auth(key)
            .json(&json!({"channel": "cost", "payload": {}}))
            .send()
            .await
            .unwrap();
    }
    let api = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
    let (login, conn) = tokio_postgres::connect(
        t["credentials"]["dsn"].as_str().unwrap(),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let start = Instant::now();
    for _ in 0..n {
        login
            .execute(
                "INSERT INTO realtime_events (channel, payload) VALUES ('cost', '{}')",
                &[],
            )
            .await
            .unwrap();
    }
    let insert = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
    println!(
        "one publish: API {api:.2} ms, plain INSERT {insert:.2} ms ({:.1}x; target: none set)",
        api / insert
    );
}
