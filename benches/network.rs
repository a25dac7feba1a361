//! Network enforcement benchmark, on a throw-away cluster:
//!
//! 1. render + check + reload of pg_hba.conf with 1,000 and 10,000 restricted tenants'
//!    lines (synthetic registries: three lines each), and the file's size;
//! 2. the cost of a new connection's authentication with those lines ahead of its
//!    role's catch-all, beside an empty block (runs alternate one for one);
//! 3. a firewall rule change, through the workflow, until a connection from the new
//!    range gets in (p50/p99; target: 2 s at p99).
//!
//! `cargo bench --bench network` (BENCH_RUNS=N: runs per series, 50).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berqenas::network::{enforce, hba, rules, Settings, VpnPool};
use berqenas::secrets::SecretKey;
use berqenas::server;
use berqenas::store::network::{Restricted, SnapshotRule};
use berqenas::tenant::service::CreateTenant;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, mut lat: Vec<Duration>, target: Option<f64>) -> Duration {
    lat.sort();
    let p50 = percentile(&lat, 0.5);
    let p99 = percentile(&lat, 0.99);
    println!(
        "{label:<44} n={:<4} p50={:>8.2}ms p99={:>8.2}ms{}",
        lat.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        target
            .map(|t| format!(
                "  target p99 {t:.0}ms: {}",
                if p99.as_secs_f64() * 1e3 <= t {
                    "met"
                } else {
                    "MISSED"
                }
            ))
            .unwrap_or_default()
    );
    p50
}

fn synthetic(n: usize) -> Vec<Restricted> {
    (0..n)
        .map(|i| Restricted {
            id: uuid::Uuid::nil(),
            name: format!("bench-{i}"),
            server: "default".into(),
            status: "active".into(),
            vpn_enabled: true,
            public_api: true,
            vpn_subnet: Some(format!("10.{}.{}.0/24", 64 + i / 256, i % 256)),
            logins: vec![format!("tenant_bench_{i}_user")],
            rules: vec![SnapshotRule {
                cidr: format!("203.0.{}.0/24", i % 256),
                service: "postgres".into(),
            }],
            peers: vec![],
        })
        .collect()
}

async fn connect_once(config: &tokio_postgres::Config, port: u16) -> Duration {
    let t = Instant::now();
    let stream = tokio::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap();
    let (client, conn) = config
        .connect_raw(stream, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let took = t.elapsed();
    drop(client);
    let _ = task.await;
    took
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

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = std::env::temp_dir().join(format!("berqenas-bench-network-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = server::embedded_with(&dir, None, false).await.unwrap();
    let scratch = Scratch(db, dir.clone());
    let mut p = server::platform(&scratch.0, SecretKey::from_bytes([6; 32]), 8)
        .await
        .unwrap();
    let mut s: Settings = (*p.network).clone();
    s.pool = VpnPool::new("127.56.0.0/16".parse().unwrap(), None).unwrap();
    s.files_dir = dir.join("network");
    p.network = Arc::new(s);
    let hba_path = p.network.hba_file.clone().unwrap();
    let port = p.endpoint.port;
    let pg = p.pool.get().await.unwrap();
    pg.batch_execute("CREATE ROLE bench_login LOGIN PASSWORD 'bench-pw'; GRANT CONNECT ON DATABASE berqenas TO bench_login")
        .await
        .unwrap();
    let mut login = tokio_postgres::Config::new();
    login
        .user("bench_login")
        .password("bench-pw")
        .dbname("berqenas");

    println!("-- render + check + reload of pg_hba.conf");
    for n in [0usize, 1_000, 10_000] {
        let tenants = synthetic(n);
        let mut render = Vec::new();
        let mut apply = Vec::new();
        let mut bytes = 0;
        for _ in 0..runs.min(20) {
            let t = Instant::now();
            let block = hba::render(&tenants, &[]);
            render.push(t.elapsed());
            bytes = block.len();
            // A change each time, so the file is written and checked every run.
            let block = format!("{block}# run {}\n", apply.len());
            let t = Instant::now();
            enforce::apply_hba(&pg, &hba_path, &block, || {})
                .await
                .unwrap();
            apply.push(t.elapsed());
        }
        report(
            &format!("render {n} tenants ({} KiB)", bytes / 1024),
            render,
            None,
        );
        report(&format!("write+check+reload {n} tenants"), apply, None);
    }

    println!("-- a new connection's authentication (scram-sha-256), lines ahead of its catch-all");
    let empty = hba::render(&[], &[]);
    let full = hba::render(&synthetic(10_000), &[]);
    let (mut with_empty, mut with_full) = (Vec::new(), Vec::new());
    // The postmaster re-parses the file after it signals the backends: let it finish
    // (and a first connection warm up) before timing, so only the matching is timed.
    for _ in 0..5 {
        for (block, into) in [(&empty, &mut with_empty), (&full, &mut with_full)] {
            enforce::apply_hba(&pg, &hba_path, block, || {})
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            connect_once(&login, port).await;
            for _ in 0..runs / 5 {
                into.push(connect_once(&login, port).await);
            }
        }
    }
    let a = report("connect, empty block", with_empty, None);
    let b = report("connect, 10,000 tenants' lines (20,001)", with_full, None);
    println!(
        "ratio 10,000 / empty: {:.2}x",
        b.as_secs_f64() / a.as_secs_f64()
    );

    println!("-- a firewall rule change until a connection from the new range gets in");
    let rt = berqenas::workflows::Runtime::start(p.clone(), "bench")
        .await
        .unwrap();
    let created = berqenas::workflows::create::create(
        &rt,
        &CreateTenant {
            name: "bench-net".into(),
            vpn_enabled: true,
            public_api: true,
            ..Default::default()
        },
        None,
        "bench",
    )
    .await
    .unwrap();
    use secrecy::ExposeSecret;
    let config: tokio_postgres::Config = created.credentials.dsn.expose_secret().parse().unwrap();
    let mut latency = Vec::new();
    for i in 0..runs {
        let cidr = format!("127.57.{}.0/24", i % 250);
        let rule = rules::validate(
            "",
            &rules::NewRule {
                cidr: cidr.clone(),
                service: Some("postgres".into()),
                description: None,
            },
        )
        .unwrap();
        let from: std::net::IpAddr = format!("127.57.{}.9", i % 250).parse().unwrap();
        let t = Instant::now();
        berqenas::workflows::network::allow(&rt, "bench-net", rule, "bench")
            .await
            .unwrap();
        loop {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(from, 0)).unwrap();
            let stream = socket
                .connect(SocketAddr::from(([127, 0, 0, 1], port)))
                .await
                .unwrap();
            if let Ok((c, conn)) = config.connect_raw(stream, tokio_postgres::NoTls).await {
                drop(c);
                drop(conn);
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "never allowed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latency.push(t.elapsed());
    }
    report(
        "rule change -> allowed (workflow + reload)",
        latency,
        Some(2000.0),
    );
    rt.engine.shutdown(Duration::from_secs(5)).await;
}
