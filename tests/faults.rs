//! Faults of the process and of PostgreSQL, with the real binary: a second `serve` on a
//! data directory in use, the control database stopping under a running server, and
//! SIGTERM in the middle of an operation.

mod common;
#[path = "support/process.rs"]
mod process;

use std::time::{Duration, Instant};

use common::scratch_dir;
use process::{Cleanup, Server};
use reqwest::{Method, StatusCode};

const INTEGRATION_TOKEN: &str = "faults-integration-token-0123";
const WELL_FORMED_KEY: &str = "bqk_0123456789abcdef_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA";

#[tokio::test]
async fn a_second_serve_on_a_data_directory_in_use_refuses_and_touches_nothing() {
    let dir = scratch_dir("second-serve");
    let _cleanup = Cleanup(dir.clone());
    let mut first = Server::start(&dir, &[]).await;
    let pid = first.child.id().unwrap();
    let (s, _) = first.call(Method::GET, "/health", None).await.unwrap();
    assert_eq!(s, StatusCode::OK);

    let started = Instant::now();
    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_berqenas"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("BERQENAS_ADMIN_TOKEN", process::TOKEN)
        .env_remove("BERQENAS_DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert!(!second.status.success(), "the second serve refuses");
    assert!(started.elapsed() < Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");
    assert!(stderr.contains(&first.url), "{stderr}");

    // The first server and its PostgreSQL are untouched.
    let (s, body) = first.call(Method::GET, "/health", None).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = first
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(serde_json::json!({"name": common::unique("still-serving")})),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED, "{body}");
    first.stop().await;
}

/// Every `/api/v1` endpoint, from the OpenAPI document: (method, path with its
/// parameters filled in, a body).
async fn endpoints(server: &Server) -> Vec<(Method, String, Option<serde_json::Value>)> {
    let (_, doc) = server
        .call(Method::GET, "/api/v1/openapi.json", None)
        .await
        .unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path == "/api/v1/openapi.json" || !path.starts_with("/api/v1/") {
            continue; // the API's own description, served without the database
        }
        if path == "/api/v1/monitoring/targets" {
            // Configuration, not registry: HTTP SD keeps announcing the instance while
            // the database is down, so Prometheus sees its /metrics answer 503.
            continue;
        }
        let filled = path
            .replace("{name}", "fault-tenant")
            .replace("{id}", "01900000-0000-7000-8000-000000000000")
            .replace("{delivery_id}", "01900000-0000-7000-8000-000000000001")
            .replace("{email}", "a@example.com")
            .replace("{kind}", "github")
            .replace("{token}", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        for method in item.as_object().unwrap().keys() {
            let m: Method = method.to_uppercase().parse().unwrap();
            let body = match (m.clone(), path.as_str()) {
                (Method::POST, "/api/v1/tenants") | (Method::POST, "/api/v1/tenant") => {
                    Some(serde_json::json!({"name": "fault-tenant"}))
                }
                (Method::POST, "/api/v1/query") => Some(serde_json::json!({"sql": "SELECT 1"})),
                (Method::POST, "/api/v1/vectors/upsert") => {
                    Some(serde_json::json!({"ids": ["a"], "embeddings": [[0.1, 0.2]],
                        "metadatas": [{"k": "v"}], "documents": ["a"]}))
                }
                (Method::POST, "/api/v1/vectors/query") => {
                    Some(serde_json::json!({"embeddings": [[0.1, 0.2]], "n_results": 1}))
                }
                // Checked before the database is asked: a public address (no DNS) and no
                // private one (the server refuses those by default).
                (Method::POST, "/api/v1/onboarding-steps") => Some(
                    serde_json::json!({"name": "git", "url": "https://93.184.216.34/hook",
                        "when": {"isolation": "database"}}),
                ),
                (Method::POST, "/api/v1/operations/{id}/steps/{name}/complete") => {
                    Some(serde_json::json!({"status": "succeeded", "result": {}}))
                }
                (Method::POST, "/api/v1/webhooks") => Some(
                    serde_json::json!({"url": "https://93.184.216.34/hook", "events": ["tenant.*"]}),
                ),
                (Method::POST, "/api/v1/webhooks/{id}/replay") => {
                    Some(serde_json::json!({"since": "2026-01-01T00:00:00Z"}))
                }
                (Method::POST, "/api/v1/tenants/{name}/users") => {
                    Some(serde_json::json!({"email": "a@example.com", "role": "developer"}))
                }
                (Method::PUT, p) if p.ends_with("/backup-policy") => {
                    Some(serde_json::json!({"schedule": "0 3 * * *"}))
                }
                (Method::PUT, "/api/v1/tenants/{name}/monitoring") => {
                    Some(serde_json::json!({"level": "enterprise"}))
                }
                (Method::PUT, "/api/v1/tenants/{name}/quotas") => {
                    Some(serde_json::json!({"max_connections": 5}))
                }
                (Method::POST, "/api/v1/tenants/{name}/usage") => {
                    Some(serde_json::json!({"metric": "llm_tokens", "amount": 1}))
                }
                (Method::POST, "/api/v1/tenants/{name}/firewall") => {
                    Some(serde_json::json!({"cidr": "203.0.113.0/24"}))
                }
                (Method::PUT, "/api/v1/tenants/{name}/firewall") => {
                    Some(serde_json::json!({"rules": []}))
                }
                (Method::POST, p) if p.ends_with("/realtime/publish") => {
                    Some(serde_json::json!({"channel": "orders", "payload": {"id": 1}}))
                }
                (Method::POST, "/api/v1/tenants/{name}/realtime/tables") => {
                    Some(serde_json::json!({"table": "applications"}))
                }
                (Method::POST, "/api/v1/tenants/{name}/vpn/peers") => {
                    Some(serde_json::json!({"name": "laptop"}))
                }
                // GitHub: checked for shape only (no fetch), so the database is asked.
                (Method::PUT, "/api/v1/tenants/{name}/auth-providers/{kind}") => Some(
                    serde_json::json!({"client_id": "a", "client_secret": "s", "organization": "acme"}),
                ),
                (Method::PUT, "/api/v1/plans/{name}/config-defaults") => {
                    Some(serde_json::json!({"defaults": {"max_tokens": 1}}))
                }
                (Method::PATCH, "/api/v1/tenants/{name}/config") => {
                    Some(serde_json::json!({"max_tokens": 2000}))
                }
                // Checked for shape before the registry is asked; never connected to.
                (Method::POST, "/api/v1/servers") => Some(serde_json::json!(
                    {"name": "pg2", "url": "postgresql://u:p@127.0.0.1:1/postgres"}
                )),
                (Method::PATCH, "/api/v1/servers/{name}") => {
                    Some(serde_json::json!({"draining": true}))
                }
                (Method::POST, "/api/v1/tenants/{name}/move") => {
                    Some(serde_json::json!({"to_server": "pg2"}))
                }
                (Method::POST | Method::PUT | Method::PATCH, _) => Some(serde_json::json!({})),
                _ => None,
            };
            // A stream needs a channel to subscribe to.
            let url = if path.ends_with("/realtime/stream") {
                format!("{filled}?channel=orders")
            } else {
                filled.clone()
            };
            out.push((m, url, body));
        }
    }
    out
}

#[tokio::test]
async fn with_the_control_database_stopped_every_endpoint_answers_503_and_recovers() {
    let dir = scratch_dir("db-down");
    let _cleanup = Cleanup(dir.clone());
    let mut server =
        Server::start(&dir, &[("BERQENAS_INTEGRATION_TOKEN", INTEGRATION_TOKEN)]).await;
    let calls = endpoints(&server).await;
    assert!(calls.len() > 30, "{} endpoints", calls.len());
    let cluster =
        berqenas::pg::cluster::Cluster::ensure(&berqenas::pg::cluster::ClusterOptions::new(&dir))
            .unwrap();
    cluster.stop().unwrap();

    let mut wrong = Vec::new();
    for (m, path, body) in &calls {
        let started = Instant::now();
        // The tenant-facing endpoints take a well-formed API key (looked up in the
        // database), the others the admin token.
        let (s, b) = if path.starts_with("/api/v1/integration/") {
            server
                .call_as(m.clone(), path, body.clone(), INTEGRATION_TOKEN)
                .await
                .unwrap()
        } else if path.starts_with("/api/v1/me")
            || path == "/api/v1/query"
            || path.starts_with("/api/v1/realtime/")
            || path.starts_with("/api/v1/vectors/")
        {
            server
                .call_as(m.clone(), path, body.clone(), WELL_FORMED_KEY)
                .await
                .unwrap()
        } else {
            server.call(m.clone(), path, body.clone()).await.unwrap()
        };
        let took = started.elapsed();
        if s != StatusCode::SERVICE_UNAVAILABLE
            || b["error"]["code"].as_str().is_none()
            || took > Duration::from_secs(6)
        {
            wrong.push(format!("{m} {path}: {s} in {took:?}: {b}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    // PostgreSQL comes back: the same server serves again, no restart.
    let cluster =
        berqenas::pg::cluster::Cluster::ensure(&berqenas::pg::cluster::ClusterOptions::new(&dir))
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, _) = server
            .call(Method::GET, "/api/v1/tenants", None)
            .await
            .unwrap();
        if s == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "did not recover: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(serde_json::json!({"name": common::unique("after-outage")})),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED, "{b}");
    server.stop().await;
    drop(cluster);
}

/// SIGTERM while a backup's dump runs: the server lets that step finish (it is
/// journaled `applied` by this process), exits cleanly within its shutdown deadline,
/// and the next start finishes the operation (the backup is recorded `succeeded`).
#[tokio::test]
async fn sigterm_mid_operation_finishes_the_current_step_and_exits() {
    let dir = scratch_dir("sigterm");
    let _cleanup = Cleanup(dir.clone());
    let mut server = Server::start(&dir, &[]).await;
    let name = "term-0";
    let created = server
        .ok(
            Method::POST,
            "/api/v1/tenants",
            Some(serde_json::json!({"name": name, "db_quota": "5GB"})),
        )
        .await;
    let schema = created["schema"].as_str().unwrap().to_string();
    let pg = process::superuser_in(&dir, None).await;
    // Enough rows that the dump takes a while.
    pg.batch_execute(&format!(
        "INSERT INTO \"{schema}\".user_activity (user_id, action, details)
         SELECT md5(i::text), md5((i * 7)::text), jsonb_build_object('pad', repeat(md5(i::text), 8))
           FROM generate_series(1, 300000) i"
    ))
    .await
    .unwrap();
    let (url, http) = (server.url.clone(), reqwest::Client::new());
    let request = tokio::spawn(async move {
        http.post(format!("{url}/api/v1/tenants/{name}/backups"))
            .bearer_auth(process::TOKEN)
            .send()
            .await
    });
    let dump_state = "SELECT s.state FROM berqenas.operation_steps s
                        JOIN berqenas.operations o ON o.id = s.operation_id
                       WHERE o.kind = 'backup.take' AND o.tenant_name = $1 AND s.name = 'dump'";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state: Option<String> = pg
            .query_opt(dump_state, &[&name])
            .await
            .unwrap()
            .map(|r| r.get(0));
        if state.as_deref() == Some("started") {
            break;
        }
        assert!(
            state.is_none() && Instant::now() < deadline,
            "the dump was not caught running: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(pg);
    let stopping = Instant::now();
    server.stop().await;
    let took = stopping.elapsed();
    assert!(
        took < berqenas::server::SHUTDOWN_DEADLINE + Duration::from_secs(10),
        "exited {took:?} after SIGTERM"
    );
    let _ = request.await;

    let restarted_at = chrono::Utc::now();
    let mut server = Server::start(&dir, &[]).await;
    let pg = process::superuser_in(&dir, None).await;
    let row = pg
        .query_one(
            "SELECT s.state, s.at FROM berqenas.operation_steps s
               JOIN berqenas.operations o ON o.id = s.operation_id
              WHERE o.kind = 'backup.take' AND o.tenant_name = $1 AND s.name = 'dump'",
            &[&name],
        )
        .await
        .unwrap();
    let (state, at): (String, chrono::DateTime<chrono::Utc>) = (row.get(0), row.get(1));
    assert_eq!(state, "applied", "the step running at SIGTERM finished");
    assert!(at < restarted_at, "it finished before the process exited");
    let op: String = pg
        .query_one(
            "SELECT state FROM berqenas.operations WHERE kind = 'backup.take' AND tenant_name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(op, "succeeded", "the next start finished the operation");
    let (s, listed) = server
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/backups"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(listed["backups"][0]["status"], "succeeded", "{listed}");
    server.stop().await;
}
