//! Issue 18 item 1: changes of a tenant on a second server happen there
//! (docs/servers.md): a connection quota refuses the session past it on that server,
//! a rotated password is the one that works there, a disk quota exceeded there stops
//! writes there after a quota round (and freeing space gives them back; in schema mode
//! its temporary tables there are charged, and TEMP is taken there too), `/metrics`
//! shows its disk use, and bad input changes nothing, in schema and database mode.

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;
#[path = "support/state.rs"]
mod support;

use std::time::{Duration, Instant};

use common::{unique, TestApp};
use extra_cluster::{on, register_pg2};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_postgres::error::SqlState;

async fn login(credentials: &Value) -> Result<tokio_postgres::Client, String> {
    let dsn = credentials["dsn"].as_str().unwrap();
    match tokio_postgres::connect(dsn, tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            Ok(client)
        }
        Err(e) => Err(format!("{e:?}")),
    }
}

async fn put_quotas(app: &TestApp, name: &str, body: Value) -> (StatusCode, Value) {
    app.call(
        Method::PUT,
        &format!("/api/v1/tenants/{name}/quotas"),
        Some(body),
    )
    .await
}

async fn connlimit(pg: &tokio_postgres::Client, role: &str) -> i32 {
    pg.query_one(
        "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1",
        &[&role],
    )
    .await
    .unwrap()
    .get(0)
}

fn fill_sql(kb: usize) -> String {
    format!(
        "INSERT INTO user_activity (user_id, action, user_agent)
         SELECT 'u', 'fill', (SELECT string_agg(md5(random()::text || g::text || x::text), '') FROM generate_series(1, 32) x)
           FROM generate_series(1, {kb}) g"
    )
}

async fn can_write(c: &tokio_postgres::Client) -> bool {
    match c
        .batch_execute("INSERT INTO user_activity (user_id, action) VALUES ('u', 'probe')")
        .await
    {
        Ok(()) => true,
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => false,
        Err(e) => panic!("{e:?}"),
    }
}

async fn usage(app: &TestApp, name: &str) -> Value {
    let (s, body) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}/usage"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body
}

/// A temporary table of about 3 MB.
const HOARD: &str = "CREATE TEMP TABLE hoard AS
    SELECT g, md5(g::text) || md5((g * 7)::text) AS v FROM generate_series(1, 40000) g";

async fn storage(app: &TestApp, name: &str) -> i64 {
    let u = usage(app, name).await;
    u["usage"]["storage_bytes"]
        .as_i64()
        .unwrap_or_else(|| panic!("{u}"))
}

