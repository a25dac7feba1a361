//! Offboarding's states, the worker, bad input, and one shape of a tenant.

use super::*;

/// A suspended tenant deleted and restored comes back suspended, logins still off,
/// also from its archive; the worker purges after the date and frees the name once
/// the archive has expired.
#[tokio::test]
async fn offboarding_keeps_the_previous_status_and_the_worker_purges_and_frees_names() {
    log();
    let app = TestApp::spawn().await;
    let platform = common::runtime(common::platform(4).await).await;
    let name = unique("susp");
    let t = create(&app, &name, "schema").await;
    fill(&t, 3).await;
    let pg = superuser().await;
    let login = t["role"].as_str().unwrap();
    pg.batch_execute(&format!(
        "UPDATE berqenas.tenants SET status = 'suspended' WHERE name = '{name}'; ALTER ROLE \"{login}\" NOLOGIN;"
    ))
    .await
    .unwrap();
    let suspended = snapshot(&t).await;
    let (s, d) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}?retention=0"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["previous_status"], "suspended");
    let (s, back) = restore(&app, &name).await;
    assert_eq!(
        (s, back["status"].as_str()),
        (StatusCode::OK, Some("suspended"))
    );
    assert_eq!(snapshot(&t).await, suspended);
    assert!(!can_log_in(&t).await);

    // Deleted with no retention: the worker's next round purges it.
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}?retention=0"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let purged = worker_until(&platform, &app, &name, |_, got| got["status"] == "purged").await;
    assert!(purged, "the worker purged the tenant");
    let (s, back) = restore(&app, &name).await;
    assert_eq!(
        (s, back["status"].as_str()),
        (StatusCode::OK, Some("suspended")),
        "{back}"
    );
    assert_eq!(
        snapshot(&t).await,
        suspended,
        "rebuilt from the archive, still suspended"
    );

    // Purged again; once its archive expires the name is free for a new tenant.
    let (s, _) = purge_now(&app, &name).await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = app
        .call(Method::POST, "/api/v1/tenants", Some(json!({"name": name})))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "the name stays reserved: {e}");
    pg.execute(
        "UPDATE berqenas.backups SET expires_at = now() - interval '1 second' WHERE tenant_name = $1 AND status = 'succeeded'",
        &[&name],
    )
    .await
    .unwrap();
    let freed = worker_until(&platform, &app, &name, |s, _| s == StatusCode::NOT_FOUND).await;
    assert!(freed, "the registry row went with the archive");
    assert!(
        !store_dir()
            .await
            .join(t["id"].as_str().unwrap())
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().ends_with(".bqb") }),
        "expired objects are deleted"
    );
    create(&app, &name, "schema").await;
}

