//! Attacks with malformed requests: bad bodies and headers get a clear 4xx naming what
//! is wrong, and change nothing (the whole catalog and registry, and the tenant's own
//! record, limits, users and keys, are compared before and after).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{self, superuser, unique, whole_state, TestApp, TOKEN};

/// One request as an attacker would send it: these bytes, this `Content-Type` (none
/// if `None`), this bearer token.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (StatusCode, Value) {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.url))
        .bearer_auth(token)
        .body(body.to_vec());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Everything about one tenant the API shows, for "changed nothing" beside
/// `whole_state` (which does not see metadata, quotas or keys' details).
async fn tenant_state(app: &TestApp, name: &str) -> Vec<(StatusCode, Value)> {
    let mut out = Vec::new();
    for rest in ["", "/limits", "/users", "/api-keys", "/backup-policy"] {
        out.push(
            app.call(Method::GET, &format!("/api/v1/tenants/{name}{rest}"), None)
                .await,
        );
    }
    out
}

/// A tenant to aim at, and its API key.
async fn victim(app: &TestApp) -> (String, String) {
    let name = unique("victim");
    let t = app.create_in(&name, "schema").await;
    (name, t["api_key"].as_str().unwrap().to_string())
}

/// Every endpoint that reads a body, with a body it would take as JSON.
fn body_endpoints(victim: &str, newcomer: &str) -> Vec<(Method, String, Value)> {
    let t = format!("/api/v1/tenants/{victim}");
    vec![
        (
            Method::POST,
            "/api/v1/tenants".into(),
            json!({"name": newcomer}),
        ),
        (Method::PATCH, t.clone(), json!({"public_api": false})),
        (Method::DELETE, t.clone(), json!({"retention_days": 1})),
        (
            Method::PUT,
            format!("{t}/quotas"),
            json!({"max_connections": 1}),
        ),
        (
            Method::POST,
            format!("{t}/usage"),
            json!({"metric": "llm_tokens", "amount": 1}),
        ),
        (
            Method::POST,
            format!("{t}/users"),
            json!({"email": "eve@example.com", "role": "developer"}),
        ),
        (Method::POST, format!("{t}/suspend"), json!({"reason": "x"})),
        (Method::POST, format!("{t}/api-keys"), json!({"name": "k"})),
        (
            Method::PUT,
            format!("{t}/backup-policy"),
            json!({"schedule": "0 3 * * *"}),
        ),
        (
            Method::POST,
            format!("{t}/backups/0190a1b2-0000-7000-8000-000000000000/restore"),
            json!({"as": newcomer}),
        ),
        (
            Method::POST,
            "/api/v1/migrations".into(),
            json!({"dry_run": false}),
        ),
        (
            Method::PUT,
            "/api/v1/plans/free/backup-policy".into(),
            json!({"schedule": "0 3 * * *"}),
        ),
    ]
}

