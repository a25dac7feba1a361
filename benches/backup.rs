//! Backup and restore benchmark: berqenas's backup (pg_dump custom format, encrypted,
//! hashed, checksummed, manifest, store, registry, audit) and in-place restore (logins
//! off, schema set aside, throw-away role, grants, old schema dropped) beside plain
//! `pg_dump -Fc` / `pg_restore --single-transaction` of the same schema, for an empty
//! tenant and a ~100 MB one, on a throw-away cluster. Runs alternate one for one.
//!
//! `cargo bench --bench backup` (BENCH_MB=N sets the large tenant's size; 100.
//! BENCH_RUNS=N the runs per series; 5 for the large tenant, 15 for the empty one).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use berqenas::backup;
use berqenas::backup::restore::RestoreRequest;
use berqenas::secrets::SecretKey;
use berqenas::server;
use berqenas::tenant::service::CreateTenant;
use berqenas::workflows::restores::Restored;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Prints one series; returns its median.
fn report(label: &str, mut lat: Vec<Duration>, mb: f64) -> Duration {
    lat.sort();
    let p50 = percentile(&lat, 0.5);
    println!(
        "{label:<34} n={:<3} p50={:>8.1}ms p99={:>8.1}ms  {:>7.1} MB/s",
        lat.len(),
        p50.as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        mb / p50.as_secs_f64(),
    );
    p50
}

fn tool(name: &str) -> PathBuf {
    backup::dump::program(name).expect("PostgreSQL client programs")
}

fn run(mut cmd: Command) -> Duration {
    let t = Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

struct Scratch(server::Database, PathBuf);

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
    let mb: usize = std::env::var("BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let runs_large: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let runs_empty = runs_large * 3;
    let dir = std::env::temp_dir().join(format!("berqenas-bench-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Durable settings (fsync on), as a real server would run.
    let mut db = server::embedded_with(&dir, None, false).await.unwrap();
    db.backup_dir = Some(dir.join("backups"));
    let scratch = Scratch(db, dir.clone());
    let p = server::platform(&scratch.0, SecretKey::from_bytes([5; 32]), 8)
        .await
        .unwrap();
    let rt = berqenas::workflows::Runtime::start(p.clone(), "bench")
        .await
        .unwrap();
    let dsn = scratch
        .0
        .cluster
        .as_ref()
        .unwrap()
        .superuser_dsn("berqenas");
    let pg = berqenas::pg::connect(&scratch.0.config).await.unwrap();

    for (label, name, size_mb, runs) in [
        ("empty", "bench-empty", 0usize, runs_empty),
        ("large", "bench-large", mb, runs_large),
    ] {
        berqenas::workflows::create::create(
            &rt,
            &CreateTenant {
                name: name.into(),
                ..Default::default()
            },
            None,
            "bench",
        )
        .await
        .unwrap();
        let schema = format!("tenant_{}", name.replace('-', "_"));
        if size_mb > 0 {
            // Rows like an application's: JSON, text of mixed entropy, timestamps.
            let rows = size_mb * 1024 * 1024 / 345;
            pg.batch_execute(&format!(
                "INSERT INTO \"{schema}\".user_activity (user_id, action, resource_type, details, ip_address, user_agent, created_at)
                 SELECT 'user-' || (i % 5000), (ARRAY['login','deploy','scale','delete'])[1 + i % 4], 'app',
                        jsonb_build_object('request', md5(i::text), 'n', i, 'ok', i % 7 = 0),
                        ('10.' || (i % 250) || '.' || (i % 200) || '.1')::inet,
                        'Mozilla/5.0 (X11; Linux x86_64) client/' || (i % 97) || ' ' || md5((i * 7)::text),
                        now() - make_interval(secs => i)
                   FROM generate_series(1, {rows}) i"
            ))
            .await
            .unwrap();
            pg.batch_execute(&format!("VACUUM ANALYZE \"{schema}\".user_activity"))
                .await
                .unwrap();
        }
        let bytes: i64 = pg
            .query_one(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
                  WHERE c.relnamespace = $1::text::regnamespace AND c.relkind = 'r'",
                &[&schema],
            )
            .await
            .unwrap()
            .get(0);
        let data_mb = bytes as f64 / (1024.0 * 1024.0);
        println!("\n{label} tenant: {data_mb:.1} MB in tables ({name})");

        let plain_file = dir.join(format!("{name}.plain.dump"));
        let (mut ours, mut plain) = (Vec::new(), Vec::new());
        let mut last = None;
        let mut stored = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let b = berqenas::workflows::backups::create(&rt, name, "bench")
                .await
                .unwrap();
            ours.push(t.elapsed());
            stored = b.size_bytes.unwrap_or(0);
            last = Some(b.id);
            let mut cmd = Command::new(tool("pg_dump"));
            cmd.arg(format!("--dbname={dsn}"))
                .args(["--format=custom", &format!("--schema=\"{schema}\"")])
                .arg(format!("--file={}", plain_file.display()));
            plain.push(run(cmd));
        }
        let plain_size = std::fs::metadata(&plain_file).unwrap().len();
        println!(
            "stored: berqenas {:.1} MB (encrypted), pg_dump {:.1} MB",
            stored as f64 / 1048576.0,
            plain_size as f64 / 1048576.0
        );
        let ours_b = report("backup  berqenas", ours, data_mb);
        let plain_b = report("backup  pg_dump -Fc", plain, data_mb);
        println!(
            "backup overhead: {:+.1}%",
            (ours_b.as_secs_f64() / plain_b.as_secs_f64() - 1.0) * 100.0
        );

        let id = last.unwrap().to_string();
        let (mut ours, mut plain) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let t = Instant::now();
            match berqenas::workflows::restores::restore(
                &rt,
                name,
                &id,
                &RestoreRequest::default(),
                "bench",
            )
            .await
            .unwrap()
            {
                Restored::InPlace(_) => {}
                Restored::New(_) => unreachable!(),
            }
            ours.push(t.elapsed());
            // Plain: the schema emptied and filled again by pg_restore in one transaction.
            let t = Instant::now();
            pg.batch_execute(&format!(
                "BEGIN; DROP SCHEMA \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\" AUTHORIZATION \"{schema}_owner\"; COMMIT;"
            ))
            .await
            .unwrap();
            let mut cmd = Command::new(tool("pg_restore"));
            cmd.arg(format!("--dbname={dsn}"))
                .args([
                    "--single-transaction",
                    "--exit-on-error",
                    "--no-owner",
                    "--no-privileges",
                ])
                .arg(format!("--role={schema}_owner"))
                .arg(format!("--schema={schema}"))
                .arg(&plain_file);
            run(cmd);
            plain.push(t.elapsed());
        }
        let ours_r = report("restore berqenas (in place)", ours, data_mb);
        let plain_r = report("restore pg_restore", plain, data_mb);
        println!(
            "restore overhead: {:+.1}%",
            (ours_r.as_secs_f64() / plain_r.as_secs_f64() - 1.0) * 100.0
        );
        let t = Instant::now();
        let v = berqenas::workflows::backups::verify(&rt, None, &id, "bench")
            .await
            .unwrap();
        assert!(v.ok);
        println!(
            "verify (scratch restore + checksums): {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    drop(pg);
    drop(scratch);
}
