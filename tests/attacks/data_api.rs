//! Attacks through the data API (`POST /api/v1/query`), made with the tenant's own
//! API key: results too big to hold, session state left for the next request, COPY,
//! and NUL characters.

use std::time::Duration;

use berqenas::dataapi::DataApiConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{scratch_dir, superuser, unique, TestApp};
use crate::process::{Cleanup, Server};
use crate::support;

/// Runs `sql` with a tenant's key; returns the status, body and `Retry-After`.
async fn query_at(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    sql: &str,
    params: Value,
) -> (StatusCode, Value, Option<String>) {
    let res = http
        .post(format!("{url}/api/v1/query"))
        .bearer_auth(key)
        .json(&json!({"sql": sql, "params": params}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        retry,
    )
}

async fn query(app: &TestApp, key: &str, sql: &str, params: Value) -> (StatusCode, Value) {
    let (s, b, _) = query_at(&app.http, &app.url, key, sql, params).await;
    (s, b)
}

fn key(t: &Value) -> &str {
    t["api_key"].as_str().unwrap()
}

/// `VmHWM` (peak) and `VmRSS` of a process, in MB.
fn memory_mb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"));
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb / 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The server's peak memory while it refuses them all, in MB: measured at 18 MB
/// (VmHWM and VmRSS 18 MB before and after the attack), against 1.3 to 2 GB before
/// results were bounded as they arrive (docs/data-api.md states the bound too).
const PEAK_RSS_BOUND_MB: u64 = 200;

/// Four 250 MB cells at once, then one of 900 MB: each is refused with 413 at its
/// message header, so the server never holds the cells, and its peak memory stays
/// small. Measured on the real binary, whose memory is its own.
#[tokio::test]
async fn huge_cells_are_refused_before_they_are_buffered() {
    let _turn = crate::shared().await;
    let dir = scratch_dir("attack-rss");
    let _cleanup = Cleanup(dir.clone());
    let server = Server::start(&dir, &[]).await;
    let name = unique("rss");
    let (s, t) = server
        .post(
            "/api/v1/tenants",
            Some(json!({"name": name, "public_api": true})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    // Room for the five statements at once, and time for PostgreSQL to build the cells.
    server
        .ok(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/quotas"),
            Some(json!({"max_connections": 10, "statement_timeout_ms": 120000})),
        )
        .await;
    let pid = server.child.id().unwrap();
    let http = reqwest::Client::new();
    let (s, body, _) = query_at(&http, &server.url, key(&t), "SELECT 1 AS one", json!([])).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (peak_before, rss_before) = memory_mb(pid);

    // Four 250 MB cells at once (the tenant's pool holds four connections), then one
    // of 900 MB.
    let started = std::time::Instant::now();
    let huge = |mb: u32| {
        let sql = format!("SELECT repeat('z', {mb}*1024*1024)");
        let (http, url, k) = (&http, &server.url, key(&t));
        async move { (mb, query_at(http, url, k, &sql, json!([])).await) }
    };
    let mut answers = futures::future::join_all([250, 250, 250, 250].map(huge)).await;
    answers.push(huge(900).await);
    for (mb, (s, body, _)) in &answers {
        assert_eq!(s, &StatusCode::PAYLOAD_TOO_LARGE, "{mb} MB: {body}");
        assert_eq!(body["error"]["code"], "result_too_large", "{body}");
    }
    println!("five 413s in {:?}", started.elapsed());
    // Not only rows: a notice of 100 MB is refused at its header too.
    let (s, body, _) = query_at(
        &http,
        &server.url,
        key(&t),
        "DO $$BEGIN RAISE NOTICE '%', repeat('n', 100*1024*1024); END$$",
        json!([]),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "notice: {body}");
    let (peak, rss) = memory_mb(pid);
    println!(
        "server memory: VmHWM {peak_before} MB -> {peak} MB, VmRSS {rss_before} MB -> {rss} MB"
    );
    assert!(
        peak < PEAK_RSS_BOUND_MB,
        "the server's peak RSS reached {peak} MB (bound {PEAK_RSS_BOUND_MB} MB)"
    );

    // The refused statements are gone from PostgreSQL (cancelled, their connections
    // closed), and the data API answers as before.
    let (s, body, _) = query_at(
        &http,
        &server.url,
        key(&t),
        "SELECT repeat('y', 1000) AS y, 2 AS two",
        json!([]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0][1], 2, "{body}");
    let pg = crate::process::superuser_in(&dir, None).await;
    let role = t["role"].as_str().unwrap();
    let mut left = i64::MAX;
    for _ in 0..100 {
        left = pg
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND query LIKE '%repeat(''z''%'",
                &[&role],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the refused statements still run");
}

/// With little result memory for all requests, a request that cannot get its share
/// answers 503 `data_api_busy` with Retry-After, whether it waits for its reservation
/// or runs out while its rows arrive; then everything works again.
#[tokio::test]
async fn the_result_memory_of_all_requests_is_bounded() {
    let _turn = crate::shared().await;
    let (app, state) = support::spawn_with(DataApiConfig {
        result_memory: 1 << 20,
        acquire_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let t = app.create_in(&unique("attack-memory"), "schema").await;
    let k = key(&t);
    // 2 MiB of rows, well under the 16 MiB a response may carry, but over all the
    // memory there is.
    let (s, body, retry) = query_at(
        &app.http,
        &app.url,
        k,
        "SELECT repeat('m', 1024 * 1024) FROM generate_series(1, 2)",
        json!([]),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "data_api_busy", "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    // One request holds its reservation (all of it) while it sleeps: the next waits,
    // then gives up.
    let slow = query(&app, k, "SELECT pg_sleep(1)", json!([]));
    let blocked = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        query_at(&app.http, &app.url, k, "SELECT 1", json!([])).await
    };
    let ((s1, b1), (s2, b2, retry)) = tokio::join!(slow, blocked);
    assert_eq!(s1, StatusCode::OK, "{b1}");
    assert_eq!(s2, StatusCode::SERVICE_UNAVAILABLE, "{b2}");
    assert_eq!(b2["error"]["code"], "data_api_busy", "{b2}");
    assert_eq!(retry.as_deref(), Some("1"));
    // All given back.
    assert_eq!(state.data.memory_available(), 1 << 20);
    let (s, body) = query(&app, k, "SELECT repeat('m', 1000)", json!([])).await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

/// One connection per tenant, so that consecutive requests share it.
async fn one_connection_app() -> TestApp {
    support::spawn_with(DataApiConfig {
        per_tenant: 1,
        ..Default::default()
    })
    .await
    .0
}

async fn backend_pid(app: &TestApp, key: &str) -> i64 {
    let (s, body) = query(app, key, "SELECT pg_backend_pid()::int8", json!([])).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["rows"][0][0].as_i64().unwrap()
}

/// `PREPARE` in one request is gone in the next, on the same connection, in every
/// isolation mode.
#[tokio::test]
async fn a_prepared_statement_does_not_outlive_its_request() {
    let _turn = crate::shared().await;
    let app = one_connection_app().await;
    for isolation in ["schema", "database", "shared"] {
        let t = app
            .create_in(&unique(&format!("attack-prepare-{isolation}")), isolation)
            .await;
        let k = key(&t);
        let pid = backend_pid(&app, k).await;
        let (s, body) = query(&app, k, "PREPARE x AS SELECT 42", json!([])).await;
        assert_eq!(s, StatusCode::OK, "{isolation}: {body}");
        let (s, body) = query(&app, k, "EXECUTE x", json!([])).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{isolation}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("26000"),
            "{isolation}: {body}"
        );
        // (The request's own statement is a protocol-level one: `from_sql` is false.)
        let (s, body) = query(
            &app,
            k,
            "SELECT count(*) FROM pg_prepared_statements WHERE from_sql",
            json!([]),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{isolation}: {body}");
        assert_eq!(body["rows"][0][0], 0, "{isolation}: {body}");
        assert_eq!(
            backend_pid(&app, k).await,
            pid,
            "{isolation}: one connection"
        );
    }
}

/// Many requests on one connection, with enums and domains that tokio-postgres looks
/// up with statements it keeps, PREPAREs deallocated after each request: the client's
/// own statements survive every reset and none leak. A tenant that deallocates them
/// itself loses its connection, not its next request.
#[tokio::test]
async fn the_reset_leaves_the_clients_own_statements_working() {
    let _turn = crate::shared().await;
    let app = one_connection_app().await;
    let name = unique("attack-reset");
    let t = app.create_in(&name, "schema").await;
    let k = key(&t);
    let (s, body) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/quotas"),
            Some(json!({"api_calls_per_minute": 1000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let schema = t["schema"].as_str().unwrap();
    let role = t["role"].as_str().unwrap();
    let pg = superuser().await;
    let mut types = String::new();
    for i in 0..4 {
        types.push_str(&format!(
            "CREATE TYPE \"{schema}\".mood{i} AS ENUM ('ok', 'meh');
             CREATE DOMAIN \"{schema}\".pos{i} AS int CHECK (VALUE > 0);"
        ));
    }
    types.push_str(&format!(
        "GRANT USAGE ON SCHEMA \"{schema}\" TO \"{role}\";"
    ));
    pg.batch_execute(&types).await.unwrap();

    let pid = backend_pid(&app, k).await;
    let mut counts = Vec::new();
    for round in 0..4 {
        // A new enum and domain each round: a type lookup after many resets.
        for sql in [
            format!("SELECT 'ok'::mood{round} AS m, $1::pos{round} AS p"),
            format!("SELECT 'meh'::mood{round}, 3::pos{round}, $1::int + 1"),
            "PREPARE p AS SELECT 1".to_string(),
            "SELECT $1::text".to_string(),
        ] {
            for _ in 0..10 {
                let params = if sql.contains("$1") {
                    json!([7])
                } else {
                    json!([])
                };
                let (s, body) = query(&app, k, &sql, params).await;
                assert_eq!(s, StatusCode::OK, "round {round}, {sql}: {body}");
            }
        }
        let (s, body) = query(
            &app,
            k,
            "SELECT count(*) FROM pg_prepared_statements",
            json!([]),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        counts.push(body["rows"][0][0].as_i64().unwrap());
    }
    assert_eq!(backend_pid(&app, k).await, pid, "all on one connection");
    // The count query's own statement and the client's type lookups, no more.
    assert!(
        counts.iter().all(|c| *c == counts[0]) && counts[0] <= 4,
        "statements leak: {counts:?}"
    );
    // The tenant drops the client's statements itself: its connection is replaced,
    // and a new type still works.
    let (s, body) = query(&app, k, "DEALLOCATE ALL", json!([])).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    pg.batch_execute(&format!("CREATE TYPE \"{schema}\".late AS ENUM ('x')"))
        .await
        .unwrap();
    let (s, body) = query(&app, k, "SELECT 'x'::late", json!([])).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_ne!(
        backend_pid(&app, k).await,
        pid,
        "the connection was replaced"
    );
}

/// `COPY` either way is a 400 naming it, refused before it runs, however it is
/// dressed; the data API keeps answering.
#[tokio::test]
async fn copy_is_refused_in_both_directions() {
    let _turn = crate::shared().await;
    let app = one_connection_app().await;
    let t = app.create_in(&unique("attack-copy"), "schema").await;
    let k = key(&t);
    for sql in [
        "COPY applications TO STDOUT",
        "copy applications from stdin",
        "  -- a comment\n/* and /* a nested */ one */ CoPy (SELECT 1) TO STDOUT",
        "; COPY applications (name) FROM STDIN WITH (FORMAT csv)",
    ] {
        let (s, body) = query(&app, k, sql, json!([])).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{sql}: {body}");
        assert_eq!(body["error"]["code"], "unsupported_statement", "{body}");
        assert_eq!(body["error"]["field"], "sql", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("COPY") && message.contains("SELECT") && message.contains("INSERT"),
            "{message}"
        );
        let (s, body) = query(&app, k, "SELECT count(*) FROM applications", json!([])).await;
        assert_eq!(s, StatusCode::OK, "after {sql}: {body}");
    }
}

/// The safety net behind the check of the first keyword: a COPY's reply, as
/// tokio-postgres reports it, is recognised (in both directions) as the data API
/// would see it.
#[tokio::test]
async fn a_copy_reply_is_recognised() {
    let _turn = crate::shared().await;
    for sql in [
        "COPY (SELECT 1) TO STDOUT",
        "COPY pg_temp.never (x) FROM STDIN",
    ] {
        let c = superuser().await;
        c.batch_execute("CREATE TEMP TABLE never (x int)")
            .await
            .unwrap();
        let stmt = c.prepare(sql).await.unwrap();
        let err = match c.query_raw(&stmt, std::iter::empty::<i32>()).await {
            Err(e) => e,
            Ok(stream) => {
                futures::pin_mut!(stream);
                futures::TryStreamExt::try_next(&mut stream)
                    .await
                    .map(|_| ())
                    .unwrap_err()
            }
        };
        assert!(
            berqenas::dataapi::statement::is_copy_reply(&err),
            "{sql}: {err}"
        );
    }
}

/// NUL (`\u0000`) in the statement or in a string parameter is a 400 naming the field,
/// and the data API keeps answering.
#[tokio::test]
async fn nul_characters_are_refused_naming_the_field() {
    let _turn = crate::shared().await;
    let app = one_connection_app().await;
    let t = app.create_in(&unique("attack-nul"), "schema").await;
    let k = key(&t);
    for (sql, params, field) in [
        ("SELECT 1 -- \u{0}", json!([]), "sql"),
        ("SELECT '\u{0}'", json!([]), "sql"),
        ("SELECT $1::text", json!(["a\u{0}b"]), "params[0]"),
        (
            "SELECT $1::text[]",
            json!([["ok", "\u{0}"]]),
            "params[0][1]",
        ),
        ("SELECT $1::int, $2::text", json!([1, "\u{0}"]), "params[1]"),
    ] {
        let (s, body) = query(&app, k, sql, params.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{sql} {params}: {body}");
        assert_eq!(body["error"]["field"], field, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("NUL"),
            "{body}"
        );
        let (s, body) = query(&app, k, "SELECT $1::text", json!(["fine"])).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["rows"][0][0], "fine");
    }
}
