//! Issue 18 item 1: a create on a second server runs the same extra steps as on
//! `default` (docs/servers.md): a vector store on a real Chroma server (made at
//! create, reached with the tenant's key, deleted by the purge of the tenant on that
//! server), and an onboarding step (called with the tenant, and when it fails the
//! create is undone on that server: no roles, schema or registry row left).

#[path = "support/chroma.rs"]
mod chroma;
mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;
#[path = "support/onboarding.rs"]
mod onboarding;

use std::sync::Arc;
use std::time::Duration;

use common::{superuser, unique, TestApp};
use extra_cluster::{footprint, on, register_pg2};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_store_and_onboarding_steps_on_another_server() {
    let mut chroma = chroma::Chroma::start().await;
    let mut p = common::platform(16).await;
    p.vectors = Some(Arc::new(
        berqenas::vector::chroma::Chroma::new(&chroma.url).unwrap(),
    ));
    p.onboarding_allow_private = true;
    let app = TestApp::serve(p).await;
    let pg2 = register_pg2(&app, "staged-pg2").await;
    let pg2_admin = on(&pg2, "postgres").await;

    // --- a vector store for a tenant on pg2: made, used, deleted by its purge ---
    let name = unique("vecp");
    let created = app
        .create_with(
            json!({"name": name, "server": "pg2", "isolation": "schema", "vector_store": true}),
        )
        .await;
    assert_eq!(created["server"], "pg2", "{created}");
    let collection = format!("tenant_{}", created["id"].as_str().unwrap());
    assert!(
        chroma.collection(&collection).await.is_some(),
        "the collection was made at create"
    );
    let key = created["api_key"].as_str().unwrap();
    let (s, b) = app
        .call_with(
            Method::POST,
            "/api/v1/vectors/upsert",
            Some(json!({"ids": ["a"], "embeddings": [[1.0, 0.0, 0.0]], "documents": ["x"]})),
            Some(key),
            &[],
        )
        .await;
    assert!(s.is_success(), "{s} {b}");
    assert_eq!(chroma.count(&collection).await, 1);
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}?purge=now"),
            Some(json!({"confirm": name})),
        )
        .await;
    assert!(s.is_success(), "{s} {b}");
    assert_eq!(b["status"], "purged", "{b}");
    assert!(
        chroma.collection(&collection).await.is_none(),
        "the purge on pg2 deleted the collection"
    );
    assert_eq!(
        footprint(&pg2_admin, &format!("tenant_{}", name.replace('-', "_"))).await,
        (0, 0, 0),
        "nothing of it left on pg2"
    );

    // --- an onboarding step of the plan runs for a create on pg2 ---
    let control = superuser().await;
    let plan = onboarding::plan(&control).await;
    let (url, seen) = onboarding::receiver(200, r#"{"repository": "r"}"#, Duration::ZERO).await;
    let step = unique("git").replace('-', "_");
    onboarding::register(
        &app,
        json!({"name": step, "url": format!("{url}/hook"), "when": {"plan": plan, "isolation": "schema"}}),
    )
    .await;
    let name = unique("obp");
    let created = app
        .create_with(json!({"name": name, "server": "pg2", "isolation": "schema", "plan": plan}))
        .await;
    assert_eq!(created["status"], "active", "{created}");
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "the step was called once");
    let body: Value = serde_json::from_slice(&calls[0].2).unwrap();
    assert_eq!(body["tenant"]["name"], name.as_str(), "{body}");
    assert_eq!(body["tenant"]["isolation"], "schema", "{body}");

    // --- a failing step undoes the create on pg2 ---
    let (bad, _) = onboarding::receiver(500, "no", Duration::ZERO).await;
    let bad_plan = onboarding::plan(&control).await;
    let bad_step = unique("fail").replace('-', "_");
    onboarding::register(
        &app,
        json!({"name": bad_step, "url": format!("{bad}/hook"), "when": {"plan": bad_plan, "isolation": "database"}}),
    )
    .await;
    let name = unique("obf");
    let (s, b) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": name, "server": "pg2", "isolation": "database", "plan": bad_plan})),
        )
        .await;
    assert!(s.is_client_error() || s.is_server_error(), "{s} {b}");
    assert!(onboarding::traces(&control, &name).await.is_empty());
    assert_eq!(
        footprint(&pg2_admin, &format!("tenant_{}", name.replace('-', "_"))).await,
        (0, 0, 0),
        "the failed create left nothing on pg2: {b}"
    );
    chroma.stop().await;
}
