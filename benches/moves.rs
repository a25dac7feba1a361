//! Moves benchmark (issue 18 items 3 and 4, docs/moves.md): two throw-away clusters
//! (`default`, embedded, and `pg2`), a tenant (schema mode, or BENCH_ISOLATION=database)
//! with BENCH_ROWS rows (100,000) moved back and forth BENCH_MOVES times (5) through
//! the HTTP API; with BENCH_ISOLATION=shared, a shared-mode tenant with that many rows
//! in the template's `applications` moved into schema mode and back on `default`, with
//! no dump beside it (BENCH_SHARED_TO=pg2: into schema mode on pg2 and back into
//! `default`'s pool, server and mode in one move each way; BENCH_SHARED_TO=pool: from
//! `default`'s pool into pg2's and back). All while a
//! client writes a row every 10 ms with the tenant's own credentials (reconnecting on
//! connection errors, to wherever the registry says the tenant is). Per move: the
//! longest gap between two successful writes (cutover unavailability), the time to the
//! cutover (`login` step applied) and the total move time (the grace is 0, so the
//! source copy is dropped before the operation ends). Beside it, in the same run, the
//! time of `pg_dump -Fc | pg_restore` of the same schema (database mode: the whole
//! database) between the same clusters.
//!
//! `cargo bench --bench moves` (or `--profile dev` to build quicker).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berqenas::api::{self, AppState};
use berqenas::pg::cluster::{Cluster, ClusterOptions};
use berqenas::secrets::SecretKey;
use berqenas::server;
use serde_json::{json, Value};

const TOKEN: &str = "bench-admin-token-0123456789";
const TENANT: &str = "moved";
/// Vitess MoveTables and PgDog: writes stop for under a second at the cutover.
const TARGET_GAP: Duration = Duration::from_secs(1);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
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

async fn superuser(c: &Cluster, db: &str) -> tokio_postgres::Client {
    berqenas::pg::connect(&berqenas::pg::parse_config(&c.superuser_dsn(db)).unwrap())
        .await
        .unwrap()
}

async fn extra(dir: &std::path::Path, name: &str) -> (Cluster, String) {
    let mut opts = ClusterOptions::new(dir.join(name));
    opts.ephemeral = true;
    let c = tokio::task::spawn_blocking(move || Cluster::ensure(&opts))
        .await
        .unwrap()
        .unwrap();
    superuser(&c, "postgres")
        .await
        .batch_execute("ALTER ROLE berqenas PASSWORD 'bench-pass'")
        .await
        .unwrap();
    let url = format!(
        "postgresql://berqenas:bench-pass@127.0.0.1:{}/postgres",
        c.port()
    );
    (c, url)
}

/// What the writer saw since the last reset.
#[derive(Default)]
struct Seen {
    ok: u64,
    retried: u64,
    other: Vec<String>,
    longest_gap: Duration,
    last_ok: Option<Instant>,
}

/// Where the tenant is now, as the registry says: its connection config.
async fn dsn_now(
    control: &tokio_postgres::Client,
    base: &tokio_postgres::Config,
    pg2_port: u16,
) -> tokio_postgres::Config {
    let row = control
        .query_one(
            "SELECT server, database_name FROM berqenas.tenants WHERE name = $1",
            &[&TENANT],
        )
        .await
        .unwrap();
    let (server, database): (String, String) = (row.get(0), row.get(1));
    let mut c = base.clone();
    if server == "pg2" {
        c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(pg2_port)
            .user(base.get_user().unwrap())
            .password(base.get_password().unwrap())
            .dbname(&database);
    }
    c.connect_timeout(Duration::from_secs(2));
    c
}

/// A row every 10 ms as the tenant (`insert`), until `stop`.
fn writer(
    control: tokio_postgres::Client,
    (base, pg2_port): (tokio_postgres::Config, u16),
    insert: &'static str,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client: Option<tokio_postgres::Client> = None;
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                let cfg = dsn_now(&control, &base, pg2_port).await;
                match cfg.connect(tokio_postgres::NoTls).await {
                    Ok((c, conn)) => {
                        tokio::spawn(conn);
                        client = Some(c);
                    }
                    Err(_) => {
                        seen.lock().unwrap().retried += 1;
                        continue;
                    }
                }
            }
            let c = client.as_ref().unwrap();
            let res = c.batch_execute(insert).await;
            let mut s = seen.lock().unwrap();
            match res {
                Ok(()) => {
                    let now = Instant::now();
                    if let Some(last) = s.last_ok {
                        s.longest_gap = s.longest_gap.max(now - last);
                    }
                    s.last_ok = Some(now);
                    s.ok += 1;
                }
                Err(e)
                    if e.is_closed()
                        || e.code().is_some_and(|c| {
                            c.code().starts_with("57") || c.code().starts_with("08")
                        })
                        || e.to_string().contains("connection") =>
                {
                    s.retried += 1;
                    client = None;
                }
                Err(e) => {
                    s.other.push(match e.as_db_error() {
                        Some(d) => format!("{}: {}", d.code().code(), d.message()),
                        None => e.to_string(),
                    });
                    client = None;
                }
            }
        }
    })
}

