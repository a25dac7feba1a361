//! Vector store benchmark, on a throw-away cluster and a real Chroma server
//! (`chroma run`; see tests/support/chroma.rs for where it is found):
//!
//! - database-mode creates with `vector_store: true` beside creates without,
//!   alternating: what the `vector_store` step adds to onboarding;
//! - a one-record upsert (384 dimensions) and a 10-nearest query through berqenas
//!   (HTTP, API-key lookup, quota read, rate limit, Chroma) beside the same call sent
//!   straight to Chroma, interleaved one for one.
//!
//! `cargo bench --bench vector` (BENCH_CREATES=N creates per series, 10;
//! BENCH_CALLS=N calls per series, 300).

#[path = "../tests/support/chroma.rs"]
mod chroma;

use std::sync::Arc;
use std::time::{Duration, Instant};

use berqenas::api::{self, AppState};
use berqenas::secrets::SecretKey;
use berqenas::server;
use serde_json::{json, Value};

const TOKEN: &str = "bench-admin-token-0123456789";
const DIM: usize = 384;

/// What each figure should stay under.
const CREATE_OVERHEAD_TARGET_MS: f64 = 100.0;
const ADDED_LATENCY_TARGET_MS: f64 = 5.0;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

fn report(label: &str, mut lat: Vec<Duration>) -> (f64, f64) {
    lat.sort();
    let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));
    println!(
        "{label:<44} n={:<5} p50={p50:>8.2}ms p99={p99:>8.2}ms",
        lat.len()
    );
    (p50, p99)
}

fn embedding(i: usize) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((i * 31 + d * 7) % 97) as f32 / 97.0)
        .collect()
}

async fn timed(req: reqwest::RequestBuilder) -> (Duration, Value) {
    let t = Instant::now();
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let v: Value = res.json().await.unwrap();
    (t.elapsed(), v)
}

#[tokio::main]
async fn main() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (creates, calls) = (env("BENCH_CREATES", 10), env("BENCH_CALLS", 300));
    let dir = std::env::temp_dir().join(format!("berqenas-bench-vector-{}", std::process::id()));
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
    let chroma = chroma::Chroma::start().await;
    let mut platform = server::platform(&db, SecretKey::from_bytes([7; 32]), 16)
        .await
        .unwrap();
    platform.vectors = Some(Arc::new(
        berqenas::vector::chroma::Chroma::new(&chroma.url).unwrap(),
    ));
    let rt = berqenas::workflows::Runtime::start(platform, "bench")
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = api::router(AppState::new(rt, TOKEN));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::new();

    println!("vector store: Chroma at {}, {DIM} dimensions", chroma.url);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let mut tenant = Value::Null;
    for i in 0..creates {
        for vectors in [true, false] {
            let body = json!({"name": format!("bench-{}-{i}", if vectors { "v" } else { "n" }),
                              "isolation": "database", "vector_store": vectors});
            let (took, created) = timed(
                http.post(format!("{url}/api/v1/tenants"))
                    .bearer_auth(TOKEN)
                    .json(&body),
            )
            .await;
            if vectors {
                with.push(took);
                tenant = created;
            } else {
                without.push(took);
            }
        }
    }
    let (with_p50, _) = report("create, database mode, vector_store: true", with);
    let (without_p50, _) = report("create, database mode, no vector store", without);
    println!(
        "{:<44} {:>8.2}ms at p50   (target < {CREATE_OVERHEAD_TARGET_MS}ms)",
        "  the vector_store step adds",
        with_p50 - without_p50
    );

    let key = tenant["api_key"].as_str().unwrap().to_string();
    let collections = format!(
        "{}/api/v2/tenants/default_tenant/databases/default_database/collections",
        chroma.url
    );
    let name = tenant["vector_store"]["collection"].as_str().unwrap();
    let (_, c) = timed(http.get(format!("{collections}/{name}"))).await;
    let direct = format!("{collections}/{}", c["id"].as_str().unwrap());

    let (mut via, mut straight) = (Vec::new(), Vec::new());
    for i in 0..calls {
        let body =
            json!({"ids": [format!("b{i}")], "embeddings": [embedding(i)], "documents": ["d"]});
        via.push(
            timed(
                http.post(format!("{url}/api/v1/vectors/upsert"))
                    .bearer_auth(&key)
                    .json(&body),
            )
            .await
            .0,
        );
        let body = json!({"ids": [format!("c{i}")], "embeddings": [embedding(i + calls)], "documents": ["d"]});
        straight.push(
            timed(http.post(format!("{direct}/upsert")).json(&body))
                .await
                .0,
        );
    }
    let (via_p50, _) = report("upsert 1 record through berqenas", via);
    let (straight_p50, _) = report("upsert 1 record straight to Chroma", straight);
    println!(
        "{:<44} {:>8.2}ms at p50   (target < {ADDED_LATENCY_TARGET_MS}ms)",
        "  berqenas adds",
        via_p50 - straight_p50
    );

    let (mut via, mut straight) = (Vec::new(), Vec::new());
    for i in 0..calls {
        let (t, v) = timed(
            http.post(format!("{url}/api/v1/vectors/query"))
                .bearer_auth(&key)
                .json(&json!({"embeddings": [embedding(i)], "n_results": 10})),
        )
        .await;
        assert_eq!(v["results"][0].as_array().unwrap().len(), 10);
        via.push(t);
        let body = json!({"query_embeddings": [embedding(i)], "n_results": 10,
                          "include": ["metadatas", "documents", "distances"]});
        straight.push(
            timed(http.post(format!("{direct}/query")).json(&body))
                .await
                .0,
        );
    }
    let (via_p50, _) = report("query 10 nearest through berqenas", via);
    let (straight_p50, _) = report("query 10 nearest straight to Chroma", straight);
    println!(
        "{:<44} {:>8.2}ms at p50   (target < {ADDED_LATENCY_TARGET_MS}ms)",
        "  berqenas adds",
        via_p50 - straight_p50
    );
    drop(chroma);
}
