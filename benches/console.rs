//! The console's speed with many tenants: time to first byte (p50/p95) of the tenant
//! list (first page, a page deep in, a search, filters) and of a tenant page, and each
//! page's weight in bytes, each beside its target.
//!
//! One throw-away cluster; two real tenants made by the create workflow, then
//! BENCH_TENANTS registry rows (10,000 by default) copied from the first in one
//! statement, so the list's queries run over that many rows. The tenant page is timed
//! on the real tenant (the copies have no quotas or database objects to show).
//!
//! `cargo bench --bench console` (BENCH_TENANTS=N rows; BENCH_REQUESTS=N per page, 200).

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
const TTFB_P95_TARGET_MS: f64 = 100.0;
const WEIGHT_TARGET_BYTES: usize = 64 * 1024;

struct Scratch(Cluster, PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        self.0.stop_immediately();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn seed(rt: &Arc<Runtime>, name: &str, isolation: &str) {
    create(
        rt,
        &CreateTenant {
            name: name.into(),
            isolation: Some(isolation.into()),
            ..Default::default()
        },
        None,
        "bench",
    )
    .await
    .unwrap();
}

/// Times `requests` GETs of `path`: time to the response's head (the server renders
/// the whole page before it answers, so this is its full cost) and the body's size.
async fn measure(
    http: &reqwest::Client,
    url: &str,
    cookie: &str,
    requests: usize,
) -> (f64, f64, usize) {
    let mut times = Vec::with_capacity(requests);
    let mut bytes = 0;
    for _ in 0..requests {
        let start = Instant::now();
        let res = http.get(url).header("cookie", cookie).send().await.unwrap();
        times.push(start.elapsed());
        assert!(res.status().is_success(), "{url}: {}", res.status());
        bytes = res.bytes().await.unwrap().len();
    }
    times.sort();
    let at = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.95), bytes)
}

#[tokio::main]
async fn main() {
    let tenants = env("BENCH_TENANTS", 10_000);
    let requests = env("BENCH_REQUESTS", 200);
    let dir = std::env::temp_dir().join(format!("berqenas-console-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let db = server::embedded_with(&dir, None, false).await.unwrap();
    let _scratch = Scratch(db.cluster.clone().unwrap(), dir.clone());
    let p = server::platform(&db, SecretKey::from_bytes([7; 32]), 16)
        .await
        .unwrap();
    let rt = Runtime::start(p.clone(), "bench").await.unwrap();
    println!(
        "console benchmark: {tenants} tenants, {requests} requests per page, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    seed(&rt, "seed-schema", "schema").await;
    let started = Instant::now();
    let admin = p.pool.get().await.unwrap();
    // Copies of the seed's row: names, schemas and roles of their own; one in ten
    // suspended, every third on another plan, so the filters have something to skip.
    let inserted = admin
        .execute(
            "INSERT INTO berqenas.tenants (id, name, status, plan, isolation, schema_name, database_name,
                 login_role, owner_role, db_quota_bytes, vpn_enabled, public_api, template_version,
                 metadata, credentials)
             SELECT gen_random_uuid(), 'bulk-' || lpad(g::text, 6, '0'), 'active', t.plan, t.isolation,
                    'tenant_bulk_' || lpad(g::text, 6, '0'), t.database_name,
                    'tenant_bulk_' || lpad(g::text, 6, '0') || '_user',
                    'tenant_bulk_' || lpad(g::text, 6, '0') || '_owner',
                    t.db_quota_bytes, t.vpn_enabled, t.public_api, t.template_version, t.metadata, t.credentials
             FROM berqenas.tenants t, generate_series(1, $1::int) g WHERE t.name = 'seed-schema'",
            &[&(tenants as i32)],
        )
        .await
        .unwrap();
    admin
        .execute("ANALYZE berqenas.tenants", &[])
        .await
        .unwrap();
    println!(
        "  {inserted} registry rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The tenant whose page is timed comes last: its id is after every copy's.
    seed(&rt, "seed-database", "database").await;
    // A week of usage history for the timed tenants (one sample every 5 minutes, as
    // the default interval writes), and one sample round over every tenant, timed.
    admin
        .execute(
            "INSERT INTO berqenas.usage_samples (tenant_id, sampled_at, disk_bytes, connections, api_calls)
             SELECT t.id, now() - g * interval '5 minutes', 1000000 + g * 100, g % 7, g % 50
               FROM berqenas.tenants t, generate_series(1, 2016) g
              WHERE t.name IN ('seed-schema', 'seed-database')",
            &[],
        )
        .await
        .unwrap();
    let limits = berqenas::quota::rate::RateLimits::default();
    let started = Instant::now();
    let sampled = berqenas::quota::history::sample_round(
        &rt,
        &limits,
        berqenas::quota::history::Settings::default(),
    )
    .await
    .unwrap();
    println!(
        "  usage sample round: {} rows in {:.1} ms",
        sampled.unwrap_or(0),
        started.elapsed().as_secs_f64() * 1e3
    );
    let last_copy: String = admin
        .query_one(
            "SELECT id::text FROM berqenas.tenants WHERE name LIKE 'bulk-%' ORDER BY id DESC OFFSET 60 LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);

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
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let res = http
        .post(format!("{url}/console/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();

    let pages = [
        ("tenant list, first page", "/console".to_string()),
        (
            "tenant list, last pages (keyset)",
            format!("/console?after={last_copy}"),
        ),
        (
            "tenant list, search (one match)",
            "/console?q=bulk-009999".to_string(),
        ),
        (
            "tenant list, search (no match)",
            "/console?q=nobody".to_string(),
        ),
        (
            "tenant list, plan+isolation filter",
            "/console?plan=free&isolation=schema".to_string(),
        ),
        (
            "tenant page (database mode)",
            "/console/tenants/seed-database".to_string(),
        ),
        (
            "tenant page (schema mode)",
            "/console/tenants/seed-schema".to_string(),
        ),
    ];
    println!(
        "{:<38} {:>9} {:>9} {:>10}   targets: p95 < {TTFB_P95_TARGET_MS} ms, page < {WEIGHT_TARGET_BYTES} bytes",
        "page", "p50 ms", "p95 ms", "bytes"
    );
    let mut failed = false;
    for (label, path) in pages {
        // A few unmeasured requests first: pools and the disk measure warm up.
        measure(&http, &format!("{url}{path}"), &cookie, 3).await;
        let (p50, p95, bytes) = measure(&http, &format!("{url}{path}"), &cookie, requests).await;
        let ok = p95 < TTFB_P95_TARGET_MS && bytes < WEIGHT_TARGET_BYTES;
        failed |= !ok;
        println!(
            "{label:<38} {p50:>9.2} {p95:>9.2} {bytes:>10}   {}",
            if ok { "ok" } else { "OVER TARGET" }
        );
    }
    rt.engine.shutdown(Duration::from_secs(5)).await;
    if failed {
        println!("some page is over its target");
    }
}
