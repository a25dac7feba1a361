//! What the audit hash chain costs concurrent writers. On one throw-away cluster, in
//! alternating rounds so both sides see the same machine noise:
//!
//! - schema-mode tenant creations at concurrency 8 (the domain call the API makes),
//! - bare audit appends, one per transaction, on 8 connections,
//!
//! each with the chain trigger as shipped ("chain") and with a stand-in that only takes
//! the id, locks nothing and hashes nothing ("no chain").
//!
//! `cargo bench --bench audit_chain` (BENCH_ROUNDS=N rounds of each; 4).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berqenas::pg::cluster::Cluster;
use berqenas::platform::Platform;
use berqenas::secrets::SecretKey;
use berqenas::server;
use std::sync::Arc;

use berqenas::tenant::service::CreateTenant;
use berqenas::workflows::create::create;
use berqenas::workflows::Runtime;

const CONCURRENCY: usize = 8;
const TENANTS_PER_ROUND: usize = 40;
const APPENDS_PER_ROUND: usize = 800;

const NO_CHAIN: &str =
    "CREATE OR REPLACE FUNCTION berqenas.audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.id := nextval('berqenas.audit_log_id_seq');
    NEW.prev_hash := '\\x';
    NEW.hash := '\\x';
    RETURN NEW;
END $$";

struct Scratch(Cluster, PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        self.0.stop_immediately();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[derive(Default)]
struct Series {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Series {
    fn report(&mut self, label: &str, unit: &str) -> (f64, f64) {
        self.latencies.sort();
        let at = |p: f64| {
            self.latencies[((self.latencies.len() - 1) as f64 * p).round() as usize].as_secs_f64()
                * 1e3
        };
        let rate = self.latencies.len() as f64 / self.wall.as_secs_f64();
        println!(
            "{label:<32} n={:<5} p50={:>7.2}ms p99={:>7.2}ms {rate:>8.1} {unit}/s",
            self.latencies.len(),
            at(0.5),
            at(0.99),
        );
        (at(0.5), rate)
    }
}

async fn creates(rt: &Arc<Runtime>, prefix: &str, round: usize, s: &mut Series) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..CONCURRENCY {
        let rt = rt.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (w..TENANTS_PER_ROUND).step_by(CONCURRENCY) {
                let req = CreateTenant {
                    name: format!("{prefix}-{round}-{i}"),
                    db_quota: Some("1GB".into()),
                    ..Default::default()
                };
                let t = Instant::now();
                create(&rt, &req, None, "bench").await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    for t in tasks {
        s.latencies.extend(t.await.unwrap());
    }
    s.wall += start.elapsed();
}

async fn appends(p: &Platform, s: &mut Series) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = p.pool.get().await.unwrap();
            let mut lat = Vec::new();
            for i in 0..APPENDS_PER_ROUND / CONCURRENCY {
                let t = Instant::now();
                let tx = client.transaction().await.unwrap();
                berqenas::audit::record(
                    &tx,
                    &berqenas::audit::Entry {
                        actor: "bench",
                        action: "bench_append",
                        tenant_id: None,
                        tenant_name: None,
                        operation_id: None,
                        details: serde_json::json!({"i": i}),
                    },
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    for t in tasks {
        s.latencies.extend(t.await.unwrap());
    }
    s.wall += start.elapsed();
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let dir = std::env::temp_dir().join(format!("berqenas-chain-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let db = server::embedded_with(&dir, None, false).await.unwrap();
    let _scratch = Scratch(db.cluster.clone().unwrap(), dir.clone());
    let p = server::platform(&db, SecretKey::from_bytes([7; 32]), 16)
        .await
        .unwrap();
    let rt = Runtime::start(p.clone(), "bench").await.unwrap();
    let admin = p.pool.get().await.unwrap();
    let chain: String = admin
        .query_one(
            "SELECT pg_get_functiondef('berqenas.audit_chain()'::regprocedure)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    println!(
        "audit chain benchmark: {rounds} alternating rounds, concurrency {CONCURRENCY}, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for i in 0..5 {
        create(
            &rt,
            &CreateTenant {
                name: format!("warm-{i}"),
                ..Default::default()
            },
            None,
            "bench",
        )
        .await
        .unwrap();
    }
    let (mut on_c, mut off_c, mut on_a, mut off_a) = Default::default();
    for round in 0..rounds {
        // Alternate which side goes first, too.
        for chained in if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            admin
                .batch_execute(if chained { &chain } else { NO_CHAIN })
                .await
                .unwrap();
            if chained {
                creates(&rt, "on", round, &mut on_c).await;
                appends(&p, &mut on_a).await;
            } else {
                creates(&rt, "off", round, &mut off_c).await;
                appends(&p, &mut off_a).await;
            }
        }
    }
    admin.batch_execute(&chain).await.unwrap();
    let (c_on, r_on) = on_c.report("create, chain", "tenants");
    let (c_off, r_off) = off_c.report("create, no chain", "tenants");
    let (a_on, ra_on) = on_a.report("audit append, chain", "appends");
    let (a_off, ra_off) = off_a.report("audit append, no chain", "appends");
    println!(
        "chain / no chain: create p50 {:.2}x, create throughput {:.2}x; append p50 {:.2}x, append throughput {:.2}x",
        c_on / c_off,
        r_on / r_off,
        a_on / a_off,
        ra_on / ra_off
    );
}
