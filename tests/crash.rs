//! The real binary on its embedded default: first start creates the cluster, SIGKILL in
//! the middle of creations leaves no orphan, a restart adopts the cluster and its data,
//! `/health` says 503 when PostgreSQL is gone, and SIGTERM stops everything cleanly.

mod common;
#[path = "support/process.rs"]
mod process;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{footprint, scratch_dir};
use process::{superuser_in, Cleanup, Server, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn superuser(dir: &Path) -> tokio_postgres::Client {
    superuser_in(dir, None).await
}

async fn create(http: &reqwest::Client, url: &str, name: &str) -> Option<StatusCode> {
    http.post(format!("{url}/api/v1/tenants"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": name}))
        .send()
        .await
        .ok()
        .map(|r| r.status())
}

fn postmaster_running(dir: &Path) -> bool {
    let pid = std::fs::read_to_string(dir.join("pgdata/postmaster.pid")).ok();
    pid.and_then(|p| p.lines().next().map(str::to_string))
        .map(|pid| PathBuf::from(format!("/proc/{pid}")).exists())
        .unwrap_or(false)
}

#[tokio::test]
async fn sigkill_mid_creation_leaves_no_orphans_and_restart_reuses_the_cluster() {
    let dir = scratch_dir("crash");
    let _cleanup = Cleanup(dir.clone());
    let mut server = Server::start(&dir, &[]).await;
    assert!(
        dir.join("pgdata/PG_VERSION").is_file(),
        "first start ran initdb in the data directory"
    );
    let http = reqwest::Client::new();

    // Creations in flight from 8 workers; kill -9 once some have finished.
    let names: Vec<String> = (0..48).map(|i| format!("crash-{i}")).collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for chunk in names.chunks(6) {
        let (http, url, chunk, done) = (
            http.clone(),
            server.url.clone(),
            chunk.to_vec(),
            done.clone(),
        );
        workers.push(tokio::spawn(async move {
            for name in chunk {
                if create(&http, &url, &name).await.is_some() {
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }));
    }
    while done.load(std::sync::atomic::Ordering::SeqCst) < 6 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    for w in workers {
        w.await.unwrap();
    }
    assert!(
        postmaster_running(&dir),
        "SIGKILL of berqenas leaves its cluster running"
    );

    // Restart adopts the running cluster; every name is complete or absent.
    let mut server = Server::start(&dir, &[]).await;
    let pg = superuser(&dir).await;
    let (mut complete, mut absent) = (0, 0);
    for name in &names {
        let found = footprint(&pg, name).await;
        if found.is_empty() {
            absent += 1;
            continue;
        }
        assert_eq!(
            found.len(),
            8,
            "{name} is half there (6 roles, schema, registry row): {found:?}"
        );
        complete += 1;
        let creds: Value = http
            .get(format!("{}/api/v1/tenants/{name}/credentials", server.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let (tenant, conn) =
            tokio_postgres::connect(creds["dsn"].as_str().unwrap(), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        tenant
            .execute("INSERT INTO deployments (application_id, version, status, triggered_by) SELECT gen_random_uuid(), '1', 'x', 'y' WHERE false", &[])
            .await
            .unwrap();
    }
    eprintln!("after SIGKILL: {complete} tenants complete, {absent} absent, none partial");
    assert!(
        complete >= 6,
        "the finished creations survived ({complete} complete, {absent} absent)"
    );
    let running: i64 = pg
        .query_one(
            "SELECT count(*) FROM berqenas.operations WHERE state = 'running'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(running, 0, "no operation left half done");
    // The interrupted names are free again.
    for name in &names {
        if footprint(&pg, name).await.is_empty() {
            assert_eq!(
                create(&http, &server.url, name).await,
                Some(StatusCode::CREATED)
            );
            break;
        }
    }

    // PostgreSQL gone: /health says so with 503.
    let cluster =
        berqenas::pg::cluster::Cluster::ensure(&berqenas::pg::cluster::ClusterOptions::new(&dir))
            .unwrap();
    cluster.stop().unwrap();
    let res = http
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["status"].as_str(), body["database"].as_str()),
        (Some("unhealthy"), Some("unreachable"))
    );
    server.stop().await;

    // A third start brings the cluster back with all its data; SIGTERM stops both.
    let mut server = Server::start(&dir, &[]).await;
    let health: Value = http
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "healthy");
    assert!(health["tenants_count"].as_i64().unwrap() >= complete as i64);
    server.stop().await;
    assert!(
        !postmaster_running(&dir),
        "SIGTERM stops the embedded cluster"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// kill -9 between every two steps of a database-mode create (a failpoint SIGKILLs the
/// server there), restart: the reconciler reverts it all, and the name is free again.
#[tokio::test]
async fn sigkill_between_database_mode_steps_converges_to_nothing() {
    let dir = scratch_dir("crash-db");
    let _cleanup = Cleanup(dir.clone());
    let http = reqwest::Client::new();
    let lease = [("BERQENAS_LEASE_SECS", "1")];
    for (i, point) in [
        "tenant.create.database/register/after",
        "tenant.create.database/clone/after",
        "tenant.create.database/configure/after",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("dbcrash-{i}");
        let mut server = Server::start(&dir, &[("BERQENAS_FAILPOINT", point), lease[0]]).await;
        let res = http
            .post(format!("{}/api/v1/tenants", server.url))
            .bearer_auth(TOKEN)
            .json(&json!({"name": name, "isolation": "database"}))
            .send()
            .await;
        assert!(res.is_err(), "{point}: the server died mid-request");
        let status = server.child.wait().await.unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{point}"
        );

        // Something is left half done until the next start settles it (at once: the
        // process of this data directory is gone for certain).
        let pg = superuser(&dir).await;
        let stem = format!("tenant_{}", name.replace('-', "_"));
        let before = footprint(&pg, &name).await;
        assert!(
            before.contains(&format!("tenant:{name}")),
            "{point}: {before:?}"
        );
        let db_before: i64 = pg
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname = $1",
                &[&stem],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            db_before,
            i64::from(*point != "tenant.create.database/register/after"),
            "{point}"
        );
        drop(pg);
        let mut server = Server::start(&dir, &lease).await;
        let pg = superuser(&dir).await;
        assert_eq!(
            footprint(&pg, &name).await,
            Vec::<String>::new(),
            "{point}: roles or registry row left"
        );
        let dbs: i64 = pg
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname = $1",
                &[&stem],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(dbs, 0, "{point}: database left");
        let states: Vec<String> = pg
            .query(
                "SELECT state FROM berqenas.operations WHERE tenant_name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(states, vec!["failed".to_string()], "{point}");
        assert_eq!(
            create_db(&http, &server.url, &name).await,
            StatusCode::CREATED,
            "{point}: name free again"
        );
        server.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

async fn create_db(http: &reqwest::Client, url: &str, name: &str) -> StatusCode {
    http.post(format!("{url}/api/v1/tenants"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": name, "isolation": "database"}))
        .send()
        .await
        .unwrap()
        .status()
}

/// The applications a tenant sees, as itself.
async fn tenant_rows(dsn: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(dsn, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client
        .query("SELECT name FROM applications ORDER BY name", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Adds an application row as the tenant itself.
async fn add_application(dsn: &str, name: &str) {
    let (client, conn) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "INSERT INTO applications (name, team, created_by) VALUES ($1, 'a', 'me')",
            &[&name],
        )
        .await
        .unwrap();
}

/// kill -9 at stages of an in-place restore (logins off, sessions ended, the backup
/// loaded, the restore recorded), in every isolation mode, then a restart: a restore
/// that had not loaded is undone (the rows from before the restore), one that had is
/// finished (the backup's rows); logins always come back, nothing set aside is left,
/// and the operation says which it was.
#[tokio::test]
async fn sigkill_during_a_restore_finishes_or_puts_back() {
    let dir = scratch_dir("crash-restore");
    let _cleanup = Cleanup(dir.clone());
    let lease = ("BERQENAS_LEASE_SECS", "1");
    // Until the loaded data is journaled (`load` applied) the restore is undone; from
    // then on it is finished.
    let cases = [
        ("schema", "backup.restore/own/after", false),
        ("schema", "backup.restore/load/before", false),
        ("schema", "backup.restore/load/after", true),
        ("database", "backup.restore/end_sessions/after", false),
        ("database", "backup.restore/load/after", true),
        ("database", "backup.restore/record/after", true),
        ("shared", "backup.restore/own/after", false),
        ("shared", "backup.restore/load/after", true),
    ];
    for (i, (isolation, point, finished)) in cases.into_iter().enumerate() {
        let name = format!("rcrash-{i}");
        let case = format!("{isolation} {point}");
        let mut server = Server::start(&dir, &[("BERQENAS_FAILPOINT", point), lease]).await;
        let (s, created) = server
            .post(
                "/api/v1/tenants",
                Some(json!({"name": name, "isolation": isolation})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{case}: {created}");
        let dsn = created["credentials"]["dsn"].as_str().unwrap().to_string();
        add_application(&dsn, "kept").await;
        let (s, backup) = server
            .post(&format!("/api/v1/tenants/{name}/backups"), None)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{case}: {backup}");
        add_application(&dsn, "later").await;
        // An application's pool role that may SET ROLE to the tenant's login role.
        let login = created["role"].as_str().unwrap().to_string();
        let pool = format!("{}_pool", login);
        let pg = superuser(&dir).await;
        pg.batch_execute(&format!(
            "CREATE ROLE \"{pool}\" NOLOGIN; GRANT \"{login}\" TO \"{pool}\""
        ))
        .await
        .unwrap();
        let pool_member = "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
                             JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = $1 AND u.rolname = $2";
        let restore_path = format!(
            "/api/v1/tenants/{name}/backups/{}/restore",
            backup["id"].as_str().unwrap()
        );
        let restored = server
            .call(reqwest::Method::POST, &restore_path, None)
            .await;
        assert!(restored.is_err(), "{case}: the server died mid-request");
        server.child.wait().await.unwrap();

        // Before the swap, logins and the pool role's membership are off while the
        // restore's process is gone.
        if !finished {
            assert!(
                tenant_rows(&dsn).await.is_err(),
                "{case}: login still works"
            );
            let member: i64 = pg
                .query_one(pool_member, &[&login, &pool])
                .await
                .unwrap()
                .get(0);
            assert_eq!(member, 0, "{case}: the pool role keeps its membership");
        }
        drop(pg);

        let mut server = Server::start(&dir, &[lease]).await;
        let rows = tenant_rows(&dsn)
            .await
            .unwrap_or_else(|e| panic!("{case}: logins not given back: {e}"));
        let expected: &[&str] = if finished {
            &["kept"]
        } else {
            &["kept", "later"]
        };
        assert_eq!(rows, expected, "{case}");
        let pg = superuser(&dir).await;
        let member: i64 = pg
            .query_one(pool_member, &[&login, &pool])
            .await
            .unwrap()
            .get(0);
        assert_eq!(member, 1, "{case}: membership not given back");
        let state: String = pg
            .query_one(
                "SELECT state FROM berqenas.operations WHERE tenant_name = $1 AND kind = 'backup.restore'",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            state,
            if finished { "succeeded" } else { "failed" },
            "{case}"
        );
        let audited: i64 = pg
            .query_one(
                "SELECT count(*) FROM berqenas.audit_log WHERE tenant_name = $1 AND action = $2",
                &[
                    &name,
                    &if finished {
                        "backup_restored"
                    } else {
                        "backup_restore_reverted"
                    },
                ],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(audited, 1, "{case}");
        let database = created["database"]
            .as_str()
            .unwrap_or("berqenas")
            .to_string();
        let db = if isolation == "database" {
            superuser_in(&dir, Some(&database)).await
        } else {
            pg
        };
        let leftovers: Vec<String> = db
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE nspname ~ '_[rd][0-9a-f]{8}$'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(leftovers.is_empty(), "{case}: schemas left {leftovers:?}");
        // The tenant works normally again: another restore goes through.
        let (s, body) = server.post(&restore_path, None).await;
        assert_eq!(s, StatusCode::OK, "{case}: {body}");
        assert_eq!(tenant_rows(&dsn).await.unwrap(), ["kept"], "{case}");
        server.stop().await;
    }

    // Into a new tenant: killed once the new tenant exists, it goes again.
    let mut server = Server::start(
        &dir,
        &[
            ("BERQENAS_FAILPOINT", "backup.restore_as/create/after"),
            lease,
        ],
    )
    .await;
    let (s, backup) = server.post("/api/v1/tenants/rcrash-0/backups", None).await;
    assert_eq!(s, StatusCode::CREATED, "{backup}");
    let restored = server
        .call(
            reqwest::Method::POST,
            &format!(
                "/api/v1/tenants/rcrash-0/backups/{}/restore",
                backup["id"].as_str().unwrap()
            ),
            Some(json!({"as": "rcrash-copy"})),
        )
        .await;
    assert!(restored.is_err(), "the server died mid-request");
    server.child.wait().await.unwrap();
    let pg = superuser(&dir).await;
    assert!(
        !footprint(&pg, "rcrash-copy").await.is_empty(),
        "the new tenant was created"
    );
    let mut server = Server::start(&dir, &[lease]).await;
    assert_eq!(footprint(&pg, "rcrash-copy").await, Vec::<String>::new());
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A database-mode purge drops the database outside the transaction that records the
/// purge. Killed in between (by a real `kill -9`, the engine's failpoint), the tenant
/// must never be restorable as if merely deleted (it would come back without its
/// database): the restarted server finishes the purge before it answers anything,
/// and the archive then brings the tenant back whole.
#[tokio::test]
async fn sigkill_mid_purge_is_finished_before_any_restore() {
    let dir = scratch_dir("crash-purge");
    let _cleanup = Cleanup(dir.clone());
    let name = "pcrash";
    let mut server = Server::start(
        &dir,
        &[("BERQENAS_FAILPOINT", "tenant.purge/drop_objects/before")],
    )
    .await;
    let (s, created) = server
        .post(
            "/api/v1/tenants",
            Some(json!({"name": name, "isolation": "database"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let dsn = created["credentials"]["dsn"].as_str().unwrap().to_string();
    add_application(&dsn, "kept").await;
    let purged = server
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/tenants/{name}?purge=now"),
            Some(json!({"confirm": name})),
        )
        .await;
    assert!(purged.is_err(), "the server died mid-request");
    server.child.wait().await.unwrap();
    let pg = superuser(&dir).await;
    let databases: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = 'tenant_pcrash'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(databases, 0, "the database was dropped before the kill");
    let status: String = pg
        .query_one(
            "SELECT status FROM berqenas.tenants WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "deleted", "the purge had not recorded itself");

    // The restart settles the dead purge before serving: purged at once.
    let mut server = Server::start(&dir, &[]).await;
    let (_, t) = server
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/tenants/{name}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(t["status"], "purged", "{t}");
    let (s, body) = server
        .post(&format!("/api/v1/tenants/{name}/restore"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(tenant_rows(&dsn).await.unwrap(), ["kept"]);
    server.stop().await;
}
