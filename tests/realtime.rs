//! Realtime per tenant (issue 15): every publish path (the API with the tenant's key,
//! the admin API, SQL's `realtime_publish`, a published table's trigger) in every
//! isolation mode reaches the tenant's stream and no other tenant's; resuming with
//! `Last-Event-ID` has no gap and no duplicate; the per-minute and per-hour limits
//! refuse exactly the events over them on every path in every mode (database mode:
//! counted by the gate inside the tenant's own database), out of the tenant's reach; a
//! subscriber over `realtime_max_subscribers` is refused; suspend ends the stream;
//! bad input names the field and changes nothing. `realtime_process.rs` kills the
//! real server mid-publish.

mod common;
#[path = "realtime/sse.rs"]
mod sse;

use common::{connect_as, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sse::Stream;

fn key(t: &Value) -> &str {
    t["api_key"].as_str().unwrap()
}

async fn publish(app: &TestApp, t: &Value, channel: &str, payload: Value) -> (StatusCode, Value) {
    app.call_with(
        Method::POST,
        "/api/v1/realtime/publish",
        Some(json!({"channel": channel, "payload": payload})),
        Some(key(t)),
        &[],
    )
    .await
}

async fn stream(app: &TestApp, t: &Value, query: &str, last: Option<i64>) -> Stream {
    Stream::open(
        &app.http,
        &format!("{}/api/v1/realtime/stream?{query}", app.url),
        key(t),
        last,
    )
    .await
    .unwrap_or_else(|(s, b)| panic!("stream refused: {s} {b}"))
}

async fn set_quotas(app: &TestApp, name: &str, body: Value) {
    let (s, b) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/quotas"),
            Some(body),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

/// Waits out the end of a clock minute (and hour), so a test's counted events all
/// fall in one window.
async fn fresh_window() {
    use chrono::Timelike;
    let now = chrono::Utc::now();
    if now.second() >= 45 {
        tokio::time::sleep(std::time::Duration::from_secs(61 - now.second() as u64)).await;
    }
}

async fn each_path_reaches_the_stream(mode: &str) {
    let app = TestApp::spawn().await;
    let a_name = unique(&format!("rt-{mode}-a"));
    let a = app.create_in(&a_name, mode).await;
    let b = app.create_in(&unique(&format!("rt-{mode}-b")), mode).await;
    let mut on_a = stream(&app, &a, "channel=orders&channel=table.*", None).await;
    // Another tenant asking for the same channel names.
    let mut on_b = stream(&app, &b, "channel=orders&channel=table.*&channel=*", None).await;

    let (s, p1) = publish(&app, &a, "orders", json!({"path": "api"})).await;
    assert_eq!(s, StatusCode::CREATED, "{p1}");
    let (s, p2) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{a_name}/realtime/publish"),
            Some(json!({"channel": "orders", "payload": {"path": "admin"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p2}");
    let sql = connect_as(&a["credentials"]).await;
    sql.execute(
        "SELECT realtime_publish('orders', '{\"path\": \"sql\"}')",
        &[],
    )
    .await
    .unwrap();
    let (s, t) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{a_name}/realtime/tables"),
            Some(json!({"table": "applications"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(t["channel"], "table.applications");
    sql.execute(
        "INSERT INTO applications (name, team, created_by) VALUES ('app1', 'core', 'test')",
        &[],
    )
    .await
    .unwrap();
    // Not on a subscribed channel: filtered out.
    publish(&app, &a, "other", json!({})).await;

    let got = on_a.take(4).await;
    let paths: Vec<String> = got
        .iter()
        .map(|e| {
            e.data["payload"]["path"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| {
                    format!(
                        "{}:{}",
                        e.data["channel"].as_str().unwrap(),
                        e.data["payload"]["op"]
                    )
                })
        })
        .collect();
    assert_eq!(
        paths,
        ["api", "admin", "sql", "table.applications:\"INSERT\""],
        "{mode}"
    );
    assert_eq!(got[0].id, p1["id"].as_i64().unwrap());
    assert_eq!(got[1].id, p2["id"].as_i64().unwrap());
    assert!(
        got.windows(2).all(|w| w[0].id < w[1].id),
        "{mode}: in id order"
    );
    assert_eq!(got[3].data["payload"]["record"]["name"], "app1");

    // Tenant B receives only its own event, whatever it subscribed to.
    let (s, mine) = publish(&app, &b, "orders", json!({"mine": true})).await;
    assert_eq!(s, StatusCode::CREATED);
    let first = on_b.take(1).await;
    assert_eq!(
        first[0].id,
        mine["id"].as_i64().unwrap(),
        "{mode}: B saw A's events"
    );
    assert_eq!(first[0].data["payload"], json!({"mine": true}));
    // B's change of the same table is not published: B did not ask for it.
    connect_as(&b["credentials"])
        .await
        .execute(
            "INSERT INTO applications (name, team, created_by) VALUES ('app1', 'core', 'test')",
            &[],
        )
        .await
        .unwrap();
    let (_, last) = publish(&app, &b, "orders", json!({"n": 2})).await;
    assert_eq!(on_b.take(1).await[0].id, last["id"].as_i64().unwrap());
}

#[tokio::test]
async fn each_publish_path_reaches_the_stream_in_schema_mode() {
    each_path_reaches_the_stream("schema").await;
}

#[tokio::test]
async fn each_publish_path_reaches_the_stream_in_database_mode() {
    each_path_reaches_the_stream("database").await;
}

#[tokio::test]
async fn each_publish_path_reaches_the_stream_in_shared_mode() {
    each_path_reaches_the_stream("shared").await;
}

async fn resume(mode: &str) {
    let app = TestApp::spawn().await;
    let t = app
        .create_in(&unique(&format!("rt-resume-{mode}")), mode)
        .await;
    let mut s1 = stream(&app, &t, "channel=orders.*", None).await;
    let mut ids = vec![];
    for n in 1..=3 {
        let (s, b) = publish(&app, &t, "orders.eu", json!({"n": n})).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        ids.push(b["id"].as_i64().unwrap());
    }
    let first = s1.take(2).await;
    drop(s1);
    // Published while nobody listens.
    for n in 4..=5 {
        let (_, b) = publish(&app, &t, "orders.us", json!({"n": n})).await;
        ids.push(b["id"].as_i64().unwrap());
    }
    let mut s2 = stream(&app, &t, "channel=orders.*", Some(first[1].id)).await;
    let (_, b) = publish(&app, &t, "orders.eu", json!({"n": 6})).await;
    ids.push(b["id"].as_i64().unwrap());
    let rest = s2.take(4).await;
    let ns: Vec<i64> = first
        .iter()
        .chain(&rest)
        .map(|e| e.data["payload"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [1, 2, 3, 4, 5, 6], "{mode}: no gap, no duplicate");
    let seen: Vec<i64> = first.iter().chain(&rest).map(|e| e.id).collect();
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn resuming_with_last_event_id_has_no_gap_and_no_duplicate() {
    resume("schema").await;
    resume("shared").await;
    resume("database").await;
}

/// Publishes once through each path; returns whether each was admitted, and checks
/// a refusal says which limit and (API) when to retry.
async fn every_path(
    app: &TestApp,
    t: &Value,
    sql: &tokio_postgres::Client,
    limit: &str,
) -> [bool; 3] {
    let (s, b) = publish(app, t, "orders", json!({})).await;
    let api = match s {
        StatusCode::CREATED => true,
        StatusCode::TOO_MANY_REQUESTS => {
            assert!(
                b["error"]["message"].as_str().unwrap().contains(limit),
                "{b}"
            );
            false
        }
        other => panic!("{other} {b}"),
    };
    let fn_path = match sql
        .execute("SELECT realtime_publish('orders', '{}')", &[])
        .await
    {
        Ok(_) => true,
        Err(e) => {
            let db = e.as_db_error().expect("a database error");
            assert_eq!(db.code().code(), "53400");
            assert!(db.message().contains(limit), "{}", db.message());
            false
        }
    };
    let trigger = match sql
        .execute(
            "INSERT INTO applications (name, team, created_by) VALUES (gen_random_uuid()::text, 't', 't')",
            &[],
        )
        .await
    {
        Ok(_) => true,
        Err(e) => {
            assert!(e.as_db_error().unwrap().message().contains(limit), "{e:?}");
            false
        }
    };
    [api, fn_path, trigger]
}

async fn count(sql: &tokio_postgres::Client, table: &str) -> i64 {
    sql.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

async fn limits(mode: &str) {
    let app = TestApp::spawn().await;
    let name = unique(&format!("rt-limit-{mode}"));
    let t = app.create_in(&name, mode).await;
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/realtime/tables"),
            Some(json!({"table": "applications"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let sql = connect_as(&t["credentials"]).await;
    fresh_window().await;
    set_quotas(&app, &name, json!({"realtime_events_per_minute": 3})).await;
    assert_eq!(
        every_path(&app, &t, &sql, "per_minute").await,
        [true; 3],
        "{mode}"
    );
    assert_eq!(
        every_path(&app, &t, &sql, "realtime_events_per_minute").await,
        [false; 3],
        "{mode}"
    );
    assert_eq!(
        count(&sql, "realtime_events").await,
        3,
        "{mode}: refused events left nothing"
    );
    assert_eq!(
        count(&sql, "applications").await,
        1,
        "{mode}: the refused change rolled back"
    );
    let (_, res) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}/usage"), None)
        .await;
    assert_eq!(res["usage"]["realtime_events"], 3, "{res}");
    assert_eq!(res["usage"]["realtime_events_hour"], 3, "{res}");
    let (s, res) = app
        .call_with(
            Method::POST,
            "/api/v1/realtime/publish",
            Some(json!({"channel": "orders", "payload": {}})),
            Some(key(&t)),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{res}");
    // The quota round sees the tenant at its limit: one quota.exceeded, through the outbox
    // (database mode: once its upkeep has mirrored the count out of the tenant's database).
    let platform = common::platform(2).await;
    let id: uuid::Uuid = t["id"].as_str().unwrap().parse().unwrap();
    berqenas::realtime::upkeep::tenant(&platform, id)
        .await
        .unwrap();
    berqenas::quota::breaches::realtime_round(&platform)
        .await
        .unwrap();
    berqenas::quota::breaches::realtime_round(&platform)
        .await
        .unwrap();
    let (_, page) = app
        .call(
            Method::GET,
            &format!("/api/v1/events?tenant={name}&limit=100"),
            None,
        )
        .await;
    let crossed: Vec<&Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["quota"] == "realtime")
        .collect();
    assert_eq!(crossed.len(), 1, "{page}");
    assert_eq!(crossed[0]["type"], "quota.exceeded");
    assert_eq!(
        crossed[0]["data"]["limit_name"],
        "realtime_events_per_minute"
    );
    assert_eq!(crossed[0]["data"]["limit"], 3);

    // Per hour: 3 this hour already; 2 more, then nothing on any path.
    set_quotas(
        &app,
        &name,
        json!({"realtime_events_per_minute": 1000, "realtime_events_per_hour": 5}),
    )
    .await;
    let first = every_path(&app, &t, &sql, "realtime_events_per_hour").await;
    assert_eq!(first, [true, true, false], "{mode}");
    assert_eq!(
        every_path(&app, &t, &sql, "realtime_events_per_hour").await,
        [false; 3],
        "{mode}"
    );
    assert_eq!(count(&sql, "realtime_events").await, 5);

    // The limits and counters are out of the tenant's reach (database mode: the gate
    // inside its own database).
    for attack in [
        "UPDATE berqenas_realtime.counters SET events = 0",
        "UPDATE berqenas_realtime.limits SET per_minute = 1000000, per_hour = 1000000",
        "DROP SCHEMA berqenas_realtime CASCADE",
        "ALTER SCHEMA berqenas_realtime RENAME TO gone",
        "CREATE OR REPLACE FUNCTION berqenas_realtime.admit() RETURNS void LANGUAGE sql AS 'SELECT'",
        "CREATE SCHEMA berqenas_realtime2",
        "UPDATE berqenas.realtime_counters SET events = 0",
        "UPDATE berqenas.tenant_quotas SET realtime_events_per_hour = 1000000",
        "DROP TRIGGER realtime_gate ON realtime_events",
        "ALTER TABLE realtime_events DISABLE TRIGGER realtime_gate",
        "CREATE OR REPLACE FUNCTION realtime_gate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    ] {
        assert!(sql.batch_execute(attack).await.is_err(), "{mode}: {attack}");
    }
    assert!(sql
        .execute("SELECT realtime_publish('orders', '{}')", &[])
        .await
        .is_err());
}

#[tokio::test]
async fn limits_refuse_exactly_the_events_over_them_on_every_path_in_schema_mode() {
    limits("schema").await;
}

#[tokio::test]
async fn limits_refuse_exactly_the_events_over_them_on_every_path_in_shared_mode() {
    limits("shared").await;
}

#[tokio::test]
async fn limits_refuse_exactly_the_events_over_them_on_every_path_in_database_mode() {
    limits("database").await;
}

#[tokio::test]
async fn a_subscriber_over_max_subscribers_is_refused() {
    let app = TestApp::spawn().await;
    let name = unique("rt-subs");
    let t = app.create_in(&name, "schema").await;
    set_quotas(&app, &name, json!({"realtime_max_subscribers": 2})).await;
    let one = stream(&app, &t, "channel=a", None).await;
    let _two = stream(&app, &t, "channel=b", None).await;
    let url = format!("{}/api/v1/realtime/stream?channel=c", app.url);
    let (s, b) = Stream::open(&app.http, &url, key(&t), None)
        .await
        .err()
        .expect("refused");
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(b["error"]["code"], "realtime_max_subscribers", "{b}");
    drop(one);
    // The closed stream's place is given back once the server sees it gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if Stream::open(&app.http, &url, key(&t), None).await.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the closed stream was never given back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn suspend_ends_the_stream_and_refuses_publishes() {
    let app = TestApp::spawn().await;
    let name = unique("rt-suspend");
    let t = app.create_in(&name, "schema").await;
    let mut s = stream(&app, &t, "channel=orders", None).await;
    publish(&app, &t, "orders", json!({"n": 1})).await;
    assert_eq!(s.take(1).await.len(), 1);
    let (st, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/suspend"),
            Some(json!({})),
        )
        .await;
    assert!(st.is_success(), "{b}");
    assert!(s.ends().await, "the stream ended");
    let (st, _) = publish(&app, &t, "orders", json!({"n": 2})).await;
    assert!(st.is_client_error(), "{st}");
    let (st, _) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/realtime/publish"),
            Some(json!({"channel": "orders", "payload": {}})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
}

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let name = unique("rt-bad");
    let t = app.create_in(&name, "schema").await;
    let sql = connect_as(&t["credentials"]).await;
    let cases = [
        (json!({"channel": "bad name", "payload": {}}), "channel"),
        (json!({"channel": "", "payload": {}}), "channel"),
        (
            json!({"channel": "a", "payload": {"x": "y".repeat(70_000)}}),
            "payload",
        ),
    ];
    for (body, field) in cases {
        let (s, b) = app
            .call_with(
                Method::POST,
                "/api/v1/realtime/publish",
                Some(body),
                Some(key(&t)),
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    for (table, needle) in [
        ("nosuch", "no table"),
        ("Bad;Name", "lower-case"),
        ("realtime_events", "realtime itself"),
    ] {
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/realtime/tables"),
                Some(json!({"table": table})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(b["error"]["field"], "table");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(needle),
            "{b}"
        );
    }
    let url = |q: &str| format!("{}/api/v1/realtime/stream?{q}", app.url);
    for (q, last, field) in [
        ("channel=a%20b", None, "channel"),
        ("", None, "channel"),
        ("chanel=a", None, "chanel"),
        ("channel=a", Some("x"), "Last-Event-ID"),
    ] {
        let mut req = app.http.get(url(q)).bearer_auth(key(&t));
        if let Some(l) = last {
            req = req.header("last-event-id", l);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let b: Value = res.json().await.unwrap();
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    assert_eq!(count(&sql, "realtime_events").await, 0);
    assert_eq!(count(&sql, "realtime_tables").await, 0);
    let triggers: i64 = sql
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'realtime_publish'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(triggers, 0);
}

#[tokio::test]
async fn a_backup_restores_the_event_table() {
    let app = TestApp::spawn().await;
    let name = unique("rt-backup");
    let t = app.create_in(&name, "schema").await;
    for n in 1..=2 {
        publish(&app, &t, "orders", json!({"n": n})).await;
    }
    let (s, backup) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/backups"),
            None,
        )
        .await;
    assert!(s.is_success(), "{backup}");
    publish(&app, &t, "orders", json!({"n": 3})).await;
    let id = backup["id"].as_str().unwrap();
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/backups/{id}/restore"),
            None,
        )
        .await;
    assert!(s.is_success(), "{b}");
    let sql = connect_as(&t["credentials"]).await;
    let ns: Vec<i64> = sql
        .query(
            "SELECT (payload->>'n')::bigint FROM realtime_events ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ns, [1, 2]);
    // And publishing goes on after the restored events.
    let mut s = stream(&app, &t, "channel=orders", Some(0)).await;
    let (_, p) = publish(&app, &t, "orders", json!({"n": 4})).await;
    let got = s.take(3).await;
    assert_eq!(got[2].id, p["id"].as_i64().unwrap());
}

#[tokio::test]
async fn the_cli_publishes_and_tails_as_the_admin() {
    use tokio::io::AsyncBufReadExt;
    let app = TestApp::spawn().await;
    let name = unique("rt-cli");
    app.create_in(&name, "schema").await;
    let mut tail = tokio::process::Command::new(env!("CARGO_BIN_EXE_berqenas"))
        .args(["realtime", "tail", &name, "--channel", "orders"])
        .env_remove("BERQENAS_DATA_DIR")
        .env("BERQENAS_URL", &app.url)
        .env("BERQENAS_ADMIN_TOKEN", common::TOKEN)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(tail.stdout.take().unwrap()).lines();
    // The tail is connected once its feed has a subscriber.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut published = None;
    while published.is_none() {
        let out = common::cli(
            &app,
            &[
                "realtime",
                "publish",
                &name,
                "--channel",
                "orders",
                r#"{"id":1}"#,
                "-o",
                "json",
            ],
        )
        .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p = common::stdout_json(&out);
        if let Ok(Ok(Some(line))) =
            tokio::time::timeout(std::time::Duration::from_secs(2), lines.next_line()).await
        {
            let e: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(e["payload"], json!({"id": 1}));
            assert_eq!(e["channel"], "orders");
            assert!(e["id"].as_i64().unwrap() <= p["id"].as_i64().unwrap());
            published = Some(e);
        }
        assert!(std::time::Instant::now() < deadline, "tail printed nothing");
    }
    let out = common::cli(
        &app,
        &["realtime", "publish", &name, "--channel", "bad name", "{}"],
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("channel"));
}
