//! Servers benchmark (issue 18): tenant create latency through the HTTP API with only
//! `default` registered, beside the same creates spread over three servers by the
//! default placement (least tenants): two of every three go to another server, where
//! the create is the three-step `tenant.create.placed` operation. Schema mode.
//!
//! Then, on one tenant of `default` and one of pg2 side by side: adding a user (one
//! transaction on `default`; the three-step `user.add.placed` on pg2) and adding and
//! removing a firewall rule (each render writes `default`'s pg_hba.conf and, over
//! SQL, pg2's and pg3's).
//!
//! Then creates placed on pg2 by name, schema and database mode, made there from
//! scratch beside claimed from pg2's warm pool (docs/warm_pool.md); shared-mode
//! creates in `default`'s pool beside creates in pg2's own (docs/servers.md), and
//! then shared-mode creates on pg2 claimed from pg2's warm pool.
//!
//! `cargo bench --bench servers` (BENCH_TENANTS=N sets the creates per series; 60).

use std::time::{Duration, Instant};

use berqenas::api::{self, AppState};
use berqenas::pg::cluster::{Cluster, ClusterOptions};
use berqenas::secrets::SecretKey;
use berqenas::server;
use serde_json::{json, Value};

const TOKEN: &str = "bench-admin-token-0123456789";
/// Where the spread creates should land within (the issue sets no figure; the
/// default-only create is the reference).
const TARGET_RATIO: f64 = 3.0;
/// A create on another server claiming a member of its warm pool, beside one made
/// from scratch there (ours: the pool targets are for `default`): the claim
/// skips the schema's DDL, but not the placed create's steps.
const POOL_RATIO: f64 = 0.6;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, mut lat: Vec<Duration>) -> Duration {
    lat.sort();
    let p50 = percentile(&lat, 0.50);
    println!(
        "{label:<36} n={:<4} p50={:>7.2}ms p95={:>7.2}ms p99={:>7.2}ms",
        lat.len(),
        p50.as_secs_f64() * 1e3,
        percentile(&lat, 0.95).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
    );
    p50
}

