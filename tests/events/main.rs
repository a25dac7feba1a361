//! Events (docs/events.md): every change to a tenant, driven through the API, writes
//! its event to the outbox exactly once, with its documented data; a refused request
//! writes nothing, nor does an operation the engine undid; no event holds a secret the
//! API handed out. Read back through `GET /api/v1/events` and `berqenas events list`.

#[path = "../common/mod.rs"]
mod common;

mod lifecycle;
mod operations;
mod quotas;

use std::time::Duration;

use common::{unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A tenant's events, oldest first (every page).
async fn events(app: &TestApp, tenant: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = String::from("0");
    loop {
        let (s, page) = app
            .call(
                Method::GET,
                &format!("/api/v1/events?tenant={tenant}&after={after}&limit=100"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let list = page["events"].as_array().unwrap().clone();
        out.extend(list);
        match page["next_cursor"].as_str() {
            Some(c) => after = c.to_string(),
            None => return out,
        }
    }
}

fn types(evts: &[Value]) -> Vec<String> {
    evts.iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

/// The one event of `kind` among `evts` (fails if there is not exactly one).
fn one<'a>(evts: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = evts.iter().filter(|e| e["type"] == kind).collect();
    assert_eq!(found.len(), 1, "{kind} in {:?}", types(evts));
    found[0]
}

/// Calls that must succeed.
async fn ok(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let (s, v) = app.call(method, path, body).await;
    assert!(s.is_success(), "{path}: {s} {v}");
    v
}

/// Events of `tenant` after `n` already seen.
async fn new_events(app: &TestApp, tenant: &str, seen: usize) -> Vec<Value> {
    events(app, tenant).await.split_off(seen)
}

/// An in-process server with its state (for the quota rounds and the limiter).
async fn spawn_with_state() -> (TestApp, berqenas::api::AppState) {
    let state = berqenas::api::AppState::new(
        common::runtime(common::platform(16).await).await,
        common::TOKEN,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = berqenas::api::router(state.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    (
        TestApp {
            url,
            http: reqwest::Client::new(),
        },
        state,
    )
}
