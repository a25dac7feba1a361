//! Quotas that PostgreSQL enforces: connection limits, disk quotas that take write
//! privileges away (and give exactly them back), the watchdog behind statement
//! timeouts, atomic usage counters, and the quota API's bad input.

#[path = "../common/mod.rs"]
mod common;
#[path = "../support/state.rs"]
mod support;

use std::time::{Duration, Instant};

use berqenas::api::AppState;
use berqenas::quota;
use common::{audit_count, cli, connect_as, stdout_json, superuser, superuser_in, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_postgres::error::SqlState;

mod disk;
mod usage;

async fn put_quotas(app: &TestApp, name: &str, body: Value) -> (StatusCode, Value) {
    app.call(
        Method::PUT,
        &format!("/api/v1/tenants/{name}/quotas"),
        Some(body),
    )
    .await
}

/// [`put_quotas`] that must succeed; returns the limits now in force.
async fn set_quotas(app: &TestApp, name: &str, body: Value) -> Value {
    let (s, limits) = put_quotas(app, name, body).await;
    assert_eq!(s, StatusCode::OK, "{limits}");
    limits
}

/// The role's connection limit and per-role settings, from the catalog.
async fn role_limits(pg: &tokio_postgres::Client, role: &str) -> (i32, Vec<String>) {
    let row = pg
        .query_one(
            "SELECT rolconnlimit, coalesce((SELECT setconfig FROM pg_db_role_setting s
                                             WHERE s.setrole = r.oid AND s.setdatabase = 0), '{}')
               FROM pg_roles r WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn quotas_are_read_changed_and_applied_to_the_roles() {
    let (app, _) = support::spawn().await;
    let pg = superuser().await;
    let name = unique("quota-put");
    let t = app.create(&name).await;
    let role = t["role"].as_str().unwrap();

    let (s, limits) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}/limits"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{limits}");
    // The free plan's values (seed 002), and the 1GB the tenant was created with.
    assert_eq!(limits["plan"], "free");
    assert_eq!(limits["limits"]["max_connections"], 5);
    assert_eq!(limits["limits"]["api_calls_per_minute"], 100);
    assert_eq!(limits["limits"]["max_llm_tokens_per_day"], 10000);
    assert_eq!(limits["limits"]["realtime_events_per_minute"], 60);
    assert_eq!(limits["overridden"], json!([]));

    let body = set_quotas(
        &app,
        &name,
        json!({"max_connections": 3, "statement_timeout_ms": 4000, "max_agents": 7}),
    )
    .await;
    assert_eq!(body["limits"]["max_connections"], 3);
    assert_eq!(body["limits"]["max_agents"], 7);
    assert_eq!(
        body["overridden"],
        json!(["max_connections", "statement_timeout_ms", "max_agents"])
    );
    let (connlimit, settings) = role_limits(&pg, role).await;
    assert_eq!(connlimit, 3);
    assert!(
        settings.contains(&"statement_timeout=4000".to_string()),
        "{settings:?}"
    );
    assert!(
        settings.contains(&"idle_in_transaction_session_timeout=8000".to_string()),
        "{settings:?}"
    );
    assert_eq!(audit_count(&pg, &name, "quotas_updated").await, 1);
    let details: Value = pg
        .query_one(
            "SELECT details FROM berqenas.audit_log WHERE tenant_name = $1 AND action = 'quotas_updated'",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        details["changes"]["max_connections"],
        json!({"from": 5, "to": 3})
    );

    // null: back to the plan's value.
    let body = set_quotas(&app, &name, json!({"max_connections": null})).await;
    assert_eq!(body["limits"]["max_connections"], 5);
    assert_eq!(role_limits(&pg, role).await.0, 5);

    // The plan change path (PATCH) goes through the same code: overrides survive it.
    let (s, body) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/tenants/{name}"),
            Some(json!({"plan": "starter"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(role_limits(&pg, role).await.0, 20);
    let settings = role_limits(&pg, role).await.1;
    assert!(
        settings.contains(&"statement_timeout=4000".to_string()),
        "{settings:?}"
    );
}

#[tokio::test]
async fn bad_quota_input_names_the_field_and_changes_nothing() {
    let (app, _) = support::spawn().await;
    let pg = superuser().await;
    let name = unique("quota-bad");
    app.create(&name).await;
    let before = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}/limits"), None)
        .await
        .1;
    let cases = [
        (json!({"colour": 1}), Some("colour")),
        (json!({"max_connections": 0}), Some("max_connections")),
        (json!({"max_connections": "many"}), Some("max_connections")),
        (
            json!({"statement_timeout_ms": 5}),
            Some("statement_timeout_ms"),
        ),
        (json!({"db_quota_bytes": 100}), Some("db_quota_bytes")),
        (json!({"force": true}), None),
        (json!({}), None),
    ];
    for (body, field) in cases {
        let (s, err) = put_quotas(&app, &name, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["error"]["field"].as_str(), field, "{body}: {err}");
    }
    let (s, _) = put_quotas(&app, "no-such-tenant", json!({"max_users": 3})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let after = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}/limits"), None)
        .await
        .1;
    assert_eq!(before, after);
    assert_eq!(audit_count(&pg, &name, "quotas_updated").await, 0);

    for (body, field) in [
        (json!({"metric": "tokens", "amount": 1}), "metric"),
        (json!({"metric": "llm_tokens", "amount": 0}), "amount"),
        (json!({"metric": "llm_tokens", "amount": -3}), "amount"),
        (json!({"metric": "llm_tokens"}), "amount"),
        (json!({"metric": "llm_tokens", "amount": 1, "x": 1}), "x"),
    ] {
        let (s, err) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/usage"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["error"]["field"], field, "{body}: {err}");
    }
}

#[tokio::test]
async fn connections_stop_at_the_quota_and_other_tenants_still_connect() {
    let (app, _) = support::spawn().await;
    let name = unique("conn");
    let t = app.create(&name).await;
    let other = app.create(&unique("conn-other")).await;
    set_quotas(&app, &name, json!({"max_connections": 2})).await;

    let dsn = t["credentials"]["dsn"].as_str().unwrap();
    let a = connect_as(&t["credentials"]).await;
    let b = connect_as(&t["credentials"]).await;
    let refused = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .err()
        .expect("a third session is refused");
    assert_eq!(refused.code(), Some(&SqlState::TOO_MANY_CONNECTIONS));
    let o = connect_as(&other["credentials"]).await;
    o.simple_query("SELECT 1").await.unwrap();

    // Lowering it below what is open needs force, and then the newest session ends.
    let (s, err) = put_quotas(&app, &name, json!({"max_connections": 1})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error"]["field"], "max_connections");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 open sessions"),
        "{err}"
    );
    set_quotas(&app, &name, json!({"max_connections": 1, "force": true})).await;
    a.simple_query("SELECT 1").await.unwrap();
    assert!(
        b.simple_query("SELECT 1").await.is_err(),
        "the newest session ended"
    );
}

