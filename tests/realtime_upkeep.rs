//! Realtime (issue 15) beyond the stream: history past the plan's retention is
//! pruned for every tenant by the quota round (streamed or not); publishing a table
//! writes an audit row; soft delete, restore, purge and the archive's restore treat
//! the event table like the tenant's other data; a backup's restore brings events back
//! in every isolation mode.

mod common;
#[path = "realtime/sse.rs"]
mod sse;

use berqenas::realtime::Place;
use common::{unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn key(t: &Value) -> &str {
    t["api_key"].as_str().unwrap()
}

async fn publish(app: &TestApp, t: &Value, channel: &str, payload: Value) -> i64 {
    let (s, b) = app
        .call_with(
            Method::POST,
            "/api/v1/realtime/publish",
            Some(json!({"channel": channel, "payload": payload})),
            Some(key(t)),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["id"].as_i64().unwrap()
}

async fn ok(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let (s, b) = app.call(method, path, body).await;
    assert!(s.is_success(), "{path}: {s} {b}");
    b
}

/// Where a tenant's events are, and a control-role connection there.
async fn place(
    p: &berqenas::platform::Platform,
    name: &str,
) -> (
    berqenas::store::tenants::Tenant,
    Place,
    tokio_postgres::Client,
) {
    let c = p.pool.get().await.unwrap();
    let t = berqenas::store::tenants::find(&c, name)
        .await
        .unwrap()
        .unwrap();
    let place = Place::of(&t);
    let mut config = p.config.clone();
    if let Some(db) = &place.database {
        config.dbname(db.as_str());
    }
    let client = berqenas::pg::connect(&config).await.unwrap();
    (t, place, client)
}

/// The tenant's events as `(id, payload.n)`, read as the control role.
async fn events(p: &berqenas::platform::Platform, name: &str) -> Vec<(i64, i64)> {
    let (_, place, c) = place(p, name).await;
    place
        .read(&c, i64::MIN)
        .await
        .unwrap()
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_str(e.payload.get()).unwrap();
            (e.id, v["n"].as_i64().unwrap_or(-1))
        })
        .collect()
}