fn step_state(op: &Value, name: &str) -> String {
    op["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == name)
        .and_then(|s| s["state"].as_str())
        .unwrap_or_default()
        .to_string()
}

struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }
}

/// One move (`body`: its `to_server` and/or `to_isolation`; the grace is 0); returns
/// (time to the cutover, total time). Prints the copy's progress as it changes.
async fn one_move(api: &Api, mut body: Value) -> (Duration, Duration) {
    let t0 = Instant::now();
    body["grace"] = json!("0");
    let op = api
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/tenants/{TENANT}/move"),
            Some(body),
        )
        .await;
    let id = op["id"].as_str().unwrap().to_string();
    let mut cutover = None;
    let mut last_step = String::new();
    loop {
        let op = api
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/operations/{id}"),
                None,
            )
            .await;
        let current = op["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["state"] != "applied")
            .find_map(|s| s["name"].as_str())
            .unwrap_or("done")
            .to_string();
        if current != last_step {
            println!("    {:>8.1} ms  step {current}", ms(t0.elapsed()));
            last_step = current;
        }
        if cutover.is_none() && step_state(&op, "login") == "applied" {
            cutover = Some(t0.elapsed());
        }
        match op["state"].as_str() {
            Some("running") => {}
            Some("succeeded") => break,
            other => panic!("the move ended {other:?}: {op}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = t0.elapsed();
    (cutover.unwrap_or(total), total)
}

/// `pg_dump -Fc [-n <schema> -n berqenas_realtime] | pg_restore --no-owner --no-acl`
/// from `src` into a fresh database on `dst`, timed (the database is made before and
/// dropped after the clock). `schema`: that schema only; `None`: the whole database.
async fn dump_restore(
    src: &Cluster,
    src_db: &str,
    dst: &Cluster,
    schema: Option<&str>,
) -> Duration {
    let bin = berqenas::pg::binaries::PgBinaries::find().unwrap();
    let admin = superuser(dst, "postgres").await;
    for sql in [
        "DROP DATABASE IF EXISTS bench_restore",
        "CREATE DATABASE bench_restore",
    ] {
        admin.batch_execute(sql).await.unwrap();
    }
    let dump = bin.client("pg_dump").unwrap();
    let restore = bin.client("pg_restore").unwrap();
    let (src_dsn, dst_dsn) = (
        src.superuser_dsn(src_db),
        dst.superuser_dsn("bench_restore"),
    );
    let mut args = vec!["-Fc".to_string()];
    if let Some(schema) = schema {
        // With the realtime gate's functions its triggers call (tiny).
        args.extend(["-n", schema, "-n", "berqenas_realtime"].map(String::from));
    }
    args.extend(["-d".to_string(), src_dsn]);
    let took = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let mut d = std::process::Command::new(dump)
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let r = std::process::Command::new(restore)
            .args(["--no-owner", "--no-acl", "-d", &dst_dsn])
            .stdin(d.stdout.take().unwrap())
            .status()
            .unwrap();
        assert!(d.wait().unwrap().success(), "pg_dump failed");
        assert!(r.success(), "pg_restore failed");
        t.elapsed()
    })
    .await
    .unwrap();
    admin
        .batch_execute("DROP DATABASE bench_restore")
        .await
        .unwrap();
    took
}

