//! Webhook relay benchmark, on a throw-away cluster, with a local receiver that
//! answers 200:
//!
//! 1. from an event's commit to the receiver's 200, at 100 and at 1,000 events/s
//!    offered (50 tenants, one endpoint): p50/p99 latency and the rate achieved;
//! 2. the relay's throughput with 10 endpoints taking every event: 1,000 events
//!    committed at once, deliveries per second until the last one is received.
//!
//! `cargo bench --bench events` (BENCH_SECONDS=N: seconds per rate, 3).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berqenas::events::relay::{Relay, RelayOptions};
use berqenas::events::webhooks::{self, CreateWebhook, Settings};
use berqenas::secrets::SecretKey;
use berqenas::server;
use berqenas::store::outbox::{append, NewEvent};
use uuid::Uuid;

type Seen = Arc<Mutex<HashMap<(usize, String), Instant>>>;

/// A receiver with `n` paths (/0 .. /n-1), one per endpoint; records when each
/// (path, webhook-id) first arrived.
async fn receiver(n: usize) -> (Vec<String>, Seen) {
    let seen: Seen = Arc::default();
    let mut app = axum::Router::new();
    for i in 0..n {
        let s = seen.clone();
        app = app.route(
            &format!("/{i}"),
            axum::routing::post(move |h: axum::http::HeaderMap| {
                let s = s.clone();
                async move {
                    let id = h["webhook-id"].to_str().unwrap().to_string();
                    s.lock()
                        .unwrap()
                        .entry((i, id))
                        .or_insert_with(Instant::now);
                    axum::http::StatusCode::OK
                }
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    ((0..n).map(|i| format!("{base}/{i}")).collect(), seen)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
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

async fn wait_for(seen: &Seen, n: usize, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while seen.lock().unwrap().len() < n {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("berqenas-bench-events-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = server::embedded_with(&dir, None, false).await.unwrap();
    let scratch = Scratch(db, dir.clone());
    let p = server::platform(&scratch.0, SecretKey::from_bytes([9; 32]), 24)
        .await
        .unwrap();
    let settings = Settings {
        allow_private: true,
    };
    let relay = Relay::new(
        p.pool.clone(),
        p.key.clone(),
        RelayOptions {
            allow_private: true,
            ..Default::default()
        },
    );
    tokio::spawn(relay.run_forever(p.config.clone()));
    let emitters = berqenas::pg::pool(p.config.clone(), 16).unwrap();
    let tenants: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();

    // 1. Commit to 200, one endpoint.
    let (urls, seen) = receiver(1).await;
    let one = webhooks::create(
        &p,
        &settings,
        &CreateWebhook {
            url: urls[0].clone(),
            events: vec!["tenant.*".into()],
            description: None,
            enabled: None,
        },
        "bench",
    )
    .await
    .unwrap();
    println!("webhook relay (commit to a local receiver's 200), {seconds} s per rate:");
    for rate in [100u64, 1000] {
        seen.lock().unwrap().clear();
        let n = (rate * seconds) as usize;
        let committed: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let at = start + Duration::from_secs_f64(i as f64 / rate as f64);
            let pool = emitters.clone();
            let committed = committed.clone();
            let tenant = tenants[i % tenants.len()];
            tasks.spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                // A failed emit is counted and shown, not a panic that hides the figures.
                let emitted = async {
                    let mut c = pool.get().await.map_err(|e| e.to_string())?;
                    let tx = c.transaction().await.map_err(|e| e.to_string())?;
                    let e = append(
                        &tx,
                        &NewEvent {
                            event_type: "tenant.updated",
                            tenant_id: Some(tenant),
                            tenant_name: Some("bench"),
                            data: serde_json::json!({"n": i}),
                        },
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    tx.commit().await.map_err(|e| e.to_string())?;
                    Ok::<_, String>(e)
                }
                .await?;
                committed
                    .lock()
                    .unwrap()
                    .insert(emitted.id.to_string(), Instant::now());
                Ok::<(), String>(())
            });
        }
        let mut failed = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed.push(e),
                Err(e) => failed.push(e.to_string()),
            }
        }
        if let Some(first) = failed.first() {
            println!(
                "  {rate:>5} events/s offered: {} of {n} emits FAILED (first: {first})",
                failed.len()
            );
        }
        let offered_for = start.elapsed();
        let all = wait_for(&seen, n - failed.len(), 120).await;
        let took = start.elapsed();
        let seen_now = seen.lock().unwrap().clone();
        let committed = committed.lock().unwrap().clone();
        let mut lat: Vec<Duration> = seen_now
            .iter()
            .filter_map(|((_, id), at)| committed.get(id).map(|c| at.saturating_duration_since(*c)))
            .collect();
        lat.sort();
        let achieved = seen_now.len() as f64 / took.as_secs_f64();
        let p99 = percentile(&lat, 0.99);
        println!(
            "  {rate:>5} events/s offered: n={n} delivered={} (all: {all}) in {:.2}s (commits took {:.2}s), {achieved:.0} events/s; p50={:.1}ms p99={:.1}ms  target p99 <= 1000ms: {}; target kept up (last delivery within 1 s of the last commit): {}",
            seen_now.len(),
            took.as_secs_f64(),
            offered_for.as_secs_f64(),
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            verdict(p99 <= Duration::from_secs(1)),
            verdict(all && took <= offered_for + Duration::from_secs(1)),
        );
    }
    webhooks::delete(&p, &one.webhook.id.to_string(), "bench")
        .await
        .unwrap();

    // 2. Ten endpoints, every event to each.
    let (urls, seen) = receiver(10).await;
    for u in &urls {
        webhooks::create(
            &p,
            &settings,
            &CreateWebhook {
                url: u.clone(),
                events: vec!["*".into()],
                description: None,
                enabled: None,
            },
            "bench",
        )
        .await
        .unwrap();
    }
    let events = 1000usize;
    let start = Instant::now();
    {
        let mut c = emitters.get().await.unwrap();
        for chunk in 0..events / 100 {
            let tx = c.transaction().await.unwrap();
            for i in 0..100 {
                append(
                    &tx,
                    &NewEvent {
                        event_type: "tenant.updated",
                        tenant_id: Some(tenants[(chunk * 100 + i) % tenants.len()]),
                        tenant_name: Some("bench"),
                        data: serde_json::json!({}),
                    },
                )
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
        }
    }
    let all = wait_for(&seen, events * 10, 300).await;
    let took = start.elapsed();
    let rate = seen.lock().unwrap().len() as f64 / took.as_secs_f64();
    println!(
        "  10 endpoints, {events} events committed at once: {} deliveries (all: {all}) in {:.2}s = {rate:.0} deliveries/s  target >= 1000 deliveries/s: {}",
        seen.lock().unwrap().len(),
        took.as_secs_f64(),
        verdict(all && rate >= 1000.0)
    );
    drop(scratch);
}