/// Waits (up to 10 s) until `role` has at most `n` sessions on the server `pg` is on:
/// a terminated backend leaves `pg_stat_activity` just after its client sees it end.
async fn sessions_down_to(pg: &tokio_postgres::Client, role: &str, n: i64) {
    let started = Instant::now();
    loop {
        let open: i64 = pg
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                &[&role],
            )
            .await
            .unwrap()
            .get(0);
        if open <= n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{role} still has {open} sessions"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The types of the tenant's connection quota events, oldest first.
async fn connection_events(control: &tokio_postgres::Client, name: &str) -> Vec<String> {
    control
        .query(
            "SELECT type FROM berqenas.outbox
              WHERE tenant_name = $1 AND data->>'quota' = 'connections' ORDER BY seq",
            &[&name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The `tenant_resource_usage` gauge of `name`'s `resource` in `/metrics`.
async fn gauge(app: &TestApp, name: &str, resource: &str) -> Option<f64> {
    let text = app
        .http
        .get(format!("{}/metrics", app.url))
        .bearer_auth(support::METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let want = format!("tenant=\"{name}\"");
    let kind = format!("resource_type=\"{resource}\"");
    text.lines()
        .find(|l| l.starts_with("tenant_resource_usage{") && l.contains(&want) && l.contains(&kind))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_of_a_tenant_on_another_server_happen_there() {
    let (app, state) = support::spawn().await;
    let pg2 = register_pg2(&app, "chg-pg2").await;
    let pg2_admin = on(&pg2, "postgres").await;
    let control = common::superuser().await;

    for isolation in ["schema", "database", "shared"] {
        let name = unique(&format!("chg{}", &isolation[..1]));
        let created = app
            .create_with(json!({"name": name, "server": "pg2", "isolation": isolation}))
            .await;
        let creds = created["credentials"].clone();
        let role = creds["user"].as_str().unwrap().to_string();
        let limit_before = connlimit(&pg2_admin, &role).await;

        // --- bad input: refused, naming the field; nothing changed on pg2 ---
        let (s, b) = put_quotas(&app, &name, json!({"max_connections": 0})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(b["error"]["field"], "max_connections", "{b}");
        let (s, b) = put_quotas(&app, &name, json!({})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        let (s, b) = put_quotas(&app, &name, json!({"max_connectionz": 3})).await;
        assert!(s.is_client_error(), "{s} {b}");
        assert_eq!(connlimit(&pg2_admin, &role).await, limit_before);
        let (s, b) = app
            .call(
                Method::PATCH,
                &format!("/api/v1/tenants/{name}"),
                Some(json!({"plan": "no-such-plan"})),
            )
            .await;
        assert!(s.is_client_error(), "{s} {b}");
        assert_eq!(connlimit(&pg2_admin, &role).await, limit_before);

        // --- a connection quota: the 3rd session is refused on pg2 ---
        let (s, b) = put_quotas(&app, &name, json!({"max_connections": 2})).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["limits"]["max_connections"], 2, "{b}");
        assert_eq!(connlimit(&pg2_admin, &role).await, 2);
        let one = login(&creds).await.expect("the first session");
        let two = login(&creds).await.expect("the second session");
        let third = login(&creds).await;
        let Err(refused) = third else {
            panic!("a third session is refused on pg2");
        };
        assert!(refused.contains("too many connections"), "{refused}");
        // The quota round sees its sessions there: exceeded at the limit.
        common::disk_round(&state.platform).await;
        assert_eq!(connection_events(&control, &name).await, ["quota.exceeded"]);
        // Lowering it below the open sessions is refused without force.
        let (s, b) = put_quotas(&app, &name, json!({"max_connections": 1})).await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
        assert_eq!(b["error"]["field"], "max_connections", "{b}");
        assert_eq!(connlimit(&pg2_admin, &role).await, 2);
        drop((one, two));
        // ... and recovered once they have ended, once.
        sessions_down_to(&pg2_admin, &role, 0).await;
        common::disk_round(&state.platform).await;
        common::disk_round(&state.platform).await;
        assert_eq!(
            connection_events(&control, &name).await,
            ["quota.exceeded", "quota.recovered"]
        );
        let (s, b) = put_quotas(&app, &name, json!({"max_connections": 10})).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(connlimit(&pg2_admin, &role).await, 10);

        // --- credential rotation: the old password fails on pg2, the new one works ---
        let (s, rotated) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/credentials/rotate"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{rotated}");
        assert_ne!(rotated["password"], creds["password"]);
        assert_eq!(rotated["port"], creds["port"], "{rotated}");
        let old = login(&creds).await;
        let Err(refused) = old else {
            panic!("the old password no longer works");
        };
        assert!(
            refused.contains("password authentication failed"),
            "{refused}"
        );
        let mut tenant = login(&rotated)
            .await
            .expect("the new password works on pg2");
        let (s, read) = app
            .call(
                Method::GET,
                &format!("/api/v1/tenants/{name}/credentials"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{read}");
        assert_eq!(read["password"], rotated["password"]);

        // --- schema mode: a temporary table its session holds on pg2 is charged ---
        let holder = if isolation == "schema" {
            common::disk_round(&state.platform).await;
            let before = storage(&app, &name).await;
            let holder = login(&rotated).await.expect("a second session");
            holder.batch_execute(HOARD).await.unwrap();
            common::disk_round(&state.platform).await;
            let with_temp = storage(&app, &name).await;
            assert!(
                with_temp >= before + 2_000_000,
                "the temporary table on pg2 is charged ({before} -> {with_temp})"
            );
            // A small one kept: the block must end the session holding it.
            holder
                .batch_execute("DROP TABLE hoard; CREATE TEMP TABLE kept (x int)")
                .await
                .unwrap();
            Some(holder)
        } else {
            None
        };

        // --- a disk quota exceeded on pg2 stops writes there after a round ---
        let (s, b) = put_quotas(&app, &name, json!({"db_quota_bytes": 1 << 20})).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert!(can_write(&tenant).await);
        tenant.batch_execute(&fill_sql(1500)).await.unwrap();
        common::disk_round(&state.platform).await;
        let u = usage(&app, &name).await;
        assert_eq!(u["writes_blocked"], true, "{u}");
        let bytes = u["usage"]["storage_bytes"].as_i64().unwrap();
        assert!(bytes > 1 << 20, "{u}");
        if let Some(holder) = holder {
            // Its login's sessions ended (every session of a role holding a temporary
            // table ends, `tenant` too); a new one gets no TEMP.
            let e = holder
                .simple_query("SELECT count(*) FROM kept")
                .await
                .expect_err("the session holding a temporary table on pg2 ended");
            assert!(e.is_closed() || e.code().is_some(), "{e}");
            let fresh = login(&rotated).await.expect("a new session");
            let e = fresh
                .batch_execute("CREATE TEMP TABLE more (x int)")
                .await
                .expect_err("no TEMP on pg2 while over the quota");
            assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
            tenant = fresh;
            sessions_down_to(&pg2_admin, &role, 1).await;
        }
        assert!(
            !can_write(&tenant).await,
            "writes refused on pg2 while over"
        );
        let n: i64 = tenant
            .query_one("SELECT count(*) FROM user_activity", &[])
            .await
            .expect("reads keep working")
            .get(0);
        assert!(n >= 1500);
        // /metrics: the pg2 tenant's disk use as measured there.
        assert_eq!(gauge(&app, &name, "disk_bytes").await, Some(bytes as f64));
        assert_eq!(gauge(&app, &name, "connections").await, Some(1.0));

        // Freeing space there brings writes back.
        tenant
            .batch_execute("DELETE FROM user_activity")
            .await
            .unwrap();
        let database = created["database"].as_str().unwrap().to_string();
        let owner_db = on(&pg2, &database).await;
        let schema = created["schema"].as_str().unwrap().to_string();
        let started = Instant::now();
        loop {
            owner_db
                .batch_execute(&format!("VACUUM FULL \"{schema}\".user_activity"))
                .await
                .unwrap();
            common::disk_round(&state.platform).await;
            if usage(&app, &name).await["writes_blocked"] == false
                || started.elapsed() > Duration::from_secs(60)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(usage(&app, &name).await["writes_blocked"], false);
        assert!(can_write(&tenant).await, "writes back on pg2");
        if isolation == "schema" {
            tenant
                .batch_execute("CREATE TEMP TABLE again (x int)")
                .await
                .expect("TEMP is back on pg2 under the quota");
        }

        // --- a plan change applies the plan's limits on pg2 ---
        let (s, b) = put_quotas(&app, &name, json!({"max_connections": null})).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let plan_max = b["limits"]["max_connections"].as_i64().unwrap() as i32;
        assert_eq!(connlimit(&pg2_admin, &role).await, plan_max);
        let to = if b["plan"] == "starter" {
            "free"
        } else {
            "starter"
        };
        let (s, t) = app
            .call(
                Method::PATCH,
                &format!("/api/v1/tenants/{name}"),
                Some(json!({"plan": to})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{t}");
        assert_eq!(t["plan"], to, "{t}");
        let (s, l) = app
            .call(Method::GET, &format!("/api/v1/tenants/{name}/limits"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{l}");
        let new_max = l["limits"]["max_connections"].as_i64().unwrap() as i32;
        assert_ne!(new_max, plan_max, "the plans differ in max_connections");
        assert_eq!(connlimit(&pg2_admin, &role).await, new_max);
    }

    // --- activate, and the worker's end of a free plan's trial, on pg2 ---
    let control = common::superuser().await;
    for (i, plan) in ["starter", "free"].iter().enumerate() {
        let name = unique(&format!("chgt{i}"));
        let t = app
            .create_with(json!({"name": name, "server": "pg2", "plan": plan, "trial_days": 7}))
            .await;
        assert_eq!(t["status"], "trial", "{t}");
        let role = t["credentials"]["user"].as_str().unwrap().to_string();
        if *plan == "starter" {
            let (s, b) = app
                .call(
                    Method::POST,
                    &format!("/api/v1/tenants/{name}/activate"),
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
            assert_eq!(b["status"], "active", "{b}");
            let (s, b) = app
                .call(
                    Method::POST,
                    &format!("/api/v1/tenants/{name}/activate"),
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::CONFLICT, "{b}");
            continue;
        }
        control
            .execute(
                "UPDATE berqenas.tenants SET trial_ends_at = now() - interval '1 second' WHERE name = $1",
                &[&name],
            )
            .await
            .unwrap();
        berqenas::workflows::lifecycle::expire_trials(&state.platform)
            .await
            .unwrap();
        let (s, b) = app
            .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "suspended", "{b}");
        let can: bool = pg2_admin
            .query_one(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
                &[&role],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!can, "a free trial's end cuts its login on pg2");
    }
}
