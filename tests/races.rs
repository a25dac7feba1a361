//! Races on one tenant, through the API as clients make them: fifty creations of one
//! name at once, and rounds of concurrent lifecycle changes (suspend, resume, delete,
//! restore, purge, update, quota changes, backup restores). Every answer is 2xx or 409,
//! never a 500 (no deadlock between lock orders); the tenant ends in a consistent state
//! that matches the last change to win; nothing is left half made.

mod common;
#[path = "support/invariants.rs"]
mod invariants;

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use common::{superuser, unique, TestApp};

#[tokio::test]
async fn fifty_creations_of_one_name_give_one_tenant_in_every_mode() {
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    for mode in ["schema", "shared", "database"] {
        let name = unique(&format!("race-{mode}"));
        let calls = (0..50).map(|_| {
            app.call(
                Method::POST,
                "/api/v1/tenants",
                Some(json!({"name": name, "isolation": mode})),
            )
        });
        let answers = join_all(calls).await;
        let created: Vec<&Value> = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .map(|(_, b)| b)
            .collect();
        let refused = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::CONFLICT)
            .count();
        let others: Vec<String> = answers
            .iter()
            .filter(|(s, _)| *s != StatusCode::CREATED && *s != StatusCode::CONFLICT)
            .map(|(s, b)| format!("{s} {b}"))
            .collect();
        assert!(others.is_empty(), "{mode}: {others:?}");
        assert_eq!(created.len(), 1, "{mode}: one 201");
        assert_eq!(refused, 49, "{mode}: 49 × 409");
        // The winner is whole and usable.
        invariants::logs_in(&created[0]["credentials"])
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        let (s, t) = app
            .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(t["status"], "active", "{mode}: {t}");
        let broken = invariants::violations(&pg, &name).await;
        assert!(broken.is_empty(), "{mode}: {broken:?}");
    }
}

/// The state a tenant's registry row, logins and offboarding say it is in, checked
/// against each other: a deleted or suspended tenant never logs in.
async fn consistent(app: &TestApp, pg: &tokio_postgres::Client, name: &str) -> String {
    let (s, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let status = t["status"].as_str().unwrap().to_string();
    let login = t["role"].as_str().unwrap();
    let can_login: Option<bool> = pg
        .query_opt(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&login],
        )
        .await
        .unwrap()
        .map(|r| r.get(0));
    match status.as_str() {
        "active" | "trial" => {
            assert_eq!(
                can_login,
                Some(true),
                "{name} is {status} but cannot log in"
            );
            let (_, creds) = app
                .call(
                    Method::GET,
                    &format!("/api/v1/tenants/{name}/credentials"),
                    None,
                )
                .await;
            invariants::logs_in(&creds)
                .await
                .unwrap_or_else(|e| panic!("{name} is {status}: {e}"));
        }
        "suspended" | "deleted" => {
            assert_eq!(
                can_login,
                Some(false),
                "{name} is {status} but its login is on"
            );
        }
        "purged" => assert_eq!(can_login, None, "{name} is purged but its login exists"),
        other => panic!("{name}: unexpected status {other}"),
    }
    let broken = invariants::violations(pg, name).await;
    assert!(broken.is_empty(), "{name}: {broken:?}");
    status
}

/// The status the last successful state change left, from the audit trail.
async fn last_change(pg: &tokio_postgres::Client, name: &str) -> Option<String> {
    let action: Option<(String, Option<String>)> = pg
        .query_opt(
            "SELECT action, details->>'to' FROM berqenas.audit_log
              WHERE tenant_name = $1 AND action IN ('tenant_suspended', 'tenant_resumed', 'tenant_soft_deleted',
                                                     'tenant_restored', 'tenant_purged', 'tenant_created')
              ORDER BY id DESC LIMIT 1",
            &[&name],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1)));
    action.map(|(a, to)| match a.as_str() {
        "tenant_suspended" => "suspended".to_string(),
        "tenant_soft_deleted" => "deleted".to_string(),
        "tenant_purged" => "purged".to_string(),
        // A restore brings back the status the tenant had before its delete.
        "tenant_restored" => to.unwrap_or_else(|| "active".into()),
        _ => "active".to_string(),
    })
}

#[tokio::test]
async fn concurrent_lifecycle_changes_end_consistent_with_no_deadlock() {
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    for mode in ["schema", "database", "shared"] {
        let name = unique(&format!("churn-{mode}"));
        app.create_with(json!({"name": name, "isolation": mode}))
            .await;
        let path = format!("/api/v1/tenants/{name}");
        let (s, b) = app
            .call(Method::POST, &format!("{path}/backups"), None)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let backup = b["id"].as_str().unwrap().to_string();
        for round in 0..20 {
            let purge = round % 7 == 6;
            let mut calls: Vec<(Method, String, Option<Value>)> = vec![
                (Method::POST, format!("{path}/suspend"), None),
                (Method::POST, format!("{path}/resume"), None),
                (Method::DELETE, path.clone(), None),
                (Method::POST, format!("{path}/restore"), None),
                (
                    Method::PATCH,
                    path.clone(),
                    Some(json!({"plan": if round % 2 == 0 { "starter" } else { "free" }})),
                ),
                (
                    Method::PUT,
                    format!("{path}/quotas"),
                    Some(json!({"max_connections": 5 + round})),
                ),
                (
                    Method::POST,
                    format!("{path}/backups/{backup}/restore"),
                    Some(json!({})),
                ),
            ];
            if purge {
                calls.push((
                    Method::DELETE,
                    format!("{path}?purge=now"),
                    Some(json!({"confirm": name})),
                ));
            }
            let answers = join_all(
                calls
                    .iter()
                    .map(|(m, p, b)| app.call(m.clone(), p, b.clone())),
            )
            .await;
            for ((m, p, _), (s, b)) in calls.iter().zip(&answers) {
                assert!(
                    s.is_success() || *s == StatusCode::CONFLICT,
                    "{mode} round {round}: {m} {p}: {s} {b}"
                );
            }
            let status = consistent(&app, &pg, &name).await;
            if let Some(expected) = last_change(&pg, &name).await {
                assert_eq!(
                    status, expected,
                    "{mode} round {round}: the last change to win"
                );
            }
            if status == "purged" {
                // Back from its archive for the next round.
                let (s, b) = app
                    .call(Method::POST, &format!("{path}/restore"), None)
                    .await;
                assert!(s.is_success(), "{b}");
            }
        }
    }
}
