//! Tenant configuration benchmark (docs/config.md): `GET` and `PATCH` of a tenant's
//! configuration through the API (HTTP, admin auth, the tenant's row, and for a PATCH
//! its name lock, the plan's schema check, a new version, an audit row in the hash
//! chain, an event and the operation row), and `GET /api/v1/me/config` with the
//! tenant's API key; p50 and p99 beside their targets.
//!
//! `cargo bench --bench config` (BENCH_REQUESTS=N sets the requests per series; 500).

use std::time::{Duration, Instant};

use berqenas::api::{self, AppState};
use berqenas::secrets::SecretKey;
use berqenas::server;
use serde_json::{json, Value};

const TOKEN: &str = "bench-admin-token-0123456789";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, mut lat: Vec<Duration>, p99_target_ms: f64) {
    lat.sort();
    let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));
    let p99_ms = p99.as_secs_f64() * 1e3;
    println!(
        "{label:<34} n={:<5} p50={:>7.3}ms p99={:>7.3}ms  target p99 < {p99_target_ms} ms: {}",
        lat.len(),
        p50.as_secs_f64() * 1e3,
        p99_ms,
        if p99_ms < p99_target_ms {
            "met"
        } else {
            "MISSED"
        }
    );
}

async fn timed(req: reqwest::RequestBuilder) -> Duration {
    let t = Instant::now();
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let _: Value = res.json().await.unwrap();
    t.elapsed()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let dir = std::env::temp_dir().join(format!("berqenas-bench-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let db = server::embedded_with(&dir, None, true).await.unwrap();
    struct Stop(berqenas::pg::cluster::Cluster, std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.stop_immediately();
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let _stop = Stop(db.cluster.clone().unwrap(), dir.clone());
    let platform = server::platform(&db, SecretKey::from_bytes([7; 32]), 16)
        .await
        .unwrap();
    let rt = berqenas::workflows::Runtime::start(platform, "bench")
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = api::router(AppState::new(rt, TOKEN));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::new();

    // A plan schema, so every PATCH is validated as in production.
    let schema = json!({"type": "object", "properties": {"max_tokens": {"type": "integer", "maximum": 1000000}}});
    let res = http
        .put(format!("{url}/api/v1/plans/starter/config-defaults"))
        .bearer_auth(TOKEN)
        .json(&json!({"defaults": {"model": "gpt-4o-mini", "max_tokens": 1000, "rate_limit_per_minute": 60,
            "features": {"basic_chat": true}}, "schema": schema}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let tenant: Value = http
        .post(format!("{url}/api/v1/tenants"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "bench", "plan": "starter", "public_api": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = tenant["api_key"].as_str().unwrap().to_string();
    let path = format!("{url}/api/v1/tenants/bench/config");

    // Warm up the connections and caches.
    for _ in 0..20 {
        timed(http.get(&path).bearer_auth(TOKEN)).await;
    }
    let mut get = Vec::with_capacity(n);
    let mut me = Vec::with_capacity(n);
    let mut patch = Vec::with_capacity(n);
    for i in 0..n {
        get.push(timed(http.get(&path).bearer_auth(TOKEN)).await);
        me.push(
            timed(
                http.get(format!("{url}/api/v1/me/config"))
                    .bearer_auth(&key),
            )
            .await,
        );
        patch.push(
            timed(
                http.patch(&path)
                    .bearer_auth(TOKEN)
                    .json(&json!({"max_tokens": 1000 + i})),
            )
            .await,
        );
    }
    report("GET /tenants/{name}/config", get, 5.0);
    report("GET /me/config (API key)", me, 5.0);
    report("PATCH /tenants/{name}/config", patch, 20.0);
}
