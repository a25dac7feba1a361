//! A tenant's own changes, its keys, users, network and backups; refusals; secrets.

use super::*;
use crate::common::{cli, stdout_json, superuser};

#[tokio::test]
async fn a_tenant_lifecycle_emits_each_event_once_in_order() {
    let app = TestApp::spawn().await;
    let name = unique("ev-life");
    let created = app
        .create_with(
            json!({"name": name, "db_quota": "1GB", "public_api": true, "trial_days": 7,
                            "metadata": {"crm": "c-42"}}),
        )
        .await;
    let evts = events(&app, &name).await;
    assert_eq!(types(&evts), ["tenant.created"]);
    let e = &evts[0];
    assert_eq!(e["tenant"]["name"], name);
    assert_eq!(e["tenant"]["id"], created["id"]);
    assert!(e["id"].as_str().unwrap().len() == 36 && e["occurred_at"].is_string());
    let d = &e["data"];
    assert_eq!(d["status"], "trial");
    assert_eq!(d["plan"], "free");
    assert_eq!(d["isolation"], "schema");
    assert_eq!(d["db_quota_bytes"], 1i64 << 30);
    assert_eq!(d["metadata"]["crm"], "c-42");
    assert_eq!(d["restored_from"], Value::Null);
    let key = created["api_key"].as_str().unwrap();
    let prefix = d["api_key"]["prefix"].as_str().unwrap();
    assert!(
        key.starts_with(prefix) && prefix.starts_with("bqk_"),
        "{prefix}"
    );

    // PATCH: the fields, then the plan (plan and quotas move with it).
    let path = format!("/api/v1/tenants/{name}");
    ok(
        &app,
        Method::PATCH,
        &path,
        Some(json!({"db_quota": "2GB", "metadata": {"crm": "c-43"}})),
    )
    .await;
    let evts = new_events(&app, &name, 1).await;
    assert_eq!(types(&evts), ["tenant.updated", "quota.updated"]);
    let u = &evts[0]["data"];
    assert_eq!(u["changed"], json!(["db_quota_bytes", "metadata"]));
    assert_eq!(u["previous"]["db_quota_bytes"], 1i64 << 30);
    assert_eq!(u["tenant"]["db_quota_bytes"], 2i64 << 30);
    let q = &evts[1]["data"];
    assert_eq!(
        q["changes"]["db_quota_bytes"],
        json!({"from": 1i64 << 30, "to": 2i64 << 30})
    );
    assert_eq!(q["quotas"]["db_quota_bytes"], 2i64 << 30);

    ok(&app, Method::PATCH, &path, Some(json!({"plan": "starter"}))).await;
    let evts = new_events(&app, &name, 3).await;
    // The configuration document follows the plan (docs/config.md).
    assert_eq!(
        types(&evts),
        [
            "tenant.updated",
            "tenant.plan_changed",
            "quota.updated",
            "tenant.config_changed"
        ]
    );
    assert_eq!(evts[3]["data"]["patch"], json!({"plan": "starter"}));
    let p = &evts[1]["data"];
    assert_eq!(
        (p["from"].as_str(), p["to"].as_str()),
        (Some("free"), Some("starter"))
    );
    assert_eq!(p["quotas"]["max_connections"], 20);
    assert_eq!(
        evts[2]["data"]["changes"]["max_connections"],
        json!({"from": 5, "to": 20})
    );

    // A PATCH that changes nothing announces nothing.
    ok(&app, Method::PATCH, &path, Some(json!({"plan": "starter"}))).await;
    assert_eq!(events(&app, &name).await.len(), 7);

    ok(&app, Method::POST, &format!("{path}/activate"), None).await;
    ok(
        &app,
        Method::POST,
        &format!("{path}/suspend"),
        Some(json!({"reason": "payment overdue"})),
    )
    .await;
    ok(&app, Method::POST, &format!("{path}/resume"), None).await;
    let evts = new_events(&app, &name, 7).await;
    assert_eq!(
        types(&evts),
        ["tenant.activated", "tenant.suspended", "tenant.resumed"]
    );
    assert_eq!(
        evts[0]["data"],
        json!({"from": "trial", "cause": "admin", "plan": "starter"})
    );
    assert_eq!(
        evts[1]["data"],
        json!({"from": "active", "cause": "admin", "reason": "payment overdue"})
    );
    assert_eq!(evts[2]["data"]["reason"], "payment overdue");
    assert!(evts[2]["data"]["suspended_at"].is_string());

    // Delete: the final backup is announced with it; restore; delete and purge.
    let deleted = ok(&app, Method::DELETE, &path, None).await;
    let evts = new_events(&app, &name, 10).await;
    assert_eq!(types(&evts), ["backup.completed", "tenant.deleted"]);
    assert_eq!(evts[0]["data"]["kind"], "final");
    assert_eq!(evts[0]["data"]["backup_id"], deleted["final_backup_id"]);
    let d = &evts[1]["data"];
    assert_eq!(d["previous_status"], "active");
    assert_eq!(d["final_backup_id"], deleted["final_backup_id"]);
    assert_eq!(d["purge_after"], deleted["purge_after"]);

    ok(&app, Method::POST, &format!("{path}/restore"), None).await;
    let evts = new_events(&app, &name, 12).await;
    assert_eq!(types(&evts), ["tenant.restored"]);
    assert_eq!(
        evts[0]["data"],
        json!({"from": "deleted", "status": "active", "archive_id": null})
    );

    ok(
        &app,
        Method::DELETE,
        &format!("{path}?purge=now"),
        Some(json!({"confirm": name})),
    )
    .await;
    let evts = new_events(&app, &name, 13).await;
    assert_eq!(
        types(&evts),
        ["backup.completed", "tenant.deleted", "tenant.purged"]
    );
    assert_eq!(
        evts[2]["data"]["archive_id"],
        evts[1]["data"]["final_backup_id"]
    );

    // A purged tenant rebuilt from its archive.
    ok(&app, Method::POST, &format!("{path}/restore"), None).await;
    let evts = new_events(&app, &name, 16).await;
    assert_eq!(types(&evts), ["tenant.restored"]);
    assert_eq!(evts[0]["data"]["from"], "purged");
    assert_eq!(
        evts[0]["data"]["archive_id"],
        evts_archive(&app, &name).await
    );

    // In seq order, each once.
    let all = events(&app, &name).await;
    let seqs: Vec<i64> = all.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

/// The archive the purge named.
async fn evts_archive(app: &TestApp, name: &str) -> Value {
    one(&events(app, name).await, "tenant.purged")["data"]["archive_id"].clone()
}

#[tokio::test]
async fn keys_users_quotas_and_the_network_emit_their_events() {
    let app = TestApp::spawn().await;
    let name = unique("ev-keys");
    app.create_with(json!({"name": name, "vpn_enabled": true, "public_api": true}))
        .await;
    let base = format!("/api/v1/tenants/{name}");

    let key = ok(
        &app,
        Method::POST,
        &format!("{base}/api-keys"),
        Some(json!({"name": "ci", "expires_in": "1h"})),
    )
    .await;
    let rotated = ok(
        &app,
        Method::POST,
        &format!("{base}/api-keys/{}/rotate", key["id"].as_str().unwrap()),
        None,
    )
    .await;
    ok(
        &app,
        Method::DELETE,
        &format!("{base}/api-keys/{}", rotated["id"].as_str().unwrap()),
        None,
    )
    .await;
    // Revoking a revoked key changes nothing: no event.
    ok(
        &app,
        Method::DELETE,
        &format!("{base}/api-keys/{}", rotated["id"].as_str().unwrap()),
        None,
    )
    .await;
    ok(
        &app,
        Method::PUT,
        &format!("{base}/quotas"),
        Some(json!({"max_users": 3})),
    )
    .await;
    let user = ok(
        &app,
        Method::POST,
        &format!("{base}/users"),
        Some(json!({"email": "ada@example.com", "role": "developer"})),
    )
    .await;
    ok(
        &app,
        Method::DELETE,
        &format!("{base}/users/ada@example.com"),
        None,
    )
    .await;
    ok(
        &app,
        Method::PUT,
        &format!("{base}/quotas"),
        Some(json!({"max_connections": 3, "statement_timeout_ms": 5000})),
    )
    .await;
    let rule = ok(
        &app,
        Method::POST,
        &format!("{base}/firewall"),
        Some(json!({"cidr": "203.0.113.0/24", "service": "postgres"})),
    )
    .await;
    ok(
        &app,
        Method::DELETE,
        &format!(
            "{base}/firewall/{}",
            rule["rule"]["id"].as_str().or(rule["id"].as_str()).unwrap()
        ),
        None,
    )
    .await;
    ok(
        &app,
        Method::POST,
        &format!("{base}/vpn/peers"),
        Some(json!({"name": "laptop"})),
    )
    .await;
    ok(
        &app,
        Method::POST,
        &format!("{base}/credentials/rotate"),
        None,
    )
    .await;

    let evts = events(&app, &name).await;
    assert_eq!(
        types(&evts),
        [
            "tenant.created",
            "api_key.created",
            "api_key.rotated",
            "api_key.revoked",
            "quota.updated",
            "user.invited",
            "user.removed",
            "quota.updated",
            "network.changed",
            "network.changed",
            "network.changed",
            "tenant.updated",
        ]
    );
    assert_eq!(
        evts[1]["data"],
        json!({"key_id": key["id"], "prefix": key["prefix"], "name": "ci", "expires_at": key["expires_at"]})
    );
    let r = &evts[2]["data"];
    assert_eq!(r["key_id"], rotated["id"]);
    assert_eq!(r["replaced_key_id"], key["id"]);
    assert_eq!(r["replaced_prefix"], key["prefix"]);
    assert!(r["replaced_expires_at"].is_string());
    assert_eq!(evts[3]["data"]["key_id"], rotated["id"]);
    assert_eq!(evts[4]["data"]["changes"]["max_users"]["to"], 3);
    assert_eq!(
        evts[5]["data"],
        json!({"email": "ada@example.com", "role": "developer", "db_user": user["db_user"]})
    );
    assert_eq!(evts[6]["data"]["email"], "ada@example.com");
    let q = &evts[7]["data"];
    assert_eq!(q["changes"]["max_connections"], json!({"from": 5, "to": 3}));
    assert_eq!(q["changes"]["statement_timeout_ms"]["to"], 5000);
    assert_eq!(q["force"], false);
    let n = &evts[8]["data"];
    assert_eq!(n["change"], "firewall_rule_added");
    assert_eq!(
        n["rule"],
        json!({"cidr": "203.0.113.0/24", "service": "postgres"})
    );
    assert_eq!(n["rules"].as_array().unwrap().len(), 1);
    assert_eq!(n["access_mode"], "hybrid");
    assert!(n["vpn_subnet"].is_string());
    assert_eq!(evts[9]["data"]["change"], "firewall_rule_removed");
    assert_eq!(evts[9]["data"]["rules"], json!([]));
    let peer = &evts[10]["data"];
    assert_eq!(peer["change"], "vpn_peer_added");
    assert_eq!(peer["peer"]["name"], "laptop");
    assert!(peer["peer"]["public_key"].is_string());
    assert_eq!(evts[11]["data"]["changed"], json!(["credentials"]));

    // The CLI lists them too, filtered by type.
    let out = cli(
        &app,
        &[
            "events",
            "list",
            "--tenant",
            &name,
            "--type",
            "api_key.*",
            "--json",
        ],
    )
    .await;
    let page = stdout_json(&out);
    assert_eq!(
        types(page["events"].as_array().unwrap()),
        ["api_key.created", "api_key.rotated", "api_key.revoked"]
    );
    let out = cli(&app, &["events", "list", "--tenant", &name]).await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("network.changed"));
}

