//! Issue 18 item 4, `tenant.move.shared`: "until the cutover an abort leaves the source
//! untouched", out of shared mode and into it. The move's first pass (`precopy`) is
//! held on a table lock (a superuser's, on the table it reads), the abort is asked for
//! meanwhile, and the lock let go: the pass finishes, and the engine undoes the move
//! before `switch`. The tenant stays in its mode with every row, its login works, and
//! nothing of the move is left: no target schema out of the pool, no copied pool rows
//! into it.

mod common;
#[path = "support/moving.rs"]
mod moving;

use std::time::Duration;

use common::{connect_as, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use moving::{follow, step_state};

const ROWS: i64 = 50;

async fn fill(t: &Value) {
    connect_as(&t["credentials"])
        .await
        .batch_execute(&format!(
            "INSERT INTO applications (name, team, created_by)
             SELECT 'app-' || g, 't', 'test' FROM generate_series(1, {ROWS}) g"
        ))
        .await
        .unwrap();
}

/// The rows the tenant's own login sees, after a write that shows it still may.
async fn rows_seen(t: &Value) -> i64 {
    let c = connect_as(&t["credentials"]).await;
    let n = c
        .query_one("SELECT count(*) FROM applications", &[])
        .await
        .unwrap()
        .get(0);
    c.batch_execute(
        "INSERT INTO applications (name, team, created_by) VALUES ('after-abort', 't', 'tenant')",
    )
    .await
    .expect("the tenant writes after the abort");
    n
}

/// Moves `t` to `to`, holding its first pass on a superuser's lock of the `locked`
/// table, asks for the abort, lets the pass go: returns the finished operation.
async fn aborted_move(app: &TestApp, t: &Value, to: &str, locked: &str) -> Value {
    let name = t["name"].as_str().unwrap();
    let mut holder = common::superuser().await;
    let lock = holder.transaction().await.unwrap();
    lock.batch_execute(&format!("LOCK TABLE {locked} IN ACCESS EXCLUSIVE MODE"))
        .await
        .unwrap();
    let (s, op) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/move"),
            Some(json!({"to_isolation": to, "grace": "0"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{op}");
    let id = op["id"].as_str().unwrap().to_string();
    let op = follow(app, &id, |op| step_state(op, "precopy") != "pending").await;
    assert_eq!(op["state"], "running", "{op}");
    let (s, asked) = app
        .call(
            Method::POST,
            &format!("/api/v1/operations/{id}/abort"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{asked}");
    // The engine learns of it at its next lease renewal (a third of the 10 s lease).
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(
        follow(app, &id, |_| true).await["state"],
        "running",
        "the first pass waits on the lock"
    );
    lock.rollback().await.unwrap();
    let op = follow(app, &id, |op| op["state"] != "running").await;
    assert_eq!(op["state"], "failed", "{op}");
    assert!(
        op["error"].as_str().unwrap_or_default().contains("aborted"),
        "{op}"
    );
    assert_eq!(step_state(&op, "switch"), "pending", "{op}");
    op
}

async fn registry(name: &str) -> (String, String) {
    let row = common::superuser()
        .await
        .query_one(
            "SELECT isolation::text, status::text FROM berqenas.tenants WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_shared_move_is_undone_both_ways_and_the_source_is_untouched() {
    let app = TestApp::spawn().await;
    let su = common::superuser().await;

    // Out of the pool: the copy reads the pool's table.
    let out = app.create_in(&unique("shab-out"), "shared").await;
    let out_name = out["name"].as_str().unwrap();
    fill(&out).await;
    aborted_move(&app, &out, "schema", "berqenas_shared.applications").await;
    assert_eq!(registry(out_name).await, ("shared".into(), "active".into()));
    let target = format!("tenant_{}", out_name.replace('-', "_"));
    let made: i64 = su
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            &[&target],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(made, 0, "the target schema {target} was left");
    assert_eq!(rows_seen(&out).await, ROWS);

    // Into the pool: the copy reads the tenant's schema.
    let into = app.create_in(&unique("shab-in"), "schema").await;
    let into_name = into["name"].as_str().unwrap();
    fill(&into).await;
    let schema = into["schema"].as_str().unwrap();
    aborted_move(&app, &into, "shared", &format!("\"{schema}\".applications")).await;
    assert_eq!(
        registry(into_name).await,
        ("schema".into(), "active".into())
    );
    let pooled: i64 = su
        .query_one(
            "SELECT count(*) FROM berqenas_shared.applications WHERE tenant_id = $1",
            &[&into["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pooled, 0, "rows copied into the pool were left");
    assert_eq!(rows_seen(&into).await, ROWS);
}
