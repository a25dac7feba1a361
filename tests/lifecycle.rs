//! Suspend, resume, activate in every isolation mode, against the real catalog: an open
//! session is ended, new logins and the API key are refused, and resume brings back
//! exactly what was there (roles, grants, passwords), nothing more.

mod common;

use std::time::{Duration, Instant};

use berqenas::secrets::SecretKey;
use berqenas::server;
use common::{audit_actions, cli, connect_as, stdout_json, superuser, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A name that is no other test name's prefix (`life-1x` vs `life-10x`).
fn name(prefix: &str) -> String {
    format!("{}x", unique(prefix))
}

async fn create_in(app: &TestApp, name: &str, isolation: &str, extra: Value) -> Value {
    let mut body = json!({"name": name, "isolation": isolation});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    app.create_with(body).await
}

async fn post(app: &TestApp, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    app.call(Method::POST, path, body).await
}

async fn try_connect(credentials: &Value) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) =
        tokio_postgres::connect(credentials["dsn"].as_str().unwrap(), tokio_postgres::NoTls)
            .await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Waits until the session is gone (pg_terminate_backend is asynchronous).
async fn session_ends(c: &tokio_postgres::Client) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if c.simple_query("SELECT 1").await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// [`catalog_any`], of a tenant some of whose roles can log in.
async fn catalog(t: &Value) -> Vec<String> {
    let out = catalog_any(t).await;
    assert!(out.iter().any(|l| l.contains("login=true")), "{out:#?}");
    out
}

/// The tenant's roles (login, limits, settings, password hash), memberships, and every
/// privilege naming them, in the tenant's database.
async fn catalog_any(t: &Value) -> Vec<String> {
    let stem = format!("tenant_{}", t["name"].as_str().unwrap().replace('-', "_"));
    let db = t["database"].as_str().unwrap().to_string();
    let mut config = common::database().await.config.clone();
    config.dbname(&db);
    let pg = berqenas::pg::connect(&config).await.unwrap();
    let like = format!("%{stem}%");
    // This tenant's roles and its test pool role (pool_<name>), not other tests' grants
    // on a database they share.
    let bare = format!("%{}%", &stem["tenant_".len()..]);
    let rows = pg
        .query(
            "SELECT 'role:' || rolname || ' login=' || rolcanlogin || ' conn=' || rolconnlimit
                    || ' pw=' || coalesce(md5(rolpassword), '')
                    || ' super=' || rolsuper || ' inherit=' || rolinherit
               FROM pg_authid WHERE rolname = $1 OR rolname LIKE $1 || '\\_%'
             UNION ALL
             SELECT 'member:' || r.rolname || '>' || m.rolname || ' admin=' || am.admin_option
                    || ' by=' || coalesce(pg_get_userbyid(am.grantor), '')
               FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
              WHERE r.rolname LIKE $2 OR m.rolname LIKE $2
             UNION ALL
             SELECT 'rel:' || n.nspname || '.' || c.relname || ' ' || c.relacl::text
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relacl::text LIKE $2
             UNION ALL
             SELECT 'schema:' || nspname || ' ' || coalesce(nspacl::text, '') || ' owner=' || pg_get_userbyid(nspowner)
               FROM pg_namespace WHERE nspacl::text LIKE $2 OR nspname = $1
             UNION ALL
             SELECT 'db:' || datname || ' ' || coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text)
                       FROM unnest(datacl) a WHERE a::text LIKE $4 OR a::text LIKE '%tenant\\_connect%'), '')
                    || ' conn=' || datconnlimit || ' allow=' || datallowconn
               FROM pg_database WHERE datname = $3 OR datacl::text LIKE $2
             UNION ALL
             SELECT 'defacl:' || defaclrole::regrole::text || ' ' || defaclacl::text FROM pg_default_acl WHERE defaclacl::text LIKE $2
             UNION ALL
             SELECT 'setting:' || coalesce(d.datname, '*') || ' ' || r.rolname || ' ' || s.setconfig::text
               FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase
              WHERE r.rolname LIKE $2
             ORDER BY 1",
            &[&stem, &like, &db, &bare],
        )
        .await
        .unwrap();
    let mut out: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    if t["isolation"] == "shared" {
        let members = superuser()
            .await
            .query(
                "SELECT 'map:' || role || ' ' || tenant_id FROM berqenas_shared.members WHERE role::text LIKE $1 ORDER BY 1",
                &[&like],
            )
            .await
            .unwrap();
        out.extend(members.iter().map(|r| r.get::<_, String>(0)));
    }
    out
}