#[tokio::test]
async fn turning_the_vpn_on_is_a_network_change() {
    let app = TestApp::spawn().await;
    let name = unique("ev-vpn");
    app.create(&name).await;
    ok(
        &app,
        Method::PATCH,
        &format!("/api/v1/tenants/{name}"),
        Some(json!({"vpn_enabled": true})),
    )
    .await;
    let evts = events(&app, &name).await;
    assert_eq!(
        types(&evts),
        ["tenant.created", "tenant.updated", "network.changed"]
    );
    assert_eq!(
        evts[1]["data"]["changed"],
        json!(["vpn_enabled", "vpn_subnet", "access_mode"])
    );
    assert_eq!(evts[2]["data"]["change"], "access_changed");
    assert_eq!(evts[2]["data"]["access_mode"], "hybrid");
}

#[tokio::test]
async fn refused_requests_emit_nothing() {
    let app = TestApp::spawn().await;
    let name = unique("ev-refuse");
    app.create(&name).await;
    let base = format!("/api/v1/tenants/{name}");
    let refused: Vec<(Method, String, Option<Value>, StatusCode)> = vec![
        (
            Method::PATCH,
            base.clone(),
            Some(json!({"db_quota": "lots"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            base.clone(),
            Some(json!({"plan": "gold"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("{base}/resume"),
            None,
            StatusCode::CONFLICT,
        ),
        (
            Method::POST,
            format!("{base}/activate"),
            None,
            StatusCode::CONFLICT,
        ),
        (
            Method::POST,
            "/api/v1/tenants".into(),
            Some(json!({"name": name})),
            StatusCode::CONFLICT,
        ),
        (
            Method::PUT,
            format!("{base}/quotas"),
            Some(json!({"max_connections": 0})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("{base}/users"),
            Some(json!({"email": "nope", "role": "developer"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("{base}/users"),
            Some(json!({"email": "ada@example.com", "role": "superuser"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("{base}/suspend"),
            Some(json!({"reason": ""})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::DELETE,
            format!("{base}/api-keys/bqk_0123456789abcdef"),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            format!("{base}/firewall"),
            Some(json!({"cidr": "not-a-range"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("{base}/vpn/peers"),
            Some(json!({"name": "laptop"})),
            StatusCode::CONFLICT,
        ),
        (
            Method::DELETE,
            format!("{base}?purge=now"),
            Some(json!({"confirm": "someone-else"})),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, path, body, want) in refused {
        let (s, v) = app.call(method.clone(), &path, body.clone()).await;
        assert_eq!(s, want, "{method} {path} {body:?}: {v}");
        assert_eq!(
            types(&events(&app, &name).await),
            ["tenant.created"],
            "{method} {path} {body:?} emitted"
        );
    }
    // A refused create of a new name leaves no event of it either.
    let other = unique("ev-refuse-new");
    let (s, _) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": other, "db_quota": "1KB"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(events(&app, &other).await.is_empty());
}

#[tokio::test]
async fn no_event_holds_a_secret_the_api_handed_out() {
    let app = TestApp::spawn().await;
    let name = unique("ev-secret");
    let created = app.create(&name).await;
    let base = format!("/api/v1/tenants/{name}");
    let mut secrets = vec![
        created["api_key"].as_str().unwrap().to_string(),
        created["credentials"]["password"]
            .as_str()
            .unwrap()
            .to_string(),
        created["credentials"]["dsn"].as_str().unwrap().to_string(),
    ];
    let key = ok(&app, Method::POST, &format!("{base}/api-keys"), None).await;
    secrets.push(key["api_key"].as_str().unwrap().to_string());
    let rotated = ok(
        &app,
        Method::POST,
        &format!("{base}/api-keys/{}/rotate", key["id"].as_str().unwrap()),
        None,
    )
    .await;
    secrets.push(rotated["api_key"].as_str().unwrap().to_string());
    let user = ok(
        &app,
        Method::POST,
        &format!("{base}/users"),
        Some(json!({"email": "bo@example.com", "role": "auditor"})),
    )
    .await;
    secrets.push(
        user["credentials"]["password"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let creds = ok(
        &app,
        Method::POST,
        &format!("{base}/credentials/rotate"),
        None,
    )
    .await;
    secrets.push(creds["password"].as_str().unwrap().to_string());
    ok(&app, Method::POST, &format!("{base}/backups"), None).await;

    let evts = events(&app, &name).await;
    assert!(evts.len() >= 6, "{:?}", types(&evts));
    let text = serde_json::to_string(&evts).unwrap();
    // An API key's secret part (`bqk_<prefix>_<secret>`), not its public prefix
    // (which events do carry); a password whole. Both are URL-safe base64, which has
    // `_`: a piece after the last one can be a single character found anywhere (a CI
    // flake, once in each of the two checks below).
    let secret_part = |s: &str| -> String {
        let part = match s.strip_prefix("bqk_").and_then(|k| k.split_once('_')) {
            Some((_prefix, secret)) => secret,
            None => s,
        };
        assert!(part.len() >= 16, "{s}: too short to look for");
        part.to_string()
    };
    for s in &secrets {
        assert!(!text.contains(&secret_part(s)), "a secret in {text}");
    }
    assert!(!text.contains("postgresql://"), "{text}");
    // And what is in the table itself.
    let pg = superuser().await;
    let raw: String = pg
        .query_one(
            "SELECT coalesce(string_agg(data::text, ' '), '') FROM berqenas.outbox WHERE tenant_name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    for s in &secrets {
        assert!(
            !raw.contains(&secret_part(s)),
            "a secret in the outbox: {raw}"
        );
    }
}

#[tokio::test]
async fn backups_and_restores_emit_their_events() {
    let app = TestApp::spawn().await;
    let name = unique("ev-bak");
    app.create(&name).await;
    let base = format!("/api/v1/tenants/{name}");
    let b = ok(&app, Method::POST, &format!("{base}/backups"), None).await;
    ok(
        &app,
        Method::POST,
        &format!("{base}/backups/{}/restore", b["id"].as_str().unwrap()),
        None,
    )
    .await;
    let evts = events(&app, &name).await;
    assert_eq!(
        types(&evts),
        ["tenant.created", "backup.completed", "restore.completed"]
    );
    let c = &evts[1]["data"];
    assert_eq!(c["backup_id"], b["id"]);
    assert_eq!(c["kind"], "manual");
    assert_eq!(c["size_bytes"], b["size_bytes"]);
    assert_eq!(c["sha256"], b["sha256"]);
    assert_eq!(c["encrypted"], true);
    assert_eq!(
        evts[2]["data"],
        json!({"backup_id": b["id"], "into": "in_place", "source_tenant": null,
               "template_version": berqenas::template::Template::builtin().latest_version()})
    );

    // Into a new tenant: it is created, then restored, both its own events.
    let copy = unique("ev-bak-copy");
    ok(
        &app,
        Method::POST,
        &format!("{base}/backups/{}/restore", b["id"].as_str().unwrap()),
        Some(json!({"as": copy})),
    )
    .await;
    let evts = events(&app, &copy).await;
    assert_eq!(types(&evts), ["tenant.created", "restore.completed"]);
    assert_eq!(evts[0]["data"]["restored_from"], b["id"]);
    assert_eq!(evts[1]["data"]["into"], "new_tenant");
    assert_eq!(evts[1]["data"]["source_tenant"], name);
    assert_eq!(
        types(&events(&app, &name).await).len(),
        3,
        "nothing more on the source"
    );
}
