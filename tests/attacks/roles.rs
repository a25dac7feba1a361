//! What a tenant role may hold, re-checked every worker round, and the databases and
//! functions PUBLIC (so every tenant role) can no longer reach.
//!
//! - An elevated attribute or a foreign membership (however it was got) is taken away,
//!   the tenant is suspended, and the violation is audited.
//! - A tenant changing its own password or role defaults (`ALTER ROLE <self> ...`,
//!   which PostgreSQL allows) has berqenas's put back, audited: the credentials the API
//!   hands out keep working.
//! - The `postgres` database and large objects are closed to tenants.

use berqenas::tenant::integrity;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{self, audit_count, connect_as, superuser, unique, TestApp};

fn roles_of(tenant: &str) -> String {
    format!("tenant_{}_", tenant.replace('-', "_"))
}

/// A round, keeping only what concerns `tenant`.
async fn round_for(p: &berqenas::platform::Platform, tenant: &str) -> integrity::Report {
    let mut r = integrity::run_once(p).await.unwrap();
    let mine = roles_of(tenant);
    r.violations.retain(|(role, _)| role.starts_with(&mine));
    r.drift.retain(|(role, _)| role.starts_with(&mine));
    r.suspended.retain(|t| t == tenant);
    r
}

async fn settings(pg: &tokio_postgres::Client, role: &str) -> Vec<String> {
    pg.query(
        "SELECT coalesce(d.datname, '*') || ':' || c
           FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase,
                unnest(s.setconfig) c
          WHERE s.setrole = $1::text::regrole ORDER BY 1",
        &[&role],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn with_user(app: &TestApp, mode: &str) -> (String, Value, Value) {
    let name = unique(&format!("roles-{mode}"));
    let created = app
        .create_with(json!({"name": name, "isolation": mode, "public_api": true}))
        .await;
    let (s, b) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/quotas"),
            Some(json!({"max_users": 3})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, user) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/users"),
            Some(json!({"email": format!("dev@{name}.example"), "role": "developer"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    (name, created, user)
}

#[tokio::test]
async fn a_clean_tenant_has_nothing_to_correct_in_any_mode() {
    let _turn = crate::shared().await;
    let app = TestApp::spawn().await;
    let p = common::platform(4).await;
    for mode in ["schema", "database", "shared"] {
        let (name, _, _) = with_user(&app, mode).await;
        let r = round_for(&p, &name).await;
        assert!(r.violations.is_empty(), "{mode}: {r:?}");
        assert!(r.drift.is_empty(), "{mode}: {r:?}");
        // The second round compares stored hashes only: still nothing.
        let r = round_for(&p, &name).await;
        assert!(
            r.violations.is_empty() && r.drift.is_empty(),
            "{mode}: {r:?}"
        );
    }
}

#[tokio::test]
async fn a_round_reaches_the_tenants_past_its_first_page() {
    let _turn = crate::exclusive().await;
    let app = TestApp::spawn().await;
    let p = common::platform(4).await;
    let pg = superuser().await;
    // Pages of two, and three tenants made in turn: the last one's id (a time-ordered
    // UUID) follows the other two, so it is on a later page than the first.
    let names: Vec<String> = (0..3).map(|_| unique("roles-page")).collect();
    let mut logins = Vec::new();
    for name in &names {
        let created = app
            .create_with(json!({"name": name, "isolation": "schema"}))
            .await;
        logins.push(created["role"].as_str().unwrap().to_string());
    }
    pg.batch_execute(&format!("ALTER ROLE \"{}\" CREATEDB", logins[2]))
        .await
        .unwrap();
    integrity::set_page_size(2);
    let r = round_for(&p, &names[2]).await;
    integrity::set_page_size(1000);
    assert_eq!(
        r.violations,
        vec![(logins[2].clone(), "CREATEDB".to_string())],
        "{r:?}"
    );
    assert_eq!(r.suspended, vec![names[2].clone()]);
    let createdb: bool = pg
        .query_one(
            "SELECT rolcreatedb FROM pg_roles WHERE rolname = $1",
            &[&logins[2]],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!createdb, "taken away");
}

#[tokio::test]
async fn an_elevated_tenant_role_loses_it_and_its_tenant_is_suspended() {
    // Alone: while a role is elevated, any platform starting beside it refuses to.
    let _turn = crate::exclusive().await;
    let app = TestApp::spawn().await;
    let p = common::platform(4).await;
    let pg = superuser().await;
    for mode in ["schema", "database", "shared"] {
        let (name, created, user) = with_user(&app, mode).await;
        let (_, other, _) = with_user(&app, mode).await;
        let login = created["role"].as_str().unwrap();
        let db_user = user["credentials"]["user"].as_str().unwrap();
        let other_owner = other["owner_role"].as_str().unwrap();
        // However it got there: an escalation that succeeded somewhere.
        pg.batch_execute(&format!(
            "ALTER ROLE \"{login}\" SUPERUSER BYPASSRLS; GRANT pg_read_all_data TO \"{db_user}\";
             GRANT \"{other_owner}\" TO \"{db_user}\"; ALTER ROLE \"{}\" LOGIN",
            created["owner_role"].as_str().unwrap()
        ))
        .await
        .unwrap();
        // Other tests' rounds run too: whichever round finds it, the record is one.
        round_for(&p, &name).await;
        let found: String = pg
            .query_one(
                "SELECT details->>'found' FROM berqenas.audit_log
                  WHERE tenant_name = $1 AND action = 'tenant_security_violation'",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        for expected in [
            "SUPERUSER",
            "BYPASSRLS",
            "LOGIN",
            "membership in pg_read_all_data",
            &format!("membership in {other_owner}"),
        ] {
            assert!(
                found.contains(expected),
                "{mode}: {expected} not in {found}"
            );
        }
        let row = pg
            .query_one(
                "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = $1",
                &[&login],
            )
            .await
            .unwrap();
        assert!(!row.get::<_, bool>(0), "{mode}: attributes taken away");
        let member: bool = pg
            .query_one(
                "SELECT pg_has_role($1, 'pg_read_all_data', 'MEMBER') OR pg_has_role($1, $2, 'MEMBER')",
                &[&db_user, &other_owner],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!member, "{mode}: memberships taken away");
        let (_, t) = app
            .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
            .await;
        assert_eq!(t["status"], "suspended", "{mode}: {t}");
        assert!(
            t["suspension_reason"]
                .as_str()
                .unwrap()
                .starts_with("security violation"),
            "{t}"
        );
        assert_eq!(
            audit_count(&pg, &name, "tenant_security_violation").await,
            1,
            "{mode}"
        );
        // Nothing left to find.
        let r = round_for(&p, &name).await;
        assert!(r.violations.is_empty(), "{mode}: {r:?}");
    }
}

#[tokio::test]
async fn a_tenant_changing_its_own_role_gets_berqenas_values_back() {
    let _turn = crate::shared().await;
    let app = TestApp::spawn().await;
    let p = common::platform(4).await;
    let pg = superuser().await;
    for mode in ["schema", "database", "shared"] {
        let (name, created, user) = with_user(&app, mode).await;
        let login = created["role"].as_str().unwrap().to_string();
        let before = settings(&pg, &login).await;
        let before_user = settings(&pg, user["credentials"]["user"].as_str().unwrap()).await;
        let r = round_for(&p, &name).await;
        assert!(r.drift.is_empty(), "{mode}: {r:?}");
        let tenant = connect_as(&created["credentials"]).await;
        tenant
            .batch_execute(&format!(
                "ALTER ROLE \"{login}\" PASSWORD 'mine-now';
                 ALTER ROLE \"{login}\" SET search_path = public;
                 ALTER ROLE \"{login}\" SET statement_timeout = 0;
                 ALTER ROLE \"{login}\" SET work_mem = '1GB';
                 ALTER ROLE \"{login}\" IN DATABASE \"{}\" SET idle_in_transaction_session_timeout = 0",
                created["database"].as_str().unwrap()
            ))
            .await
            .unwrap();
        let u = connect_as(&user["credentials"]).await;
        let db_user = user["credentials"]["user"].as_str().unwrap();
        u.batch_execute(&format!(
            "ALTER ROLE \"{db_user}\" PASSWORD 'also-mine'; ALTER ROLE \"{db_user}\" SET statement_timeout = 0"
        ))
        .await
        .unwrap();
        drop((tenant, u));

        round_for(&p, &name).await;
        let mut what: Vec<String> = pg
            .query(
                "SELECT (details->>'role' = $2)::text || ':' || (details->>'what') FROM berqenas.audit_log
                  WHERE tenant_name = $1 AND action = 'tenant_role_drift_corrected' ORDER BY 1",
                &[&name, &login],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        what.sort();
        assert_eq!(
            what,
            [
                "false:password",
                "false:settings",
                "true:password",
                "true:settings"
            ],
            "{mode}"
        );
        assert_eq!(settings(&pg, &login).await, before, "{mode}");
        assert_eq!(settings(&pg, db_user).await, before_user, "{mode}");
        // The credentials the API hands out work again, for both logins.
        let (s, creds) = app
            .call(
                Method::GET,
                &format!("/api/v1/tenants/{name}/credentials"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        connect_as(&creds)
            .await
            .simple_query("SELECT 1")
            .await
            .unwrap();
        connect_as(&user["credentials"])
            .await
            .simple_query("SELECT 1")
            .await
            .unwrap();
        let r = round_for(&p, &name).await;
        assert!(r.drift.is_empty(), "{mode}: {r:?}");
    }
}

/// Connects as a tenant's login to another database; returns the error's SQLSTATE.
async fn connect_elsewhere(credentials: &Value, database: &str) -> Option<String> {
    let mut config: tokio_postgres::Config = credentials["dsn"].as_str().unwrap().parse().unwrap();
    config.dbname(database);
    match config.connect(tokio_postgres::NoTls).await {
        Ok(_) => None,
        Err(e) => Some(e.code().map(|c| c.code().to_string()).unwrap_or_default()),
    }
}

#[tokio::test]
async fn tenants_reach_no_database_but_their_own_and_create_no_large_objects() {
    let _turn = crate::shared().await;
    let app = TestApp::spawn().await;
    let p = common::platform(4).await;
    let pg = superuser().await;
    // An operator (or an old release) left postgres open; the next round closes it.
    pg.batch_execute("GRANT CONNECT, TEMPORARY ON DATABASE postgres TO PUBLIC")
        .await
        .unwrap();
    let r = integrity::run_once(&p).await.unwrap();
    assert!(
        r.databases_closed.contains(&"postgres".to_string()),
        "{r:?}"
    );
    for mode in ["schema", "database", "shared"] {
        let created = app
            .create_with(json!({"name": unique(&format!("reach-{mode}")), "isolation": mode}))
            .await;
        let creds = &created["credentials"];
        assert_eq!(
            connect_elsewhere(creds, "postgres").await.as_deref(),
            Some("42501"),
            "{mode}: postgres is closed"
        );
        assert_eq!(
            connect_elsewhere(creds, "template1").await.as_deref(),
            Some("42501"),
            "{mode}"
        );
        let tenant = connect_as(creds).await;
        for sql in [
            "SELECT lo_create(0)",
            "SELECT lo_from_bytea(0, 'x'::bytea)",
            "SELECT lo_creat(-1)",
        ] {
            let e = tenant.simple_query(sql).await.expect_err(sql);
            assert_eq!(
                e.code().map(|c| c.code()),
                Some("42501"),
                "{mode}: {sql}: {e}"
            );
        }
    }
}

#[tokio::test]
async fn rotating_credentials_sets_a_password_berqenas_knows() {
    let _turn = crate::shared().await;
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    for mode in ["schema", "database", "shared"] {
        let name = unique(&format!("rotate-{mode}"));
        let created = app
            .create_with(json!({"name": name, "isolation": mode, "public_api": true}))
            .await;
        let key = created["api_key"].as_str().unwrap();
        let query = json!({"sql": "SELECT 1 AS one"});
        let (s, _) = app
            .call_with(
                Method::POST,
                "/api/v1/query",
                Some(query.clone()),
                Some(key),
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let out = common::cli(
            &app,
            &["tenant", "credentials", &name, "--rotate", "-o", "json"],
        )
        .await;
        let rotated = common::stdout_json(&out);
        assert_ne!(rotated["password"], created["credentials"]["password"]);
        connect_as(&rotated)
            .await
            .simple_query("SELECT 1")
            .await
            .unwrap();
        let mut old: tokio_postgres::Config = created["credentials"]["dsn"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        old.connect_timeout(std::time::Duration::from_secs(5));
        let e = old
            .connect(tokio_postgres::NoTls)
            .await
            .err()
            .expect("the old password no longer logs in");
        assert_eq!(e.code().map(|c| c.code()), Some("28P01"), "{mode}: {e}");
        let (_, now) = app
            .call(
                Method::GET,
                &format!("/api/v1/tenants/{name}/credentials"),
                None,
            )
            .await;
        assert_eq!(now["password"], rotated["password"], "{mode}");
        // The data API's pooled logins follow the new password.
        let (s, b) = app
            .call_with(
                Method::POST,
                "/api/v1/query",
                Some(query.clone()),
                Some(key),
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{mode}: {b}");
        assert_eq!(audit_count(&pg, &name, "credentials_rotated").await, 1);
        // A rotation is not drift.
        let p = common::platform(2).await;
        let r = round_for(&p, &name).await;
        assert!(r.drift.is_empty(), "{mode}: {r:?}");
    }
    let (s, body) = app
        .call(
            Method::POST,
            "/api/v1/tenants/no-such-tenant/credentials/rotate",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
}
