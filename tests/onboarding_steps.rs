//! External onboarding steps (docs/onboarding-steps.md): registration, and what it
//! refuses.

mod common;
#[path = "support/onboarding.rs"]
mod onboarding;

use common::{superuser, unique, TestApp};
use onboarding::{plan, receiver, register, traces, verifies};
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
    let own_plan = plan(&superuser().await).await;
    let name = unique("git").replace('-', "_");
    let (s, reg) = app
        .call(
            Method::POST,
            "/api/v1/onboarding-steps",
            Some(json!({"name": name, "url": "http://127.0.0.1:9/hook",
                        "when": {"plan": own_plan, "isolation": "database"},
                        "timeout": "5s", "compensate_url": "http://127.0.0.1:9/undo"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{reg}");
    let secret = reg["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{reg}");
    assert_eq!(reg["timeout_secs"], 5.0);
    assert_eq!(
        reg["when"],
        json!({"plan": own_plan, "isolation": "database"})
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
    // A plan of its own: the step it registers must match no other test's create.
    let own_plan = plan(&pg).await;
    let taken = unique("taken").replace('-', "_");
    let (s, _) = app
        .call(
            Method::POST,
            "/api/v1/onboarding-steps",
            Some(json!({"name": taken, "url": "http://127.0.0.1:9/a",
                        "when": {"plan": own_plan, "isolation": "database"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let before = stored(&pg).await;
    let ok = |extra: Value| {
        let mut b = json!({"name": unique("bad").replace('-', "_"), "url": "http://127.0.0.1:9/a",
                           "when": {"isolation": "database"}});
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
        (
            ok(json!({"when": {"plan": "platinum", "isolation": "database"}})),
            "when.plan",
            400,
        ),
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
                Some(json!({"name": "internal", "url": url, "when": {"isolation": "database"}})),
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

#[tokio::test]
async fn a_step_that_answers_200_is_stored_on_the_tenant_and_its_call_verifies() {
    let app = app().await;
    let pg = superuser().await;
    let plan = plan(&pg).await;
    let (url, seen) = receiver(
        200,
        r#"{"repository": "https://git.example/acme.git"}"#,
        std::time::Duration::ZERO,
    )
    .await;
    let step = unique("git").replace('-', "_");
    let secret = register(
        &app,
        json!({"name": step, "url": format!("{url}/hook"), "when": {"plan": plan, "isolation": "database"}}),
    )
    .await;
    let name = unique("obok");
    let created = app
        .create_with(json!({"name": name, "isolation": "database", "plan": plan}))
        .await;
    assert_eq!(created["status"], "active");
    assert_eq!(
        created["integrations"][&step],
        json!({"repository": "https://git.example/acme.git"})
    );
    let (_, got) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(got["integrations"], created["integrations"]);
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let (path, headers, body) = &calls[0];
    assert_eq!(path, "/hook");
    assert!(verifies(&secret, headers, body), "the signature verifies");
    let sent: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(sent["step"], step.as_str());
    assert_eq!(sent["tenant"]["name"], name.as_str());
    assert_eq!(sent["tenant"]["id"], created["id"]);
    assert_eq!(sent["tenant"]["plan"], plan.as_str());
    // A schema-mode tenant on the same plan, and a database one on another plan, do
    // not call it.
    app.create_with(json!({"name": unique("obsch"), "plan": plan}))
        .await;
    app.create_with(json!({"name": unique("obfree"), "isolation": "database"}))
        .await;
    assert_eq!(seen.lock().unwrap().len(), 1, "when filters");
}

#[tokio::test]
async fn a_failing_or_slow_step_leaves_no_tenant_and_compensates_the_earlier_one() {
    let app = app().await;
    let pg = superuser().await;
    let plan = plan(&pg).await;
    let (first, first_seen) = receiver(200, "{}", std::time::Duration::ZERO).await;
    let (bad, _) = receiver(
        500,
        "internal details of the agent",
        std::time::Duration::ZERO,
    )
    .await;
    let when = json!({"plan": plan, "isolation": "database"});
    let a = unique("first").replace('-', "_");
    register(
        &app,
        json!({"name": a, "url": format!("{first}/do"), "compensate_url": format!("{first}/undo"), "when": when}),
    )
    .await;
    let b = unique("broken").replace('-', "_");
    register(
        &app,
        json!({"name": b, "url": format!("{bad}/do"), "when": when}),
    )
    .await;
    let name = unique("obfail");
    let (s, body) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": name, "isolation": "database", "plan": plan})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "onboarding_step_failed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&b) && message.contains("500"), "{message}");
    assert!(!message.contains("internal details"), "{message}");
    assert_eq!(traces(&pg, &name).await, Vec::<String>::new());
    let paths: Vec<String> = first_seen
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.0.clone())
        .collect();
    assert_eq!(paths, ["/do", "/undo"], "the earlier step was compensated");
    // The operation shows why, and its steps undone.
    let (_, ops) = app
        .call(
            Method::GET,
            &format!("/api/v1/operations?tenant={name}"),
            None,
        )
        .await;
    assert_eq!(ops["operations"][0]["state"], "failed");
    assert_eq!(ops["operations"][0]["error"], message);

    // A step that does not answer within its timeout: the same.
    app.call(
        Method::DELETE,
        &format!("/api/v1/onboarding-steps/{b}"),
        None,
    )
    .await;
    let (slow, _) = receiver(200, "{}", std::time::Duration::from_secs(5)).await;
    let c = unique("slow").replace('-', "_");
    register(
        &app,
        json!({"name": c, "url": format!("{slow}/do"), "timeout": "1s", "when": when}),
    )
    .await;
    let name = unique("obslow");
    let (s, body) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": name, "isolation": "database", "plan": plan})),
        )
        .await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "onboarding_step_timeout");
    assert_eq!(traces(&pg, &name).await, Vec::<String>::new());
    assert_eq!(
        first_seen.lock().unwrap().len(),
        4,
        "called, then compensated, again"
    );
}

#[tokio::test]
async fn the_purge_calls_each_steps_compensate_url_with_what_it_answered() {
    let app = app().await;
    let pg = superuser().await;
    let plan = plan(&pg).await;
    let (url, seen) = receiver(200, r#"{"repository": "r1"}"#, std::time::Duration::ZERO).await;
    let step = unique("repo").replace('-', "_");
    let secret = register(
        &app,
        json!({"name": step, "url": format!("{url}/do"), "compensate_url": format!("{url}/undo"),
               "when": {"plan": plan, "isolation": "database"}}),
    )
    .await;
    let name = unique("obpurge");
    app.create_with(json!({"name": name, "isolation": "database", "plan": plan}))
        .await;
    // The soft delete keeps the integration (a restore brings the tenant back whole).
    let (s, b) = app
        .call(Method::DELETE, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "no compensation at the soft delete"
    );
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/restore"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}?purge=now"),
            Some(json!({"confirm": name})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "purged");
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "called once at the purge");
    let (path, headers, body) = &calls[1];
    assert_eq!(path, "/undo");
    assert!(verifies(&secret, headers, body));
    let sent: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(sent["compensate"], true);
    assert_eq!(sent["tenant"]["name"], name.as_str());
    assert_eq!(sent["integration"], json!({"repository": "r1"}));
}
