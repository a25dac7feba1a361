//! `cargo bench --bench onboarding -- --pool`: creates through the API that claim a
//! warm pool member (docs/warm_pool.md), beside raw DDL of a new tenant and creates
//! from scratch measured in the same run, each figure beside issue 17's target.
//!
//! Servers, each on a control database of its own in one cluster: `pool` (this build,
//! `--warm-pool`, with the create trace on), `scratch` (this build, no pool). With
//! `BENCH_BASELINE_BIN=<an older berqenas binary>`, the same two again from that
//! binary (`base pool`, `base scratch`): every series then runs on both, interleaved,
//! so the before and after figures come from one run on one machine state.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{api_create_in, raw_create, report, wait_for_url, TOKEN};

/// The pool servers' `--warm-pool`: deep enough that no series below empties it.
pub const TARGETS: &str = "schema=200,database=10,shared=100";
const FULL: [(&str, i64); 3] = [("schema", 200), ("shared", 100), ("database", 10)];

struct Server {
    label: &'static str,
    /// Starts its tenants' names: roles are the cluster's, so the servers' tenants
    /// must not share names.
    tag: &'static str,
    api: String,
    child: tokio::process::Child,
}

impl Server {
    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// A `berqenas serve` from `bin` on the control database `db` (made here).
async fn spawn(
    label: &'static str,
    bin: &Path,
    raw: &tokio_postgres::Client,
    url: &str,
    dir: &Path,
    db: &str,
    pool: bool,
) -> Server {
    raw.batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let url = format!("{}/{db}", url.rsplit_once('/').unwrap().0);
    let data = dir.join(db);
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url])
        .arg("--data-dir")
        .arg(&data)
        .env("BERQENAS_ADMIN_TOKEN", TOKEN)
        .env("BERQENAS_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true);
    if pool {
        cmd.args(["--warm-pool", TARGETS]);
    }
    if label == "pool" || label == "scratch" {
        // The create trace (src/workflows/create_trace.rs), as JSON lines in a file.
        std::fs::create_dir_all(&data).unwrap();
        cmd.env("BERQENAS_CREATE_TRACE", "1")
            .env("BERQENAS_LOG", "warn,berqenas::create_trace=info")
            .env("BERQENAS_LOG_FORMAT", "json")
            .stderr(std::fs::File::create(dir.join(format!("trace-{label}.jsonl"))).unwrap());
    }
    let child = cmd.spawn().unwrap();
    let api = wait_for_url(&data).await;
    let tag = match label {
        "pool" => "n",
        "scratch" => "s",
        "base pool" => "o",
        _ => "t",
    };
    Server {
        label,
        tag,
        api,
        child,
    }
}

