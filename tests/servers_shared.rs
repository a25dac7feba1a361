//! Issue 18 item 1, shared mode: a server other than `default` gets a shared pool of
//! its own (docs/servers.md), built in its database by its first shared-mode tenant,
//! at the template's version. Its tenants' rows never meet another tenant's, there or
//! in `default`'s pool, by SQL or through the data API. (Their lifecycle, backups,
//! users, quotas, migrations and realtime run in the `servers_*` tests, with the other
//! modes; their moves into and out of the pool in tests/servers_shared_moves.rs.)

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;

use common::{connect_as, unique, TestApp};
use extra_cluster::{on, register_pg2};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// `sql` as a tenant, through the data API with its key.
async fn query(app: &TestApp, t: &Value, sql: &str) -> (StatusCode, Value) {
    let res = app
        .http
        .post(format!("{}/api/v1/query", app.url))
        .bearer_auth(t["api_key"].as_str().unwrap())
        .json(&json!({"sql": sql, "params": []}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn names(c: &tokio_postgres::Client) -> Vec<String> {
    c.query("SELECT name::text FROM applications ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A tenant's rows in a pool's `applications`, seen by a superuser.
async fn pooled(c: &tokio_postgres::Client, t: &Value) -> i64 {
    let id: uuid::Uuid = t["id"].as_str().unwrap().parse().unwrap();
    c.query_one(
        "SELECT count(*) FROM berqenas_shared.applications WHERE tenant_id = $1",
        &[&id],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_mode_tenants_on_another_server_share_only_its_pool() {
    let app = TestApp::spawn().await;
    let pg2 = register_pg2(&app, "shr-pg2").await;
    let pg2_admin = on(&pg2, "postgres").await;
    let default_pg = common::superuser().await;
    let pool_there = "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = 'berqenas_shared'";
    assert!(
        pg2_admin
            .query_opt(pool_there, &[])
            .await
            .unwrap()
            .is_none(),
        "no pool on pg2 before its first shared-mode tenant"
    );

    let create = |name: String, server: &'static str| {
        let app = &app;
        async move {
            app.create_with(json!({
                "name": name, "server": server, "isolation": "shared", "public_api": true,
            }))
            .await
        }
    };
    let a = create(unique("shra"), "pg2").await;
    let b = create(unique("shrb"), "pg2").await;
    let home = create(unique("shrh"), "default").await;
    for t in [&a, &b] {
        assert_eq!(t["server"], "pg2", "{t}");
        assert_eq!(t["isolation"], "shared", "{t}");
        assert_eq!(t["schema"], "berqenas_shared", "{t}");
        assert_eq!(
            t["credentials"]["port"].as_u64(),
            Some(u64::from(pg2.port())),
            "{t}"
        );
    }
    // Built by the first one, marked with the template version its tenants are at.
    let marker: Option<String> = pg2_admin.query_one(pool_there, &[]).await.unwrap().get(0);
    assert_eq!(
        marker.as_deref(),
        Some(format!("berqenas template_version={}", a["template_version"]).as_str())
    );

    let (ca, cb, ch) = (
        connect_as(&a["credentials"]).await,
        connect_as(&b["credentials"]).await,
        connect_as(&home["credentials"]).await,
    );
    ca.batch_execute(
        "INSERT INTO applications (name, team, created_by) VALUES ('a-one', 't', 'a'), ('a-two', 't', 'a')",
    )
    .await
    .unwrap();
    cb.batch_execute(
        "INSERT INTO applications (name, team, created_by) VALUES ('b-one', 't', 'b')",
    )
    .await
    .unwrap();
    ch.batch_execute(
        "INSERT INTO applications (name, team, created_by) VALUES ('h-one', 't', 'h')",
    )
    .await
    .unwrap();
    assert_eq!(names(&ca).await, ["a-one", "a-two"]);
    assert_eq!(names(&cb).await, ["b-one"]);
    assert_eq!(names(&ch).await, ["h-one"]);
    // The same name in another tenant's rows: unique per tenant, as on default.
    cb.batch_execute(
        "INSERT INTO applications (name, team, created_by) VALUES ('a-one', 't', 'b')",
    )
    .await
    .unwrap();

    // B can neither change A's rows nor claim to be A.
    let changed = cb
        .execute(
            "UPDATE applications SET team = 'stolen' WHERE name LIKE 'a-%'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1, "only its own a-one");
    let gone = cb
        .execute("DELETE FROM applications WHERE created_by = 'a'", &[])
        .await
        .unwrap();
    assert_eq!(gone, 0);
    cb.batch_execute(&format!(
        "SET app.tenant_id = '{}'",
        a["id"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(
        names(&cb).await,
        ["a-one", "b-one"],
        "a setting spoofs nothing"
    );
    let stolen: i64 = pg2_admin
        .query_one(
            "SELECT count(*) FROM berqenas_shared.applications WHERE team = 'stolen' AND created_by = 'a'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stolen, 0);

    // The rows are in pg2's pool, none in default's; the home tenant's the other way.
    assert_eq!(pooled(&pg2_admin, &a).await, 2);
    assert_eq!(pooled(&default_pg, &a).await, 0);
    assert_eq!(pooled(&default_pg, &home).await, 1);
    assert_eq!(pooled(&pg2_admin, &home).await, 0);

    // The data API runs on pg2 as the tenant: its rows only.
    let (s, r) = query(&app, &a, "SELECT name FROM applications ORDER BY name").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["rows"], json!([["a-one"], ["a-two"]]), "{r}");
    let (s, r) = query(&app, &b, "SELECT count(*) AS n FROM applications").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["rows"], json!([[2]]), "{r}");

    // A tenant that holds a table of pg2's pool (every tenant there may UPDATE it, so
    // may LOCK it) and keeps its transaction busy is ended by the watchdog, which
    // looks at pg2 too; the tenant it held up then writes.
    let platform = common::platform(4).await;
    let locker = std::sync::Arc::new(connect_as(&b["credentials"]).await);
    locker
        .batch_execute("SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0; BEGIN; LOCK TABLE applications IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let busy = {
        let locker = locker.clone();
        tokio::spawn(async move {
            while locker.simple_query("SELECT 1").await.is_ok() {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        })
    };
    let waiting = tokio::spawn(async move {
        ca.batch_execute(
            "INSERT INTO applications (name, team, created_by) VALUES ('a-three', 't', 'a')",
        )
        .await
    });
    let started = std::time::Instant::now();
    let mut acted = Vec::new();
    while !waiting.is_finished() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the held-up tenant still waits; the watchdog did {acted:?}"
        );
        acted.extend(
            berqenas::quota::watchdog::run_once(&platform)
                .await
                .unwrap(),
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    waiting
        .await
        .unwrap()
        .expect("the held-up insert went through");
    busy.await.unwrap();
    let login = b["credentials"]["user"].as_str().unwrap();
    assert!(
        acted
            .iter()
            .any(|x| x.role == login && x.action == "terminate" && x.reason == "blocking"),
        "{acted:?}"
    );
    assert!(
        started.elapsed() >= berqenas::quota::watchdog::BLOCKING_GRACE,
        "ended before its grace"
    );
}
