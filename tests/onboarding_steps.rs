//! External onboarding steps (docs/onboarding-steps.md): registration, and what it
//! refuses.

mod common;

use common::{superuser, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A server whose onboarding steps may point at 127.0.0.1 (the receivers of these tests).
async fn app() -> TestApp {
    let mut p = common::platform(16).await;
    p.onboarding_allow_private = true;
    TestApp::serve(p).await
}

async fn stored(pg: &tokio_postgres::Client) -> Vec<String> {
    pg.query(
        "SELECT name FROM berqenas.onboarding_steps ORDER BY name",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn a_step_is_registered_with_a_secret_shown_once_listed_and_removed() {
    let app = app().await;
    let name = unique("git").replace('-', "_");
    let (s, reg) = app
        .call(
            Method::POST,
            "/api/v1/onboarding-steps",
            Some(json!({"name": name, "url": "http://127.0.0.1:9/hook",
                        "when": {"plan": "enterprise", "isolation": "database"},
                        "timeout": "5s", "compensate_url": "http://127.0.0.1:9/undo"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{reg}");
    let secret = reg["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{reg}");
    assert_eq!(reg["timeout_secs"], 5.0);
    assert_eq!(
        reg["when"],
        json!({"plan": "enterprise", "isolation": "database"})
    );
    // Sealed at rest; never shown again.
    let pg = superuser().await;
    let raw: Vec<u8> = pg
        .query_one(
            "SELECT secret FROM berqenas.onboarding_steps WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!String::from_utf8_lossy(&raw).contains(secret));
    let (s, one) = app
        .call(
            Method::GET,
            &format!("/api/v1/onboarding-steps/{name}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(one.get("secret").is_none(), "{one}");
    assert_eq!(one["compensate_url"], "http://127.0.0.1:9/undo");
    let (_, list) = app
        .call(Method::GET, "/api/v1/onboarding-steps", None)
        .await;
    assert!(list["onboarding_steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == name.as_str() && s.get("secret").is_none()));
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/onboarding-steps/{name}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(!stored(&pg).await.contains(&name));
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/onboarding-steps/{name}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
}

#[tokio::test]
async fn bad_registrations_are_refused_naming_the_field_and_store_nothing() {
    let app = app().await;
    let pg = superuser().await;
    let taken = unique("taken").replace('-', "_");
    let (s, _) = app
        .call(
            Method::POST,
            "/api/v1/onboarding-steps",
            Some(json!({"name": taken, "url": "http://127.0.0.1:9/a"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let before = stored(&pg).await;
    let ok = |extra: Value| {
        let mut b = json!({"name": unique("bad").replace('-', "_"), "url": "http://127.0.0.1:9/a"});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    for (body, field, status) in [
        (ok(json!({"url": "not a url"})), "url", 400),
        (ok(json!({"url": "ftp://example.com/x"})), "url", 400),
        (ok(json!({"url": "https://u:p@example.com/x"})), "url", 400),
        (
            ok(json!({"compensate_url": "gopher://x"})),
            "compensate_url",
            400,
        ),
        (ok(json!({"name": "Bad Name"})), "name", 400),
        (ok(json!({"name": taken})), "name", 409),
        (ok(json!({"when": {"plan": "platinum"}})), "when.plan", 400),
        (
            ok(json!({"when": {"isolation": "cluster"}})),
            "when.isolation",
            400,
        ),
        (ok(json!({"when": {"colour": "red"}})), "colour", 400),
        (ok(json!({"timeout": "2h"})), "timeout", 400),
        (ok(json!({"timeout": "soon"})), "timeout", 400),
        (ok(json!({"secret": "whsec_mine"})), "secret", 400),
    ] {
        let (s, b) = app
            .call(Method::POST, "/api/v1/onboarding-steps", Some(body.clone()))
            .await;
        assert_eq!(s.as_u16(), status, "{body}: {b}");
        assert_eq!(b["error"]["field"], field, "{body}: {b}");
    }
    // (Other tests register steps meanwhile: the refused ones are all named bad_*.)
    let after = stored(&pg).await;
    assert!(after.iter().all(|n| !n.starts_with("bad_")), "{after:?}");
    assert!(before.iter().all(|n| after.contains(n)));
}

#[tokio::test]
async fn private_addresses_are_refused_by_default() {
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.5/x",
        "http://169.254.169.254/latest",
    ] {
        let (s, b) = app
            .call(
                Method::POST,
                "/api/v1/onboarding-steps",
                Some(json!({"name": "internal", "url": url})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{url}: {b}");
        assert_eq!(b["error"]["field"], "url");
        assert!(b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--onboarding-allow-private"));
    }
    assert!(!stored(&pg).await.contains(&"internal".to_string()));
}
