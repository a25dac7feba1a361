//! `cargo bench --bench onboarding -- --pool`: creates through the API that claim a
//! warm pool member (docs/warm_pool.md), beside raw DDL of a new tenant measured in
//! the same run, each figure beside issue 17's target.

use std::time::{Duration, Instant};

use super::{api_create_in, api_series_in, raw_create, report, TOKEN};

/// The server's `--warm-pool`: deep enough that no series below empties it.
pub const TARGETS: &str = "schema=200,database=10,shared=100";
const SCHEMA: i64 = 200;
const SHARED: i64 = 100;

/// Members per mode, as `GET /api/v1/status` counts them.
async fn members(http: &reqwest::Client, api: &str) -> (i64, i64) {
    let status: serde_json::Value = http
        .get(format!("{api}/api/v1/status"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let of = |mode: &str| {
        status["warm_pool"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["isolation"] == mode)
            .map(|m| m["members"].as_i64().unwrap_or(0))
            .sum()
    };
    (of("schema"), of("shared"))
}

/// Waits (printing progress) until the refiller has filled both pools.
async fn full(http: &reqwest::Client, api: &str) {
    let start = Instant::now();
    let mut last = Instant::now();
    loop {
        let (schema, shared) = members(http, api).await;
        if schema >= SCHEMA && shared >= SHARED {
            println!(
                "  warm pool full: schema {schema}, shared {shared} ({:.1}s)",
                start.elapsed().as_secs_f64()
            );
            return;
        }
        if last.elapsed() > Duration::from_secs(5) {
            println!("  filling the warm pool: schema {schema}/{SCHEMA}, shared {shared}/{SHARED}");
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many of the tenants named `prefix-*` took a member's id (were claimed).
async fn claimed(pg: &tokio_postgres::Client, prefix: &str) -> i64 {
    pg.query_one(
        "SELECT count(*) FROM berqenas.tenants t WHERE starts_with(t.name, $1 || '-')
            AND EXISTS (SELECT 1 FROM berqenas.operations o
                         WHERE o.kind = 'warm_pool.refill' AND o.tenant_id = t.id)",
        &[&prefix],
    )
    .await
    .unwrap()
    .get(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

pub async fn run(
    http: &reqwest::Client,
    api: &str,
    pg: &tokio_postgres::Client,
    template: &str,
    n: usize,
) {
    let n = n.min(150);
    println!("berqenas onboarding benchmark with the warm pool (--warm-pool {TARGETS}), {n} tenants per series");
    full(http, api).await;
    // Raw DDL and claims alternate, so both see the same disk noise and catalog size.
    let (mut raw, mut via_api) = (Vec::new(), Vec::new());
    for i in 0..n {
        raw.push(raw_create(pg, template, &format!("praw-{i}")).await);
        via_api.push(api_create_in(http, api, &format!("pone-{i}"), "schema").await);
    }
    let raw_total: Duration = raw.iter().sum();
    let api_total: Duration = via_api.iter().sum();
    let raw_p50 = report("raw DDL, one transaction", raw, raw_total);
    let p50 = report("API schema, pool, conc. 1", via_api, api_total);
    println!(
        "  schema create with the pool: p50 {:.2} ms, target <= 5 ms: {}; {:.1}x faster than raw DDL (target about 5x); {} of {n} claimed",
        ms(p50),
        verdict(ms(p50) <= 5.0),
        raw_p50.as_secs_f64() / p50.as_secs_f64(),
        claimed(pg, "pone").await
    );

    full(http, api).await;
    let (lat, wall) = api_series_in(http, api, "peight", n, 8, "schema").await;
    let rate = lat.len() as f64 / wall.as_secs_f64();
    report("API schema, pool, conc. 8", lat, wall);
    println!(
        "  concurrency 8 with the pool: {rate:.1} creates/s, target >= 150/s: {}; {} of {n} claimed",
        verdict(rate >= 150.0),
        claimed(pg, "peight").await
    );

    full(http, api).await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..150 {
        let (http, api) = (http.clone(), api.to_string());
        tasks.push(tokio::spawn(async move {
            http.post(format!("{api}/api/v1/tenants"))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({"name": format!("pburst-{i}"), "isolation": "schema"}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut errors = 0;
    for t in tasks {
        if t.await.unwrap() != 201 {
            errors += 1;
        }
    }
    println!(
        "150 concurrent creates with the pool: {errors} errors in {:.2}s, target 0 errors: {}; {} claimed",
        start.elapsed().as_secs_f64(),
        verdict(errors == 0),
        claimed(pg, "pburst").await
    );

    full(http, api).await;
    let shared_n = n.min(90);
    let (lat, wall) = api_series_in(http, api, "pshared", shared_n, 1, "shared").await;
    let p50 = report("API shared, pool, conc. 1", lat, wall);
    println!(
        "  shared create with the pool: p50 {:.2} ms, target <= 5 ms: {}; {} of {shared_n} claimed",
        ms(p50),
        verdict(ms(p50) <= 5.0),
        claimed(pg, "pshared").await
    );

    let (lat, wall) = api_series_in(http, api, "pdb", 20, 1, "database").await;
    let p50 = report("API database, conc. 1", lat, wall);
    println!(
        "  database create: p50 {:.2} ms, target <= 10 ms: {} (database mode has no warm pool yet: made from scratch)",
        ms(p50),
        verdict(ms(p50) <= 10.0)
    );
}
