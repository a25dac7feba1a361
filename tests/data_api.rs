//! The tenant data API: `POST /api/v1/query` with a tenant's API key runs as that
//! tenant's login role, in its isolation, rate limited, with bounded connections.

mod common;
#[path = "support/state.rs"]
mod support;

use std::time::Duration;

use berqenas::dataapi::DataApiConfig;
use common::{superuser, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Runs a statement with a key; returns the status, body and response headers.
async fn query_with(
    app: &TestApp,
    key: &str,
    sql: &str,
    params: Value,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let res = app
        .http
        .post(format!("{}/api/v1/query", app.url))
        .bearer_auth(key)
        .json(&json!({"sql": sql, "params": params}))
        .send()
        .await
        .unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    )
}

async fn query(app: &TestApp, key: &str, sql: &str, params: Value) -> (StatusCode, Value) {
    let (s, b, _) = query_with(app, key, sql, params).await;
    (s, b)
}

fn key(t: &Value) -> &str {
    t["api_key"].as_str().unwrap()
}

async fn each_tenant_sees_only_its_rows(isolation: &str) {
    let (app, _) = support::spawn().await;
    let a = app
        .create_in(&unique(&format!("data-{isolation}-a")), isolation)
        .await;
    let b = app
        .create_in(&unique(&format!("data-{isolation}-b")), isolation)
        .await;
    for (t, app_name) in [(&a, "alpha"), (&b, "beta")] {
        for i in 0..3 {
            let (s, body) = query(
                &app,
                key(t),
                "INSERT INTO applications (name, team, created_by) VALUES ($1, $2, $3)",
                json!([format!("{app_name}-{i}"), "core", "test"]),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{body}");
            assert_eq!(body["row_count"], 1, "{body}");
            assert_eq!(body["columns"], json!([]));
        }
    }
    for (t, app_name) in [(&a, "alpha"), (&b, "beta")] {
        let (s, body) = query(
            &app,
            key(t),
            "SELECT name, team FROM applications ORDER BY name",
            json!([]),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["row_count"], 3, "{body}");
        assert_eq!(
            body["columns"],
            json!([{"name": "name", "type": "varchar"}, {"name": "team", "type": "varchar"}])
        );
        for row in body["rows"].as_array().unwrap() {
            assert!(
                row[0].as_str().unwrap().starts_with(app_name),
                "{isolation}: {row}"
            );
        }
        let (_, who) = query(&app, key(t), "SELECT current_user::text", json!([])).await;
        assert_eq!(
            who["rows"][0][0], t["role"],
            "runs as the tenant's login role"
        );
    }
    // Reaching for the other tenant: a permission error (or no such relation in another
    // database, or no visible row under row security), never its data.
    let other_schema = b["schema"].as_str().unwrap();
    let (s, body) = query(
        &app,
        key(&a),
        &format!("SELECT name FROM {other_schema}.applications"),
        json!([]),
    )
    .await;
    match isolation {
        "schema" => {
            assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
            assert_eq!(body["error"]["code"], "permission_denied");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("permission denied"),
                "{body}"
            );
        }
        "database" => {
            assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
            assert!(body["error"]["message"].as_str().unwrap().contains("42P01"));
        }
        _ => {
            // Shared: the same table, and RLS hides B's rows; its id changes nothing.
            assert_eq!(s, StatusCode::OK, "{body}");
            assert!(body["rows"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r[0].as_str().unwrap().starts_with("alpha")));
            let (s, body) = query(
                &app,
                key(&a),
                "SELECT count(*) FROM applications WHERE tenant_id = $1",
                json!([b["id"]]),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{body}");
            assert_eq!(body["rows"][0][0], 0);
        }
    }
    // The control plane's registry: refused, or (database mode) not even there.
    let (s, body) = query(&app, key(&a), "SELECT * FROM berqenas.tenants", json!([])).await;
    let want = if isolation == "database" {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::FORBIDDEN
    };
    assert_eq!(s, want, "{body}");
}

#[tokio::test]
async fn schema_mode_tenants_see_only_their_rows() {
    each_tenant_sees_only_its_rows("schema").await;
}

#[tokio::test]
async fn database_mode_tenants_see_only_their_rows() {
    each_tenant_sees_only_its_rows("database").await;
}

#[tokio::test]
async fn shared_mode_tenants_see_only_their_rows() {
    each_tenant_sees_only_its_rows("shared").await;
}

#[tokio::test]
async fn keys_are_checked_and_public_api_must_be_on() {
    let (app, state) = support::spawn().await;
    let name = unique("data-keys");
    let t = app.create_in(&name, "schema").await;
    let k = key(&t);
    for bad in [
        "bqk_0000000000000000_nope".to_string(),
        format!("{}x", &k[..k.len() - 1]),
        "not-a-key".to_string(),
        common::TOKEN.to_string(),
    ] {
        let (s, body) = query(&app, &bad, "SELECT 1", json!([])).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{bad}: {body}");
    }
    let (s, _) = app
        .call_with(
            Method::POST,
            "/api/v1/query",
            Some(json!({"sql": "SELECT 1"})),
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Made-up keys never reach a rate limiter, so they cannot grow its memory.
    for i in 0..300 {
        let bogus = format!("bqk_{i:016x}_{}", "s".repeat(43));
        assert_eq!(
            query(&app, &bogus, "SELECT 1", json!([])).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(state.limits.tracked(), 0);
    assert_eq!(
        query(&app, k, "SELECT 1", json!([])).await.0,
        StatusCode::OK
    );
    assert_eq!(state.limits.tracked(), 1);
    let (s, body) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/tenants/{name}"),
            Some(json!({"public_api": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = query(&app, k, "SELECT 1", json!([])).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "public_api_disabled");
}

#[tokio::test]
async fn over_the_rate_is_429_with_retry_after() {
    let (app, _) = support::spawn().await;
    let name = unique("data-rate");
    let t = app.create_in(&name, "schema").await;
    let (s, _) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/quotas"),
            Some(json!({"api_calls_per_minute": 3})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    for remaining in ["2", "1", "0"] {
        let (s, body, h) = query_with(&app, key(&t), "SELECT 1", json!([])).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(h["ratelimit-limit"], "3");
        assert_eq!(h["ratelimit-remaining"], remaining);
        assert!(h.contains_key("ratelimit-reset"));
    }
    let (s, body, h) = query_with(&app, key(&t), "SELECT 1", json!([])).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(h["ratelimit-remaining"], "0");
    // Another tenant is not affected.
    let other = app.create_in(&unique("data-rate-other"), "schema").await;
    assert_eq!(
        query(&app, key(&other), "SELECT 1", json!([])).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn errors_types_and_limits() {
    let (app, _) = support::spawn().await;
    let name = unique("data-errors");
    let t = app.create_in(&name, "schema").await;
    let k = key(&t);
    let (s, _) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/quotas"),
            Some(json!({"statement_timeout_ms": 300, "api_calls_per_minute": 1000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    let (s, body) = query(&app, k, "SELEC 1", json!([])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "sql_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("42601"));
    let (s, body) = query(&app, k, "SELECT $1::int", json!([])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "params");
    let (s, body) = query(&app, k, "SELECT 1; SELECT 2", json!([])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, body) = query(&app, k, "  ", json!([])).await;
    assert_eq!(
        (s, body["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("sql"))
    );
    let (s, body) = app
        .call_with(
            Method::POST,
            "/api/v1/query",
            Some(json!({"sql": "SELECT 1", "tenant": "other"})),
            Some(k),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "tenant");
    let (s, body) = query(&app, k, "SELECT to_tsvector('a b')", json!([])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_type");
    let (s, body) = query(&app, k, "SELECT pg_sleep(3)", json!([])).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "statement_timeout");
    // SET inside a statement cannot lift the timeout for the next request.
    let (s, _) = query(&app, k, "SET statement_timeout = 0", json!([])).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = query(&app, k, "SELECT pg_sleep(1)", json!([])).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    // Nor does a role or search_path change outlive its request.
    let (s, body) = query(&app, k, "SET search_path = public", json!([])).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, body) = query(&app, k, "SELECT count(*) FROM applications", json!([])).await;
    assert_eq!(body["rows"][0][0], 0, "{body}");
    let (s, body) = query(&app, k, "SET ROLE berqenas_tenant_connect", json!([])).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, body) = query(&app, k, "SELECT current_user::text", json!([])).await;
    assert_eq!(body["rows"][0][0], t["role"]);
    // A transaction left open by the statement is closed with the request.
    let (s, _) = query(&app, k, "BEGIN", json!([])).await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, body) = query(
        &app,
        k,
        "SELECT clock_timestamp() - now() < interval '90 milliseconds'",
        json!([]),
    )
    .await;
    assert_eq!(body["rows"][0][0], true, "a new transaction per request");

    // Rows beyond the limit are cut off and say so.
    let (s, body) = query(
        &app,
        k,
        "SELECT g FROM generate_series(1, 1500) g",
        json!([]),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["row_count"], 1000);
    assert_eq!(body["truncated"], true);
    assert_eq!(body["rows"].as_array().unwrap().len(), 1000);

    // Types both ways.
    let (s, body) = query(
        &app,
        k,
        "SELECT $1::int + 1, $2::text, $3::jsonb, $4::numeric * 2, $5::uuid, $6::timestamptz,
                $7::int[], $8::bool, NULL::text, 1.5::float8, '1 day 02:00:00'::interval,
                '\\x0102'::bytea, '10.0.0.1/24'::inet, ARRAY[['a','b'],['c','d']], 9007199254740993::int8",
        json!([
            41,
            "it's \"quoted\"",
            {"k": [1, 2]},
            "12345678901234567890.123456789",
            "7f1f7f4e-1d1c-4a39-9b1a-2a2b2c2d2e2f",
            "2024-01-02T03:04:05Z",
            [1, null, 3],
            true
        ]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"][0],
        json!([
            42,
            "it's \"quoted\"",
            {"k": [1, 2]},
            "24691357802469135780.246913578",
            "7f1f7f4e-1d1c-4a39-9b1a-2a2b2c2d2e2f",
            "2024-01-02T03:04:05+00:00",
            [1, null, 3],
            true,
            null,
            1.5,
            "P1DT2H",
            "\\x0102",
            "10.0.0.1/24",
            [["a", "b"], ["c", "d"]],
            9007199254740993i64
        ])
    );
    let types: Vec<&str> = body["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(&types[..4], &["int4", "text", "jsonb", "numeric"]);
}

#[tokio::test]
async fn connections_stay_under_the_global_cap() {
    let (app, state) = support::spawn_with(DataApiConfig {
        max_connections: 2,
        per_tenant: 1,
        idle: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let pg = superuser().await;
    let tenants: Vec<Value> = futures::future::join_all((0..4).map(|i| {
        let app = &app;
        async move {
            app.create_in(&unique(&format!("data-cap-{i}")), "schema")
                .await
        }
    }))
    .await;
    // One after another: each needs a connection; idle ones of others make room.
    for t in &tenants {
        let (s, body) = query(&app, key(t), "SELECT 1", json!([])).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert!(state.data.stats().0 <= 2);
    }
    // At once, each holding its connection for a while: they queue, none fails.
    let results = futures::future::join_all(
        tenants
            .iter()
            .map(|t| query(&app, key(t), "SELECT pg_sleep(0.3)", json!([]))),
    )
    .await;
    for (s, body) in results {
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let open: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'berqenas-data-api'
               AND usename = ANY($1)",
            &[&tenants
                .iter()
                .map(|t| t["role"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(open <= 2, "{open} connections open");
    // Idle connections close (the worker reaps every 10 s).
    let (open_now, pools) = state.data.stats();
    assert!(open_now <= 2 && pools == 4, "{open_now} {pools}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    state.data.reap();
    assert_eq!(state.data.stats().0, 0);
}

#[tokio::test]
async fn results_over_16_mib_are_refused() {
    let (app, _) = support::spawn().await;
    let name = unique("data-big");
    let t = app.create_in(&name, "schema").await;
    let k = key(&t);
    // Many rows of 1 MB: refused as a whole, not buffered.
    let (s, body) = query(
        &app,
        k,
        "SELECT repeat('x', 1000000) FROM generate_series(1, 1000)",
        json!([]),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "result_too_large");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("16 MiB"));
    // One cell over the limit too.
    let (s, body) = query(&app, k, "SELECT repeat('x', 17000000)", json!([])).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    // Under it: returned.
    let (s, body) = query(
        &app,
        k,
        "SELECT repeat('x', 1000000) FROM generate_series(1, 10)",
        json!([]),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["row_count"], 10);
}

/// The tenant's data API sessions holding advisory locks.
async fn advisory_locks(pg: &tokio_postgres::Client, role: &str) -> i64 {
    pg.query_one(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND a.usename = $1",
        &[&role],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn the_session_is_reset_even_when_commit_fails() {
    let (app, _) = support::spawn_with(DataApiConfig {
        per_tenant: 1,
        ..Default::default()
    })
    .await;
    let pg = superuser().await;
    let t = app.create_in(&unique("data-reset"), "schema").await;
    let (k, role) = (key(&t), t["role"].as_str().unwrap());
    // A table whose key is checked at COMMIT (tenants cannot create tables here), and
    // advisory locks (as a database-mode tenant may take in its own database).
    let (_, body) = query(&app, k, "SELECT current_schema()::text", json!([])).await;
    let schema = body["rows"][0][0].as_str().unwrap().to_string();
    pg.batch_execute(&format!(
        "CREATE TABLE \"{schema}\".uniq (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED);
         INSERT INTO \"{schema}\".uniq VALUES (1);
         GRANT SELECT, INSERT ON \"{schema}\".uniq TO \"{role}\";
         GRANT EXECUTE ON FUNCTION pg_catalog.pg_advisory_lock(bigint) TO \"{role}\""
    ))
    .await
    .unwrap();
    // A session advisory lock (not undone by a rollback), then a COMMIT that fails.
    let (s, body) = query(
        &app,
        k,
        "WITH l AS (SELECT pg_advisory_lock(4242)) INSERT INTO uniq SELECT 1 FROM l",
        json!([]),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("23505"),
        "{body}"
    );
    assert_eq!(
        advisory_locks(&pg, role).await,
        0,
        "the lock outlived its request"
    );
    // Temporary tables and held cursors end with their request too.
    for _ in 0..2 {
        for sql in [
            "CREATE TEMP TABLE scratch (x int)",
            "DECLARE held CURSOR WITH HOLD FOR SELECT 1",
        ] {
            let (s, body) = query(&app, k, sql, json!([])).await;
            assert_eq!(s, StatusCode::OK, "{sql}: {body}");
        }
    }
}

#[tokio::test]
async fn a_cancelled_request_is_never_committed() {
    let (app, _) = support::spawn_with(DataApiConfig {
        per_tenant: 1,
        ..Default::default()
    })
    .await;
    let t = app.create_in(&unique("data-cancel"), "schema").await;
    let k = key(&t);
    // The client gives up while the statement, which wrote a row, still runs: the
    // handler is dropped between the statement and its COMMIT.
    let res = app
        .http
        .post(format!("{}/api/v1/query", app.url))
        .bearer_auth(k)
        .timeout(Duration::from_millis(300))
        .json(
            &json!({"sql": "WITH ins AS (INSERT INTO applications (name, team, created_by)
                                VALUES ('cancelled', 'core', 'test') RETURNING 1)
                              SELECT pg_sleep(1.5) FROM ins"}),
        )
        .send()
        .await;
    assert!(res.is_err(), "the request should time out");
    // The next request on the same (only) connection commits its own work only.
    let (s, body) = query(&app, k, "SELECT 1", json!([])).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (s, body) = query(
        &app,
        k,
        "SELECT count(*) FROM applications WHERE name = 'cancelled'",
        json!([]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"][0][0], 0,
        "the cancelled request's write was committed"
    );
}
