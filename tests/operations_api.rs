//! The operations API (`GET /api/v1/operations/{id}`, `GET /api/v1/operations`) and
//! `berqenas operation get|list`: an operation's kind, state, tenant, times, error and
//! steps, with nothing secret and no database's text in them.

mod common;

use common::{cli, stdout_json, superuser, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn ops_of(app: &TestApp, tenant: &str, extra: &str) -> Value {
    let (s, page) = app
        .call(
            Method::GET,
            &format!("/api/v1/operations?tenant={tenant}{extra}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    page
}

fn step_states(op: &Value) -> Vec<(String, String)> {
    op["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_database_mode_create_shows_its_steps_and_no_secret() {
    let app = TestApp::spawn().await;
    let name = unique("opdb");
    let created = app
        .create_with(json!({"name": name, "isolation": "database"}))
        .await;
    let page = ops_of(&app, &name, "").await;
    let ops = page["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1, "{page}");
    let op = &ops[0];
    assert_eq!(op["kind"], "tenant.create.database");
    assert_eq!(op["state"], "succeeded");
    assert_eq!(op["phase"], "forward");
    assert_eq!(op["tenant"]["name"], name.as_str());
    assert_eq!(op["tenant"]["id"], created["id"]);
    assert!(op["error"].is_null());
    assert!(op["finished_at"].is_string());
    assert!(op["updated_at"].as_str().unwrap() >= op["created_at"].as_str().unwrap());
    // No vector store and no onboarding step asked for: those two are skipped, with
    // no journal row.
    assert_eq!(
        step_states(op),
        [
            ("register", "applied"),
            ("clone", "applied"),
            ("configure", "applied"),
            ("vector_store", "skipped"),
            ("integrations", "skipped"),
            ("activate", "applied")
        ]
        .iter()
        .map(|(s, state)| (s.to_string(), state.to_string()))
        .collect::<Vec<_>>()
    );
    let clone = &op["steps"][1];
    assert_eq!(
        clone["summary"],
        format!("database=tenant_{}", name.replace('-', "_"))
    );
    // The same by id; and neither answer holds the password, the key, or the sealed
    // answer the last step journaled.
    let id = op["id"].as_str().unwrap();
    let (s, one) = app
        .call(Method::GET, &format!("/api/v1/operations/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(&one, op);
    let text = one.to_string();
    let password = created["credentials"]["password"].as_str().unwrap();
    let key = created["api_key"].as_str().unwrap();
    assert!(!text.contains(password) && !text.contains(key), "{text}");
    assert!(!text.contains("answer"), "{text}");
}

#[tokio::test]
async fn a_refused_create_shows_why_and_lists_filter_and_page() {
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    // A database of the name exists: the create is refused and undone.
    let name = unique("opsquat");
    let db = format!("tenant_{}", name.replace('-', "_"));
    pg.batch_execute(&format!("CREATE DATABASE \"{db}\""))
        .await
        .unwrap();
    let (s, body) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": name, "isolation": "database"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let page = ops_of(&app, &name, "&state=failed").await;
    let op = &page["operations"][0];
    assert_eq!(op["state"], "failed");
    assert_eq!(
        op["error"], body["error"]["message"],
        "the refusal, as answered"
    );
    let states = step_states(op);
    assert_eq!(states[0], ("register".into(), "compensated".into()));
    assert_eq!(states.last(), Some(&("activate".into(), "pending".into())));
    assert_eq!(
        ops_of(&app, &name, "&state=succeeded").await["operations"],
        json!([])
    );

    // Three operations on one tenant: newest first, two to a page.
    let t = unique("oplist");
    app.create(&t).await;
    for action in ["suspend", "resume"] {
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{t}/{action}"),
                Some(json!({})),
            )
            .await;
        assert!(s.is_success(), "{b}");
    }
    let first = ops_of(&app, &t, "&limit=2").await;
    let kinds: Vec<&str> = first["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["tenant.resume", "tenant.suspend"]);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = ops_of(&app, &t, &format!("&limit=2&cursor={cursor}")).await;
    assert_eq!(second["operations"].as_array().unwrap().len(), 1);
    assert_eq!(second["operations"][0]["kind"], "tenant.create");
    assert_eq!(
        step_states(&second["operations"][0]),
        [("provision".to_string(), "applied".to_string())]
    );
    assert!(second["next_cursor"].is_null());
    // By the tenant's id too.
    let id = second["operations"][0]["tenant"]["id"].as_str().unwrap();
    assert_eq!(
        ops_of(&app, id, "").await["operations"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn bad_queries_are_refused_naming_the_parameter() {
    let app = TestApp::spawn().await;
    for (path, field, status) in [
        ("/api/v1/operations?state=done", "state", 400),
        ("/api/v1/operations?limit=0", "limit", 400),
        ("/api/v1/operations?limit=x", "limit", 400),
        ("/api/v1/operations?cursor=nope", "cursor", 400),
        ("/api/v1/operations?colour=red", "colour", 400),
        ("/api/v1/operations/not-a-uuid", "id", 400),
    ] {
        let (s, b) = app.call(Method::GET, path, None).await;
        assert_eq!(s.as_u16(), status, "{path}: {b}");
        assert_eq!(b["error"]["field"], field, "{path}: {b}");
    }
    let (s, b) = app
        .call(
            Method::GET,
            "/api/v1/operations/01900000-0000-7000-8000-000000000000",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["error"]["code"], "operation_not_found");
    let (s, _) = app
        .call_with(Method::GET, "/api/v1/operations", None, None, &[])
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_cli_lists_gets_and_watches_an_operation() {
    let app = TestApp::spawn().await;
    let name = unique("opcli");
    app.create_with(json!({"name": name, "isolation": "database"}))
        .await;
    let page = stdout_json(&cli(&app, &["operation", "list", "--tenant", &name, "--json"]).await);
    let id = page["operations"][0]["id"].as_str().unwrap().to_string();
    let one = stdout_json(&cli(&app, &["operation", "get", &id, "-o", "json"]).await);
    assert_eq!(one["kind"], "tenant.create.database");

    // --watch on a finished operation prints every step once and exits 0.
    let out = cli(&app, &["operation", "get", &id, "--watch"]).await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for step in [
        "register applied",
        "clone applied",
        "configure applied",
        "integrations skipped",
        "activate applied",
    ] {
        assert_eq!(text.matches(step).count(), 1, "{step}: {text}");
    }
    assert!(text.trim_end().ends_with("succeeded"), "{text}");

    // A table of the tenant's operations; an unknown id fails naming it.
    let out = cli(&app, &["operation", "list", "--tenant", &name]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("tenant.create.database"));
    let out = cli(
        &app,
        &[
            "operation",
            "get",
            "01900000-0000-7000-8000-000000000000",
            "--watch",
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}
