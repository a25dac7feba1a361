//! The whole story of backups and offboarding in each isolation mode.

use super::*;

/// The whole story for one isolation mode.
async fn lifecycle(isolation: &str) {
    log();
    let app = TestApp::spawn().await;
    let name = unique(&format!("bk{}", &isolation[..2]));
    let t = create(&app, &name, isolation).await;
    fill(&t, 25).await;
    let original = snapshot(&t).await;
    assert!(original.iter().any(|l| l.contains(" 25 ")), "{original:#?}");

    // Back up: encrypted, with a manifest; the object holds no plaintext.
    let b = backup(&app, &name).await;
    assert_eq!(b["status"], "succeeded");
    assert_eq!(b["encrypted"], true);
    assert_eq!(b["isolation"], isolation);
    assert_eq!(b["sha256"].as_str().unwrap().len(), 64);
    let apps = b["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "applications")
        .unwrap();
    assert_eq!(apps["rows"], 25);
    let object = store_dir().await.join(format!(
        "{}/{}.bqb",
        t["id"].as_str().unwrap(),
        b["id"].as_str().unwrap()
    ));
    let bytes = std::fs::read(&object).unwrap();
    assert_eq!(bytes.len() as i64, b["size_bytes"].as_i64().unwrap());
    assert!(bytes.starts_with(b"BQB1"));
    assert!(
        !bytes.windows(7).any(|w| w == b"team-1\t"),
        "no plaintext rows in the object"
    );
    let (s, listed) = list_backups(&app, &name).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(listed["backups"][0]["id"], b["id"]);
    let bid = b["id"].as_str().unwrap().to_string();
    let (s, report) = verify(&app, &bid).await;
    assert_eq!(
        (s, report["ok"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{report}"
    );

    // Rows lost; the restore in place brings back exactly what was there.
    let c = connect_as(&t["credentials"]).await;
    c.batch_execute("DELETE FROM deployments; DELETE FROM resources; DELETE FROM applications WHERE name <> 'app-1';")
        .await
        .unwrap();
    assert_ne!(snapshot(&t).await, original);
    let (s, restored) = restore_backup(&app, &name, &bid, None).await;
    assert_eq!(s, StatusCode::OK, "{restored}");
    assert_eq!(snapshot(&t).await, original, "in-place restore");
    assert!(
        c.query_one("SELECT 1", &[]).await.is_err(),
        "sessions end during a restore"
    );
    assert!(can_log_in(&t).await, "logins are back after the restore");

    // Into a new tenant: same rows, new credentials and key; the source is untouched.
    let copy_name = unique(&format!("cp{}", &isolation[..2]));
    let (s, copy) = restore_backup(&app, &name, &bid, Some(json!({"as": copy_name}))).await;
    assert_eq!(s, StatusCode::CREATED, "{copy}");
    assert_eq!(copy["isolation"], isolation);
    let cc = connect_as(&copy["credentials"]).await;
    let n = count(&cc, "SELECT count(*) FROM resources", &[]).await;
    assert_eq!(n, 25);
    let apps_of = |c: &'static str| {
        format!("SELECT string_agg(name || desired_state::text, ',' ORDER BY name) FROM applications{c}")
    };
    let copied: String = cc.query_one(&apps_of(""), &[]).await.unwrap().get(0);
    let source: String = connect_as(&t["credentials"])
        .await
        .query_one(&apps_of(""), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(copied, source);
    assert!(key_works(&app, &copy).await);
    assert_eq!(snapshot(&t).await, original, "the source is untouched");
    drop(cc);
    let (s, _) = purge_now(&app, &copy_name).await;
    assert_eq!(s, StatusCode::OK);

    // Soft delete: the session dies, logins and the key are refused, nothing dropped.
    let session = connect_as(&t["credentials"]).await;
    let (s, deleted) = app
        .call(Method::DELETE, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["status"], "deleted");
    assert_eq!(deleted["previous_status"], "active");
    assert!(deleted["final_backup_id"].is_string());
    assert!(
        deleted["archive_expires_at"].as_str().unwrap() > deleted["purge_after"].as_str().unwrap()
    );
    assert!(session.query_one("SELECT 1", &[]).await.is_err());
    assert!(!can_log_in(&t).await, "login refused");
    assert!(!key_works(&app, &t).await, "API key refused");
    let (s, e) = app
        .call(Method::DELETE, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_state"))
    );
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("is already deleted"));

    // Restore within the retention: exactly as before, credentials and key included.
    let (s, back) = restore(&app, &name).await;
    assert_eq!(
        (s, back["status"].as_str()),
        (StatusCode::OK, Some("active")),
        "{back}"
    );
    assert_eq!(snapshot(&t).await, original, "delete + restore");
    assert!(can_log_in(&t).await && key_works(&app, &t).await);

    // Purge: every object gone from the catalog, the registry row kept.
    let (s, purged) = purge_now(&app, &name).await;
    assert_eq!(
        (s, purged["status"].as_str()),
        (StatusCode::OK, Some("purged")),
        "{purged}"
    );
    let gone = snapshot(&t).await;
    assert!(
        gone.iter().all(|l| l.starts_with("data ")
            || l.starts_with("applications 0")
            || l.starts_with("resources 0")
            || l.starts_with("deployments 0")
            || l.starts_with("user_activity 0")),
        "{gone:#?}"
    );
    let pg = superuser().await;
    let stem = format!("tenant_{}", name.replace('-', "_"));
    let left = count(
        &pg,
        "SELECT (SELECT count(*) FROM pg_roles WHERE rolname LIKE $1 || '%')
                  + (SELECT count(*) FROM pg_namespace WHERE nspname = $1)
                  + (SELECT count(*) FROM pg_database WHERE datname = $1)",
        &[&stem],
    )
    .await;
    assert_eq!(left, 0, "no role, schema or database left");
    assert!(!can_log_in(&t).await && !key_works(&app, &t).await);

    // Even purged, the archive brings it back, with the original password and key.
    let (s, back) = restore(&app, &name).await;
    assert_eq!(
        (s, back["status"].as_str()),
        (StatusCode::OK, Some("active")),
        "{back}"
    );
    assert_eq!(
        snapshot(&t).await,
        original,
        "purge + restore from the archive"
    );
    assert!(can_log_in(&t).await, "the original password works");
    assert!(key_works(&app, &t).await, "the original key works");
    let mut audited = audit_actions(&name).await;
    audited.retain(|a| {
        [
            "backup_created",
            "backup_restored",
            "tenant_soft_deleted",
            "tenant_restored",
            "tenant_purged",
        ]
        .contains(&a.as_str())
    });
    assert_eq!(
        audited,
        [
            "backup_created",
            "backup_restored",
            "backup_created",
            "tenant_soft_deleted",
            "tenant_restored",
            "backup_created",
            "tenant_soft_deleted",
            "tenant_purged",
            "tenant_restored"
        ]
    );
}

#[tokio::test]
async fn schema_mode_backup_restore_delete_purge_and_back() {
    lifecycle("schema").await;
}

#[tokio::test]
async fn database_mode_backup_restore_delete_purge_and_back() {
    lifecycle("database").await;
}

#[tokio::test]
async fn shared_mode_backup_restore_delete_purge_and_back() {
    lifecycle("shared").await;
}