async fn status(http: &reqwest::Client, api: &str) -> serde_json::Value {
    http.get(format!("{api}/api/v1/status"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Sessions held ahead in database members (`None`: a binary that holds none).
async fn held(http: &reqwest::Client, api: &str) -> Option<i64> {
    status(http, api).await["warm_pool_sessions"].as_i64()
}

/// Members per mode, as `GET /api/v1/status` counts them.
async fn members(http: &reqwest::Client, api: &str, mode: &str) -> i64 {
    let status = status(http, api).await;
    status["warm_pool"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["isolation"] == mode)
        .map(|m| m["members"].as_i64().unwrap_or(0))
        .sum()
}

/// Waits (printing progress) until the refillers of `servers` have filled their pools
/// (`modes`: those `bin` pools; an older binary may pool fewer), and hold a session in
/// each database member (a binary that does).
async fn full(http: &reqwest::Client, servers: &[(&Server, &[&str])]) {
    let start = Instant::now();
    let mut last = Instant::now();
    loop {
        let mut missing = Vec::new();
        for (s, modes) in servers {
            for (mode, want) in FULL.iter().filter(|(m, _)| modes.contains(m)) {
                let have = members(http, &s.api, mode).await;
                if have < *want {
                    missing.push(format!("{} {mode} {have}/{want}", s.label));
                }
                let sessions = match *mode {
                    "database" => held(http, &s.api).await,
                    _ => None,
                };
                if let Some(sessions) = sessions.filter(|h| h < want) {
                    missing.push(format!("{} sessions held {sessions}/{want}", s.label));
                }
            }
        }
        if missing.is_empty() {
            println!("  warm pools full ({:.1}s)", start.elapsed().as_secs_f64());
            return;
        }
        if last.elapsed() > Duration::from_secs(10) {
            println!("  filling the warm pools: {}", missing.join(", "));
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many of the tenants named `prefix-*` on the control database `db` took a
/// member's id or database (were claimed).
async fn claimed(raw: &tokio_postgres::Client, url: &str, db: &str, prefix: &str) -> i64 {
    let url = format!("{}/{db}", url.rsplit_once('/').unwrap().0);
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let _ = raw;
    c.query_one(
        "SELECT count(*) FROM berqenas.tenants t WHERE starts_with(t.name, $1 || '-')
            AND (EXISTS (SELECT 1 FROM berqenas.operations o
                          WHERE o.kind = 'warm_pool.refill' AND o.tenant_id = t.id)
                 OR EXISTS (SELECT 1 FROM berqenas.operations o, berqenas.operation_steps s
                             WHERE o.kind = 'tenant.create.database' AND o.tenant_id = t.id
                               AND s.operation_id = o.id AND s.name = 'register'
                               AND s.outcome ? 'member')
                 -- A database-mode claim in one transaction (from scratch is steps).
                 OR (t.isolation = 'database' AND EXISTS (SELECT 1 FROM berqenas.operations o
                              WHERE o.kind = 'tenant.create' AND o.tenant_id = t.id)))",
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

async fn series(
    http: &reqwest::Client,
    api: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
    isolation: &'static str,
) -> (Vec<Duration>, Duration) {
    super::api_series_in(http, api, prefix, n, concurrency, isolation).await
}

pub async fn run(url: &str, dir: &Path, n: usize) {
    let n = n.min(150);
    let http = reqwest::Client::new();
    let (raw, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let template = berqenas::template::Template::builtin().full_sql();
    let this = PathBuf::from(env!("CARGO_BIN_EXE_berqenas"));
    let base: Option<PathBuf> = std::env::var_os("BENCH_BASELINE_BIN").map(PathBuf::from);
    println!(
        "berqenas onboarding benchmark with the warm pool (--warm-pool {TARGETS}), {n} tenants per series{}",
        if base.is_some() { "; before (BENCH_BASELINE_BIN) and after, interleaved" } else { "" }
    );
    let pool = spawn("pool", &this, &raw, url, dir, "bq_pool", true).await;
    let scratch = spawn("scratch", &this, &raw, url, dir, "bq_scratch", false).await;
    let (base_pool, base_scratch) = match &base {
        Some(bin) => (
            Some(spawn("base pool", bin, &raw, url, dir, "bq_base_pool", true).await),
            Some(
                spawn(
                    "base scratch",
                    bin,
                    &raw,
                    url,
                    dir,
                    "bq_base_scratch",
                    false,
                )
                .await,
            ),
        ),
        None => (None, None),
    };
    let all: &[&str] = &["schema", "shared", "database"];
    let old: &[&str] = &["schema", "shared"];
    let mut pools: Vec<(&Server, &[&str])> = vec![(&pool, all)];
    if let Some(b) = &base_pool {
        pools.push((b, old));
    }
    full(&http, &pools).await;
    // The raw DDL in a database a server set up (the template's triggers call the
    // shared realtime functions there), with none of its tenants in the way.
    let (raw_ddl, conn) = tokio_postgres::connect(
        &format!("{}/bq_scratch", url.rsplit_once('/').unwrap().0),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);

    // Raw DDL, claims and creates from scratch alternate, so all see the same disk
    // noise and catalog size.
    let mut raw_lat = Vec::new();
    let mut lat: Vec<(&Server, Vec<Duration>)> = [
        Some(&pool),
        base_pool.as_ref(),
        Some(&scratch),
        base_scratch.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|s| (s, Vec::new()))
    .collect();
    for i in 0..n {
        raw_lat.push(raw_create(&raw_ddl, &template, &format!("praw-{i}")).await);
        for (s, l) in lat.iter_mut() {
            l.push(api_create_in(&http, &s.api, &format!("{}pone-{i}", s.tag), "schema").await);
        }
    }
    let total: Duration = raw_lat.iter().sum();
    let raw_p50 = report("raw DDL, one transaction", raw_lat, total);
    let mut p50s = Vec::new();
    for (s, l) in lat {
        let total: Duration = l.iter().sum();
        p50s.push((
            s.label,
            report(&format!("API schema, {}", s.label), l, total),
        ));
    }
    for (label, p50) in &p50s {
        match *label {
            "pool" | "base pool" => println!(
                "  {label}: schema create with the pool: p50 {:.2} ms, target <= 5 ms: {}; {:.1}x faster than raw DDL (target about 5x)",
                ms(*p50),
                verdict(ms(*p50) <= 5.0),
                raw_p50.as_secs_f64() / p50.as_secs_f64(),
            ),
            _ => println!(
                "  {label}: schema create from scratch: {:.2}x raw DDL, target <= 1.2x: {}",
                p50.as_secs_f64() / raw_p50.as_secs_f64(),
                verdict(p50.as_secs_f64() <= 1.2 * raw_p50.as_secs_f64()),
            ),
        }
    }
    println!(
        "  claimed: {} of {n} (pool){}",
        claimed(&raw, url, "bq_pool", "npone").await,
        match &base_pool {
            Some(_) => format!(
                ", {} of {n} (base pool)",
                claimed(&raw, url, "bq_base_pool", "opone").await
            ),
            None => String::new(),
        }
    );

    for s in [Some(&pool), base_pool.as_ref()].into_iter().flatten() {
        full(&http, &pools).await;
        let (l, wall) = series(&http, &s.api, &format!("{}peight", s.tag), n, 8, "schema").await;
        let rate = l.len() as f64 / wall.as_secs_f64();
        report(&format!("API schema, {}, conc. 8", s.label), l, wall);
        println!(
            "  {}: concurrency 8 with the pool: {rate:.1} creates/s, target >= 150/s: {}",
            s.label,
            verdict(rate >= 150.0),
        );
    }

    full(&http, &pools).await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..150 {
        let (http, api) = (http.clone(), pool.api.clone());
        tasks.push(tokio::spawn(async move {
            http.post(format!("{api}/api/v1/tenants"))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({"name": format!("npburst-{i}"), "isolation": "schema"}))
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
        claimed(&raw, url, "bq_pool", "npburst").await
    );

    for (mode, count, target) in [("shared", n.min(90), 5.0), ("database", 10, 10.0)] {
        full(&http, &pools).await;
        let servers: Vec<&Server> = [Some(&pool), base_pool.as_ref()]
            .into_iter()
            .flatten()
            .collect();
        let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); servers.len()];
        for i in 0..count {
            for (s, l) in servers.iter().zip(lat.iter_mut()) {
                l.push(api_create_in(&http, &s.api, &format!("{}p{mode}-{i}", s.tag), mode).await);
            }
        }
        for ((s, l), db) in servers.iter().zip(lat).zip(["bq_pool", "bq_base_pool"]) {
            let total: Duration = l.iter().sum();
            let p50 = report(&format!("API {mode}, {}", s.label), l, total);
            println!(
                "  {}: {mode} create with the pool: p50 {:.2} ms, target <= {target} ms: {}; {} of {count} claimed",
                s.label,
                ms(p50),
                verdict(ms(p50) <= target),
                claimed(&raw, url, db, &format!("{}p{mode}", s.tag)).await
            );
        }
    }
    let pool_trace = dir.join("trace-pool.jsonl");
    phases(&pool_trace, "npone-", "claimed", "schema creates");
    phases(&pool_trace, "npdatabase-", "claimed", "database creates");
    phases(
        &dir.join("trace-scratch.jsonl"),
        "spone-",
        "from-scratch",
        "schema creates",
    );
    for s in [Some(pool), Some(scratch), base_pool, base_scratch]
        .into_iter()
        .flatten()
    {
        s.stop().await;
    }
}

/// A server's create trace: each phase's p50 over the concurrency-1 schema series
/// (`prefix`: `npone-` on `pool`, its claimed creates; `spone-` on `scratch`).
fn phases(trace: &Path, prefix: &str, kind: &str, what: &str) {
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    let mut by_phase: Vec<(String, Vec<f64>)> = Vec::new();
    let mut totals = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let f = &v["fields"];
        let name = f["tenant.name"].as_str().unwrap_or_default();
        if !name.starts_with(prefix) || f["claimed"] != (kind == "claimed") {
            continue;
        }
        totals.push(
            f["total_ms"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0.0),
        );
        // `inside`: a database-mode claim's session in its database, beside `make`.
        let phases = f["phases"].as_str().unwrap_or_default().split(' ');
        let inside = f["inside"].as_str().unwrap_or_default().split(' ');
        for (part, beside) in phases.map(|p| (p, false)).chain(inside.map(|p| (p, true))) {
            let Some((label, ms)) = part.split_once('=') else {
                continue;
            };
            let label = if beside {
                format!("(make: {label})")
            } else {
                label.to_string()
            };
            let ms: f64 = ms.parse().unwrap_or(0.0);
            match by_phase.iter_mut().find(|(l, _)| *l == label) {
                Some((_, v)) => v.push(ms),
                None => by_phase.push((label, vec![ms])),
            }
        }
    }
    if totals.is_empty() {
        println!("create trace: no {kind} create traced");
        return;
    }
    let p50 = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let shown: Vec<String> = by_phase
        .iter_mut()
        .map(|(l, v)| format!("{l} {:.2}", p50(v)))
        .collect();
    println!(
        "create trace, {kind} {what} (server side, n={}, p50 ms): total {:.2}; {}",
        totals.len(),
        p50(&mut totals),
        shown.join(", ")
    );
}
