//! Attacks on everyone else's time: a shared-mode tenant that takes an ACCESS
//! EXCLUSIVE lock on a pool table every shared tenant uses and keeps its transaction
//! busy, and a transaction kept open past the tenant's `transaction_timeout_ms`. The
//! watchdog is driven once a second from the test, as the worker drives it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berqenas::platform::Platform;
use berqenas::quota::watchdog::{self, Action, BLOCKING_GRACE};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{connect_as, unique, TestApp};
use crate::support::{self, METRICS_TOKEN};

/// The watchdog's period in the worker.
const PERIOD: Duration = Duration::from_secs(1);

/// What every watchdog of this binary did: attacks run in parallel, and the watchdog
/// of one may be the first to end another's session (as in production, where any
/// server's watchdog acts on every tenant).
static ACTED: Mutex<Vec<Action>> = Mutex::new(Vec::new());

/// Runs the watchdog every [`PERIOD`] until dropped.
struct Watchdog {
    task: tokio::task::JoinHandle<()>,
}

impl Watchdog {
    fn start(platform: Arc<Platform>) -> Self {
        let task = tokio::spawn(async move {
            loop {
                match watchdog::run_once(&platform).await {
                    Ok(done) => ACTED.lock().unwrap().extend(done),
                    Err(e) => eprintln!("watchdog pass failed: {e}"),
                }
                tokio::time::sleep(PERIOD).await;
            }
        });
        Self { task }
    }
}

/// What the watchdogs did to this role so far: (action, reason).
fn acted_on(role: &str) -> Vec<(String, String)> {
    ACTED
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.role == role)
        .map(|a| (a.action.clone(), a.reason.clone()))
        .collect()
}

/// Ended, and only ever for `reason` (two watchdogs may both have signalled it).
fn ended_for(role: &str, reason: &str) {
    let acted = acted_on(role);
    assert!(
        !acted.is_empty() && acted.iter().all(|(a, r)| a == "terminate" && r == reason),
        "{role}: {acted:?}"
    );
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `SELECT 1` every `every` on `c` until it fails; returns when it failed.
fn keep_alive(c: Arc<tokio_postgres::Client>, every: Duration) -> tokio::task::JoinHandle<Instant> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if c.simple_query("SELECT 1").await.is_err() {
                return Instant::now();
            }
        }
    })
}

async fn query(app: &TestApp, key: &str, sql: &str) -> (StatusCode, serde_json::Value) {
    app.call_with(
        Method::POST,
        "/api/v1/query",
        Some(json!({ "sql": sql })),
        Some(key),
        &[],
    )
    .await
}

