//! The role check skips its pages when nothing they read has changed
//! (`tenant::integrity::unchanged`), and an escalation is found all the same: a change
//! to a role, or to the registry rows a role is judged by, makes the next round read
//! them, and no more than `SKIPPED_AT_MOST` rounds in a row skip.

use berqenas::tenant::integrity;
use serde_json::json;

use crate::common::{self, superuser, unique, TestApp};

/// Rounds until one skips reading the roles: a round that fixed something, or recorded
/// a new login's verifier, changed what the next one reads.
async fn settle(p: &berqenas::platform::Platform) {
    for _ in 0..3 {
        if !integrity::run_once(p).await.unwrap().roles_read {
            return;
        }
    }
    panic!("every round read the roles");
}

#[tokio::test]
async fn a_round_reads_the_roles_again_when_anything_they_are_judged_by_changed() {
    // Alone: a change by any other test would make the rounds read the roles.
    let _only = crate::exclusive().await;
    let app = TestApp::spawn().await;
    let p = common::platform(4).await;
    let pg = superuser().await;
    let name = unique("roles-unchanged");
    let created = app.create_with(json!({"name": name})).await;
    let login = created["role"].as_str().unwrap().to_string();
    let owner = created["owner_role"].as_str().unwrap().to_string();
    settle(&p).await;
    let r = integrity::run_once(&p).await.unwrap();
    assert!(!r.roles_read, "nothing changed: {r:?}");

    // The registry alone: the tenant's statement timeout, its role untouched.
    pg.execute(
        "INSERT INTO berqenas.tenant_quotas (tenant_id, statement_timeout_ms)
         SELECT id, 4321 FROM berqenas.tenants WHERE name = $1
         ON CONFLICT (tenant_id) DO UPDATE SET statement_timeout_ms = 4321",
        &[&name],
    )
    .await
    .unwrap();
    let r = integrity::run_once(&p).await.unwrap();
    assert!(r.roles_read, "{r:?}");
    assert!(
        r.drift.contains(&(login.clone(), "settings".to_string())),
        "{r:?}"
    );
    let timeout: Vec<String> = pg
        .query_one(
            "SELECT setconfig FROM pg_db_role_setting WHERE setrole = $1::text::regrole AND setdatabase = 0",
            &[&login],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        timeout.contains(&"statement_timeout=4321".to_string()),
        "{timeout:?}"
    );
    // The round after the fix reads again (its fix changed the role), then rests.
    assert!(integrity::run_once(&p).await.unwrap().roles_read);
    assert!(!integrity::run_once(&p).await.unwrap().roles_read);

    // The catalog alone: an escalation of the owner role.
    pg.batch_execute(&format!("ALTER ROLE \"{owner}\" CREATEROLE"))
        .await
        .unwrap();
    let mut r = integrity::run_once(&p).await.unwrap();
    assert!(r.roles_read, "{r:?}");
    r.violations
        .retain(|(role, _)| *role == owner || *role == login);
    r.suspended.retain(|t| *t == name);
    assert_eq!(
        r.violations,
        vec![(owner.clone(), "CREATEROLE".to_string())],
        "{r:?}"
    );
    assert_eq!(r.suspended, vec![name.clone()]);

    // However long nothing changes, no more than SKIPPED_AT_MOST rounds skip in a row.
    settle(&p).await;
    for i in 1..integrity::SKIPPED_AT_MOST {
        let r = integrity::run_once(&p).await.unwrap();
        assert!(!r.roles_read, "round {i} after a read: {r:?}");
    }
    assert!(integrity::run_once(&p).await.unwrap().roles_read);
}
