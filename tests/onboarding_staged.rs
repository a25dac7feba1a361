//! External onboarding steps in schema- and shared-mode creates (`tenant.create.staged`),
//! and steps that answer 202 and call back (docs/onboarding-steps.md). Real receivers,
//! a real server, a real cluster; what is left is read from PostgreSQL's catalogs.

mod common;
#[path = "support/onboarding.rs"]
mod onboarding;

use std::time::Duration;

use common::{superuser, unique, TestApp};
use onboarding::{plan, receiver, register, sign, traces, verifies, Seen};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn app() -> TestApp {
    let mut p = common::platform(16).await;
    p.onboarding_allow_private = true;
    TestApp::serve(p).await
}

/// The kind of the newest operation on a tenant name.
async fn kind_of(app: &TestApp, name: &str) -> Value {
    let (_, ops) = app
        .call(
            Method::GET,
            &format!("/api/v1/operations?tenant={name}"),
            None,
        )
        .await;
    ops["operations"][0]["kind"].clone()
}

#[tokio::test]
async fn schema_and_shared_creates_run_a_matched_step_and_store_its_answer() {
    let app = app().await;
    let pg = superuser().await;
    let plan = plan(&pg).await;
    let (url, seen) = receiver(200, r#"{"repository": "r1"}"#, Duration::ZERO).await;
    let step = unique("git").replace('-', "_");
    // No isolation: every mode's creates on this plan run it.
    let secret = register(
        &app,
        json!({"name": step, "url": format!("{url}/do"), "when": {"plan": plan}}),
    )
    .await;
    for (i, isolation) in ["schema", "shared"].into_iter().enumerate() {
        let name = unique(&format!("ob{isolation}"));
        let created = app
            .create_with(json!({"name": name, "isolation": isolation, "plan": plan}))
            .await;
        assert_eq!(created["status"], "active", "{created}");
        assert_eq!(created["isolation"], isolation);
        assert!(created["api_key"].as_str().unwrap().starts_with("bqk_"));
        assert_eq!(created["integrations"][&step], json!({"repository": "r1"}));
        let (_, got) = app
            .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
            .await;
        assert_eq!(got["integrations"][&step], json!({"repository": "r1"}));
        assert_eq!(kind_of(&app, &name).await, "tenant.create.staged");
        // Its login works: the tenant is whole.
        let dsn = created["credentials"]["dsn"].as_str().unwrap();
        let (c, conn) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c.simple_query("SELECT 1").await.unwrap();
        let calls = seen.lock().unwrap().clone();
        assert_eq!(calls.len(), i + 1);
        let (_, headers, body) = &calls[i];
        assert!(verifies(&secret, headers, body));
        let sent: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(sent["tenant"]["isolation"], isolation);
        assert_eq!(sent["tenant"]["name"], name.as_str());
        assert!(sent["callback_path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/steps/{step}/complete")));
        // One tenant.created event, as a one-transaction create emits.
        let events: i64 = pg
            .query_one(
                "SELECT count(*) FROM berqenas.outbox WHERE tenant_name = $1 AND type = 'tenant.created'",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(events, 1);
    }
    // A create that matches no step stays the one-transaction kind.
    let other = unique("obplain");
    app.create_with(json!({"name": other})).await;
    assert_eq!(kind_of(&app, &other).await, "tenant.create");
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_failing_or_slow_step_leaves_no_schema_roles_rows_or_registry_row() {
    let app = app().await;
    let pg = superuser().await;
    let plan = plan(&pg).await;
    let (first, first_seen) = receiver(200, "{}", Duration::ZERO).await;
    let a = unique("first").replace('-', "_");
    register(
        &app,
        json!({"name": a, "url": format!("{first}/do"), "compensate_url": format!("{first}/undo"),
               "when": {"plan": plan}}),
    )
    .await;
    let (bad, _) = receiver(500, "agent internals", Duration::ZERO).await;
    let b = unique("broken").replace('-', "_");
    register(
        &app,
        json!({"name": b, "url": format!("{bad}/do"), "when": {"plan": plan}}),
    )
    .await;
    for isolation in ["schema", "shared"] {
        let name = unique(&format!("obf{isolation}"));
        let (s, body) = app
            .call(
                Method::POST,
                "/api/v1/tenants",
                Some(json!({"name": name, "isolation": isolation, "plan": plan})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{body}");
        assert_eq!(body["error"]["code"], "onboarding_step_failed");
        assert!(!body.to_string().contains("agent internals"));
        assert_eq!(
            traces(&pg, &name).await,
            Vec::<String>::new(),
            "{isolation}"
        );
    }
    let paths: Vec<String> = first_seen
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.0.clone())
        .collect();
    assert_eq!(paths, ["/do", "/undo", "/do", "/undo"]);
    // A step that does not answer in time: the same.
    app.call(
        Method::DELETE,
        &format!("/api/v1/onboarding-steps/{b}"),
        None,
    )
    .await;
    let (slow, _) = receiver(200, "{}", Duration::from_secs(5)).await;
    let c = unique("slow").replace('-', "_");
    register(
        &app,
        json!({"name": c, "url": format!("{slow}/do"), "timeout": "1s", "when": {"plan": plan, "isolation": "schema"}}),
    )
    .await;
    let name = unique("obslow");
    let (s, body) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": name, "plan": plan})),
        )
        .await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "onboarding_step_timeout");
    assert_eq!(traces(&pg, &name).await, Vec::<String>::new());
    assert_eq!(first_seen.lock().unwrap().len(), 6, "compensated again");
}

/// A create running in the background, and the call its 202 step received.
async fn start_create(
    app: &TestApp,
    body: Value,
    seen: &Seen,
) -> (tokio::task::JoinHandle<(StatusCode, Value)>, Value) {
    let bg = TestApp {
        url: app.url.clone(),
        http: app.http.clone(),
    };
    let before = seen.lock().unwrap().len();
    let task =
        tokio::spawn(async move { bg.call(Method::POST, "/api/v1/tenants", Some(body)).await });
    let call = loop {
        if let Some(c) = seen.lock().unwrap().get(before) {
            break serde_json::from_slice::<Value>(&c.2).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (task, call)
}

/// Waits until the operation's `integrations` step is journaled `waiting`.
async fn until_waiting(app: &TestApp, op: &str) -> Value {
    loop {
        let (_, o) = app
            .call(Method::GET, &format!("/api/v1/operations/{op}"), None)
            .await;
        let steps = o["steps"].as_array().cloned().unwrap_or_default();
        if steps
            .iter()
            .any(|s| s["name"] == "integrations" && s["state"] == "waiting")
        {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A callback signed with `secret`, as a step's agent sends it.
async fn call_back(app: &TestApp, path: &str, secret: &str, body: Value) -> (StatusCode, Value) {
    let bytes = serde_json::to_vec(&body).unwrap();
    let ts = chrono::Utc::now().timestamp().to_string();
    let id = format!("cb_{}", unique("x"));
    let sig = sign(secret, &id, &ts, &bytes);
    let res = app
        .http
        .post(format!("{}{path}", app.url))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts)
        .header("webhook-signature", sig)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let s = res.status();
    (s, res.json().await.unwrap_or(Value::Null))
}

async fn callbacks(pg: &tokio_postgres::Client, op: &str) -> i64 {
    pg.query_one(
        "SELECT count(*) FROM berqenas.onboarding_callbacks WHERE operation_id = $1::text::uuid",
        &[&op],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn a_202_step_waits_for_its_signed_callback_and_refuses_wrong_ones() {
    let app = app().await;
    let pg = superuser().await;
    let plan = plan(&pg).await;
    let (url, seen) = receiver(202, "", Duration::ZERO).await;
    let step = unique("cloud").replace('-', "_");
    let secret = register(
        &app,
        json!({"name": step, "url": format!("{url}/do"), "timeout": "2m", "when": {"plan": plan}}),
    )
    .await;
    // Another registered step, which this create does not run.
    let other = unique("other").replace('-', "_");
    let other_secret = register(
        &app,
        json!({"name": other, "url": format!("{url}/x"), "when": {"plan": plan, "isolation": "database"}}),
    )
    .await;
    let name = unique("obwait");
    let (task, call) = start_create(
        &app,
        json!({"name": name, "plan": plan, "isolation": "shared"}),
        &seen,
    )
    .await;
    let op = call["operation_id"].as_str().unwrap().to_string();
    let path = call["callback_path"].as_str().unwrap().to_string();
    assert_eq!(
        path,
        format!("/api/v1/operations/{op}/steps/{step}/complete")
    );
    until_waiting(&app, &op).await;
    let (_, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(t["status"], "provisioning", "{t}");

    // Wrong callers and wrong targets: refused, naming what is wrong; nothing stored.
    let ok = json!({"status": "succeeded", "result": {"vpc": "vpc-1"}});
    let (s, b) = call_back(&app, &path, &other_secret, ok.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "another step's secret: {b}");
    let (s, b) = app
        .call_with(Method::POST, &path, Some(ok.clone()), None, &[])
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "unsigned: {b}");
    let wrong_step = format!("/api/v1/operations/{op}/steps/{other}/complete");
    let (s, b) = call_back(&app, &wrong_step, &other_secret, ok.clone()).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains(&other),
        "{b}"
    );
    let missing = format!(
        "/api/v1/operations/{}/steps/{step}/complete",
        uuid::Uuid::now_v7()
    );
    let (s, b) = call_back(&app, &missing, &secret, ok.clone()).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(b["error"]["code"], "operation_not_found");
    let (s, b) = call_back(&app, &path, &secret, json!({"status": "done"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["field"], "status");
    let (s, b) = call_back(
        &app,
        &path,
        &secret,
        json!({"status": "succeeded", "result": [1]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["field"], "result");
    assert_eq!(callbacks(&pg, &op).await, 0);
    let (_, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(t["status"], "provisioning");

    // The right one: the create goes on, with the callback's result on the tenant.
    let (s, b) = call_back(&app, &path, &secret, ok).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "succeeded");
    let (s, created) = task.await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "active");
    assert_eq!(created["integrations"][&step], json!({"vpc": "vpc-1"}));
    // Once settled, another callback is a conflict.
    let (s, b) = call_back(&app, &path, &secret, json!({"status": "failed"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["error"]["code"], "operation_finished");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_202_step_that_calls_back_failed_or_never_is_undone() {
    let app = app().await;
    let pg = superuser().await;
    let plan = plan(&pg).await;
    let (url, seen) = receiver(202, "", Duration::ZERO).await;
    let step = unique("bill").replace('-', "_");
    let secret = register(
        &app,
        json!({"name": step, "url": format!("{url}/do"), "compensate_url": format!("{url}/undo"),
               "timeout": "3s", "when": {"plan": plan}}),
    )
    .await;
    // Failed, by callback (the admin token may settle a step too).
    let name = unique("obcbfail");
    let (task, call) = start_create(&app, json!({"name": name, "plan": plan}), &seen).await;
    let op = call["operation_id"].as_str().unwrap().to_string();
    let path = call["callback_path"].as_str().unwrap().to_string();
    until_waiting(&app, &op).await;
    let (s, b) = app
        .call(
            Method::POST,
            &path,
            Some(json!({"status": "failed", "error": "quota exhausted"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, body) = task.await.unwrap();
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "onboarding_step_failed");
    assert!(!body.to_string().contains("quota exhausted"));
    assert_eq!(traces(&pg, &name).await, Vec::<String>::new());
    let paths: Vec<String> = seen.lock().unwrap().iter().map(|c| c.0.clone()).collect();
    assert_eq!(paths, ["/do", "/undo"], "it accepted the work: compensated");
    let (_, o) = app
        .call(Method::GET, &format!("/api/v1/operations/{op}"), None)
        .await;
    assert_eq!(o["state"], "failed");

    // No callback at all: the step's timeout ends the wait.
    let name = unique("obcbnone");
    let (task, call) = start_create(
        &app,
        json!({"name": name, "plan": plan, "isolation": "shared"}),
        &seen,
    )
    .await;
    let op = call["operation_id"].as_str().unwrap().to_string();
    let path = call["callback_path"].as_str().unwrap().to_string();
    let (s, body) = task.await.unwrap();
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "onboarding_step_timeout");
    assert_eq!(traces(&pg, &name).await, Vec::<String>::new());
    assert_eq!(seen.lock().unwrap().len(), 4);
    let (_, o) = app
        .call(Method::GET, &format!("/api/v1/operations/{op}"), None)
        .await;
    assert_eq!(o["state"], "failed");
    // A late callback finds nothing waiting.
    let (s, b) = call_back(&app, &path, &secret, json!({"status": "succeeded"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(traces(&pg, &name).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_restart_while_a_step_waits_for_its_callback_waits_on() {
    let identity = format!("test:{}", uuid::Uuid::new_v4());
    let platform = || async {
        let mut p = common::platform(8).await;
        p.onboarding_allow_private = true;
        p
    };
    let first = berqenas::workflows::Runtime::start(platform().await, &identity)
        .await
        .unwrap();
    let app = TestApp::over(first.clone()).await;
    let pg = superuser().await;
    let plan = plan(&pg).await;
    let (url, seen) = receiver(202, "", Duration::ZERO).await;
    let step = unique("agent").replace('-', "_");
    let secret = register(
        &app,
        json!({"name": step, "url": format!("{url}/do"), "compensate_url": format!("{url}/undo"),
               "timeout": "2m", "when": {"plan": plan}}),
    )
    .await;
    let name = unique("obrestart");
    let req = serde_json::from_value(json!({"name": name, "plan": plan})).unwrap();
    let rt = first.clone();
    let create = tokio::spawn(async move {
        let _ = berqenas::workflows::create::create(&rt, &req, None, "test").await;
    });
    let call = loop {
        if let Some(c) = seen.lock().unwrap().first() {
            break serde_json::from_slice::<Value>(&c.2).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let op = call["operation_id"].as_str().unwrap().to_string();
    let path = call["callback_path"].as_str().unwrap().to_string();
    until_waiting(&app, &op).await;
    // kill -9: the engine stops where it is; the same server starts again.
    first.engine.kill();
    create.abort();
    let second = berqenas::workflows::Runtime::start(platform().await, &identity)
        .await
        .unwrap();
    let app = TestApp::over(second.clone()).await;
    // The operation was taken up, still waiting: not undone, nothing called again.
    let o = until_waiting(&app, &op).await;
    assert_eq!(o["state"], "running", "{o}");
    let (_, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(t["status"], "provisioning", "{t}");
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "no compensation, no second call"
    );
    let (s, b) = call_back(
        &app,
        &path,
        &secret,
        json!({"status": "succeeded", "result": {"id": 7}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let tenant = loop {
        let (_, t) = app
            .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
            .await;
        if t["status"] == "active" {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(tenant["integrations"][&step], json!({"id": 7}));
    let (_, o) = app
        .call(Method::GET, &format!("/api/v1/operations/{op}"), None)
        .await;
    assert_eq!(o["state"], "succeeded", "{o}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    second.engine.shutdown(Duration::from_secs(5)).await;
}