#[tokio::test]
async fn a_shared_tenant_holding_a_pool_table_lock_is_ended_and_the_others_proceed() {
    let _g = crate::shared().await;
    let (app, state) = support::spawn().await;
    let a = app.create_in(&unique("stall-a"), "shared").await;
    let b = app.create_in(&unique("stall-b"), "shared").await;
    let a_role = a["role"].as_str().unwrap().to_string();
    let b_key = b["api_key"].as_str().unwrap();
    // Warm B's data API pool, so the timing below is the lock's alone.
    let (s, res) = query(&app, b_key, "SELECT count(*) FROM applications").await;
    assert_eq!(s, StatusCode::OK, "{res}");
    let _dog = Watchdog::start(std::sync::Arc::new(state.platform.platform.clone()));

    // The attack: the lock every statement on the table conflicts with, in a
    // transaction kept busy (never idle, never slow) every 3 s.
    let attacker = Arc::new(connect_as(&a["credentials"]).await);
    attacker
        .batch_execute("BEGIN; LOCK TABLE applications IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("a shared tenant's login role may take the lock");
    let alive = keep_alive(attacker.clone(), Duration::from_secs(3));

    // Holding up only its own sessions is the tenant's business: not ended for that.
    let own = connect_as(&a["credentials"]).await;
    let own_wait = tokio::spawn(async move {
        own.simple_query("SELECT count(*) FROM applications")
            .await
            .map(|_| ())
    });
    tokio::time::sleep(BLOCKING_GRACE + PERIOD * 2).await;
    assert!(!alive.is_finished(), "ended while blocking only itself");
    assert!(acted_on(&a_role).is_empty(), "{:?}", acted_on(&a_role));

    // Another tenant's request waits at most the grace plus one watchdog pass.
    let bound = BLOCKING_GRACE + PERIOD + Duration::from_secs(4);
    let started = Instant::now();
    let (s, res) = query(&app, b_key, "SELECT count(*) FROM applications").await;
    let waited = started.elapsed();
    assert_eq!(s, StatusCode::OK, "after {waited:?}: {res}");
    assert!(waited < bound, "B waited {waited:?}, bound {bound:?}");
    assert!(
        waited >= BLOCKING_GRACE,
        "B was not held up at all ({waited:?}): the attack did not take"
    );

    // The attacker's session was ended, for blocking, and nothing else was.
    let ended = tokio::time::timeout(Duration::from_secs(5), alive)
        .await
        .expect("the attacker's session was ended")
        .unwrap();
    assert!(ended.duration_since(started) < bound + Duration::from_secs(3));
    assert!(attacker.simple_query("SELECT 1").await.is_err());
    ended_for(&a_role, "blocking");
    assert!(acted_on(b["role"].as_str().unwrap()).is_empty());
    own_wait
        .await
        .unwrap()
        .expect("A's own waiting session went on");
    // Counted in the watchdog metric, under its own reason.
    let res = app
        .http
        .get(format!("{}/metrics", app.url))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("berqenas_watchdog_actions_total{")
                && l.contains("reason=\"blocking\"")
                && l.contains("action=\"terminate\"")),
        "{text}"
    );
    // And B goes on at full speed.
    let started = Instant::now();
    let (s, _) = query(&app, b_key, "SELECT count(*) FROM applications").await;
    assert_eq!(s, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_transaction_older_than_the_tenants_bound_is_ended_blocking_nobody() {
    let _g = crate::shared().await;
    let (app, state) = support::spawn().await;
    let name = unique("old-xact");
    let t = app.create_in(&name, "schema").await;
    let role = t["role"].as_str().unwrap().to_string();

    // The plan's bound, then the tenant's own.
    let (s, plans) = app.call(Method::GET, "/api/v1/plans", None).await;
    assert_eq!(s, StatusCode::OK);
    let bound_of = |plan: &str| {
        plans
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == plan)
            .unwrap()["transaction_timeout_ms"]
            .clone()
    };
    assert_eq!(bound_of("free"), 60000);
    assert_eq!(bound_of("custom"), 3600000);
    let (s, limits) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/quotas"),
            Some(json!({"transaction_timeout_ms": 2000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{limits}");
    assert_eq!(limits["limits"]["transaction_timeout_ms"], 2000);
    assert_eq!(limits["overridden"], json!(["transaction_timeout_ms"]));
    let (s, err) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/quotas"),
            Some(json!({"transaction_timeout_ms": 10})),
        )
        .await;
    assert_eq!(
        (s, err["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("transaction_timeout_ms"))
    );

    let _dog = Watchdog::start(std::sync::Arc::new(state.platform.platform.clone()));
    // A transaction kept busy every 300 ms: never idle, never slow, holding no lock
    // anyone waits for. A second session outside any transaction is left alone.
    let c = Arc::new(connect_as(&t["credentials"]).await);
    let bystander = connect_as(&t["credentials"]).await;
    let started = Instant::now();
    c.batch_execute("BEGIN; SELECT count(*) FROM applications")
        .await
        .unwrap();
    let alive = keep_alive(c.clone(), Duration::from_millis(300));
    let ended = tokio::time::timeout(Duration::from_secs(10), alive)
        .await
        .expect("the old transaction was ended")
        .unwrap();
    let lived = ended.duration_since(started);
    assert!(
        lived >= Duration::from_secs(2) && lived < Duration::from_secs(2) + PERIOD * 3,
        "lived {lived:?}"
    );
    ended_for(&role, "transaction");
    bystander
        .simple_query("SELECT 1")
        .await
        .expect("a session outside a transaction is left alone");
}
