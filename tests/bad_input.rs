//! Bad input gets a clear 4xx naming the field, and changes nothing: the whole catalog
//! and registry are compared before and after (this binary runs this one test, so
//! nothing else changes them meanwhile).

mod common;

use common::{superuser, whole_state, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn every_bad_request_is_refused_by_name_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    let before = whole_state(&pg).await;

    let long = "a".repeat(33);
    let bad_names: &[(&str, &str)] = &[
        ("ab", "3 to 32"),
        (&long, "3 to 32"),
        ("", "3 to 32"),
        ("Acme", "lower-case"),
        ("a;drop", "';'"),
        ("ac; drop table x", "';'"),
        ("pg_x", "'_'"),
        ("pg-x", "reserved"),
        ("public", "reserved"),
        ("berqenas", "reserved"),
        ("a\"b", "'\"'"),
        ("o'brien", "found"),
        ("ünïcode", "'ü'"),
        ("trailing-", "end"),
        ("9lives", "start"),
        ("-lead", "start"),
        ("a--b", "two hyphens"),
        ("tenant_x", "'_'"),
    ];
    for (name, says) in bad_names {
        let (s, body) = app
            .call(Method::POST, "/api/v1/tenants", Some(json!({"name": name})))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{name:?}: {body}");
        assert_eq!(body["error"]["field"], "name", "{name:?}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(says),
            "{name:?}: message {message:?} should mention {says}"
        );
    }

    let bad_fields = [
        (
            json!({"name": "good-name", "db_quota": "5XB"}),
            "db_quota",
            "unit",
        ),
        (
            json!({"name": "good-name", "db_quota": "-1GB"}),
            "db_quota",
            "not a size",
        ),
        (
            json!({"name": "good-name", "db_quota": "0"}),
            "db_quota",
            "greater than zero",
        ),
        (
            json!({"name": "good-name", "db_quota": ""}),
            "db_quota",
            "empty",
        ),
        (
            json!({"name": "good-name", "db_quota": "1.5GB"}),
            "db_quota",
            "not a size",
        ),
        (
            json!({"name": "good-name", "db_quota": 5}),
            "db_quota",
            "invalid type",
        ),
        (
            json!({"name": "good-name", "vpn_enabled": "enabled"}),
            "vpn_enabled",
            "invalid type",
        ),
        (
            json!({"name": "good-name", "public_api": 1}),
            "public_api",
            "invalid type",
        ),
        (
            json!({"name": "good-name", "plan": "platinum"}),
            "plan",
            "does not exist",
        ),
        (
            json!({"name": "good-name", "metadata": [1, 2]}),
            "metadata",
            "object",
        ),
        (
            json!({"name": "good-name", "isolation": "galaxy"}),
            "isolation",
            "schema",
        ),
        (
            json!({"name": "good-name", "colour": "red"}),
            "colour",
            "unknown field",
        ),
        (json!({"db_quota": "5GB"}), "name", "missing field"),
        (json!({"name": 42}), "name", "invalid type"),
    ];
    for (body, field, says) in bad_fields {
        let (s, res) = app
            .call(Method::POST, "/api/v1/tenants", Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {res}");
        assert_eq!(res["error"]["field"], field, "{body}: {res}");
        let message = res["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(says),
            "{body}: {message:?} should mention {says:?}"
        );
        assert!(
            !message.to_lowercase().contains("select") && !message.contains("berqenas."),
            "no SQL: {message}"
        );
    }

    let (s, res) = app
        .raw(
            Method::POST,
            "/api/v1/tenants",
            b"{\"name\": \"good-name\",",
        )
        .await;
    assert_eq!(
        (s, res["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed_json"))
    );
    let (s, res) = app
        .raw(Method::POST, "/api/v1/tenants", b"[\"good-name\"]")
        .await;
    assert_eq!(
        (s, res["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed_json"))
    );
    let huge = format!(
        "{{\"name\":\"good-name\",\"metadata\":{{\"x\":\"{}\"}}}}",
        "x".repeat(1 << 20)
    );
    let (s, res) = app
        .raw(
            Method::POST,
            "/api/v1/tenants",
            Box::leak(huge.into_bytes().into_boxed_slice()),
        )
        .await;
    assert_eq!(
        (s, res["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"))
    );
    let (s, res) = app
        .call(
            Method::PATCH,
            "/api/v1/tenants/nobody-here",
            Some(json!({"db_quota": "1GB"})),
        )
        .await;
    assert_eq!(
        (s, res["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("tenant_not_found"))
    );
    let (s, res) = app.call(Method::GET, "/api/v1/tenants?limit=0", None).await;
    assert_eq!(
        (s, res["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("limit"))
    );
    let (s, res) = app
        .call(Method::GET, "/api/v1/tenants?cursor=nonsense", None)
        .await;
    assert_eq!(
        (s, res["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("cursor"))
    );

    assert_eq!(
        whole_state(&pg).await,
        before,
        "bad input changed the catalog or the registry"
    );
}
