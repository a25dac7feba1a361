//! Tenant API keys: created keys work, listing never shows a secret, a revoked or
//! expired key gets 401 on its next request, rotation keeps the old key until its
//! overlap ends, and bad input is a 400 naming the field that changes nothing; an idempotent
//! replay of a create repeats its secrets, sealed at rest and forgotten after a day.

mod common;

use std::time::{Duration, Instant};

use common::{audit_actions, cli, stdout_json, superuser, unique, TestApp, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Polls until the key is refused (expiry is checked against the database's clock).
async fn refused_within(app: &TestApp, key: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if app.me(key).await == StatusCode::UNAUTHORIZED {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The tenant's audited API key actions, oldest first.
async fn actions(name: &str) -> Vec<String> {
    let mut all = audit_actions(name).await;
    all.retain(|a| a.starts_with("api_key"));
    all
}

#[tokio::test]
async fn create_list_revoke() {
    let app = TestApp::spawn().await;
    let name = unique("keys");
    let t = app.create(&name).await;
    let keys = format!("/api/v1/tenants/{name}/api-keys");

    let (s, k) = app
        .call(
            Method::POST,
            &keys,
            Some(json!({"name": "ci", "expires_in": "30d"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let plain = k["api_key"].as_str().unwrap().to_string();
    assert!(plain.starts_with(k["prefix"].as_str().unwrap()), "{k}");
    assert_eq!(k["name"], "ci");
    assert_eq!(k["state"], "active");
    let expires = chrono::DateTime::parse_from_rfc3339(k["expires_at"].as_str().unwrap()).unwrap();
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
    assert!((29 * 24..=30 * 24).contains(&days), "{days}");
    assert_eq!(app.me(&plain).await, StatusCode::OK);
    // Without a body: no name, no expiry.
    let (s, k2) = app.call(Method::POST, &keys, None).await;
    assert_eq!(s, StatusCode::CREATED, "{k2}");
    assert!(k2["name"].is_null() && k2["expires_at"].is_null());
    assert_eq!(
        app.me(k2["api_key"].as_str().unwrap()).await,
        StatusCode::OK
    );

    let (s, list) = app.call(Method::GET, &keys, None).await;
    assert_eq!(s, StatusCode::OK);
    let listed = list["api_keys"].as_array().unwrap();
    assert_eq!(
        listed.len(),
        3,
        "the onboarding key and two new ones: {list}"
    );
    assert_eq!(listed[0]["id"], k2["id"], "newest first");
    let text = list.to_string();
    for secret in [
        &plain,
        k2["api_key"].as_str().unwrap(),
        t["api_key"].as_str().unwrap(),
    ] {
        // bqk_ + 16 hex + _ : the rest is the secret (which may itself hold a '_').
        assert!(!text.contains(&secret[21..]), "a secret is listed");
    }
    for k in listed {
        let mut fields: Vec<&str> = k.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "created_at",
                "expires_at",
                "id",
                "name",
                "prefix",
                "replaced_by",
                "revoked_at",
                "state"
            ]
        );
    }

    // Revoke by id: refused on the very next request.
    let id = k["id"].as_str().unwrap();
    let (s, r) = app
        .call(Method::DELETE, &format!("{keys}/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["state"], "revoked");
    assert!(r["revoked_at"].is_string());
    assert_eq!(app.me(&plain).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.me(k2["api_key"].as_str().unwrap()).await,
        StatusCode::OK
    );
    // Revoking again changes nothing.
    let (s, again) = app
        .call(Method::DELETE, &format!("{keys}/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["revoked_at"], r["revoked_at"]);
    // By prefix, too; the onboarding key.
    let first = t["api_key"].as_str().unwrap();
    let prefix = &first[..20];
    let (s, r) = app
        .call(Method::DELETE, &format!("{keys}/{prefix}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(app.me(first).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        actions(&name).await,
        [
            "api_key_created",
            "api_key_created",
            "api_key_revoked",
            "api_key_revoked"
        ]
    );

    // Another tenant's key is not found through this tenant.
    let other = unique("keys");
    let o = app.create(&other).await;
    let (_, olist) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{other}/api-keys"),
            None,
        )
        .await;
    let oid = olist["api_keys"][0]["id"].as_str().unwrap();
    let (s, e) = app
        .call(Method::DELETE, &format!("{keys}/{oid}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    assert_eq!(e["error"]["code"], "api_key_not_found");
    assert_eq!(app.me(o["api_key"].as_str().unwrap()).await, StatusCode::OK);
}

#[tokio::test]
async fn rotation_keeps_the_old_key_until_its_overlap_ends() {
    let app = TestApp::spawn().await;
    let name = unique("rotate");
    let t = app.create(&name).await;
    let keys = format!("/api/v1/tenants/{name}/api-keys");
    let (_, list) = app.call(Method::GET, &keys, None).await;
    let a_id = list["api_keys"][0]["id"].as_str().unwrap().to_string();
    let a = t["api_key"].as_str().unwrap().to_string();

    let (s, r) = app
        .call(
            Method::POST,
            &format!("{keys}/{a_id}/rotate"),
            Some(json!({"expires_in": "1h"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let b = r["api_key"].as_str().unwrap().to_string();
    assert_eq!(r["replaced"]["id"], a_id.as_str());
    assert_eq!(r["replaced"]["replaced_by"], r["id"]);
    assert_eq!(r["replaced"]["state"], "active");
    let until = chrono::DateTime::parse_from_rfc3339(r["replaced"]["expires_at"].as_str().unwrap())
        .unwrap();
    let left = (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    assert!((3500..=3600).contains(&left), "{left}");
    assert_eq!(
        app.me(&a).await,
        StatusCode::OK,
        "the old key works during the overlap"
    );
    assert_eq!(app.me(&b).await, StatusCode::OK);
    let (s, e) = app
        .call(Method::POST, &format!("{keys}/{a_id}/rotate"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "api_key_replaced");

    // A short overlap: the old key stops by itself.
    let b_id = r["id"].as_str().unwrap().to_string();
    let (s, r2) = app
        .call(
            Method::POST,
            &format!("{keys}/{b_id}/rotate"),
            Some(json!({"expires_in": "1s"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r2}");
    let c = r2["api_key"].as_str().unwrap().to_string();
    assert!(
        refused_within(&app, &b, Duration::from_secs(5)).await,
        "the rotated key kept working"
    );
    assert_eq!(app.me(&c).await, StatusCode::OK);
    assert_eq!(
        app.me(&a).await,
        StatusCode::OK,
        "a's own overlap (1h) is not over"
    );
    let (_, list) = app.call(Method::GET, &keys, None).await;
    let state_of = |id: &str| {
        list["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state_of(&b_id), "expired");
    let (s, e) = app
        .call(Method::POST, &format!("{keys}/{b_id}/rotate"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(e["error"]["code"], "api_key_expired");

    // A key created to expire.
    let (_, k) = app
        .call(Method::POST, &keys, Some(json!({"expires_in": "1s"})))
        .await;
    let short = k["api_key"].as_str().unwrap();
    assert!(refused_within(&app, short, Duration::from_secs(5)).await);

    // Revoked keys cannot be rotated; the default overlap is 24h.
    let c_id = r2["id"].as_str().unwrap();
    let (s, r3) = app
        .call(Method::POST, &format!("{keys}/{c_id}/rotate"), None)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let until =
        chrono::DateTime::parse_from_rfc3339(r3["replaced"]["expires_at"].as_str().unwrap())
            .unwrap();
    let left = (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes();
    assert!((23 * 60..=24 * 60).contains(&left), "{left}");
    let d_id = r3["id"].as_str().unwrap();
    app.call(Method::DELETE, &format!("{keys}/{d_id}"), None)
        .await;
    let (s, e) = app
        .call(Method::POST, &format!("{keys}/{d_id}/rotate"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(e["error"]["code"], "api_key_revoked");
    assert_eq!(
        actions(&name).await,
        [
            "api_key_rotated",
            "api_key_rotated",
            "api_key_created",
            "api_key_rotated",
            "api_key_revoked"
        ]
    );
    let rotated: Value = superuser()
        .await
        .query_one(
            "SELECT details FROM berqenas.audit_log WHERE tenant_name = $1 AND action = 'api_key_rotated' ORDER BY id LIMIT 1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rotated["replaced_key_id"], a_id.as_str());
}

/// A request and what it must get: status, and the field named in the error.
type Case = (
    Method,
    String,
    Option<Value>,
    StatusCode,
    Option<&'static str>,
);

#[tokio::test]
async fn bad_input_is_400_naming_the_field_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let name = unique("badkey");
    app.create(&name).await;
    let keys = format!("/api/v1/tenants/{name}/api-keys");
    let (_, list) = app.call(Method::GET, &keys, None).await;
    let id = list["api_keys"][0]["id"].as_str().unwrap().to_string();
    let key_rows = || async {
        superuser()
            .await
            .query_one(
                "SELECT t::text || string_agg(k::text, ';' ORDER BY k.id) FROM berqenas.api_keys k
                   JOIN berqenas.tenants t ON t.id = k.tenant_id WHERE t.name = $1 GROUP BY t.*",
                &[&name],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    let rows_before = key_rows().await;
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            keys.clone(),
            Some(json!({"expires_in": "soon"})),
            StatusCode::BAD_REQUEST,
            Some("expires_in"),
        ),
        (
            Method::POST,
            keys.clone(),
            Some(json!({"expires_in": "0s"})),
            StatusCode::BAD_REQUEST,
            Some("expires_in"),
        ),
        (
            Method::POST,
            keys.clone(),
            Some(json!({"expires_in": "-1h"})),
            StatusCode::BAD_REQUEST,
            Some("expires_in"),
        ),
        (
            Method::POST,
            keys.clone(),
            Some(json!({"expires_in": "99999d"})),
            StatusCode::BAD_REQUEST,
            Some("expires_in"),
        ),
        (
            Method::POST,
            keys.clone(),
            Some(json!({"expires_in": 3600})),
            StatusCode::BAD_REQUEST,
            Some("expires_in"),
        ),
        (
            Method::POST,
            keys.clone(),
            Some(json!({"name": ""})),
            StatusCode::BAD_REQUEST,
            Some("name"),
        ),
        (
            Method::POST,
            keys.clone(),
            Some(json!({"name": "x".repeat(65)})),
            StatusCode::BAD_REQUEST,
            Some("name"),
        ),
        (
            Method::POST,
            keys.clone(),
            Some(json!({"name": "tab\there"})),
            StatusCode::BAD_REQUEST,
            Some("name"),
        ),
        (
            Method::POST,
            keys.clone(),
            Some(json!({"scope": "all"})),
            StatusCode::BAD_REQUEST,
            Some("scope"),
        ),
        (
            Method::POST,
            format!("{keys}/{id}/rotate"),
            Some(json!({"expires_in": "1 fortnight"})),
            StatusCode::BAD_REQUEST,
            Some("expires_in"),
        ),
        (
            Method::POST,
            format!("{keys}/{id}/rotate"),
            Some(json!({"overlap": "1h"})),
            StatusCode::BAD_REQUEST,
            Some("overlap"),
        ),
        (
            Method::DELETE,
            format!("{keys}/not-a-key"),
            None,
            StatusCode::BAD_REQUEST,
            Some("id"),
        ),
        (
            Method::POST,
            format!("{keys}/bqk_zzzz/rotate"),
            None,
            StatusCode::BAD_REQUEST,
            Some("id"),
        ),
        (
            Method::DELETE,
            format!("{keys}/{}", uuid::Uuid::nil()),
            None,
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            Method::DELETE,
            format!("{keys}/bqk_0000000000000000"),
            None,
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            Method::POST,
            "/api/v1/tenants/no-such-tenant/api-keys".into(),
            None,
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            Method::GET,
            "/api/v1/tenants/no-such-tenant/api-keys".into(),
            None,
            StatusCode::NOT_FOUND,
            None,
        ),
    ];
    for (method, path, body, status, field) in cases {
        let (s, e) = app.call(method.clone(), &path, body.clone()).await;
        assert_eq!(s, status, "{method} {path} {body:?}: {e}");
        if let Some(f) = field {
            assert_eq!(e["error"]["field"], f, "{method} {path} {body:?}: {e}");
        }
    }
    let (s, _) = app.call_with(Method::POST, &keys, None, None, &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(key_rows().await, rows_before);
    assert!(actions(&name).await.is_empty());
}

#[tokio::test]
async fn cli_api_key_commands() {
    let app = TestApp::spawn().await;
    let name = unique("clikey");
    app.create(&name).await;
    let created = stdout_json(
        &cli(
            &app,
            &[
                "tenant",
                "api-key",
                "create",
                &name,
                "--name",
                "deploy",
                "--expires-in",
                "7d",
                "-o",
                "json",
            ],
        )
        .await,
    );
    let key = created["api_key"].as_str().unwrap().to_string();
    assert_eq!(app.me(&key).await, StatusCode::OK);
    let list = stdout_json(&cli(&app, &["tenant", "api-key", "list", &name, "-o", "json"]).await);
    assert_eq!(list["api_keys"].as_array().unwrap().len(), 2);
    let table = cli(&app, &["tenant", "api-key", "list", &name]).await;
    assert!(String::from_utf8_lossy(&table.stdout).contains("deploy"));
    let prefix = created["prefix"].as_str().unwrap();
    let rotated = stdout_json(
        &cli(
            &app,
            &[
                "tenant",
                "api-key",
                "rotate",
                &name,
                prefix,
                "--expires-in",
                "1h",
                "-o",
                "json",
            ],
        )
        .await,
    );
    let new = rotated["api_key"].as_str().unwrap().to_string();
    assert_eq!(app.me(&new).await, StatusCode::OK);
    assert_eq!(app.me(&key).await, StatusCode::OK);
    let revoked = stdout_json(
        &cli(
            &app,
            &["tenant", "api-key", "revoke", &name, prefix, "-o", "json"],
        )
        .await,
    );
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(app.me(&key).await, StatusCode::UNAUTHORIZED);
    let bad = cli(
        &app,
        &[
            "tenant",
            "api-key",
            "create",
            &name,
            "--expires-in",
            "later",
            "-o",
            "json",
        ],
    )
    .await;
    assert!(!bad.status.success());
    let e: Value = serde_json::from_slice(&bad.stderr).unwrap();
    assert_eq!(e["error"]["field"], "expires_in");
    assert_eq!(e["status"], 400);
}

/// Issue 21, item 10: a replay repeats the whole first answer, secrets included (as
/// Stripe does: a client whose first answer was lost has no other way to its API key),
/// so that answer is kept sealed with the secret key, and forgotten after 24 hours.
#[tokio::test]
async fn a_replayed_answer_is_sealed_at_rest_and_forgotten_after_a_day() {
    let app = TestApp::spawn().await;
    let name = unique("sealed");
    let key = format!("key-{name}");
    let hdr = [("Idempotency-Key", key.as_str())];
    let body = json!({"name": name});
    let (s, first) = app
        .call_with(
            Method::POST,
            "/api/v1/tenants",
            Some(body.clone()),
            Some(TOKEN),
            &hdr,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let pg = superuser().await;
    let stored: Vec<u8> = pg
        .query_one(
            "SELECT response FROM berqenas.operations WHERE idempotency_key = $1",
            &[&key],
        )
        .await
        .unwrap()
        .get(0);
    for secret in [&first["api_key"], &first["credentials"]["password"]] {
        let secret = secret.as_str().unwrap().as_bytes();
        assert!(
            !stored.windows(secret.len()).any(|w| w == secret),
            "a secret of the answer is stored in the clear"
        );
    }
    pg.execute(
        "UPDATE berqenas.operations SET created_at = created_at - interval '25 hours'
          WHERE idempotency_key = $1",
        &[&key],
    )
    .await
    .unwrap();
    let platform = common::platform(1).await;
    let c = platform.pool.get().await.unwrap();
    assert!(
        berqenas::store::operations::expire_idempotency_keys(&c)
            .await
            .unwrap()
            >= 1
    );
    let left: i64 = pg
        .query_one(
            "SELECT count(*) FROM berqenas.operations WHERE idempotency_key = $1 OR (tenant_name = $2 AND response IS NOT NULL)",
            &[&key, &name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "neither the key nor the answer is kept");
    let (s, again) = app
        .call_with(
            Method::POST,
            "/api/v1/tenants",
            Some(body),
            Some(TOKEN),
            &hdr,
        )
        .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "a new request now, not a replay: {again}"
    );
    assert!(again.get("api_key").is_none());
}