/// Two servers (their own platforms and pools, one control database) run their
/// workers at once: a due scheduled backup is taken exactly once.
#[tokio::test]
async fn two_servers_take_a_due_scheduled_backup_once() {
    let app = TestApp::spawn().await;
    let name = unique("sched");
    let (s, t) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": name, "backup_schedule": "*/5 * * * *"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    fill(&t, 2).await;
    let (s, policy) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/backup-policy"),
            None,
        )
        .await;
    assert_eq!(
        (s, policy["schedule"].as_str()),
        (StatusCode::OK, Some("*/5 * * * *"))
    );
    let one = common::runtime(common::platform(4).await).await;
    let two = common::runtime(common::platform(4).await).await;
    let pg = superuser().await;
    pg.execute(
        "UPDATE berqenas.backup_policies SET next_run_at = now() - interval '1 second'
          WHERE tenant_id = (SELECT id FROM berqenas.tenants WHERE name = $1)",
        &[&name],
    )
    .await
    .unwrap();
    // Another test's worker may hold the lock for a round: wait for the backup, then
    // give both servers more rounds to take it a second time.
    let scheduled_of = |listed: &Value| -> Vec<Value> {
        listed["backups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["kind"] == "scheduled")
            .cloned()
            .collect()
    };
    let mut extra = 0;
    for _ in 0..40 {
        let (a, b) = tokio::join!(
            berqenas::workflows::backups::worker_round(&one, 1),
            berqenas::workflows::backups::worker_round(&two, 1)
        );
        a.unwrap();
        b.unwrap();
        let (_, listed) = list_backups(&app, &name).await;
        if !scheduled_of(&listed).is_empty() {
            extra += 1;
            if extra == 3 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, listed) = list_backups(&app, &name).await;
    let scheduled = scheduled_of(&listed);
    assert_eq!(scheduled.len(), 1, "{listed}");
    assert_eq!(scheduled[0]["status"], "succeeded");
    let next: bool = pg
        .query_one(
            "SELECT next_run_at > now() FROM berqenas.backup_policies
              WHERE tenant_id = (SELECT id FROM berqenas.tenants WHERE name = $1)",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(next, "the policy moved to its next run");
}

/// Bad input gets a 4xx naming the field, and changes nothing.
#[tokio::test]
async fn bad_input_is_refused_by_field_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let name = unique("badbk");
    let t = create(&app, &name, "schema").await;
    let other = create(&app, &unique("badbk"), "schema").await;
    let b = backup(&app, &name).await;
    let bid = b["id"].as_str().unwrap().to_string();
    let (s, p) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/backup-policy"),
            Some(json!({"schedule": "0 3 * * *", "retention_days": 14})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let pg = superuser().await;
    let never = unique("badbk");
    let names = [
        name.clone(),
        other["name"].as_str().unwrap().to_string(),
        never.clone(),
    ];
    // Other tests run beside this one: only what concerns these tenants is compared.
    let state = || async {
        let pg = superuser().await;
        let mut s = Vec::new();
        for n in &names {
            s.extend(common::footprint(&pg, n).await);
            s.extend(snapshot(&json!({"name": n, "id": "00000000-0000-0000-0000-000000000000", "isolation": "schema"})).await);
        }
        let list = names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(",");
        s.extend(rows(&pg, &format!(
            "SELECT 'backup ' || id || ' ' || status FROM berqenas.backups WHERE tenant_name IN ({list})
             UNION ALL SELECT 'policy ' || p.schedule || ' ' || p.retention_days || ' ' || p.next_run_at
                 FROM berqenas.backup_policies p JOIN berqenas.tenants t ON t.id = p.tenant_id WHERE t.name IN ({list})
             UNION ALL SELECT 'plan-policy ' || schedule FROM berqenas.plan_backup_policies WHERE plan = 'free'
             UNION ALL SELECT 'audit ' || count(*) FROM berqenas.audit_log WHERE tenant_name IN ({list}) OR (tenant_name IS NULL AND action = 'backup_policy_updated')
             UNION ALL SELECT 'ops ' || count(*) FROM berqenas.operations WHERE tenant_name IN ({list})
             UNION ALL SELECT 'keys ' || count(*) FROM berqenas.api_keys k JOIN berqenas.tenants t ON t.id = k.tenant_id
                 WHERE t.name IN ({list}) AND k.revoked_at IS NULL
             UNION ALL SELECT 'offboarding ' || count(*) FROM berqenas.offboarding o JOIN berqenas.tenants t ON t.id = o.tenant_id
                 WHERE t.name IN ({list})
             ORDER BY 1"
        )).await);
        s
    };
    let before = state().await;
    let n = name.as_str();
    let other_name = other["name"].as_str().unwrap();
    let cases: Vec<(Method, String, Option<Value>, StatusCode, &str)> = vec![
        (
            Method::PUT,
            format!("/api/v1/tenants/{n}/backup-policy"),
            Some(json!({"schedule": "0 3 * *"})),
            StatusCode::BAD_REQUEST,
            "schedule",
        ),
        (
            Method::PUT,
            format!("/api/v1/tenants/{n}/backup-policy"),
            Some(json!({"schedule": "every night"})),
            StatusCode::BAD_REQUEST,
            "schedule",
        ),
        (
            Method::PUT,
            format!("/api/v1/tenants/{n}/backup-policy"),
            Some(json!({"schedule": "0 3 * * *", "retention_days": -1})),
            StatusCode::BAD_REQUEST,
            "retention_days",
        ),
        (
            Method::PUT,
            format!("/api/v1/tenants/{n}/backup-policy"),
            Some(json!({"schedule": "0 3 * * *", "retention_days": "ten"})),
            StatusCode::BAD_REQUEST,
            "retention_days",
        ),
        (
            Method::PUT,
            format!("/api/v1/tenants/{n}/backup-policy"),
            Some(json!({"schedule": "0 3 * * *", "keep": 1})),
            StatusCode::BAD_REQUEST,
            "keep",
        ),
        (
            Method::PUT,
            "/api/v1/plans/free/backup-policy".into(),
            Some(json!({"schedule": "99 * * * *"})),
            StatusCode::BAD_REQUEST,
            "schedule",
        ),
        (
            Method::POST,
            "/api/v1/tenants".into(),
            Some(json!({"name": never, "backup_schedule": "daily"})),
            StatusCode::BAD_REQUEST,
            "backup_schedule",
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{n}?retention=-1"),
            None,
            StatusCode::BAD_REQUEST,
            "retention",
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{n}?retention=soon"),
            None,
            StatusCode::BAD_REQUEST,
            "retention",
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{n}"),
            Some(json!({"retention_days": -5})),
            StatusCode::BAD_REQUEST,
            "retention_days",
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{n}?purge=now"),
            None,
            StatusCode::BAD_REQUEST,
            "confirm",
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{n}?purge=now"),
            Some(json!({"confirm": other_name})),
            StatusCode::BAD_REQUEST,
            "confirm",
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{n}?purge=later"),
            None,
            StatusCode::BAD_REQUEST,
            "purge",
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{n}?force=1"),
            None,
            StatusCode::BAD_REQUEST,
            "force",
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{n}/backups/{bid}/restore"),
            Some(json!({"as": "Bad Name"})),
            StatusCode::BAD_REQUEST,
            "as",
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{n}/backups/{bid}/restore"),
            Some(json!({"as": other_name})),
            StatusCode::CONFLICT,
            "",
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{n}/backups/{bid}/restore"),
            Some(json!({"into": "x"})),
            StatusCode::BAD_REQUEST,
            "into",
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{other_name}/backups/{bid}/restore"),
            None,
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{n}/backups/0190e7a0-0000-7000-8000-000000000000/restore"),
            None,
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            Method::POST,
            "/api/v1/backups/not-a-uuid/verify".into(),
            None,
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            Method::GET,
            "/api/v1/backups/0190e7a0-0000-7000-8000-000000000000".into(),
            None,
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{n}/restore"),
            None,
            StatusCode::CONFLICT,
            "status",
        ),
        (
            Method::POST,
            "/api/v1/tenants/no-such-tenant/backups".into(),
            None,
            StatusCode::NOT_FOUND,
            "",
        ),
    ];
    for (method, path, body, want, field) in cases {
        let (s, e) = app.call(method.clone(), &path, body.clone()).await;
        assert_eq!(s, want, "{method} {path} {body:?}: {e}");
        if !field.is_empty() {
            assert_eq!(
                e["error"]["field"].as_str(),
                Some(field),
                "{method} {path}: {e}"
            );
        }
        assert!(
            e["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{e}"
        );
    }
    let (_, e) = app
        .call(Method::POST, &format!("/api/v1/tenants/{n}/restore"), None)
        .await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is already active"),
        "{e}"
    );
    assert_eq!(state().await, before, "nothing changed");
    assert!(can_log_in(&t).await && key_works(&app, &t).await);
    drop(pg);
}

/// One shape of a tenant: what `DELETE` answers is what `GET` and the list show of a
/// deleted or purged tenant; any other tenant has the same fields, null.
#[tokio::test]
async fn a_deleted_tenant_reads_as_its_delete_answered() {
    let app = TestApp::spawn().await;
    let name = unique("one-shape");
    let live = create(&app, &name, "schema").await;
    let fields = [
        "previous_status",
        "purge_after",
        "purged_at",
        "final_backup_id",
        "archive_expires_at",
    ];
    let (s, got) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    for f in fields {
        assert!(live[f].is_null() && got[f].is_null(), "{f}: {got}");
        assert!(
            got.as_object().unwrap().contains_key(f),
            "{f} missing: {got}"
        );
    }

    let (s, deleted) = app
        .call(Method::DELETE, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["previous_status"], "active");
    assert!(deleted["final_backup_id"].is_string());
    let (s, got) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    let without_time = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("updated_at");
        v
    };
    assert_eq!(without_time(&got), without_time(&deleted));
    let (s, page) = app
        .call(
            Method::GET,
            "/api/v1/tenants?status=deleted&limit=1000",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let listed = page["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name.as_str())
        .expect("listed")
        .clone();
    assert_eq!(without_time(&listed), without_time(&deleted));

    let (s, purged) = purge_now(&app, &name).await;
    assert_eq!(s, StatusCode::OK, "{purged}");
    assert_eq!(purged["status"], "purged");
    assert!(purged["purged_at"].is_string());
    let (s, got) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(without_time(&got), without_time(&purged));
    for f in [
        "previous_status",
        "purge_after",
        "final_backup_id",
        "archive_expires_at",
    ] {
        assert_eq!(got[f], deleted[f], "{f}");
    }
}
