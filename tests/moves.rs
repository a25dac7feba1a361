//! Issue 18 item 3: a tenant moved online to another server (docs/moves.md). Two
//! throw-away clusters: the shared one (`default`, the control database) and `pg2`.
//! A client writes every 10 ms through the tenant's own credentials while it moves.

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;
#[path = "support/moving.rs"]
mod moving;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berqenas::pg::cluster::Cluster;
use common::{unique, TestApp};
use extra_cluster::{on, register_pg2};
use reqwest::{Method, StatusCode};
use serde_json::json;

use moving::{
    add_ticks, dsn_now, follow, leftovers, roles_of, rt, serial, step_state, sums, writer,
};

/// The app and pg2, registered once for this binary.
struct World {
    app: TestApp,
    pg2: Cluster,
}

async fn world() -> &'static World {
    static W: tokio::sync::OnceCell<World> = tokio::sync::OnceCell::const_new();
    W.get_or_init(|| async {
        let app = TestApp::spawn().await;
        let pg2 = register_pg2(&app, "mv-pg2").await;
        World { app, pg2 }
    })
    .await
}

/// Moves a tenant of `isolation` to pg2 under a writer; checks the data, the
/// password, and that nothing is left behind.
async fn move_under_load(isolation: &str) {
    let _one = serial().await;
    let w = world().await;
    let app = &w.app;
    let name = unique(&format!("mv{}", &isolation[..1]));
    let created = app
        .create_with(json!({"name": name, "isolation": isolation}))
        .await;
    add_ticks(&created).await;
    let base: tokio_postgres::Config = created["credentials"]["dsn"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // On pg2 a schema-mode tenant lives in the database of pg2's URL.
    let target_db = if isolation == "database" {
        created["database"].as_str().unwrap().to_string()
    } else {
        "postgres".to_string()
    };
    let writes = writer(
        base.clone(),
        name.clone(),
        w.pg2.port(),
        (w.pg2.port(), target_db),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The grace keeps the source copy long enough to compare it with the target's.
    let (s, op) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/move"),
            Some(json!({"to_server": "pg2", "grace": "15s"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{op}");
    assert_eq!(op["kind"], "tenant.move");
    let id = op["id"].as_str().unwrap().to_string();
    let op = follow(app, &id, |op| step_state(op, "login") == "applied").await;
    assert_eq!(step_state(&op, "login"), "applied", "{op}");
    // Some writes land on the target after the cutover.
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    let writes = writes.await.unwrap();
    eprintln!(
        "{isolation} mode: {} writes ({} on pg2 after the cutover), {} retried on a connection error, longest gap {:?}",
        writes.ok.len(),
        writes.at_target,
        writes.retried,
        writes.longest_gap
    );
    assert!(
        writes.other.is_empty(),
        "writes failed otherwise: {:?}",
        writes.other
    );
    assert!(writes.ok.len() > 50, "too few writes: {}", writes.ok.len());
    assert!(
        writes.at_target > 0,
        "no write reached the tenant on pg2: {}",
        writes.last_error
    );

    // The registry and the tenant JSON say pg2; the credentials name its port.
    let (_, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(t["server"], "pg2", "{t}");
    let (_, creds) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/credentials"),
            None,
        )
        .await;
    assert_eq!(creds["port"], w.pg2.port() as i64, "{creds}");

    // Every acknowledged write is on the target; tables equal on both sides.
    let schema = created["schema"].as_str().unwrap().to_string();
    let db = created["database"].as_str().unwrap().to_string();
    let (src, dst) = if isolation == "database" {
        (common::superuser_in(&db).await, on(&w.pg2, &db).await)
    } else {
        (common::superuser().await, on(&w.pg2, "postgres").await)
    };
    let names: Vec<String> = dst
        .query(
            &format!("SELECT name::text FROM \"{schema}\".applications"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for row in &writes.ok {
        assert!(
            names.contains(row),
            "acknowledged write {row} missing on the target"
        );
    }
    // The source stopped at the cutover: what it has, the target has too.
    let src_names: Vec<String> = src
        .query(
            &format!("SELECT name::text FROM \"{schema}\".applications"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(src_names.iter().all(|n| names.contains(n)));
    // The sequence goes on where the source's stopped (no duplicate n).
    let dup: i64 = dst
        .query_one(
            &format!("SELECT count(*) - count(DISTINCT n) FROM \"{schema}\".ticks"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dup, 0);

    // The old password logs in on the target (only host and port changed).
    let cfg = dsn_now(&base, &name, w.pg2.port()).await;
    let (c, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .expect("old password on pg2");
    tokio::spawn(conn);
    let port: String = c
        .query_one("SELECT current_setting('port')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(port, w.pg2.port().to_string());

    // After the grace: nothing of it on the source, no replication objects anywhere.
    let before = sums(&src, &schema, None).await;
    let at_move: Vec<String> = before.clone();
    drop(src);
    let op = follow(app, &id, |_| false).await;
    assert_eq!(op["state"], "succeeded", "{op}");
    let default_pg = common::superuser().await;
    assert!(
        roles_of(&default_pg, &name).await.is_empty(),
        "roles left on default"
    );
    let left: Option<i64> = default_pg
        .query_opt(
            "SELECT 1::int8 FROM pg_namespace WHERE nspname = $1 UNION ALL SELECT 1 FROM pg_database WHERE datname = $2",
            &[&schema, &if isolation == "database" { db.clone() } else { "-".into() }],
        )
        .await
        .unwrap()
        .map(|r| r.get(0));
    assert!(left.is_none(), "schema or database left on default");
    assert!(
        leftovers(&default_pg).await.is_empty(),
        "{:?}",
        leftovers(&default_pg).await
    );
    assert!(leftovers(&dst).await.is_empty());
    let on_pg2 = on(&w.pg2, "postgres").await;
    assert_eq!(roles_of(&on_pg2, &name).await.len(), 6);
    // Tables the writer no longer touches: the target's equal the source's at the end.
    let after: Vec<String> = sums(&dst, &schema, None).await;
    let stable = |v: &[String]| -> Vec<String> {
        v.iter()
            .filter(|l| !l.starts_with("applications") && !l.starts_with("ticks"))
            .cloned()
            .collect()
    };
    assert_eq!(stable(&after), stable(&at_move));
}

#[test]
fn a_schema_mode_tenant_moves_under_writes() {
    rt().block_on(move_under_load("schema"));
}

#[test]
fn a_database_mode_tenant_moves_under_writes() {
    rt().block_on(move_under_load("database"));
}

/// Bad input: a clear error naming the field, and nothing changed.
#[test]
fn bad_moves_are_refused_and_change_nothing() {
    rt().block_on(async {
        let _one = serial().await;
        let w = world().await;
        let app = &w.app;
        let name = unique("mvbad");
        app.create_with(json!({"name": name})).await;
        let state = || async {
            let mut v = common::whole_state(&common::superuser().await).await;
            v.extend(roles_of(&on(&w.pg2, "postgres").await, &name).await);
            v.push(format!("{:?}", leftovers(&common::superuser().await).await));
            v
        };
        let path = format!("/api/v1/tenants/{name}/move");
        let cases = [
            (json!({}), StatusCode::BAD_REQUEST, "to_server"),
            (
                json!({"to_server": "nowhere"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "to_server",
            ),
            (
                json!({"to_server": "default"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "to_server",
            ),
            (
                json!({"to_server": "pg2", "to_isolation": "sideways"}),
                StatusCode::BAD_REQUEST,
                "to_isolation",
            ),
            (
                json!({"to_server": "pg2", "grace": "soon"}),
                StatusCode::BAD_REQUEST,
                "grace",
            ),
        ];
        for (body, status, field) in cases {
            let before = state().await;
            let (s, b) = app.call(Method::POST, &path, Some(body.clone())).await;
            assert_eq!(s, status, "{body}: {b}");
            assert_eq!(b["error"]["field"], field, "{body}: {b}");
            assert!(
                b["error"]["message"].as_str().unwrap().contains(field),
                "{b}"
            );
            assert_eq!(state().await, before, "{body} changed something");
        }
        // An unknown field.
        let (s, _) = app
            .call(Method::POST, &path, Some(json!({"to": "pg2"})))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        // A draining target: 409.
        let (s, _) = app
            .call(
                Method::PATCH,
                "/api/v1/servers/pg2",
                Some(json!({"draining": true})),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let before = state().await;
        let (s, b) = app
            .call(Method::POST, &path, Some(json!({"to_server": "pg2"})))
            .await;
        let after = state().await;
        app.call(
            Method::PATCH,
            "/api/v1/servers/pg2",
            Some(json!({"draining": false})),
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
        assert_eq!(b["error"]["code"], "server_draining", "{b}");
        assert_eq!(after, before);
        // A suspended tenant: 409.
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/suspend"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let before = state().await;
        let (s, b) = app
            .call(Method::POST, &path, Some(json!({"to_server": "pg2"})))
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
        assert_eq!(b["error"]["code"], "tenant_not_active", "{b}");
        assert_eq!(state().await, before);
    });
}
