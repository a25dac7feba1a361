//! The audit trail: a hash chain that `audit verify` checks, that names the row a
//! superuser altered or removed by hand, that concurrent writers never fork, and that no
//! tenant role can read or change. Also the listing endpoints and seed 002's views.
//!
//! Every test here holds CHAIN: the tamper test breaks the chain for a moment, and a
//! verify running meanwhile would see it.

mod common;

use common::{cli, connect_as, stdout_json, superuser, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio_postgres::error::SqlState;

static CHAIN: Mutex<()> = Mutex::const_new(());

async fn verify(app: &TestApp) -> Value {
    let (s, v) = app.call(Method::GET, "/api/v1/audit/verify", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

/// Runs `sql` as a superuser with every trigger off, as an attacker with superuser
/// rights would to get around the append-only guard.
async fn behind_the_triggers(pg: &tokio_postgres::Client, sql: &str) {
    pg.batch_execute(&format!(
        "BEGIN; SET LOCAL session_replication_role = replica; {sql}; COMMIT;"
    ))
    .await
    .unwrap();
}

async fn row_json(pg: &tokio_postgres::Client, id: i64) -> String {
    pg.query_one(
        "SELECT row_to_json(a)::text FROM berqenas.audit_log a WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap()
    .get(0)
}

/// SQL putting a saved row back exactly as it was.
fn put_back(id: i64, row: &str) -> String {
    format!(
        "DELETE FROM berqenas.audit_log WHERE id = {id};
         INSERT INTO berqenas.audit_log SELECT * FROM json_populate_record(NULL::berqenas.audit_log, '{}')",
        row.replace('\'', "''")
    )
}

#[tokio::test]
async fn verify_names_the_row_a_superuser_altered_or_removed() {
    let _chain = CHAIN.lock().await;
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    for _ in 0..3 {
        app.create(&unique("tamper")).await;
    }
    let ok = verify(&app).await;
    assert_eq!(ok["ok"], true, "{ok}");
    assert!(ok["rows"].as_i64().unwrap() >= 3);
    let out = cli(&app, &["audit", "verify"]).await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK"));

    let ids: Vec<i64> = pg
        .query("SELECT id FROM berqenas.audit_log ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (victim, after, last) = (ids[ids.len() - 3], ids[ids.len() - 2], ids[ids.len() - 1]);

    // The guard refuses even the superuser while the triggers are on.
    for sql in [
        format!("UPDATE berqenas.audit_log SET details = '{{}}' WHERE id = {victim}"),
        format!("DELETE FROM berqenas.audit_log WHERE id = {victim}"),
        "TRUNCATE berqenas.audit_log".to_string(),
        "UPDATE berqenas.audit_head SET row_count = 0".to_string(),
    ] {
        let e = pg.batch_execute(&sql).await.unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{sql}");
    }

    let saved = row_json(&pg, victim).await;

    // 1. An edited row.
    behind_the_triggers(
        &pg,
        &format!("UPDATE berqenas.audit_log SET details = details || '{{\"plan\":\"free-forever\"}}' WHERE id = {victim}"),
    )
    .await;
    let v = verify(&app).await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["broken"]["id"], victim, "{v}");
    assert!(
        v["broken"]["problem"].as_str().unwrap().contains("altered"),
        "{v}"
    );
    let out = cli(&app, &["audit", "verify"]).await;
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("BROKEN at row {victim}")), "{text}");
    let out = cli(&app, &["audit", "verify", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["broken"]["id"], victim);
    behind_the_triggers(&pg, &put_back(victim, &saved)).await;
    assert_eq!(verify(&app).await["ok"], true, "restored");

    // 2. An actor rewritten with its hash recomputed by hand: the next row's link breaks.
    behind_the_triggers(
        &pg,
        &format!("UPDATE berqenas.audit_log SET actor = 'nobody', hash = sha256(prev_hash || berqenas.audit_canonical(id, at, 'nobody', action, tenant_id, tenant_name, operation_id, details)) WHERE id = {victim}"),
    )
    .await;
    let v = verify(&app).await;
    assert_eq!(v["broken"]["id"], after, "{v}");
    assert!(
        v["broken"]["problem"]
            .as_str()
            .unwrap()
            .contains(&format!("row {victim}")),
        "{v}"
    );
    behind_the_triggers(&pg, &put_back(victim, &saved)).await;
    assert_eq!(verify(&app).await["ok"], true, "restored");

    // 3. A removed row: the link after it breaks.
    behind_the_triggers(
        &pg,
        &format!("DELETE FROM berqenas.audit_log WHERE id = {victim}"),
    )
    .await;
    let v = verify(&app).await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["broken"]["id"], after, "{v}");
    assert!(
        v["broken"]["problem"].as_str().unwrap().contains("removed"),
        "{v}"
    );
    behind_the_triggers(&pg, &put_back(victim, &saved)).await;
    assert_eq!(verify(&app).await["ok"], true, "restored");

    // 4. The last row removed: only the chain's head can tell.
    let last_row = row_json(&pg, last).await;
    behind_the_triggers(
        &pg,
        &format!("DELETE FROM berqenas.audit_log WHERE id = {last}"),
    )
    .await;
    let v = verify(&app).await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["broken"]["id"], last, "{v}");
    assert!(
        v["broken"]["problem"].as_str().unwrap().contains("removed"),
        "{v}"
    );
    behind_the_triggers(&pg, &put_back(last, &last_row)).await;

    // Intact again, and appends go on from the same head.
    assert_eq!(verify(&app).await["ok"], true);
    app.create(&unique("tamper")).await;
    assert_eq!(verify(&app).await["ok"], true);
}

async fn audit_rows(pg: &tokio_postgres::Client) -> i64 {
    pg.query_one("SELECT count(*) FROM berqenas.audit_log", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn concurrent_writers_keep_one_chain() {
    let _chain = CHAIN.lock().await;
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    let before = audit_rows(&pg).await;
    let mut tasks = Vec::new();
    // Direct appends on many connections, each in its own transaction, some rolled back...
    let pool = berqenas::pg::pool(common::database().await.config.clone(), 8).unwrap();
    for w in 0..8 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = pool.get().await.unwrap();
            for i in 0..25 {
                let tx = c.transaction().await.unwrap();
                berqenas::audit::record(
                    &tx,
                    &berqenas::audit::Entry {
                        actor: "test",
                        action: "test_append",
                        tenant_id: None,
                        tenant_name: None,
                        operation_id: None,
                        details: json!({"worker": w, "i": i}),
                    },
                )
                .await
                .unwrap();
                if i % 5 == 4 {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                }
            }
        }));
    }
    // ...and the API writing at the same time.
    let app = std::sync::Arc::new(app);
    for _ in 0..4 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..3 {
                let name = unique("conc");
                app.create(&name).await;
                let (s, _) = app
                    .call(
                        Method::POST,
                        &format!("/api/v1/tenants/{name}/suspend"),
                        None,
                    )
                    .await;
                assert_eq!(s, StatusCode::OK);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(audit_rows(&pg).await - before, 8 * 20 + 4 * 3 * 2);
    let v = verify(&app).await;
    assert_eq!(v["ok"], true, "{v}");
    // One chain: no two rows point at the same predecessor.
    let forks: i64 = pg
        .query_one(
            "SELECT count(*) FROM (SELECT prev_hash FROM berqenas.audit_log GROUP BY prev_hash HAVING count(*) > 1) f",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(forks, 0);
}

#[tokio::test]
async fn a_tenant_role_cannot_read_or_change_the_audit_trail() {
    let _chain = CHAIN.lock().await;
    let app = TestApp::spawn().await;
    for isolation in ["schema", "shared", "database"] {
        let name = unique("snoop");
        let (s, t) = app
            .call(
                Method::POST,
                "/api/v1/tenants",
                Some(json!({"name": name, "isolation": isolation})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        // Database mode: the same login, pointed at the control database.
        let dsn = t["credentials"]["dsn"].as_str().unwrap();
        let control = common::database().await.endpoint.database.clone();
        let dsn = format!("{}/{control}", &dsn[..dsn.rfind('/').unwrap()]);
        let c = match tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                c
            }
            Err(e) => {
                // Not even a connection: fine, as long as it is for lack of privilege.
                assert_eq!(isolation, "database", "{e:?}");
                assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");
                continue;
            }
        };
        for sql in [
            "SELECT * FROM berqenas.audit_log",
            "SELECT * FROM berqenas.audit_head",
            "INSERT INTO berqenas.audit_log (actor, action) VALUES ('me', 'forged')",
            "UPDATE berqenas.audit_log SET details = '{}'",
            "DELETE FROM berqenas.audit_log",
            "TRUNCATE berqenas.audit_log",
            "UPDATE berqenas.audit_head SET row_count = 0",
            "SELECT * FROM berqenas.v_active_tenants",
            "SELECT * FROM berqenas.v_tenant_audit_summary",
            "SELECT * FROM berqenas.v_tenants_by_tier",
            "SELECT berqenas.audit_canonical(1, now(), 'a', 'b', NULL, NULL, NULL, '{}')",
        ] {
            let e = c.batch_execute(sql).await.unwrap_err();
            assert_eq!(
                e.code(),
                Some(&SqlState::INSUFFICIENT_PRIVILEGE),
                "{isolation}: {sql}: {e:?}"
            );
        }
    }
    let pg = superuser().await;
    let public: i64 = pg
        .query_one(
            "SELECT count(*) FROM information_schema.role_table_grants
              WHERE table_schema = 'berqenas' AND grantee = 'PUBLIC'
                AND table_name IN ('audit_log', 'audit_head', 'v_active_tenants', 'v_tenant_audit_summary', 'v_tenants_by_tier')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(public, 0);
}

#[tokio::test]
async fn audit_endpoints_filter_page_and_use_the_issue_names() {
    let _chain = CHAIN.lock().await;
    let app = TestApp::spawn().await;
    let name = unique("trail");
    let t = app.create(&name).await;
    let base = format!("/api/v1/tenants/{name}");
    app.call(
        Method::POST,
        &format!("{base}/users"),
        Some(json!({"email": "a@example.com", "role": "developer"})),
    )
    .await;
    app.call(Method::DELETE, &format!("{base}/users/a@example.com"), None)
        .await;
    app.call(Method::PATCH, &base, Some(json!({"db_quota": "2GB"})))
        .await;
    app.call(
        Method::POST,
        &format!("{base}/suspend"),
        Some(json!({"reason": "payment overdue"})),
    )
    .await;
    app.call(Method::POST, &format!("{base}/resume"), None)
        .await;

    let (s, page) = app.call(Method::GET, &format!("{base}/audit"), None).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let actions: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "tenant_resumed",
            "tenant_suspended",
            "tenant_updated",
            "user_removed",
            "user_added",
            "tenant_created"
        ]
    );
    let first = &page["entries"][5];
    assert_eq!(first["actor"], "admin");
    assert_eq!(first["tenant_id"], t["id"]);
    assert_eq!(first["hash"].as_str().unwrap().len(), 64);
    assert_eq!(page["entries"][0]["prev_hash"].as_str().unwrap().len(), 64);

    // Filters, by name or id.
    let (_, p) = app
        .call(
            Method::GET,
            &format!("/api/v1/audit?tenant={name}&action=tenant_suspended"),
            None,
        )
        .await;
    let e = p["entries"].as_array().unwrap();
    assert_eq!(e.len(), 1, "{p}");
    assert_eq!(e[0]["details"]["reason"], "payment overdue");
    let id = t["id"].as_str().unwrap();
    let (_, p) = app
        .call(
            Method::GET,
            &format!("/api/v1/audit?tenant={id}&limit=1000"),
            None,
        )
        .await;
    assert_eq!(p["entries"].as_array().unwrap().len(), 6);
    let (_, p) = app
        .call(
            Method::GET,
            &format!("/api/v1/audit?tenant={name}&since=2999-01-01"),
            None,
        )
        .await;
    assert!(p["entries"].as_array().unwrap().is_empty());
    let (_, p) = app
        .call(
            Method::GET,
            &format!("/api/v1/audit?tenant={name}&since=1h"),
            None,
        )
        .await;
    assert_eq!(p["entries"].as_array().unwrap().len(), 6);

    // Pages, newest first, without overlap.
    let (_, p1) = app
        .call(Method::GET, &format!("{base}/audit?limit=4"), None)
        .await;
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = app
        .call(
            Method::GET,
            &format!("{base}/audit?limit=4&cursor={cursor}"),
            None,
        )
        .await;
    let mut all: Vec<i64> = p1["entries"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["entries"].as_array().unwrap())
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0] > w[1]));
    all.dedup();
    assert_eq!(all.len(), 6);
    assert!(p2["next_cursor"].is_null());

    // Bad input names the parameter.
    for (q, field) in [
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("cursor=abc", "cursor"),
        ("action=DROP%20TABLE", "action"),
        ("colour=red", "colour"),
    ] {
        let (s, e) = app
            .call(Method::GET, &format!("/api/v1/audit?{q}"), None)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {e}");
        assert_eq!(e["error"]["field"], field, "{q}");
    }
    let (s, _) = app
        .call(Method::GET, "/api/v1/tenants/never-existed/audit", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .call_with(Method::GET, "/api/v1/audit", None, None, &[])
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = app
        .call_with(
            Method::GET,
            "/api/v1/audit/verify",
            None,
            Some(t["api_key"].as_str().unwrap()),
            &[],
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a tenant key is not the admin token"
    );

    // A deleted tenant's trail stays readable by name.
    app.call(Method::DELETE, &base, None).await;
    let (s, p) = app.call(Method::GET, &format!("{base}/audit"), None).await;
    assert_eq!(s, StatusCode::OK);
    // The soft delete adds its final backup and the delete itself.
    assert_eq!(p["entries"].as_array().unwrap().len(), 8, "{p}");
    assert_eq!(p["entries"][0]["action"], "tenant_soft_deleted", "{p}");

    // The CLI.
    let out = cli(
        &app,
        &[
            "audit",
            "list",
            "--tenant",
            &name,
            "--action",
            "tenant_resumed",
            "-o",
            "json",
        ],
    )
    .await;
    let p = stdout_json(&out);
    assert_eq!(p["entries"].as_array().unwrap().len(), 1);
    let out = cli(&app, &["audit", "list", "--tenant", &name]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("tenant_suspended"));
    let out = cli(&app, &["audit", "list", "--since", "soon"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("since"));
}

#[tokio::test]
async fn seed_002_views_exist_in_the_control_schema() {
    let _chain = CHAIN.lock().await;
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    let name = unique("views");
    app.create(&name).await;
    let c = {
        let (_, creds) = app
            .call(
                Method::GET,
                &format!("/api/v1/tenants/{name}/credentials"),
                None,
            )
            .await;
        connect_as(&creds).await
    };
    c.batch_execute("INSERT INTO applications (name, team, created_by) SELECT 'app' || g, 't', 'me' FROM generate_series(1, 100) g")
        .await
        .unwrap();
    let r = pg
        .query_one(
            "SELECT status, plan, storage_used_bytes, db_quota_bytes, storage_utilization_percent::float8, users, max_users, active_api_keys
               FROM berqenas.v_active_tenants WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "active");
    assert!(r.get::<_, i64>(2) > 0, "the schema's size is measured");
    assert_eq!(r.get::<_, i64>(3), 1 << 30);
    assert!(r.get::<_, f64>(4) >= 0.0);
    assert_eq!(r.get::<_, i64>(5), 0);
    assert_eq!(r.get::<_, i64>(7), 1);

    app.call(
        Method::POST,
        &format!("/api/v1/tenants/{name}/suspend"),
        None,
    )
    .await;
    let gone = pg
        .query_opt(
            "SELECT 1 FROM berqenas.v_active_tenants WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap();
    assert!(gone.is_none(), "a suspended tenant is not active");
    let r = pg
        .query_one(
            "SELECT current_status, events, last_action, suspensions FROM berqenas.v_tenant_audit_summary WHERE tenant_name = $1",
            &[&name],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "suspended");
    assert_eq!(
        r.get::<_, i64>(1),
        3,
        "created, credentials read, suspended"
    );
    assert_eq!(r.get::<_, String>(2), "tenant_suspended");
    assert_eq!(r.get::<_, i64>(3), 1);
    let tiers: Vec<(String, i64)> = pg
        .query("SELECT plan, tenants FROM berqenas.v_tenants_by_tier", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(tiers.len(), 5, "{tiers:?}");
    assert_eq!(tiers[0].0, "free");
    let suspended_free: i64 = pg
        .query_one(
            "SELECT suspended FROM berqenas.v_tenants_by_tier WHERE plan = 'free'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(suspended_free >= 1);
}

#[tokio::test]
async fn the_openapi_document_describes_the_new_endpoints() {
    let _chain = CHAIN.lock().await;
    let app = TestApp::spawn().await;
    let (s, doc) = app
        .call_with(Method::GET, "/api/v1/openapi.json", None, None, &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/tenants/{name}/suspend", "post"),
        ("/api/v1/tenants/{name}/resume", "post"),
        ("/api/v1/tenants/{name}/activate", "post"),
        ("/api/v1/tenants/{name}/api-keys", "post"),
        ("/api/v1/tenants/{name}/api-keys", "get"),
        ("/api/v1/tenants/{name}/api-keys/{id}", "delete"),
        ("/api/v1/tenants/{name}/api-keys/{id}/rotate", "post"),
        ("/api/v1/audit", "get"),
        ("/api/v1/audit/verify", "get"),
        ("/api/v1/tenants/{name}/audit", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "SuspendTenant",
        "ApiKey",
        "RotatedApiKey",
        "AuditPage",
        "Verification",
    ] {
        assert!(schemas.contains_key(s), "{s}");
    }
    assert!(schemas["Tenant"]["properties"]["suspension_reason"].is_object());
}

/// A control plane that already had audit rows before the chain: the migration links
/// them, and appends continue the chain.
#[tokio::test]
async fn the_migration_links_rows_written_before_the_chain() {
    let pg = superuser().await;
    let db = unique("premigration").replace('-', "_");
    pg.batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let mut config = common::database().await.config.clone();
    config.dbname(&db);
    let pool = berqenas::pg::pool(config, 2).unwrap();
    let c = pool.get().await.unwrap();
    c.batch_execute("CREATE SCHEMA berqenas").await.unwrap();
    for sql in [
        include_str!("../migrations/control/0001_init.sql"),
        include_str!("../migrations/control/0002_tenant_users.sql"),
        include_str!("../migrations/control/0003_step_intent.sql"),
        include_str!("../migrations/control/0004_plans_trials.sql"),
        include_str!("../migrations/control/0005_api_key_expiry.sql"),
    ] {
        c.batch_execute(sql).await.unwrap();
    }
    c.batch_execute(
        "INSERT INTO berqenas.audit_log (actor, action, tenant_name, details) VALUES
            ('admin', 'tenant.create', 'old-one', '{\"plan\": \"free\", \"n\": 1.50}'),
            ('admin', 'tenant.update', 'old-one', '{}'),
            ('worker', 'tenant.trial.expired', NULL, '{\"outcome\": \"suspended\", \"é\": \"ü\"}')",
    )
    .await
    .unwrap();
    c.batch_execute(include_str!(
        "../migrations/control/0007_lifecycle_audit_keys.sql"
    ))
    .await
    .unwrap();
    let v = berqenas::audit::chain::verify(&c).await.unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.rows, 3);
    berqenas::audit::record(
        &c,
        &berqenas::audit::Entry {
            actor: "admin",
            action: "tenant_created",
            tenant_id: None,
            tenant_name: Some("new-one"),
            operation_id: None,
            details: json!({"plan": "starter"}),
        },
    )
    .await
    .unwrap();
    let v = berqenas::audit::chain::verify(&c).await.unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!((v.rows, v.head_id), (4, Some(4)));
    // Tampering with a pre-chain row is caught like any other.
    c.batch_execute(
        "BEGIN; SET LOCAL session_replication_role = replica;
         UPDATE berqenas.audit_log SET tenant_name = 'other' WHERE id = 2; COMMIT;",
    )
    .await
    .unwrap();
    let v = berqenas::audit::chain::verify(&c).await.unwrap();
    assert_eq!(v.broken.map(|b| b.id), Some(2));
    drop(c);
    drop(pool);
    pg.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await
        .unwrap();
}
