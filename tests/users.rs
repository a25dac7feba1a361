//! Tenant users and the default roles: each role can do exactly what seed 001 section
//! 3.3 lists and nothing more, checked by connecting as a real user of each role.

mod common;

use common::{connect_as, footprint, superuser, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_postgres::error::SqlState;

/// Runs `sql`; true if allowed, false if refused for lack of privilege.
async fn can(client: &tokio_postgres::Client, sql: &str) -> bool {
    match client.batch_execute(sql).await {
        Ok(()) => true,
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => false,
        Err(e) => panic!("{sql}: {e:?}"),
    }
}

const TABLES: [&str; 4] = ["applications", "resources", "deployments", "user_activity"];

/// Seed 001 section 3.3, written out independently of the code: the privileges
/// (S, I, U, D) each role has on each table.
fn expected(role: &str, table: &str) -> &'static str {
    match (role, table) {
        ("tenant_admin", _) => "SIUD",
        ("application_manager", "user_activity") => "SI",
        ("application_manager", _) => "SIUD",
        ("developer", "user_activity") => "SI",
        ("developer", _) => "S",
        ("auditor", _) => "S",
        _ => unreachable!(),
    }
}

fn insert_sql(table: &str) -> String {
    // INSERT ... SELECT ... WHERE false needs the privilege and touches no constraint.
    let (cols, vals) = match table {
        "applications" => ("name, team, created_by", "'a', 'b', 'c'"),
        "resources" => ("type, name", "'a', 'b'"),
        "deployments" => (
            "application_id, version, status, triggered_by",
            "NULL::uuid, 'a', 'b', 'c'",
        ),
        _ => ("user_id, action", "'a', 'b'"),
    };
    format!("INSERT INTO {table} ({cols}) SELECT {vals} WHERE false")
}

async fn add_user(app: &TestApp, tenant: &str, email: &str, role: &str) -> (StatusCode, Value) {
    app.call(
        Method::POST,
        &format!("/api/v1/tenants/{tenant}/users"),
        Some(json!({"email": email, "role": role})),
    )
    .await
}