#[tokio::main]
async fn main() {
    let rows = env_or("BENCH_ROWS", 100_000);
    let moves = env_or("BENCH_MOVES", 5).max(1);
    let isolation = std::env::var("BENCH_ISOLATION").unwrap_or_else(|_| "schema".into());
    assert!(
        ["schema", "database", "shared"].contains(&isolation.as_str()),
        "BENCH_ISOLATION: schema, database or shared"
    );
    let shared = isolation == "shared";
    // Shared mode: back and forth between default's pool and schema mode on `default`,
    // or (BENCH_SHARED_TO=pg2) on pg2, or (BENCH_SHARED_TO=pool) pg2's pool.
    let shared_to = std::env::var("BENCH_SHARED_TO").unwrap_or_default();
    let (across, pools) = (shared && shared_to == "pg2", shared && shared_to == "pool");
    let dir = std::env::temp_dir().join(format!("berqenas-bench-moves-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    println!("starting two clusters");
    let db = server::embedded_with(&dir.join("default"), None, true)
        .await
        .unwrap();
    let default_cluster = db.cluster.clone().unwrap();
    let mut stop = Stop(vec![default_cluster.clone()], dir.clone());
    let (pg2, url2) = extra(&dir, "pg2").await;
    stop.0.push(pg2.clone());
    let control_db = db.endpoint.database.clone();
    let platform = server::platform(&db, SecretKey::from_bytes([7; 32]), 16)
        .await
        .unwrap();
    let rt = berqenas::workflows::Runtime::start(platform, "bench")
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = Api {
        http: reqwest::Client::new(),
        url: format!("http://{}", listener.local_addr().unwrap()),
    };
    let router = api::router(AppState::new(rt, TOKEN));
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    api.call(
        reqwest::Method::POST,
        "/api/v1/servers",
        Some(json!({"name": "pg2", "url": url2})),
    )
    .await;

    let created = api
        .call(
            reqwest::Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": TENANT, "isolation": isolation, "server": "default"})),
        )
        .await;
    let schema = created["schema"].as_str().unwrap().to_string();
    // Where its rows live on `default`: the control database, or its own.
    let tenant_db = match isolation.as_str() {
        "database" => created["database"].as_str().unwrap().to_string(),
        _ => control_db.clone(),
    };
    let t = Instant::now();
    let size = if shared {
        fill_shared(&created, rows).await
    } else {
        println!("filling {rows} rows into {schema}.rows");
        fill(&default_cluster, (&tenant_db, &schema), &created, rows).await
    };
    println!(
        "  {:.1} s; the tenant's rows {:.1} MB",
        t.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );

    let base: tokio_postgres::Config = created["credentials"]["dsn"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let halt = Arc::new(AtomicBool::new(false));
    let writes = writer(
        superuser(&default_cluster, &control_db).await,
        (base, pg2.port()),
        if shared {
            "INSERT INTO applications (name, team, created_by) VALUES (md5(random()::text), 'bench', 'bench')"
        } else {
            "INSERT INTO rows (payload) VALUES ('written while moving')"
        },
        seen.clone(),
        halt.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (mut gaps, mut cutovers, mut totals, mut dumps) = (vec![], vec![], vec![], vec![]);
    let mut on = if shared { "shared" } else { "default" };
    for i in 0..moves {
        let (body, to) = match on {
            "default" => (json!({"to_server": "pg2"}), "pg2"),
            "pg2" => (json!({"to_server": "default"}), "default"),
            "shared" if pools => (json!({"to_server": "pg2"}), "shared on pg2"),
            "shared on pg2" => (json!({"to_server": "default"}), "shared"),
            "shared" if across => (
                json!({"to_server": "pg2", "to_isolation": "schema"}),
                "schema on pg2",
            ),
            "shared" => (json!({"to_isolation": "schema"}), "schema"),
            _ => (
                json!({"to_server": "default", "to_isolation": "shared"}),
                "shared",
            ),
        };
        println!("move {}/{moves}: {on} -> {to}", i + 1);
        {
            let mut s = seen.lock().unwrap();
            s.longest_gap = Duration::ZERO;
        }
        let (cutover, total) = one_move(&api, body).await;
        // The gap is only over once a write lands on the target.
        let ok_before = seen.lock().unwrap().ok;
        for _ in 0..500 {
            if seen.lock().unwrap().ok > ok_before + 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let gap = seen.lock().unwrap().longest_gap;
        println!(
            "  longest gap between writes {:.0} ms; cutover at {:.0} ms; move {:.0} ms",
            ms(gap),
            ms(cutover),
            ms(total)
        );
        gaps.push(gap);
        cutovers.push(cutover);
        totals.push(total);
        on = to;
        if shared {
            continue;
        }
        // The same schema (database), dumped and restored between the same clusters.
        let (src, src_db, dst) = match (to, isolation.as_str()) {
            ("pg2", "database") => (&pg2, tenant_db.as_str(), &default_cluster),
            ("pg2", _) => (&pg2, "postgres", &default_cluster),
            (_, _) => (&default_cluster, tenant_db.as_str(), &pg2),
        };
        let only = (isolation != "database").then_some(schema.as_str());
        let d = dump_restore(src, src_db, dst, only).await;
        println!("  pg_dump -Fc | pg_restore of {src_db}: {:.0} ms", ms(d));
        dumps.push(d);
    }
    halt.store(true, Ordering::SeqCst);
    writes.await.unwrap();
    let route = if across {
        " into schema mode on pg2 and back into default's pool"
    } else if pools {
        " from default's pool into pg2's and back"
    } else if shared {
        " into schema mode and back on default"
    } else {
        " between two clusters"
    };
    report(
        (&isolation, route),
        (rows, size),
        (gaps, cutovers, totals, dumps),
        &seen.lock().unwrap(),
    );
}

/// BENCH_ROWS rows in a table of the tenant's schema, readable and writable by its
/// login role; returns the table's size with its indexes.
async fn fill(
    cluster: &Cluster,
    (tenant_db, schema): (&str, &str),
    created: &Value,
    rows: usize,
) -> i64 {
    let owner = created["owner_role"].as_str().unwrap().to_string();
    let login = created["credentials"]["user"].as_str().unwrap().to_string();
    superuser(cluster, tenant_db)
        .await
        .batch_execute(&format!(
            "SET ROLE \"{owner}\";
             CREATE TABLE \"{schema}\".rows (id bigserial PRIMARY KEY, payload text NOT NULL,
                                             at timestamptz NOT NULL DEFAULT now());
             INSERT INTO \"{schema}\".rows (payload)
                  SELECT md5(i::text) || md5((i * 7)::text) FROM generate_series(1, {rows}) i;
             GRANT SELECT, INSERT ON \"{schema}\".rows TO \"{login}\";
             GRANT USAGE ON SEQUENCE \"{schema}\".rows_id_seq TO \"{login}\";
             RESET ROLE; ANALYZE \"{schema}\".rows;"
        ))
        .await
        .unwrap();
    superuser(cluster, tenant_db)
        .await
        .query_one(
            &format!("SELECT pg_total_relation_size('\"{schema}\".rows')"),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// BENCH_ROWS rows of the shared tenant in the pool's `applications`, written as the
/// tenant (row security gives them its id); returns their size (the pool's table is
/// every shared tenant's).
async fn fill_shared(created: &Value, rows: usize) -> i64 {
    println!("filling {rows} rows into the shared pool's applications, as the tenant");
    let cfg: tokio_postgres::Config = created["credentials"]["dsn"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute(&format!(
        "INSERT INTO applications (name, team, created_by)
              SELECT md5(i::text) || md5((i * 7)::text), 'bench', 'bench'
                FROM generate_series(1, {rows}) i"
    ))
    .await
    .unwrap();
    c.query_one(
        "SELECT coalesce(sum(pg_column_size(a.*)), 0)::bigint FROM applications a",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// The figures of every move, beside their targets.
fn report(
    (isolation, route): (&str, &str),
    (rows, size): (usize, i64),
    (mut gaps, mut cutovers, mut totals, mut dumps): (
        Vec<Duration>,
        Vec<Duration>,
        Vec<Duration>,
        Vec<Duration>,
    ),
    s: &Seen,
) {
    let moves = gaps.len();
    for v in [&mut gaps, &mut cutovers, &mut totals, &mut dumps] {
        v.sort();
    }
    println!();
    println!(
        "{isolation}-mode tenant, {rows} rows ({:.1} MB), {moves} moves{route}, a write every 10 ms:",
        size as f64 / 1e6,
    );
    println!(
        "  writes: {} succeeded, {} retried after a connection error, {} failed otherwise",
        s.ok,
        s.retried,
        s.other.len()
    );
    for e in s.other.iter().take(3) {
        println!("    {e}");
    }
    let p99 = percentile(&gaps, 0.99);
    println!(
        "  cutover unavailability (longest gap): p50 {:.0} ms, p99 {:.0} ms (target p99 < {:.0} ms, Vitess/PgDog) {}",
        ms(percentile(&gaps, 0.5)),
        ms(p99),
        ms(TARGET_GAP),
        if p99 < TARGET_GAP { "ok" } else { "MISSED" }
    );
    println!(
        "  time to the cutover: p50 {:.0} ms; total move (grace 0): p50 {:.0} ms, max {:.0} ms",
        ms(percentile(&cutovers, 0.5)),
        ms(percentile(&totals, 0.5)),
        ms(*totals.last().unwrap())
    );
    if dumps.is_empty() {
        println!("  (no pg_dump beside it: a shared tenant's rows are in the pool's tables)");
        return;
    }
    let dump50 = percentile(&dumps, 0.5);
    println!(
        "  pg_dump -Fc | pg_restore of the same {}: p50 {:.0} ms; move / dump-restore = {:.1}x (offline copy: writes stop for all of it)",
        if isolation == "database" { "database" } else { "schema" },
        ms(dump50),
        percentile(&totals, 0.5).as_secs_f64() / dump50.as_secs_f64()
    );
}