#[tokio::test]
async fn database_mode_connection_limit_follows_the_quota() {
    let (app, _) = support::spawn().await;
    let pg = superuser().await;
    let name = unique("conn-db");
    let t = app.create_in(&name, "database").await;
    set_quotas(&app, &name, json!({"max_connections": 4})).await;
    let limit: i32 = pg
        .query_one(
            "SELECT datconnlimit FROM pg_database WHERE datname = $1",
            &[&t["database"].as_str().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(limit, 4);
}

#[tokio::test]
async fn users_stop_at_max_users_and_lowering_below_needs_force() {
    let (app, _) = support::spawn().await;
    let name = unique("users-quota");
    app.create(&name).await;
    let add = |email: &'static str| {
        let app = &app;
        let name = name.clone();
        async move {
            app.call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/users"),
                Some(json!({"email": email, "role": "developer"})),
            )
            .await
        }
    };
    // The free plan allows one user.
    assert_eq!(add("a@example.com").await.0, StatusCode::CREATED);
    let (s, err) = add("b@example.com").await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error"]["code"], "quota_exceeded");
    assert_eq!(
        put_quotas(&app, &name, json!({"max_users": 3})).await.0,
        StatusCode::OK
    );
    assert_eq!(add("b@example.com").await.0, StatusCode::CREATED);
    let (s, err) = put_quotas(&app, &name, json!({"max_users": 1})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error"]["code"], "quota_below_usage");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 users"),
        "{err}"
    );
    set_quotas(&app, &name, json!({"max_users": 1, "force": true})).await;
    assert_eq!(add("c@example.com").await.0, StatusCode::CONFLICT);
}

async fn summary(app: &TestApp, name: &str) -> Value {
    let (s, body) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}/usage"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body
}
