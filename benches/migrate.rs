//! Template migration over many schema-mode tenants: one ADD COLUMN migration at
//! `--jobs` 1 and 4, beside the same ALTERs sent straight to PostgreSQL on one
//! connection, and the no-op run. `cargo bench --bench migrate` (BENCH_TENANTS,
//! default 1000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use berqenas::migrate::{MigrateRequest, Started};
use berqenas::pg::cluster::Cluster;
use berqenas::secrets::SecretKey;
use berqenas::server::{self, Database};
use berqenas::template::Template;
use berqenas::tenant::service::CreateTenant;
use berqenas::workflows::{self, Runtime};

const INIT: &str = include_str!("../templates/tenant/0001_init.sql");

struct Scratch(Cluster, std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        self.0.stop_immediately();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn template(extra: &[(&str, &str)]) -> Template {
    let mut files = vec![("0001_init.sql", INIT)];
    files.extend_from_slice(extra);
    Template::from_files(&files)
}

/// The platform with this template, and its operation engine (the same server each
/// time: a new one takes over from the last).
async fn platform(db: &Database, t: Template) -> Arc<Runtime> {
    let p = server::platform_with(db, SecretKey::from_bytes([7; 32]), 16, t)
        .await
        .expect("platform");
    Runtime::start(p, "bench").await.expect("engine")
}

async fn migrate(p: &Runtime, jobs: u32) -> (Duration, i32) {
    let req = MigrateRequest {
        jobs: Some(jobs),
        ..MigrateRequest::default()
    };
    let t = Instant::now();
    let Started::Run(run) = workflows::migrate::run(p, req, "bench").await.unwrap() else {
        unreachable!("not a dry run")
    };
    assert_eq!(run.state, "succeeded", "{run:?}");
    (t.elapsed(), run.migrated)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = std::env::temp_dir().join(format!("berqenas-bench-mig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut db = server::embedded_with(&dir, None, false)
        .await
        .expect("starting a throw-away cluster");
    db.backup_dir = Some(dir.join("backups"));
    let cluster = db.cluster.clone().expect("embedded");
    let _scratch = Scratch(cluster.clone(), dir.clone());

    let rt = platform(&db, template(&[])).await;
    let t = Instant::now();
    let names: Vec<String> = (0..n).map(|i| format!("mig-{i}")).collect();
    for chunk in names.chunks(8) {
        let calls = chunk.iter().map(|name| {
            let req: CreateTenant =
                serde_json::from_value(serde_json::json!({"name": name})).unwrap();
            let rt = rt.clone();
            async move {
                berqenas::workflows::create::create(&rt, &req, None, "bench")
                    .await
                    .unwrap()
            }
        });
        futures::future::join_all(calls).await;
    }
    println!(
        "berqenas migrate benchmark: {n} schema-mode tenants (created in {:.1} s)",
        t.elapsed().as_secs_f64()
    );

    // Raw: the same ALTER per tenant schema, one connection, autocommit.
    let (raw_pg, conn) =
        tokio_postgres::connect(&cluster.superuser_dsn("berqenas"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    let schemas: Vec<String> = raw_pg
        .query(
            "SELECT schema_name FROM berqenas.tenants ORDER BY created_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let t = Instant::now();
    for s in &schemas {
        raw_pg
            .batch_execute(&format!(
                "ALTER TABLE \"{s}\".applications ADD COLUMN raw_priority integer NOT NULL DEFAULT 0"
            ))
            .await
            .unwrap();
    }
    let raw = t.elapsed();

    let v2 = [(
        "0002_priority.sql",
        "ALTER TABLE applications ADD COLUMN priority integer NOT NULL DEFAULT 0;",
    )];
    let p = platform(&db, template(&v2)).await;
    let (jobs1, migrated) = migrate(&p, 1).await;
    assert_eq!(migrated as usize, n);
    let v3 = [
        v2[0],
        (
            "0003_rank.sql",
            "ALTER TABLE applications ADD COLUMN rank integer NOT NULL DEFAULT 0;",
        ),
    ];
    let p = platform(&db, template(&v3)).await;
    let (jobs4, migrated) = migrate(&p, 4).await;
    assert_eq!(migrated as usize, n);

    let mut noop = Vec::new();
    for _ in 0..11 {
        let (d, migrated) = migrate(&p, 4).await;
        assert_eq!(migrated, 0);
        noop.push(d);
    }
    let mut plans = Vec::new();
    for _ in 0..11 {
        let t = Instant::now();
        let req = MigrateRequest {
            dry_run: true,
            ..MigrateRequest::default()
        };
        workflows::migrate::run(&p, req, "bench").await.unwrap();
        plans.push(t.elapsed());
    }

    let per = |d: Duration| ms(d) / n as f64;
    println!(
        "raw ALTER, 1 connection:  {:>8.1} ms total, {:.3} ms/tenant",
        ms(raw),
        per(raw)
    );
    println!(
        "berqenas --jobs 1:         {:>8.1} ms total, {:.3} ms/tenant ({:.2}x raw)",
        ms(jobs1),
        per(jobs1),
        ms(jobs1) / ms(raw)
    );
    println!(
        "berqenas --jobs 4:         {:>8.1} ms total, {:.3} ms/tenant ({:.2}x raw)",
        ms(jobs4),
        per(jobs4),
        ms(jobs4) / ms(raw)
    );
    println!(
        "no-op run (median of 11):  {:>8.1} ms; its plan alone (dry run): {:.1} ms",
        ms(median(noop)),
        ms(median(plans))
    );
}