async fn suspend_and_resume(isolation: &str) {
    let app = TestApp::spawn().await;
    let n = name(&format!("life-{isolation}"));
    // Two users: more than the free plan allows.
    let t = create_in(&app, &n, isolation, json!({"plan": "starter"})).await;
    let key = t["api_key"].as_str().unwrap().to_string();
    let (s, user) = post(
        &app,
        &format!("/api/v1/tenants/{n}/users"),
        Some(json!({"email": "ops@example.com", "role": "developer"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    // A user an operator had already locked out stays locked out after a resume.
    let (_, locked) = post(
        &app,
        &format!("/api/v1/tenants/{n}/users"),
        Some(json!({"email": "gone@example.com", "role": "auditor"})),
    )
    .await;
    let pg = superuser().await;
    pg.batch_execute(&format!(
        "ALTER ROLE {} NOLOGIN",
        locked["db_user"].as_str().unwrap()
    ))
    .await
    .unwrap();

    // A pooled connection role an operator made a member of the tenant's login role
    // (README, shared mode): NOLOGIN does not stop SET ROLE, so suspend revokes it.
    let pool = format!("pool_{}", n.replace('-', "_"));
    pg.batch_execute(&format!(
        "CREATE ROLE {pool} LOGIN NOINHERIT PASSWORD 'pool-secret';
         GRANT CONNECT ON DATABASE {db} TO {pool};
         GRANT {login} TO {pool} WITH ADMIN OPTION;",
        db = t["database"].as_str().unwrap(),
        login = t["role"].as_str().unwrap(),
    ))
    .await
    .unwrap();
    let pool_dsn = {
        let dsn = t["credentials"]["dsn"].as_str().unwrap();
        let at = dsn.find('@').unwrap();
        format!("postgresql://{pool}:pool-secret{}", &dsn[at..])
    };
    let set_role = format!("SET ROLE {}", t["role"].as_str().unwrap());
    let pool_session = try_connect(&json!({ "dsn": pool_dsn })).await.unwrap();
    pool_session.batch_execute(&set_role).await.unwrap();
    pool_session.batch_execute("RESET ROLE").await.unwrap();

    let before = catalog(&t).await;
    assert!(
        before
            .iter()
            .any(|l| l.contains(&format!(">{pool} admin=true"))),
        "{before:#?}"
    );
    let session = connect_as(&t["credentials"]).await;
    let user_session = connect_as(&user["credentials"]).await;
    session.simple_query("SELECT 1").await.unwrap();
    assert_eq!(app.me(&key).await, StatusCode::OK);

    let (s, body) = post(
        &app,
        &format!("/api/v1/tenants/{n}/suspend"),
        Some(json!({"reason": "payment overdue"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "suspended");
    assert_eq!(body["suspension_reason"], "payment overdue");
    assert!(body["suspended_at"].is_string(), "{body}");

    assert!(
        session_ends(&session).await,
        "{isolation}: the tenant's session survived"
    );
    assert!(
        session_ends(&user_session).await,
        "{isolation}: the user's session survived"
    );
    let Err(refused) = try_connect(&t["credentials"]).await else {
        panic!("{isolation}: a suspended tenant logged in");
    };
    assert!(
        refused.to_string().contains("not permitted to log in")
            || format!("{refused:?}").contains("not permitted to log in"),
        "{refused:?}"
    );
    assert!(try_connect(&user["credentials"]).await.is_err());
    assert_eq!(app.me(&key).await, StatusCode::UNAUTHORIZED);
    let e = pool_session.batch_execute(&set_role).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{e:?}"
    );
    let (_, got) = app
        .call(Method::GET, &format!("/api/v1/tenants/{n}"), None)
        .await;
    assert_eq!(got["status"], "suspended");
    assert_eq!(got["suspension_reason"], "payment overdue");
    assert_eq!(got["suspended_at"], body["suspended_at"]);
    // No new logins while suspended.
    let (s, e) = post(
        &app,
        &format!("/api/v1/tenants/{n}/users"),
        Some(json!({"email": "new@example.com", "role": "developer"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("suspended"));

    let (s, body) = post(&app, &format!("/api/v1/tenants/{n}/resume"), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "active");
    assert!(body["suspended_at"].is_null() && body["suspension_reason"].is_null());
    assert_eq!(
        catalog(&t).await,
        before,
        "{isolation}: resume did not restore the catalog"
    );
    let again = connect_as(&t["credentials"]).await;
    again.simple_query("SELECT 1").await.unwrap();
    connect_as(&user["credentials"])
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
    assert!(try_connect(&locked["credentials"]).await.is_err());
    assert_eq!(app.me(&key).await, StatusCode::OK);
    pool_session.batch_execute(&set_role).await.unwrap();

    assert_eq!(
        audit_actions(&n).await,
        [
            "tenant_created",
            "user_added",
            "user_added",
            "tenant_suspended",
            "tenant_resumed"
        ]
    );
    let details: Value = pg
        .query_one(
            "SELECT details FROM berqenas.audit_log WHERE tenant_name = $1 AND action = 'tenant_suspended'",
            &[&n],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(details["reason"], "payment overdue");
    assert_eq!(
        details["disabled_roles"].as_array().unwrap().len(),
        2,
        "{details}"
    );
}

#[tokio::test]
async fn suspend_and_resume_in_schema_mode() {
    suspend_and_resume("schema").await;
}

#[tokio::test]
async fn suspend_and_resume_in_database_mode() {
    suspend_and_resume("database").await;
}

#[tokio::test]
async fn suspend_and_resume_in_shared_mode() {
    suspend_and_resume("shared").await;
}

async fn row(pg: &tokio_postgres::Client, name: &str) -> String {
    pg.query_one(
        "SELECT t::text FROM berqenas.tenants t WHERE name = $1",
        &[&name],
    )
    .await
    .unwrap()
    .get(0)
}

/// A refused request answers `status` with `says` in its message, and changes neither
/// the tenant's row nor its audit trail.
async fn refused(app: &TestApp, path: &str, body: Option<Value>, status: StatusCode, says: &str) {
    let pg = superuser().await;
    let name = path.split('/').nth(4).unwrap();
    let before = (row(&pg, name).await, audit_actions(name).await);
    let (s, e) = post(app, path, body).await;
    assert_eq!(s, status, "{path}: {e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{path}: {message}");
    assert_eq!(e["error"]["code"], "invalid_state");
    assert_eq!(e["error"]["field"], "status");
    assert_eq!(
        (row(&pg, name).await, audit_actions(name).await),
        before,
        "{path} changed something"
    );
}

#[tokio::test]
async fn illegal_transitions_are_409_naming_the_state_and_change_nothing() {
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    let n = name("illegal");
    create_in(&app, &n, "schema", json!({})).await;
    let base = format!("/api/v1/tenants/{n}");
    let actions_before = audit_actions(&n).await;
    refused(
        &app,
        &format!("{base}/resume"),
        None,
        StatusCode::CONFLICT,
        "is already active",
    )
    .await;
    refused(
        &app,
        &format!("{base}/activate"),
        None,
        StatusCode::CONFLICT,
        "is already active",
    )
    .await;
    // Bad bodies: 400 naming the field.
    for (body, field) in [
        (json!({"reason": 5}), "reason"),
        (json!({"reason": ""}), "reason"),
        (json!({"reason": "x".repeat(501)}), "reason"),
        (json!({"reason": "a\u{7}b"}), "reason"),
        (json!({"why": "no"}), "why"),
    ] {
        let (s, e) = post(&app, &format!("{base}/suspend"), Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {e}");
        assert_eq!(e["error"]["field"], field, "{body}: {e}");
    }
    assert_eq!(
        audit_actions(&n).await,
        actions_before,
        "refusals were audited or applied"
    );
    let (s, _) = post(&app, &format!("{base}/suspend"), None).await;
    assert_eq!(s, StatusCode::OK, "suspend without a body");
    let (_, t) = app.call(Method::GET, &base, None).await;
    assert!(t["suspension_reason"].is_null() && t["suspended_at"].is_string());
    refused(
        &app,
        &format!("{base}/suspend"),
        Some(json!({"reason": "again"})),
        StatusCode::CONFLICT,
        "is already suspended",
    )
    .await;
    refused(
        &app,
        &format!("{base}/activate"),
        None,
        StatusCode::CONFLICT,
        "it is suspended",
    )
    .await;
    assert_eq!(audit_actions(&n).await.last().unwrap(), "tenant_suspended");
    let (s, _) = post(&app, &format!("{base}/resume"), None).await;
    assert_eq!(s, StatusCode::OK);

    for action in ["suspend", "resume", "activate"] {
        let (s, e) = post(
            &app,
            &format!("/api/v1/tenants/no-such-tenant/{action}"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{action}: {e}");
        assert_eq!(e["error"]["code"], "tenant_not_found");
    }
    let (s, _) = app
        .call_with(Method::POST, &format!("{base}/suspend"), None, None, &[])
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        pg.query_one("SELECT status FROM berqenas.tenants WHERE name = $1", &[&n])
            .await
            .unwrap()
            .get::<_, String>(0),
        "active"
    );

    // A soft-deleted tenant is neither suspended nor resumed: only restored.
    let (s, e) = app.call(Method::DELETE, &base, None).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    for action in ["suspend", "resume", "activate"] {
        refused(
            &app,
            &format!("{base}/{action}"),
            None,
            StatusCode::CONFLICT,
            "it is deleted",
        )
        .await;
    }
}

#[tokio::test]
async fn activate_ends_a_trial_and_a_trial_can_be_suspended_and_resumed() {
    let app = TestApp::spawn().await;
    let n = name("trial");
    let t = create_in(&app, &n, "schema", json!({"trial_days": 14})).await;
    assert_eq!(t["status"], "trial");
    let (s, body) = post(&app, &format!("/api/v1/tenants/{n}/activate"), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "active");
    assert_eq!(
        audit_actions(&n).await,
        ["tenant_created", "tenant_activated"]
    );

    let m = name("trial");
    let t = create_in(&app, &m, "shared", json!({"trial_days": 14})).await;
    let (s, _) = post(&app, &format!("/api/v1/tenants/{m}/suspend"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        app.me(t["api_key"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED
    );
    let (s, body) = post(&app, &format!("/api/v1/tenants/{m}/resume"), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "active");
    assert_eq!(app.me(t["api_key"].as_str().unwrap()).await, StatusCode::OK);
}

#[tokio::test]
async fn a_free_trial_the_worker_ends_is_suspended_and_resume_restores_it() {
    let app = TestApp::spawn().await;
    let platform = common::runtime(common::platform(4).await).await;
    let n = name("expired");
    let paid = name("expired");
    let t = create_in(&app, &n, "database", json!({"trial_days": 3})).await;
    create_in(
        &app,
        &paid,
        "schema",
        json!({"trial_days": 3, "plan": "starter"}),
    )
    .await;
    let before = catalog(&t).await;
    let session = connect_as(&t["credentials"]).await;
    let pg = superuser().await;
    pg.execute(
        "UPDATE berqenas.tenants SET trial_ends_at = now() - interval '1 second' WHERE name = ANY($1)",
        &[&vec![n.clone(), paid.clone()]],
    )
    .await
    .unwrap();
    assert!(
        berqenas::workflows::lifecycle::expire_trials(&platform)
            .await
            .unwrap()
            >= 2
    );
    assert!(session_ends(&session).await);
    assert!(try_connect(&t["credentials"]).await.is_err());
    let (_, got) = app
        .call(Method::GET, &format!("/api/v1/tenants/{n}"), None)
        .await;
    assert_eq!(got["status"], "suspended");
    assert_eq!(
        got["suspension_reason"],
        berqenas::tenant::lifecycle::TRIAL_ENDED
    );
    let (_, got) = app
        .call(Method::GET, &format!("/api/v1/tenants/{paid}"), None)
        .await;
    assert_eq!(got["status"], "active");
    let actor_action: Vec<(String, String)> = pg
        .query(
            "SELECT actor, action FROM berqenas.audit_log WHERE tenant_name = ANY($1) AND actor = 'worker' ORDER BY tenant_name = $2",
            &[&vec![n.clone(), paid.clone()], &n],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        actor_action,
        [
            ("worker".to_string(), "tenant_activated".to_string()),
            ("worker".to_string(), "tenant_suspended".to_string())
        ]
    );
    let (s, _) = post(&app, &format!("/api/v1/tenants/{n}/resume"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(catalog(&t).await, before);
    connect_as(&t["credentials"])
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
}

#[tokio::test]
async fn cli_suspend_resume_activate() {
    let app = TestApp::spawn().await;
    let n = name("clilife");
    create_in(&app, &n, "schema", json!({"trial_days": 2})).await;
    let out = cli(&app, &["tenant", "activate", &n, "-o", "json"]).await;
    let t = stdout_json(&out);
    assert_eq!(t["status"], "active");
    let out = cli(
        &app,
        &[
            "tenant",
            "suspend",
            &n,
            "-o",
            "json",
            "--reason",
            "payment overdue",
        ],
    )
    .await;
    let t = stdout_json(&out);
    assert_eq!(t["suspension_reason"], "payment overdue");
    let out = cli(&app, &["tenant", "get", &n]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("payment overdue"));
    let out = cli(&app, &["tenant", "suspend", &n, "-o", "json"]).await;
    assert!(!out.status.success());
    let e: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(e["status"], 409);
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("is already suspended"));
    let out = cli(&app, &["tenant", "resume", &n, "-o", "json"]).await;
    let t = stdout_json(&out);
    assert_eq!(t["status"], "active");
}

/// With `--database-url` naming a CREATEROLE role that is not superuser, suspend and
/// resume work the same and restore the same catalog.
#[tokio::test]
async fn suspend_and_resume_as_a_role_that_is_not_superuser() {
    let pg = superuser().await;
    let db = common::database().await;
    // Separate statements: CREATE DATABASE refuses to run in an implicit transaction.
    for sql in [
        "CREATE ROLE bq_life_operator LOGIN CREATEROLE CREATEDB PASSWORD 'operator-pw'",
        "CREATE DATABASE bq_life_db OWNER bq_life_operator",
        "REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC",
    ] {
        pg.batch_execute(sql).await.unwrap();
    }
    let url = format!(
        "postgresql://bq_life_operator:operator-pw@127.0.0.1:{}/bq_life_db",
        db.endpoint.port
    );
    let external = server::external(&url).unwrap();
    let platform = server::platform(&external, SecretKey::from_bytes([9; 32]), 4)
        .await
        .unwrap();
    assert!(!platform.caps.superuser);
    let n = name("nonsuper");
    let rt = common::runtime(platform.clone()).await;
    let created = berqenas::workflows::create::create(
        &rt,
        &berqenas::tenant::service::CreateTenant {
            name: n.clone(),
            ..Default::default()
        },
        None,
        "test",
    )
    .await
    .unwrap();
    let t = serde_json::to_value(&created.tenant).unwrap();
    let creds = serde_json::to_value(&created.credentials).unwrap();
    // A pool role the operator manages.
    let pool = format!("pool_{}", n.replace('-', "_"));
    pg.batch_execute(&format!(
        "CREATE ROLE {pool} LOGIN NOINHERIT PASSWORD 'pool-secret';
         GRANT CONNECT ON DATABASE bq_life_db TO {pool};
         SET ROLE bq_life_operator; GRANT {} TO {pool}; RESET ROLE;",
        created.tenant.role
    ))
    .await
    .unwrap();
    let before = catalog(&t).await;
    let session = connect_as(&creds).await;
    let suspended = berqenas::workflows::lifecycle::suspend(
        &rt,
        &n,
        &berqenas::tenant::suspension::SuspendTenant {
            reason: Some("audit".into()),
        },
        "test",
    )
    .await
    .unwrap();
    assert_eq!(suspended.status.as_str(), "suspended");
    assert!(session_ends(&session).await);
    assert!(try_connect(&creds).await.is_err());
    let after_suspend = catalog_any(&t).await;
    assert!(
        !after_suspend
            .iter()
            .any(|l| l.contains(&format!(">{pool} "))),
        "{after_suspend:#?}"
    );
    berqenas::workflows::lifecycle::resume(&rt, &n, "test")
        .await
        .unwrap();
    assert_eq!(catalog(&t).await, before);
    connect_as(&creds)
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_soft_delete_also_cuts_an_application_pool_role_and_restore_gives_it_back() {
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    let n = name("poolcut");
    let t = create_in(&app, &n, "schema", json!({})).await;
    let login = t["role"].as_str().unwrap().to_string();
    let pool = format!("{}_app_pool", login);
    pg.batch_execute(&format!(
        "CREATE ROLE \"{pool}\" LOGIN NOINHERIT PASSWORD 'pool-pw'; GRANT \"{login}\" TO \"{pool}\""
    ))
    .await
    .unwrap();
    let member = || async {
        pg.query_one(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
               JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = $1 AND u.rolname = $2",
            &[&login, &pool],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
    };
    assert_eq!(member().await, 1);
    let (s, e) = app
        .call(Method::DELETE, &format!("/api/v1/tenants/{n}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(
        member().await,
        0,
        "the pool role could otherwise SET ROLE into a deleted tenant"
    );
    let (s, e) = post(&app, &format!("/api/v1/tenants/{n}/restore"), None).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(member().await, 1, "restore grants the membership back");

    // Purged, the login role is gone and the membership with it; the archive's
    // restore rebuilds the role and grants the membership back too.
    let (s, e) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{n}?purge=now"),
            Some(json!({"confirm": n})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(member().await, 0);
    let (s, e) = post(&app, &format!("/api/v1/tenants/{n}/restore"), None).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(member().await, 1, "restore from the archive grants it back");
    pg.batch_execute(&format!("DROP ROLE \"{pool}\""))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_operation_waits_a_bounded_time_for_a_busy_tenant() {
    let app = TestApp::spawn().await;
    let n = name("busy");
    create_in(&app, &n, "schema", json!({"plan": "starter"})).await;
    // Another operation holds the tenant's name (as a delete taking its final backup does).
    let mut pg = superuser().await;
    let holder = pg.transaction().await.unwrap();
    holder
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("berqenas.tenant:{n}")],
        )
        .await
        .unwrap();
    let started = Instant::now();
    let (s, e) = post(
        &app,
        &format!("/api/v1/tenants/{n}/users"),
        Some(json!({"email": "late@example.com", "role": "developer"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "tenant_busy", "{e}");
    assert!(started.elapsed() < Duration::from_secs(30));
    holder.rollback().await.unwrap();
}