/// Writes an event dated `days_ago`, as a restore would (the control role, its own id).
async fn backdate(p: &berqenas::platform::Platform, name: &str, id: i64, days_ago: i32) {
    let (t, place, c) = place(p, name).await;
    let (cols, vals) = if place.shared {
        (", tenant_id", format!(", '{}'::uuid", t.id))
    } else {
        ("", String::new())
    };
    c.execute(
        &format!(
            "INSERT INTO {}.realtime_events (id, channel, payload, created_at{cols})
             VALUES ($1::int8, 'old', jsonb_build_object('n', $1::int8), now() - make_interval(days => $2::int4){vals})",
            place.schema
        ),
        &[&id, &days_ago],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn the_quota_round_prunes_history_past_retention_for_every_tenant() {
    let app = TestApp::spawn().await;
    let p = common::platform(4).await;
    let mut names = vec![];
    for mode in ["schema", "shared", "database"] {
        let name = unique(&format!("rt-prune-{mode}"));
        let t = app.create_in(&name, mode).await;
        ok(
            &app,
            Method::PUT,
            &format!("/api/v1/tenants/{name}/quotas"),
            Some(json!({"max_data_retention_days": 7})),
        )
        .await;
        backdate(&p, &name, -2, 30).await;
        backdate(&p, &name, -1, 8).await;
        let kept = publish(&app, &t, "orders", json!({"n": 3})).await;
        backdate(&p, &name, -3, 6).await;
        names.push((name, kept));
    }
    // Nobody streams these tenants: the quota round's upkeep prunes them anyway, a
    // page of tenants per round, until it has been round every one.
    let mut rounds = 0;
    loop {
        let done = berqenas::realtime::upkeep::round(&p).await.unwrap();
        rounds += 1;
        let mut left = 0;
        for (name, _) in &names {
            left += events(&p, name)
                .await
                .iter()
                .filter(|(id, _)| *id == -2 || *id == -1)
                .count();
        }
        if left == 0 {
            break;
        }
        assert!(
            done.tenants > 0 && rounds < 1000,
            "old events left after {rounds} rounds"
        );
    }
    for (name, kept) in &names {
        let ids: Vec<i64> = events(&p, name).await.iter().map(|e| e.0).collect();
        assert_eq!(
            ids,
            [-3, *kept],
            "{name}: only events within 7 days are kept"
        );
    }
}

#[tokio::test]
async fn publishing_a_table_writes_an_audit_row() {
    let app = TestApp::spawn().await;
    for mode in ["schema", "database"] {
        let name = unique(&format!("rt-audit-{mode}"));
        app.create_in(&name, mode).await;
        let b = ok(
            &app,
            Method::POST,
            &format!("/api/v1/tenants/{name}/realtime/tables"),
            Some(json!({"table": "applications"})),
        )
        .await;
        assert_eq!(b["channel"], "table.applications");
        let page = ok(
            &app,
            Method::GET,
            &format!("/api/v1/tenants/{name}/audit"),
            None,
        )
        .await;
        let rows: Vec<&Value> = page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "realtime_table_published")
            .collect();
        assert_eq!(rows.len(), 1, "{mode}: {page}");
        assert_eq!(rows[0]["details"]["table"], "applications");
        assert_eq!(rows[0]["details"]["channel"], "table.applications");
        assert_eq!(rows[0]["actor"], "admin");
        // A refused table writes none.
        let (s, _) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/realtime/tables"),
                Some(json!({"table": "nosuch"})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let page = ok(
            &app,
            Method::GET,
            &format!("/api/v1/tenants/{name}/audit"),
            None,
        )
        .await;
        let n = page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "realtime_table_published")
            .count();
        assert_eq!(n, 1, "{mode}");
    }
}

async fn lifecycle(mode: &str) {
    let app = TestApp::spawn().await;
    let p = common::platform(2).await;
    let name = unique(&format!("rt-life-{mode}"));
    let t = app.create_in(&name, mode).await;
    let a = publish(&app, &t, "orders", json!({"n": 1})).await;
    let b = publish(&app, &t, "orders", json!({"n": 2})).await;
    let base = format!("/api/v1/tenants/{name}");

    // Soft delete keeps the events (and takes the tenant's key away); restore gives
    // them back as they were, and publishing goes on after them.
    ok(&app, Method::DELETE, &base, None).await;
    assert_eq!(events(&p, &name).await, [(a, 1), (b, 2)], "{mode}: kept");
    let (s, _) = app
        .call_with(
            Method::POST,
            "/api/v1/realtime/publish",
            Some(json!({"channel": "orders", "payload": {}})),
            Some(key(&t)),
            &[],
        )
        .await;
    assert!(
        s.is_client_error(),
        "{mode}: a deleted tenant publishes nothing"
    );
    ok(&app, Method::POST, &format!("{base}/restore"), None).await;
    let c = ok(
        &app,
        Method::POST,
        &format!("{base}/realtime/publish"),
        Some(json!({"channel": "orders", "payload": {"n": 3}})),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    assert!(c > b);
    assert_eq!(events(&p, &name).await, [(a, 1), (b, 2), (c, 3)], "{mode}");

    // Purged, the events are gone with the rest; the archive's restore brings them
    // back with their ids.
    ok(
        &app,
        Method::DELETE,
        &format!("{base}?purge=now"),
        Some(json!({"confirm": name})),
    )
    .await;
    let gone = {
        let c = p.pool.get().await.unwrap();
        let t = berqenas::store::tenants::find(&c, &name).await.unwrap();
        match t {
            None => true,
            Some(t) => {
                let place = Place::of(&t);
                match &place.database {
                    Some(db) => c
                        .query_opt(
                            "SELECT 1 FROM pg_database WHERE datname = $1",
                            &[&db.as_str()],
                        )
                        .await
                        .unwrap()
                        .is_none(),
                    None => place
                        .read(&c, i64::MIN)
                        .await
                        .map_or(true, |e| e.is_empty()),
                }
            }
        }
    };
    assert!(gone, "{mode}: purge removed the events");
    ok(&app, Method::POST, &format!("{base}/restore"), None).await;
    assert_eq!(
        events(&p, &name).await,
        [(a, 1), (b, 2), (c, 3)],
        "{mode}: the archive brought them back"
    );
    let d = ok(
        &app,
        Method::POST,
        &format!("{base}/realtime/publish"),
        Some(json!({"channel": "orders", "payload": {"n": 4}})),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    assert!(
        d > c,
        "{mode}: publishing goes on after the restored events"
    );
}

#[tokio::test]
async fn delete_restore_and_purge_treat_events_like_the_tenants_other_data_in_schema_mode() {
    lifecycle("schema").await;
}

#[tokio::test]
async fn delete_restore_and_purge_treat_events_like_the_tenants_other_data_in_database_mode() {
    lifecycle("database").await;
}

#[tokio::test]
async fn delete_restore_and_purge_treat_events_like_the_tenants_other_data_in_shared_mode() {
    lifecycle("shared").await;
}

async fn backup_restore(mode: &str) {
    let app = TestApp::spawn().await;
    let p = common::platform(2).await;
    let name = unique(&format!("rt-bk-{mode}"));
    let t = app.create_in(&name, mode).await;
    let a = publish(&app, &t, "orders", json!({"n": 1})).await;
    let b = publish(&app, &t, "orders", json!({"n": 2})).await;
    let backup = ok(
        &app,
        Method::POST,
        &format!("/api/v1/tenants/{name}/backups"),
        None,
    )
    .await;
    publish(&app, &t, "orders", json!({"n": 3})).await;
    let id = backup["id"].as_str().unwrap();
    ok(
        &app,
        Method::POST,
        &format!("/api/v1/tenants/{name}/backups/{id}/restore"),
        None,
    )
    .await;
    assert_eq!(
        events(&p, &name).await,
        [(a, 1), (b, 2)],
        "{mode}: the backup's events, with their ids"
    );
    // A subscriber from the start gets them, then what is published next.
    let mut s = sse::Stream::open(
        &app.http,
        &format!("{}/api/v1/realtime/stream?channel=orders", app.url),
        key(&t),
        Some(0),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:?}"));
    let d = publish(&app, &t, "orders", json!({"n": 4})).await;
    let got: Vec<i64> = s.take(3).await.iter().map(|e| e.id).collect();
    assert_eq!(got, [a, b, d], "{mode}");
}

#[tokio::test]
async fn a_backup_restores_the_event_table_in_database_mode() {
    backup_restore("database").await;
}

#[tokio::test]
async fn a_backup_restores_the_event_table_in_shared_mode() {
    backup_restore("shared").await;
}
