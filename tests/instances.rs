//! Several real `berqenas serve` processes on one control database (docs/instances.md):
//! what one writes the other reads, each elected job runs on one instance only, an
//! event goes to its endpoint once with both relays running, and when one instance is
//! killed mid-operation the other settles the operation once its lease lapses and takes
//! over the elected jobs. Also: the embedded cluster is for one instance.

mod common;
#[path = "support/process.rs"]
mod process;
#[path = "support/receiver.rs"]
mod receiver;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use process::{Cleanup, Server};
use receiver::Receiver;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// One sealing key for all instances: each opens what another sealed.
const KEY: &str = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";

/// A control database of its own in the test cluster, and a superuser client on it.
async fn control(name: &str) -> (String, tokio_postgres::Client) {
    common::control_database(name).await;
    let dsn = common::database()
        .await
        .cluster
        .as_ref()
        .unwrap()
        .superuser_dsn(name);
    let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    (dsn, client)
}

/// The instance's id and the jobs it holds, as `GET /api/v1/status` shows them.
async fn instance(s: &Server) -> (String, BTreeSet<String>) {
    let st = s.ok(Method::GET, "/api/v1/status", None).await;
    let held = st["instance"]["elected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_str().unwrap().to_string())
        .collect();
    (st["instance"]["id"].as_str().unwrap().to_string(), held)
}

fn all_jobs() -> BTreeSet<String> {
    berqenas::instances::JOBS
        .iter()
        .map(|j| j.to_string())
        .collect()
}

/// Waits (at most a minute) until `done` holds for the jobs the instances hold.
async fn jobs_until(
    servers: &[&Server],
    what: &str,
    done: impl Fn(&[BTreeSet<String>]) -> bool,
) -> Vec<BTreeSet<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut held = vec![];
        for s in servers {
            held.push(instance(s).await.1);
        }
        if done(&held) {
            return held;
        }
        assert!(Instant::now() < deadline, "{what}: {held:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn two_instances_agree_elect_each_job_once_and_deliver_each_event_once() {
    let db = common::unique("inst_share").replace('-', "_");
    let (dsn, pg) = control(&db).await;
    let env = [
        ("BERQENAS_DATABASE_URL", dsn.as_str()),
        ("BERQENAS_SECRET_KEY", KEY),
        ("BERQENAS_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("BERQENAS_WEBHOOK_RETRY_SCHEDULE", "300ms,300ms,300ms"),
        // Both would run a round and a sample every second if both were elected.
        ("BERQENAS_QUOTA_INTERVAL", "1s"),
        ("BERQENAS_USAGE_SAMPLE_INTERVAL", "2s"),
        // Every sample stored, changed or not: each one shows who took it when.
        ("BERQENAS_USAGE_SAMPLE_HOLD", "1s"),
    ];
    let (d1, d2) = (
        common::ScratchDir::new("inst-a"),
        common::ScratchDir::new("inst-b"),
    );
    let mut a = Server::start(&d1, &env).await;
    let mut b = Server::start(&d2, &env).await;

    // Two instances, each job held by exactly one of them.
    let (id_a, _) = instance(&a).await;
    let (id_b, _) = instance(&b).await;
    assert_ne!(id_a, id_b, "each process is an instance of its own");
    let held = jobs_until(&[&a, &b], "every job elected", |h| {
        h[0].union(&h[1]).cloned().collect::<BTreeSet<_>>() == all_jobs()
    })
    .await;
    assert!(
        held[0].is_disjoint(&held[1]),
        "no job is held by both instances: {held:?}"
    );

    // An endpoint made through one instance; tenants made through both.
    let rx = Receiver::ok().await;
    let (st, body) = b
        .post(
            "/api/v1/webhooks",
            Some(json!({"url": rx.url, "events": ["tenant.created"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let names: Vec<String> = (0..6).map(|_| common::unique("inst")).collect();
    for (i, name) in names.iter().enumerate() {
        let via = if i % 2 == 0 { &a } else { &b };
        let (st, body) = via
            .post("/api/v1/tenants", Some(json!({"name": name})))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{name}: {body}");
    }
    // Each reads what the other wrote, the same.
    for name in &names {
        let path = format!("/api/v1/tenants/{name}");
        let (ta, tb) = (
            a.ok(Method::GET, &path, None).await,
            b.ok(Method::GET, &path, None).await,
        );
        assert_eq!(ta, tb, "{name} reads the same through both instances");
        assert_eq!(ta["status"], "active", "{ta}");
    }
    let list = |v: Value| -> BTreeSet<String> {
        v["tenants"]
            .as_array()
            .unwrap_or_else(|| panic!("a tenant page: {v}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (la, lb) = (
        list(a.ok(Method::GET, "/api/v1/tenants?limit=100", None).await),
        list(b.ok(Method::GET, "/api/v1/tenants?limit=100", None).await),
    );
    assert_eq!(la, lb);
    assert!(names.iter().all(|n| la.contains(n)), "{la:?}");

    // Each tenant.created once, though both relays run.
    rx.wait(60, "every tenant.created", |g| {
        names.iter().all(|n| g.iter().any(|r| r.tenant() == *n))
    })
    .await;
    // Time for a second delivery, were there one to come (the retry schedule is 300 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = rx.got();
    for name in &names {
        let ids: Vec<&str> = got
            .iter()
            .filter(|r| r.tenant() == *name)
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(ids.len(), 1, "{name}: tenant.created delivered {ids:?}");
    }
    let attempts: i64 = pg
        .query_one("SELECT count(*) FROM berqenas.webhook_attempts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, names.len() as i64, "one attempt per event");

    // The usage sample: once per period, not once per instance. A few periods pass;
    // every sample of a tenant is at least the interval after the one before it.
    let first = &names[0];
    let deadline = Instant::now() + Duration::from_secs(60);
    let times: Vec<f64> = loop {
        let rows = pg
            .query(
                "SELECT extract(epoch FROM s.sampled_at)::float8 FROM berqenas.usage_samples s
                   JOIN berqenas.tenants t ON t.id = s.tenant_id
                  WHERE t.name = $1 ORDER BY s.sampled_at",
                &[first],
            )
            .await
            .unwrap();
        if rows.len() >= 4 {
            break rows.iter().map(|r| r.get(0)).collect();
        }
        assert!(Instant::now() < deadline, "samples: {}", rows.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= 2.0,
            "two samples within one period (by two instances?): {times:?}"
        );
    }
    // And the sampling is the elected instance's: the samples keep coming while the
    // other one holds no part of it.
    let holder = if held[0].contains(berqenas::workflows::quotas::ROUND_JOB) {
        0
    } else {
        1
    };
    assert!(!held[1 - holder].contains(berqenas::workflows::quotas::ROUND_JOB));

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_survivor_settles_a_killed_instances_operation_and_takes_its_jobs() {
    let db = common::unique("inst_kill").replace('-', "_");
    let (dsn, pg) = control(&db).await;
    let base = [
        ("BERQENAS_DATABASE_URL", dsn.as_str()),
        ("BERQENAS_SECRET_KEY", KEY),
        // Short leases and a worker round every second: the test waits seconds.
        ("BERQENAS_LEASE_SECS", "2"),
        ("BERQENAS_RECONCILE_SECS", "1"),
    ];
    let point = "tenant.create.database/clone/after";
    let mut with_failpoint = base.to_vec();
    with_failpoint.push(("BERQENAS_FAILPOINT", point));
    let (d1, d2) = (
        common::ScratchDir::new("inst-k1"),
        common::ScratchDir::new("inst-k2"),
    );
    // The first instance holds every job before the second starts.
    let doomed = Server::start(&d1, &with_failpoint).await;
    jobs_until(&[&doomed], "the first instance elected", |h| {
        h[0] == all_jobs()
    })
    .await;
    let (doomed_id, _) = instance(&doomed).await;
    let mut survivor = Server::start(&d2, &base).await;
    let (survivor_id, held) = instance(&survivor).await;
    assert!(held.is_empty(), "the jobs stay where they are: {held:?}");

    // kill -9 of the first instance halfway through a database-mode create: its
    // database is cloned, the rest is not done.
    let name = common::unique("inst-kill");
    doomed
        .killed_by(
            point,
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": name, "isolation": "database"})),
        )
        .await;

    // The survivor settles it once the lease lapses: undone, nothing left behind.
    let stem = format!("tenant_{}", name.replace('-', "_"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let (state, settled_by) = loop {
        let row = pg
            .query_opt(
                "SELECT state, instance_id::text FROM berqenas.operations
                  WHERE tenant_name = $1 AND kind = 'tenant.create.database'",
                &[&name],
            )
            .await
            .unwrap()
            .expect("the create's operation");
        let state: String = row.get(0);
        if state != "running" {
            break (state, row.get::<_, String>(1));
        }
        assert!(Instant::now() < deadline, "the operation is still running");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(state, "failed", "undone (before its point of no return)");
    assert_eq!(settled_by, survivor_id, "the survivor settled it");
    assert_ne!(settled_by, doomed_id);
    let left: i64 = pg
        .query_one(
            "SELECT (SELECT count(*) FROM pg_database WHERE datname = $1)
                  + (SELECT count(*) FROM pg_roles WHERE rolname = $1 OR rolname LIKE $1 || '\\_%')
                  + (SELECT count(*) FROM berqenas.tenants WHERE name = $2)",
            &[&stem, &name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "no database, role or registry row left of {name}");
    let running: i64 = pg
        .query_one(
            "SELECT count(*) FROM berqenas.operations WHERE state = 'running'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(running, 0, "no operation left half done");

    // The elected jobs moved to the survivor (the dead one's session, and its locks,
    // went with it).
    jobs_until(&[&survivor], "every job on the survivor", |h| {
        h[0] == all_jobs()
    })
    .await;
    // And the name is free again, through the survivor.
    let (st, body) = survivor
        .post(
            "/api/v1/tenants",
            Some(json!({"name": name, "isolation": "database"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    survivor.stop().await;
}

/// The embedded cluster is for one instance: a second `serve` on the data directory
/// refuses, and so does one with `--database-url` naming the running embedded cluster.
#[tokio::test]
async fn the_embedded_cluster_refuses_a_second_instance() {
    let dir = common::scratch_dir("inst-embedded");
    let _cleanup = Cleanup(dir.clone());
    let mut first = Server::start(&dir, &[]).await;

    let second = |data_dir: &std::path::Path, url: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_berqenas"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("BERQENAS_DATABASE_URL")
            .env_remove("BERQENAS_FAILPOINT")
            .env("BERQENAS_ADMIN_TOKEN", process::TOKEN);
        if let Some(u) = url {
            cmd.env("BERQENAS_DATABASE_URL", u);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "a second instance must not start");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = second(&dir, None);
    assert!(
        err.contains("another berqenas serve") && err.contains(&dir.display().to_string()),
        "{err}"
    );

    let dsn = std::process::Command::new(env!("CARGO_BIN_EXE_berqenas"))
        .args(["psql", "--print-dsn", "--data-dir"])
        .arg(&dir)
        .env_remove("BERQENAS_DATABASE_URL")
        .output()
        .unwrap();
    let dsn = String::from_utf8(dsn.stdout).unwrap().trim().to_string();
    let other = common::ScratchDir::new("inst-embedded-b");
    let err = second(&other, Some(&dsn));
    assert!(
        err.contains("--database-url names the embedded cluster"),
        "{err}"
    );
    assert!(!other.join("server-url").exists(), "it never served");
    first.stop().await;
}

/// A scheduled backup waits as long as a tenant's session keeps its tables locked;
/// the role check, the settling of operations and the other jobs of the worker round
/// must not wait with it, nor, with `--backup-jobs 2`, the next tenant's backup.
#[tokio::test]
async fn a_backup_held_up_by_a_tenants_lock_holds_up_no_other_job() {
    let db = common::unique("inst_backup_held").replace('-', "_");
    let (dsn, pg) = control(&db).await;
    let env = [
        ("BERQENAS_DATABASE_URL", dsn.as_str()),
        ("BERQENAS_SECRET_KEY", KEY),
        ("BERQENAS_RECONCILE_SECS", "1"),
        ("BERQENAS_BACKUP_JOBS", "2"),
    ];
    let dir = common::ScratchDir::new("inst-backup-held");
    let mut server = Server::start(&dir, &env).await;
    jobs_until(&[&server], "the instance elected", |h| h[0] == all_jobs()).await;

    // Two tenants whose tables a session holds; their backups, due now, wait for it.
    let (holder, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    holder.batch_execute("BEGIN").await.unwrap();
    let mut tenants = vec![];
    for k in 0..2 {
        let name = common::unique(&format!("held{k}"));
        let t = server
            .ok(
                Method::POST,
                "/api/v1/tenants",
                Some(json!({"name": name, "backup_schedule": "0 3 * * *"})),
            )
            .await;
        holder
            .batch_execute(&format!(
                "LOCK TABLE \"{}\".applications IN ACCESS EXCLUSIVE MODE",
                t["schema"].as_str().unwrap()
            ))
            .await
            .unwrap();
        tenants.push((name, t["owner_role"].as_str().unwrap().to_string()));
    }
    let names: Vec<&str> = tenants.iter().map(|(n, _)| n.as_str()).collect();
    pg.execute(
        "UPDATE berqenas.backup_policies SET next_run_at = now() WHERE tenant_id IN (SELECT id FROM berqenas.tenants WHERE name = ANY($1))",
        &[&names],
    )
    .await
    .unwrap();
    let status = |name: &str| {
        let path = format!("/api/v1/tenants/{name}/backups");
        let server = &server;
        async move { server.ok(Method::GET, &path, None).await["backups"][0]["status"].clone() }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (a, b) = (status(names[0]).await, status(names[1]).await);
        if a == "running" && b == "running" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "two backup jobs: both tenants' backups must run at once, got {a} and {b}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Meanwhile the role check takes back what a tenant's owner was given.
    let owner = &tenants[0].1;
    pg.batch_execute(&format!("ALTER ROLE \"{owner}\" CREATEROLE"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let create_role: bool = pg
            .query_one(
                "SELECT rolcreaterole FROM pg_roles WHERE rolname = $1",
                &[owner],
            )
            .await
            .unwrap()
            .get(0);
        if !create_role {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the role check did not run while backups waited on a lock"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for name in &names {
        assert_eq!(status(name).await, "running", "{name}");
    }

    // Once the lock is let go, the backups end as any other.
    holder.batch_execute("ROLLBACK").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in &names {
        loop {
            let s = status(name).await;
            if s == "succeeded" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}'s backup did not finish: {s}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    server.stop().await;
}
