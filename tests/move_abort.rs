//! Issue 18 item 3: "until the cutover an abort leaves the source untouched". A move
//! whose initial copy cannot progress (pg2 runs no table-sync workers) is aborted with
//! `POST /api/v1/operations/{id}/abort`: it is undone, the tenant stays where it was
//! with every row and its logins, nothing of it is left on pg2, no publication, slot or
//! subscription anywhere. Also the refusals of the abort endpoint.

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;
#[path = "support/moving.rs"]
mod moving;

use common::{unique, TestApp};
use extra_cluster::{on, register_pg2};
use reqwest::{Method, StatusCode};
use serde_json::json;

use moving::{follow, leftovers, step_state};

async fn rows(c: &tokio_postgres::Client, schema: &str) -> i64 {
    c.query_one(
        &format!("SELECT count(*) FROM \"{schema}\".applications"),
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_aborted_during_its_copy_is_undone_and_the_source_is_untouched() {
    let app = TestApp::spawn().await;
    let pg2 = register_pg2(&app, "abort-pg2").await;
    // No table-sync worker on pg2: the move's initial copy cannot progress, so the
    // abort is sure to arrive before the cutover.
    let admin2 = on(&pg2, "postgres").await;
    for sql in [
        "ALTER SYSTEM SET max_sync_workers_per_subscription = 0",
        "SELECT pg_reload_conf()",
    ] {
        admin2.batch_execute(sql).await.unwrap();
    }

    let name = unique("mvab");
    let created = app.create_with(json!({"name": name})).await;
    let schema = created["schema"].as_str().unwrap().to_string();
    let src = common::superuser().await;
    src.batch_execute(&format!(
        "INSERT INTO \"{schema}\".applications (name, team, created_by)
         SELECT 'app-' || g, 't', 'test' FROM generate_series(1, 500) g"
    ))
    .await
    .unwrap();
    assert_eq!(rows(&src, &schema).await, 500);

    let (s, op) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/move"),
            Some(json!({"to_server": "pg2"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{op}");
    let id = op["id"].as_str().unwrap().to_string();
    let op = follow(&app, &id, |op| {
        step_state(op, "copy") == "waiting" || op["state"] != "running"
    })
    .await;
    assert_eq!(op["state"], "running", "{op}");

    let (s, aborted) = app
        .call(
            Method::POST,
            &format!("/api/v1/operations/{id}/abort"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{aborted}");
    assert!(aborted["abort_requested_at"].is_string(), "{aborted}");
    let op = follow(&app, &id, |op| op["state"] != "running").await;
    assert_eq!(op["state"], "failed", "{op}");
    assert!(
        op["error"].as_str().unwrap_or_default().contains("aborted"),
        "{op}"
    );
    assert_eq!(step_state(&op, "switch"), "pending", "{op}");

    // The tenant is where it was, active, with every row, and its login works.
    let (_, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(t["server"], "default", "{t}");
    assert_eq!(t["status"], "active", "{t}");
    assert_eq!(rows(&src, &schema).await, 500);
    let cfg: tokio_postgres::Config = created["credentials"]["dsn"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (tenant, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .expect("the tenant logs in on default after the abort");
    tokio::spawn(conn);
    tenant
        .batch_execute(
            "INSERT INTO applications (name, team, created_by) VALUES ('after-abort', 't', 'tenant')",
        )
        .await
        .expect("the tenant writes after the abort");

    // Nothing of it on pg2; no replication objects on either side.
    let stem = format!("tenant_{}", name.replace('-', "_"));
    let on_pg2: i64 = admin2
        .query_one(
            "SELECT (SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1))
                  + (SELECT count(*) FROM pg_namespace WHERE nspname = $2)",
            &[&stem, &schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(on_pg2, 0, "roles or schema of {name} left on pg2");
    assert!(
        leftovers(&src).await.is_empty(),
        "{:?}",
        leftovers(&src).await
    );
    assert!(
        leftovers(&admin2).await.is_empty(),
        "{:?}",
        leftovers(&admin2).await
    );

    // The refusals: each names what is wrong, and the operation is unchanged.
    let abort = |id: String| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                &format!("/api/v1/operations/{id}/abort"),
                None,
            )
            .await
        }
    };
    let (s, b) = abort(id.clone()).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["error"]["code"], "operation_finished", "{b}");
    let (s, b) = abort(uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, b) = abort("not-an-id".into()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["field"], "id", "{b}");
    let after = follow(&app, &id, |_| true).await;
    assert_eq!(after["state"], "failed");
    assert_eq!(after["abort_requested_at"], op["abort_requested_at"]);

    for sql in [
        "ALTER SYSTEM RESET max_sync_workers_per_subscription",
        "SELECT pg_reload_conf()",
    ] {
        admin2.batch_execute(sql).await.unwrap();
    }
}
