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
        let filled = path
            .replace("{name}", "fault-tenant")
            .replace("{id}", "01900000-0000-7000-8000-000000000000")
            .replace("{email}", "a@example.com");
        for method in item.as_object().unwrap().keys() {
            let m: Method = method.to_uppercase().parse().unwrap();
            let body = match (m.clone(), path.as_str()) {
                (Method::POST, "/api/v1/tenants") | (Method::POST, "/api/v1/tenant") => {
                    Some(serde_json::json!({"name": "fault-tenant"}))
                }
                (Method::POST, "/api/v1/query") => Some(serde_json::json!({"sql": "SELECT 1"})),
                (Method::POST, "/api/v1/tenants/{name}/users") => {
                    Some(serde_json::json!({"email": "a@example.com", "role": "developer"}))
                }
                (Method::PUT, p) if p.ends_with("/backup-policy") => {
                    Some(serde_json::json!({"schedule": "0 3 * * *"}))
                }
                (Method::PUT, "/api/v1/tenants/{name}/quotas") => {
                    Some(serde_json::json!({"max_connections": 5}))
                }
                (Method::POST, "/api/v1/tenants/{name}/usage") => {
                    Some(serde_json::json!({"metric": "llm_tokens", "amount": 1}))
                }
                (Method::POST | Method::PUT | Method::PATCH, _) => Some(serde_json::json!({})),
                _ => None,
            };
            out.push((m, filled.clone(), body));
        }
    }
    out
}

#[tokio::test]
async fn with_the_control_database_stopped_every_endpoint_answers_503_and_recovers() {
    let dir = scratch_dir("db-down");
    let _cleanup = Cleanup(dir.clone());
    let mut server = Server::start(&dir, &[]).await;
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
        let (s, b) = if path == "/api/v1/me" || path == "/api/v1/query" {
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
