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