/// The free plan allows one user (seed 002); these tests add several.
async fn room_for_users(app: &TestApp, tenant: &str) {
    let (s, body) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{tenant}/quotas"),
            Some(json!({"max_users": 10})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn each_default_role_can_do_exactly_what_seed_001_lists() {
    let app = TestApp::spawn().await;
    let tenant = app.create(&unique("roles")).await;
    let name = tenant["name"].as_str().unwrap();
    room_for_users(&app, name).await;
    let schema = tenant["schema"].as_str().unwrap();
    let other = app.create(&unique("roles-other")).await;
    let other_schema = other["schema"].as_str().unwrap();

    for role in [
        "tenant_admin",
        "application_manager",
        "developer",
        "auditor",
    ] {
        let (s, user) = add_user(&app, name, &format!("{role}@example.com"), role).await;
        assert_eq!(s, StatusCode::CREATED, "{user}");
        assert_eq!(user["role"], role);
        let conn = connect_as(&user["credentials"]).await;
        for table in TABLES {
            let want = expected(role, table);
            let got = [
                ('S', can(&conn, &format!("SELECT * FROM {table}")).await),
                ('I', can(&conn, &insert_sql(table)).await),
                (
                    'U',
                    can(&conn, &format!("UPDATE {table} SET id = id WHERE false")).await,
                ),
                (
                    'D',
                    can(&conn, &format!("DELETE FROM {table} WHERE false")).await,
                ),
            ];
            let got: String = got.iter().filter(|(_, ok)| *ok).map(|(c, _)| *c).collect();
            assert_eq!(got, want, "{role} on {table}");
            // No role reaches the other tenant's copy of the table.
            assert!(
                !can(&conn, &format!("SELECT * FROM \"{other_schema}\".{table}")).await,
                "{role}"
            );
        }
        let admin = role == "tenant_admin";
        assert_eq!(
            can(&conn, "CREATE TABLE own_table (id int)").await,
            admin,
            "{role} CREATE"
        );
        assert_eq!(
            can(&conn, "TRUNCATE user_activity").await,
            admin,
            "{role} TRUNCATE"
        );
        assert!(
            !can(
                &conn,
                &format!("SET ROLE \"{}\"", tenant["role"].as_str().unwrap())
            )
            .await
        );
        assert!(!can(&conn, "SELECT * FROM berqenas.tenant_users").await);
        let current_schema: String = conn
            .query_one("SELECT current_schema()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(current_schema, schema);
    }
}

#[tokio::test]
async fn users_are_listed_refused_when_bad_and_removed_for_good() {
    let app = TestApp::spawn().await;
    let tenant = app.create(&unique("people")).await;
    let name = tenant["name"].as_str().unwrap().to_string();
    room_for_users(&app, &name).await;
    let path = format!("/api/v1/tenants/{name}/users");
    let pg = superuser().await;

    let (s, ada) = add_user(&app, &name, "Ada@Example.com", "developer").await;
    assert_eq!(s, StatusCode::CREATED, "{ada}");
    assert_eq!(ada["email"], "ada@example.com");
    let password = ada["credentials"]["password"].as_str().unwrap().to_string();

    let before = common::whole_state(&pg).await;
    let (s, e) = add_user(&app, &name, "ada@example.com", "auditor").await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("user_exists"))
    );
    let (s, e) = add_user(&app, &name, "bob@example.com", "superuser").await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("role"))
    );
    let (s, e) = add_user(&app, &name, "not-an-email", "developer").await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("email"))
    );
    let (s, _) = add_user(&app, "nobody-here", "bob@example.com", "developer").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Only this test's tenant is touched; compare what it owns.
    let after = common::whole_state(&pg).await;
    let mine = |v: &Vec<String>| {
        v.iter()
            .filter(|l| l.contains(&name.replace('-', "_")))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        mine(&after),
        mine(&before),
        "refused requests changed nothing"
    );

    let (s, list) = app.call(Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["users"].as_array().unwrap().len(), 1);
    assert!(
        list["users"][0].get("credentials").is_none(),
        "credentials are shown once"
    );

    // Stored sealed: the password appears nowhere in the registry.
    let leaked: i64 = pg
        .query_one(
            "SELECT count(*) FROM berqenas.tenant_users WHERE position(convert_to($1, 'UTF8') in credentials) > 0",
            &[&password],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0);

    let session = connect_as(&ada["credentials"]).await;
    let (s, removed) = app
        .call(Method::DELETE, &format!("{path}/ada@example.com"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{removed}");
    assert!(
        session.query_one("SELECT 1", &[]).await.is_err(),
        "the session was terminated"
    );
    let dsn = ada["credentials"]["dsn"].as_str().unwrap();
    assert!(
        tokio_postgres::connect(dsn, tokio_postgres::NoTls)
            .await
            .is_err(),
        "the login is gone"
    );
    let exists: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname = $1",
            &[&ada["db_user"].as_str().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(exists, 0);
    let (s, _) = app
        .call(Method::DELETE, &format!("{path}/ada@example.com"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Deleting the tenant takes its users' roles with it.
    let (s, bob) = add_user(&app, &name, "bob@example.com", "tenant_admin").await;
    assert_eq!(s, StatusCode::CREATED);
    let bob_conn = connect_as(&bob["credentials"]).await;
    bob_conn
        .batch_execute("CREATE TABLE bobs (id int)")
        .await
        .unwrap();
    let (s, body) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}?purge=now"),
            Some(serde_json::json!({"confirm": name})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(footprint(&pg, &name).await, vec![format!("tenant:{name}")]);
}

/// Plans: a plan change reaches every login at once; a trial ends as the plan says;
/// the enterprise plan defaults to a database of its own.
#[tokio::test]
async fn plans_reach_postgres_and_trials_end_as_the_plan_says() {
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    let limit_of = |role: String| {
        let pg = &pg;
        async move {
            pg.query_one(
                "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1",
                &[&role],
            )
            .await
            .unwrap()
            .get::<_, i32>(0)
        }
    };
    let t = app.create(&unique("plan")).await;
    let name = t["name"].as_str().unwrap().to_string();
    let (_, user) = add_user(&app, &name, "p@example.com", "auditor").await;
    assert_eq!(limit_of(t["role"].as_str().unwrap().into()).await, 5);
    let (s, _) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/tenants/{name}"),
            Some(json!({"plan": "enterprise"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(limit_of(t["role"].as_str().unwrap().into()).await, 200);
    assert_eq!(
        limit_of(user["db_user"].as_str().unwrap().into()).await,
        200
    );

    let (s, ent) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": unique("ent"), "plan": "enterprise"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ent}");
    assert_eq!(
        ent["isolation"], "database",
        "the enterprise plan's default"
    );

    // Trials: free ends suspended (logins off), a paid plan ends active.
    let (s, free) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": unique("trial-f"), "trial_days": 14})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{free}");
    assert_eq!(free["status"], "trial");
    assert!(free["trial_ends_at"].as_str().is_some());
    let (_, paid) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": unique("trial-p"), "trial_days": 14, "plan": "starter", "isolation": "shared"})),
        )
        .await;
    assert_eq!(paid["status"], "trial");
    let session = connect_as(&free["credentials"]).await;
    pg.execute(
        "UPDATE berqenas.tenants SET trial_ends_at = now() - interval '1 second' WHERE id = ANY($1::text[]::uuid[])",
        &[&vec![free["id"].as_str().unwrap(), paid["id"].as_str().unwrap()]],
    )
    .await
    .unwrap();
    let platform = common::platform(2).await;
    assert!(
        berqenas::workflows::lifecycle::expire_trials(&*common::runtime(platform.clone()).await)
            .await
            .unwrap()
            >= 2
    );
    let status = |id: &str| {
        let app = &app;
        let id = id.to_string();
        async move {
            app.call(Method::GET, &format!("/api/v1/tenants/{id}"), None)
                .await
                .1["status"]
                .clone()
        }
    };
    assert_eq!(status(free["id"].as_str().unwrap()).await, "suspended");
    assert_eq!(status(paid["id"].as_str().unwrap()).await, "active");
    assert!(
        session.query_one("SELECT 1", &[]).await.is_err(),
        "the suspended tenant's session ended"
    );
    let dsn = free["credentials"]["dsn"].as_str().unwrap();
    assert!(
        tokio_postgres::connect(dsn, tokio_postgres::NoTls)
            .await
            .is_err(),
        "and it cannot log in"
    );
    connect_as(&paid["credentials"]).await;
    let (s, e) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": unique("trial-x"), "trial_days": 400})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("trial_days"))
    );
}
