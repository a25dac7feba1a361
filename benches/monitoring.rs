//! What per-tenant monitoring costs with many tenants: `/metrics` render time (p50/p99)
//! and size, and the tenant rule file's (`GET /api/v1/monitoring/rules`), at 1,000 and
//! 10,000 tenants, each beside its target.
//!
//! One throw-away cluster; one real tenant made by the create workflow, then registry
//! rows copied from it in one statement (with a finished backup each), and every
//! tenant given request series (2xx, 4xx, 5xx and a duration) as if each had traffic:
//! the worst case, every tenant's series present.
//!
//! `cargo bench --bench monitoring` (BENCH_REQUESTS=N per figure, 50).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berqenas::api::{self, AppState};
use berqenas::pg::cluster::Cluster;
use berqenas::secrets::SecretKey;
use berqenas::server;
use berqenas::tenant::service::CreateTenant;
use berqenas::workflows::create::create;
use berqenas::workflows::Runtime;

const TOKEN: &str = "bench-admin-token-0123456789";
/// Targets at 10,000 tenants (at 1,000 the same, with room to spare).
const METRICS_P99_TARGET_MS: f64 = 250.0;
const RULES_P99_TARGET_MS: f64 = 250.0;

struct Scratch(Cluster, PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        self.0.stop_immediately();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

async fn measure(http: &reqwest::Client, url: &str, requests: usize) -> (f64, f64, usize) {
    let mut times = Vec::with_capacity(requests);
    let mut bytes = 0;
    for _ in 0..requests {
        let start = Instant::now();
        let res = http.get(url).bearer_auth(TOKEN).send().await.unwrap();
        assert!(res.status().is_success(), "{url}: {}", res.status());
        bytes = res.bytes().await.unwrap().len();
        times.push(start.elapsed());
    }
    times.sort();
    let at = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99), bytes)
}

/// Copies the seed tenant's row up to `total` bulk tenants, each with a backup, and
/// gives each request series.
async fn grow(c: &deadpool_postgres::Client, from: usize, total: usize) {
    c.execute(
        "INSERT INTO berqenas.tenants (id, name, status, plan, isolation, schema_name, database_name,
             login_role, owner_role, db_quota_bytes, vpn_enabled, public_api, template_version,
             metadata, credentials)
         SELECT gen_random_uuid(), 'bulk-' || lpad(g::text, 6, '0'), 'active',
                (ARRAY['free', 'starter', 'enterprise'])[1 + g % 3], t.isolation,
                'tenant_bulk_' || lpad(g::text, 6, '0'), t.database_name,
                'tenant_bulk_' || lpad(g::text, 6, '0') || '_user',
                'tenant_bulk_' || lpad(g::text, 6, '0') || '_owner',
                t.db_quota_bytes, t.vpn_enabled, t.public_api, t.template_version, t.metadata, t.credentials
         FROM berqenas.tenants t, generate_series($1::int, $2::int) g WHERE t.name = 'seed'",
        &[&(from as i32 + 1), &(total as i32)],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO berqenas.backups (id, tenant_id, tenant_name, kind, status, isolation, encrypted, finished_at)
         SELECT gen_random_uuid(), id, name, 'scheduled',
                CASE WHEN random() < 0.01 THEN 'failed' ELSE 'succeeded' END, isolation, true, now()
           FROM berqenas.tenants t WHERE name LIKE 'bulk-%'
            AND NOT EXISTS (SELECT 1 FROM berqenas.backups b WHERE b.tenant_id = t.id)",
        &[],
    )
    .await
    .unwrap();
    c.batch_execute("ANALYZE berqenas.tenants; ANALYZE berqenas.backups")
        .await
        .unwrap();
    for g in from + 1..=total {
        let name = format!("bulk-{g:06}");
        for (status, secs) in [(200, 0.01), (404, 0.002), (504, 0.3)] {
            berqenas::metrics::tenants::request(&name, status, secs);
        }
    }
}

#[tokio::main]
async fn main() {
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir =
        std::env::temp_dir().join(format!("berqenas-monitoring-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let db = server::embedded_with(&dir, None, false).await.unwrap();
    let _scratch = Scratch(db.cluster.clone().unwrap(), dir.clone());
    let p = server::platform(&db, SecretKey::from_bytes([7; 32]), 16)
        .await
        .unwrap();
    let rt: Arc<Runtime> = Runtime::start(p.clone(), "bench").await.unwrap();
    create(
        &rt,
        &CreateTenant {
            name: "seed".into(),
            isolation: Some("schema".into()),
            ..Default::default()
        },
        None,
        "bench",
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = api::router(AppState::new(rt.clone(), TOKEN));
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    println!(
        "monitoring benchmark: {requests} requests per figure, {} cores; every tenant with request series and a backup",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<8} {:<22} {:>9} {:>9} {:>12}   targets at 10,000: /metrics p99 < {METRICS_P99_TARGET_MS} ms, rules p99 < {RULES_P99_TARGET_MS} ms",
        "tenants", "what", "p50 ms", "p99 ms", "bytes"
    );
    let c = p.pool.get().await.unwrap();
    let mut failed = false;
    let mut have = 0;
    for tenants in [1_000, 10_000] {
        grow(&c, have, tenants).await;
        have = tenants;
        for (what, path, target) in [
            ("/metrics", "/metrics", METRICS_P99_TARGET_MS),
            (
                "rules (YAML)",
                "/api/v1/monitoring/rules",
                RULES_P99_TARGET_MS,
            ),
        ] {
            let full = format!("{url}{path}");
            measure(&http, &full, 3).await; // warm up
            let (p50, p99, bytes) = measure(&http, &full, requests).await;
            let ok = p99 < target;
            failed |= !ok && tenants == 10_000;
            println!(
                "{tenants:<8} {what:<22} {p50:>9.1} {p99:>9.1} {bytes:>12}   {}",
                if ok { "ok" } else { "OVER TARGET" }
            );
        }
    }
    // The encoding alone (no database): where the scrape's time goes.
    let snap = berqenas::metrics::Snapshot {
        resources: (1..=have)
            .flat_map(|g| {
                let t = format!("bulk-{g:06}");
                [
                    (t.clone(), "disk_bytes".to_string(), 1 << 20, 1 << 30),
                    (t, "connections".to_string(), 1, 20),
                ]
            })
            .collect(),
        backups: (1..=have).map(|g| (format!("bulk-{g:06}"), true)).collect(),
        ..Default::default()
    };
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(berqenas::metrics::render(&snap));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "{have:<8} {:<22} {:>9.1} {:>9.1}   (metrics::render only, no SQL, no HTTP)",
        "/metrics encoding", times[2], times[4]
    );
    if failed {
        println!("a figure at 10,000 tenants is over its target");
    }
}
