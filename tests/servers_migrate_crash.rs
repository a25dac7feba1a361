//! A shared pool on another server migrates in two transactions (its DDL and marker
//! there, then the registry in the control database; docs/servers.md): the real
//! binary killed in between (failpoint `migrate.pool_committed`, SIGKILL) and started
//! again finishes the run, and the pool, found at the target by its marker, is not
//! migrated twice.

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;
#[path = "support/process.rs"]
mod process;

use std::time::Duration;

use process::{Cleanup, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ADD_PRIORITY: &str = "ALTER TABLE applications ADD COLUMN priority int NOT NULL DEFAULT 0;\n";

async fn run_of(s: &Server, id: &str) -> Value {
    for _ in 0..600 {
        let run = s
            .ok(Method::GET, &format!("/api/v1/migrations/{id}"), None)
            .await;
        if run["state"] != "running" {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("migration run {id} still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_a_servers_pool_and_the_registry_is_finished_by_the_restart() {
    let dir = common::scratch_dir("mig-pool-crash");
    let _cleanup = Cleanup(dir.to_path_buf());
    let templates = dir.join("template");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(templates.join("0001_init.sql"), common::INIT).unwrap();
    let template_dir = templates.to_str().unwrap().to_string();
    let env = [("BERQENAS_TEMPLATE_DIR", template_dir.as_str())];

    let mut first = Server::start(&dir, &env).await;
    let (pg2, url) = extra_cluster::start_cluster("mig-pool-pg2", "pool-Pa55-word").await;
    let (s, b) = first
        .post("/api/v1/servers", Some(json!({"name": "pg2", "url": url})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let mut tenants = Vec::new();
    for _ in 0..3 {
        let name = common::unique("kp");
        let (s, t) = first
            .post(
                "/api/v1/tenants",
                Some(json!({"name": name, "server": "pg2", "isolation": "shared"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        tenants.push(t);
    }
    first.stop().await;

    std::fs::write(templates.join("0002_priority.sql"), ADD_PRIORITY).unwrap();
    let doomed = Server::start(
        &dir,
        &[
            ("BERQENAS_TEMPLATE_DIR", template_dir.as_str()),
            ("BERQENAS_FAILPOINT", "migrate.pool_committed"),
        ],
    )
    .await;
    let (s, run) = doomed.post("/api/v1/migrations", Some(json!({}))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let mut child = doomed.child;
    let exit = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the failpoint kills the server")
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&exit),
        Some(9)
    );

    // Killed between: pg2's pool at version 2, the registry still at 1.
    let on_pg2 = extra_cluster::on(&pg2, "postgres").await;
    let marker = "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = 'berqenas_shared'";
    let mark: Option<String> = on_pg2.query_one(marker, &[]).await.unwrap().get(0);
    assert_eq!(mark.as_deref(), Some("berqenas template_version=2"));
    let control = process::superuser_in(&dir, None).await;
    let versions = || async {
        control
            .query(
                "SELECT template_version FROM berqenas.tenants WHERE server = 'pg2'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, i32>(0))
            .collect::<Vec<_>>()
    };
    assert_eq!(versions().await, [1, 1, 1]);

    let again = Server::start(&dir, &env).await;
    let done = run_of(&again, &id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["migrated"], 3, "{done}");
    assert_eq!(versions().await, [2, 2, 2]);
    let audited: i64 = control
        .query_one(
            "SELECT count(*) FROM berqenas.audit_log
              WHERE action = 'tenant_migrated' AND details ->> 'run_id' = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 3, "one audit row per tenant");
    for t in &tenants {
        common::connect_as(&t["credentials"])
            .await
            .batch_execute(
                "INSERT INTO applications (name, team, created_by, priority) VALUES ('p', 't', 'me', 1)",
            )
            .await
            .expect("the column is there");
    }
    let columns: i64 = on_pg2
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'berqenas_shared.applications'::regclass
                AND attname = 'priority' AND NOT attisdropped",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(columns, 1);
    let (s, rerun) = again.post("/api/v1/migrations", Some(json!({}))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{rerun}");
    let rerun = run_of(&again, rerun["id"].as_str().unwrap()).await;
    assert_eq!(rerun["migrated"], 0, "{rerun}");
}