struct Stop(Vec<Cluster>, std::path::PathBuf);
impl Drop for Stop {
    fn drop(&mut self) {
        for c in &self.0 {
            c.stop_immediately();
        }
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

async fn extra(dir: &std::path::Path, name: &str) -> (Cluster, String) {
    let mut opts = ClusterOptions::new(dir.join(name));
    opts.ephemeral = true;
    let c = tokio::task::spawn_blocking(move || Cluster::ensure(&opts))
        .await
        .unwrap()
        .unwrap();
    let admin =
        berqenas::pg::connect(&berqenas::pg::parse_config(&c.superuser_dsn("postgres")).unwrap())
            .await
            .unwrap();
    admin
        .batch_execute("ALTER ROLE berqenas PASSWORD 'bench-pass'")
        .await
        .unwrap();
    let url = format!(
        "postgresql://berqenas:bench-pass@127.0.0.1:{}/postgres",
        c.port()
    );
    (c, url)
}

/// One timed admin call; panics unless it answers `want`.
async fn timed(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
    want: u16,
) -> (Duration, Value) {
    let t = Instant::now();
    let mut req = http.request(method, url).bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let took = t.elapsed();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(status, want, "{body}");
    (took, body)
}

/// User adds and firewall rule changes on `tenant`: (user add, rule add + remove).
async fn changes(
    http: &reqwest::Client,
    url: &str,
    tenant: &str,
    n: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    use reqwest::Method;
    let base = format!("{url}/api/v1/tenants/{tenant}");
    let quotas = json!({"max_users": n + 1});
    timed(
        http,
        Method::PUT,
        format!("{base}/quotas"),
        Some(quotas),
        200,
    )
    .await;
    let mut users = Vec::with_capacity(n);
    for i in 0..n {
        let body = json!({"email": format!("u{i}@example.com"), "role": "developer"});
        users.push(
            timed(http, Method::POST, format!("{base}/users"), Some(body), 201)
                .await
                .0,
        );
    }
    let mut rules = Vec::with_capacity(n);
    for i in 0..n {
        let body = json!({"cidr": format!("127.0.{}.0/24", 100 + i % 100), "service": "postgres"});
        let (d, added) = timed(
            http,
            Method::POST,
            format!("{base}/firewall"),
            Some(body),
            201,
        )
        .await;
        let id = added["rule"]["id"].as_str().unwrap().to_string();
        let (d2, _) = timed(
            http,
            Method::DELETE,
            format!("{base}/firewall/{id}"),
            None,
            200,
        )
        .await;
        rules.push(d + d2);
    }
    (users, rules)
}

fn verdict(label: &str, placed: Duration, local: Duration, target: f64) {
    let ratio = placed.as_secs_f64() / local.as_secs_f64();
    println!(
        "{label}: p50 pg2 / default = {ratio:.2} (target: at most {target:.1}x) {}",
        if ratio <= target { "ok" } else { "MISSED" }
    );
}

/// A create placed on `server` by name, in `isolation`; panics unless it lands there.
async fn create_on(
    http: &reqwest::Client,
    url: &str,
    name: &str,
    server: &str,
    isolation: &str,
) -> Duration {
    let (took, body) = timed(
        http,
        reqwest::Method::POST,
        format!("{url}/api/v1/tenants"),
        Some(json!({"name": name, "server": server, "isolation": isolation})),
        201,
    )
    .await;
    assert_eq!(body["server"], server);
    took
}

async fn create(http: &reqwest::Client, url: &str, name: &str) -> (Duration, String) {
    let t = Instant::now();
    let res = http
        .post(format!("{url}/api/v1/tenants"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let body: Value = res.json().await.unwrap();
    (
        t.elapsed(),
        body["server"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let dir = std::env::temp_dir().join(format!("berqenas-bench-servers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let db = server::embedded_with(&dir.join("default"), None, true)
        .await
        .unwrap();
    let mut stop = Stop(vec![db.cluster.clone().unwrap()], dir.clone());
    let platform = server::platform(&db, SecretKey::from_bytes([7; 32]), 16)
        .await
        .unwrap();
    let rt = berqenas::workflows::Runtime::start(platform, "bench")
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
    let http = reqwest::Client::new();

    // Warm up, then the default-only series.
    for i in 0..5 {
        create(&http, &url, &format!("warm-{i}")).await;
    }
    let mut alone = Vec::with_capacity(n);
    for i in 0..n {
        alone.push(create(&http, &url, &format!("alone-{i}")).await.0);
    }

    let (pg2, url2) = extra(&dir, "pg2").await;
    let (pg3, url3) = extra(&dir, "pg3").await;
    stop.0.push(pg2);
    stop.0.push(pg3);
    for (name, u) in [("pg2", &url2), ("pg3", &url3)] {
        let res = http
            .post(format!("{url}/api/v1/servers"))
            .bearer_auth(TOKEN)
            .json(&json!({"name": name, "url": u}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    }
    // Least tenants fills the two new servers up to default's count first: take the
    // spread series once the three are level.
    let level = n + 5;
    for i in 0..2 * level {
        create(&http, &url, &format!("fill-{i}")).await;
    }
    let mut spread = Vec::with_capacity(n);
    let mut placed = Vec::with_capacity(n);
    let mut on_pg2 = None;
    let (mut on_default, mut elsewhere) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (d, server) = create(&http, &url, &format!("spread-{i}")).await;
        spread.push(d);
        if server == "default" {
            on_default.push(d);
        } else {
            elsewhere.push(d);
        }
        if server == "pg2" && on_pg2.is_none() {
            on_pg2 = Some(format!("spread-{i}"));
        }
        placed.push(server);
    }
    println!("create latency, schema mode, sequential, through the HTTP API:");
    let base = report("default only (1 server)", alone);
    let over = report("spread over 3 servers (all)", spread);
    if !on_default.is_empty() {
        report("  of them placed on default", on_default);
    }
    if !elsewhere.is_empty() {
        report("  of them placed on pg2/pg3", elsewhere);
    }
    for s in ["default", "pg2", "pg3"] {
        println!(
            "  {s}: {} creates",
            placed.iter().filter(|p| *p == s).count()
        );
    }
    let ratio = over.as_secs_f64() / base.as_secs_f64();
    println!(
        "p50 spread / default-only = {ratio:.2} (target: at most {TARGET_RATIO:.1}x) {}",
        if ratio <= TARGET_RATIO {
            "ok"
        } else {
            "MISSED"
        }
    );

    // Creates placed on pg2 by name, per mode: made there from scratch, then claimed
    // from pg2's warm pool (filled before the series, not during it).
    for mode in ["schema", "database"] {
        let mut scratch = Vec::with_capacity(n);
        for i in 0..n {
            scratch.push(create_on(&http, &url, &format!("scr-{mode}-{i}"), "pg2", mode).await);
        }
        let targets = berqenas::workflows::warm_pool::Targets {
            schema: if mode == "schema" { n as i64 } else { 0 },
            database: if mode == "database" { n as i64 } else { 0 },
            shared: 0,
        };
        berqenas::workflows::warm_pool::round(&rt, targets)
            .await
            .unwrap();
        let mut claimed = Vec::with_capacity(n);
        for i in 0..n {
            claimed.push(create_on(&http, &url, &format!("clm-{mode}-{i}"), "pg2", mode).await);
        }
        println!("create latency on pg2 (placed by name), {mode} mode, sequential:");
        let from_scratch = report(&format!("pg2 {mode}, from scratch"), scratch);
        let from_pool = report(&format!("pg2 {mode}, claimed from its pool"), claimed);
        let ratio = from_pool.as_secs_f64() / from_scratch.as_secs_f64();
        println!(
            "p50 claimed / from scratch on pg2, {mode} = {ratio:.2} (target: at most {POOL_RATIO:.1}x) {}",
            if ratio <= POOL_RATIO { "ok" } else { "MISSED" }
        );
    }

    // Shared mode: a create in default's pool (one transaction) beside one in pg2's
    // (the placed create's steps), interleaved, both from scratch. The first
    // shared-mode create on pg2 builds its pool: made before the series.
    create_on(&http, &url, "shw-0", "pg2", "shared").await;
    let (mut in_default, mut in_pg2) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        in_default.push(create_on(&http, &url, &format!("shd-{i}"), "default", "shared").await);
        in_pg2.push(create_on(&http, &url, &format!("shp-{i}"), "pg2", "shared").await);
    }
    println!("create latency, shared mode, sequential, interleaved, through the HTTP API:");
    let pool_here = report("shared, in default's pool", in_default);
    let pool_there = report("shared, in pg2's pool", in_pg2);
    verdict("shared create", pool_there, pool_here, TARGET_RATIO);
    // Then shared-mode creates on pg2 claiming members of pg2's warm pool (filled
    // before the series), beside those made there from scratch above.
    let targets = berqenas::workflows::warm_pool::Targets {
        schema: 0,
        database: 0,
        shared: n as i64,
    };
    berqenas::workflows::warm_pool::round(&rt, targets)
        .await
        .unwrap();
    let mut claimed = Vec::with_capacity(n);
    for i in 0..n {
        claimed.push(create_on(&http, &url, &format!("shc-{i}"), "pg2", "shared").await);
    }
    let from_pool = report("pg2 shared, claimed from its pool", claimed);
    let ratio = from_pool.as_secs_f64() / pool_there.as_secs_f64();
    println!(
        "p50 claimed / from scratch on pg2, shared = {ratio:.2} (target: at most {POOL_RATIO:.1}x) {}",
        if ratio <= POOL_RATIO { "ok" } else { "MISSED" }
    );

    // Changes of a tenant on default, then of one on pg2.
    let k = n.min(40);
    let there = on_pg2.expect("placement put a tenant on pg2");
    let (users_here, rules_here) = changes(&http, &url, "alone-0", k).await;
    let (users_there, rules_there) = changes(&http, &url, &there, k).await;
    println!("user add and firewall rule add + remove, sequential, through the HTTP API:");
    let uh = report("user add, tenant on default", users_here);
    let ut = report("user add, tenant on pg2", users_there);
    let rh = report("rule add+remove, tenant on default", rules_here);
    let rt = report("rule add+remove, tenant on pg2", rules_there);
    verdict("user add", ut, uh, TARGET_RATIO);
    verdict("rule add+remove", rt, rh, TARGET_RATIO);
}