#[tokio::test]
async fn a_key_given_twice_is_refused_by_its_path_and_changes_nothing() {
    let _only = crate::exclusive().await;
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    let (name, key) = victim(&app).await;
    let newcomer = unique("dup-new");
    let before = (whole_state(&pg).await, tenant_state(&app, &name).await);

    let t = format!("/api/v1/tenants/{name}");
    let cases: Vec<(Method, String, &str, String, &str)> = vec![
        // The last one would win: a plan nobody reviewing the first one would see.
        (
            Method::POST,
            "/api/v1/tenants".into(),
            TOKEN,
            format!(r#"{{"name":"{newcomer}","plan":"free","plan":"custom"}}"#),
            "plan",
        ),
        (
            Method::POST,
            "/api/v1/tenants".into(),
            TOKEN,
            format!(r#"{{"name":"{newcomer}","metadata":{{"a":1,"a":2}}}}"#),
            "metadata.a",
        ),
        (
            Method::PATCH,
            t.clone(),
            TOKEN,
            r#"{"metadata":{"owner":{"team":"a","team":"b"}}}"#.into(),
            "metadata.owner.team",
        ),
        (
            Method::PUT,
            format!("{t}/quotas"),
            TOKEN,
            r#"{"max_connections":3,"max_connections":500}"#.into(),
            "max_connections",
        ),
        (
            Method::POST,
            format!("{t}/users"),
            TOKEN,
            r#"{"email":"eve@example.com","role":"auditor","role":"tenant_admin"}"#.into(),
            "role",
        ),
        (
            Method::POST,
            format!("{t}/suspend"),
            TOKEN,
            r#"{"reason":"a","reason":"b"}"#.into(),
            "reason",
        ),
        (
            Method::DELETE,
            t.clone(),
            TOKEN,
            r#"{"retention_days":30,"retention_days":0}"#.into(),
            "retention_days",
        ),
        (
            Method::POST,
            "/api/v1/migrations".into(),
            TOKEN,
            r#"{"dry_run":true,"dry_run":false}"#.into(),
            "dry_run",
        ),
        // The tenant-key endpoint reads its body the same way.
        (
            Method::POST,
            "/api/v1/query".into(),
            &key,
            r#"{"sql":"SELECT 1","sql":"DELETE FROM applications"}"#.into(),
            "sql",
        ),
        (
            Method::POST,
            "/api/v1/query".into(),
            &key,
            r#"{"sql":"SELECT $1::jsonb","params":[{"k":1,"k":2}]}"#.into(),
            "params[0].k",
        ),
    ];
    for (method, path, token, body, field) in cases {
        let (s, res) = send(
            &app,
            method.clone(),
            &path,
            token,
            Some("application/json"),
            body.as_bytes(),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {path} {body}: {res}");
        assert_eq!(res["error"]["code"], "duplicate_key", "{body}: {res}");
        assert_eq!(res["error"]["field"], field, "{body}: {res}");
        let message = res["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(field) && message.contains("twice"),
            "{body}: {message}"
        );
    }

    assert_eq!(
        (whole_state(&pg).await, tenant_state(&app, &name).await),
        before,
        "a refused body changed something"
    );
    assert!(common::footprint(&pg, &newcomer).await.is_empty());
}

#[tokio::test]
async fn a_body_not_sent_as_json_is_refused_with_415_and_changes_nothing() {
    let _only = crate::exclusive().await;
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    let (name, key) = victim(&app).await;
    let newcomer = unique("ct-new");
    let before = (whole_state(&pg).await, tenant_state(&app, &name).await);

    // A browser posts text/plain and form bodies across origins without asking first.
    let refused = [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        Some("text/json"),
    ];
    let mut endpoints: Vec<(Method, String, &str, Value)> = body_endpoints(&name, &newcomer)
        .into_iter()
        .map(|(m, p, b)| (m, p, TOKEN, b))
        .collect();
    endpoints.push((
        Method::POST,
        "/api/v1/query".into(),
        &key,
        json!({"sql": "DELETE FROM applications"}),
    ));
    for (method, path, token, body) in &endpoints {
        let bytes = serde_json::to_vec(body).unwrap();
        for content_type in refused {
            let (s, res) = send(&app, method.clone(), path, token, content_type, &bytes).await;
            assert_eq!(
                s,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{method} {path} as {content_type:?}: {res}"
            );
            assert_eq!(res["error"]["code"], "unsupported_media_type", "{res}");
            assert_eq!(res["error"]["field"], "Content-Type", "{res}");
            let message = res["error"]["message"].as_str().unwrap();
            assert!(message.contains("application/json"), "{message}");
            if let Some(ct) = content_type {
                assert!(message.contains(ct), "names what was sent: {message}");
            }
        }
    }
    assert_eq!(
        (whole_state(&pg).await, tenant_state(&app, &name).await),
        before,
        "a body not sent as JSON changed something"
    );
    assert!(common::footprint(&pg, &newcomer).await.is_empty());

    // What is allowed still works: parameters and case, +json types, and an empty body
    // without a Content-Type where the body is optional.
    let t = format!("/api/v1/tenants/{name}");
    let (s, res) = send(
        &app,
        Method::PATCH,
        &t,
        TOKEN,
        Some("Application/JSON; charset=UTF-8"),
        br#"{"public_api": false}"#,
    )
    .await;
    assert_eq!(
        (s, &res["public_api"]),
        (StatusCode::OK, &json!(false)),
        "{res}"
    );
    let (s, res) = send(
        &app,
        Method::PATCH,
        &t,
        TOKEN,
        Some("application/merge-patch+json"),
        br#"{"public_api": true}"#,
    )
    .await;
    assert_eq!(
        (s, &res["public_api"]),
        (StatusCode::OK, &json!(true)),
        "{res}"
    );
    for action in ["suspend", "resume"] {
        let (s, res) = send(
            &app,
            Method::POST,
            &format!("{t}/{action}"),
            TOKEN,
            None,
            b"",
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{action} with no body: {res}");
    }
    let (s, res) = send(
        &app,
        Method::POST,
        "/api/v1/query",
        &key,
        Some("application/json"),
        br#"{"sql": "SELECT 1 AS one"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{res}");
    // The CLI sends the header (reqwest's json body).
    let out = common::cli(
        &app,
        &["tenant", "suspend", &name, "--reason", "cli", "-o", "json"],
    )
    .await;
    assert_eq!(common::stdout_json(&out)["status"], "suspended");
}

#[tokio::test]
async fn a_nul_character_is_refused_by_its_path_and_changes_nothing() {
    let _only = crate::exclusive().await;
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    let (name, key) = victim(&app).await;
    let newcomer = unique("nul-new");
    let before = (whole_state(&pg).await, tenant_state(&app, &name).await);

    let t = format!("/api/v1/tenants/{name}");
    // \u0000 as JSON writes it: PostgreSQL stores it in neither text nor jsonb.
    let cases: Vec<(Method, String, &str, String, &str)> = vec![
        (
            Method::POST,
            "/api/v1/tenants".into(),
            TOKEN,
            format!(r#"{{"name":"{newcomer}","metadata":{{"note":"a\u0000b"}}}}"#),
            "metadata.note",
        ),
        (
            Method::POST,
            "/api/v1/tenants".into(),
            TOKEN,
            format!(r#"{{"name":"{newcomer}\u0000"}}"#),
            "name",
        ),
        (
            Method::POST,
            "/api/v1/tenants".into(),
            TOKEN,
            format!(r#"{{"name":"{newcomer}","metadata":{{"k\u0000":1}}}}"#),
            r"metadata.k\u0000",
        ),
        (
            Method::PATCH,
            t.clone(),
            TOKEN,
            r#"{"metadata":{"x":"\u0000"}}"#.into(),
            "metadata.x",
        ),
        (
            Method::PATCH,
            t.clone(),
            TOKEN,
            r#"{"metadata":{"tags":["ok","bad\u0000"]}}"#.into(),
            "metadata.tags[1]",
        ),
        (
            Method::POST,
            format!("{t}/users"),
            TOKEN,
            r#"{"email":"eve\u0000@example.com","role":"developer"}"#.into(),
            "email",
        ),
        (
            Method::POST,
            format!("{t}/suspend"),
            TOKEN,
            r#"{"reason":"over\u0000due"}"#.into(),
            "reason",
        ),
        (
            Method::POST,
            format!("{t}/api-keys"),
            TOKEN,
            r#"{"name":"k\u0000"}"#.into(),
            "name",
        ),
        (
            Method::POST,
            "/api/v1/query".into(),
            &key,
            r#"{"sql":"SELECT '\u0000'"}"#.into(),
            "sql",
        ),
        (
            Method::POST,
            "/api/v1/query".into(),
            &key,
            r#"{"sql":"SELECT $1::text","params":["\u0000"]}"#.into(),
            "params[0]",
        ),
    ];
    for (method, path, token, body, field) in cases {
        let (s, res) = send(
            &app,
            method.clone(),
            &path,
            token,
            Some("application/json"),
            body.as_bytes(),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {path} {body}: {res}");
        assert_eq!(res["error"]["field"], field, "{body}: {res}");
        let message = res["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("NUL") && message.contains(field),
            "{body}: {message}"
        );
    }

    assert_eq!(
        (whole_state(&pg).await, tenant_state(&app, &name).await),
        before,
        "a NUL character changed something"
    );
    assert!(common::footprint(&pg, &newcomer).await.is_empty());
}

#[tokio::test]
async fn a_db_quota_out_of_range_is_refused_on_create_and_patch() {
    let _only = crate::exclusive().await;
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    let (name, _) = victim(&app).await;
    let newcomer = unique("quota-new");
    let before = (whole_state(&pg).await, tenant_state(&app, &name).await);

    // The same range as db_quota_bytes on PUT .../quotas: 1 MiB to 1 PiB.
    for quota in ["512kB", "1048575", "1025TB", "99999TB"] {
        let (s, res) = app
            .call(
                Method::POST,
                "/api/v1/tenants",
                Some(json!({"name": newcomer, "db_quota": quota})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "create {quota}: {res}");
        assert_eq!(res["error"]["field"], "db_quota", "{res}");
        let message = res["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("1MB") && message.contains("1024TB") && message.contains(quota),
            "create {quota}: {message}"
        );
        let (s, res) = app
            .call(
                Method::PATCH,
                &format!("/api/v1/tenants/{name}"),
                Some(json!({"db_quota": quota})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "patch {quota}: {res}");
        assert_eq!(res["error"]["field"], "db_quota", "{res}");
        assert!(res["error"]["message"].as_str().unwrap().contains("1024TB"));
    }
    assert_eq!(
        (whole_state(&pg).await, tenant_state(&app, &name).await),
        before,
        "an out-of-range db_quota changed something"
    );
    assert!(common::footprint(&pg, &newcomer).await.is_empty());

    // Both ends of the range are taken.
    for (quota, bytes) in [("1MB", 1i64 << 20), ("1024TB", 1i64 << 50)] {
        let (s, res) = app
            .call(
                Method::PATCH,
                &format!("/api/v1/tenants/{name}"),
                Some(json!({"db_quota": quota})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{quota}: {res}");
        assert_eq!(res["db_quota_bytes"], bytes);
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let _g = crate::shared().await;
    let app = TestApp::spawn().await;
    let (_, key) = victim(&app).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let admin = format!("{scheme} {TOKEN}");
        let (s, res) = app
            .call_with(
                Method::GET,
                "/api/v1/tenants?limit=1",
                None,
                None,
                &[("authorization", &admin)],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{admin}: {res}");
        let tenant = format!("{scheme} {key}");
        let (s, res) = app
            .call_with(
                Method::GET,
                "/api/v1/me",
                None,
                None,
                &[("authorization", &tenant)],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{scheme} <api key>: {res}");
    }
    // Another scheme, or the token alone, is still no credential.
    for value in [
        format!("Basic {TOKEN}"),
        TOKEN.to_string(),
        format!("Bearer{TOKEN}"),
    ] {
        let (s, _) = app
            .call_with(
                Method::GET,
                "/api/v1/tenants",
                None,
                None,
                &[("authorization", &value)],
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{value}");
    }
    let (s, _) = app
        .call_with(
            Method::GET,
            "/api/v1/me",
            None,
            None,
            &[("authorization", &format!("Token {key}"))],
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}
