//! Issue 18 item 1: users, invitations, API keys and configuration of a tenant on a
//! second server (docs/servers.md). A user's login is made on that server and works
//! there with the DSN the answer gives (direct add and invitation); a removed user's
//! session ends and their login is gone there; bad input is refused naming the field,
//! with nothing made on either server or in the registry; API keys and configuration,
//! registry rows only, work as on `default`. In schema and database mode.

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;
#[path = "support/state.rs"]
mod support;

use common::{superuser, unique, TestApp};
use extra_cluster::{count, on, register_pg2};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn login(credentials: &Value) -> Result<tokio_postgres::Client, String> {
    let dsn = credentials["dsn"].as_str().unwrap();
    match tokio_postgres::connect(dsn, tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            Ok(client)
        }
        Err(e) => Err(format!("{e:?}")),
    }
}

async fn add_user(app: &TestApp, name: &str, body: Value) -> (StatusCode, Value) {
    app.call(
        Method::POST,
        &format!("/api/v1/tenants/{name}/users"),
        Some(body),
    )
    .await
}

/// The tenant's user logins (`<stem>_u` and 12 hex digits) on a cluster.
async fn user_logins(c: &tokio_postgres::Client, stem: &str) -> i64 {
    count(
        c,
        "SELECT count(*) FROM pg_roles WHERE rolname ~ ('^' || $1 || '_u[0-9a-f]{12}$')",
        stem,
    )
    .await
}

async fn role_count(c: &tokio_postgres::Client, role: &str) -> i64 {
    count(c, "SELECT count(*) FROM pg_roles WHERE rolname = $1", role).await
}

async fn registry_users(pg: &tokio_postgres::Client, name: &str) -> i64 {
    count(
        pg,
        "SELECT count(*) FROM berqenas.tenant_users u JOIN berqenas.tenants t ON t.id = u.tenant_id WHERE t.name = $1",
        name,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_keys_and_config_of_a_tenant_on_another_server() {
    let (app, _state) = support::spawn().await;
    let pg2 = register_pg2(&app, "usr-pg2").await;
    let pg2_admin = on(&pg2, "postgres").await;
    let control = superuser().await;

    for isolation in ["schema", "database", "shared"] {
        let name = unique(&format!("usr{}", &isolation[..1]));
        let created = app
            .create_with(json!({"name": name, "server": "pg2", "isolation": isolation}))
            .await;
        assert_eq!(created["server"], "pg2", "{created}");
        let stem = format!("tenant_{}", name.replace('-', "_"));
        let port = created["credentials"]["port"].clone();
        let (s, b) = app
            .call(
                Method::PUT,
                &format!("/api/v1/tenants/{name}/quotas"),
                Some(json!({"max_users": 5})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        // A row of the tenant's, which its users read (in shared mode, only if their
        // logins are mapped to it in pg2's pool).
        login(&created["credentials"])
            .await
            .expect("the tenant logs in on pg2")
            .batch_execute(
                "INSERT INTO applications (name, team, created_by) VALUES ('one', 'a', 'usr')",
            )
            .await
            .unwrap();

        // --- bad input: refused naming the field; nothing made anywhere ---
        for (body, field) in [
            (
                json!({"email": "not-an-email", "role": "developer"}),
                "email",
            ),
            (
                json!({"email": "bo@example.com", "role": "superuser"}),
                "role",
            ),
            (
                json!({"email": "bo@example.com", "role": "developer", "invite": false, "invited_by": "x"}),
                "invite",
            ),
        ] {
            let (s, e) = add_user(&app, &name, body).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
            assert_eq!(e["error"]["field"], field, "{e}");
        }
        assert_eq!(user_logins(&pg2_admin, &stem).await, 0);
        assert_eq!(registry_users(&control, &name).await, 0);

        // --- a direct add: the login is made on pg2 and works there ---
        let (s, ada) = add_user(
            &app,
            &name,
            json!({"email": "Ada@Example.com", "role": "developer"}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{ada}");
        assert_eq!(ada["email"], "ada@example.com");
        assert_eq!(ada["credentials"]["port"], port, "the DSN names pg2: {ada}");
        let db_user = ada["db_user"].as_str().unwrap().to_string();
        assert_eq!(
            role_count(&pg2_admin, &db_user).await,
            1,
            "the login is on pg2"
        );
        assert_eq!(
            role_count(&control, &db_user).await,
            0,
            "and not on default"
        );
        let session = login(&ada["credentials"])
            .await
            .expect("ada logs in on pg2");
        let me: String = session
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(me, db_user);
        let rows: i64 = session
            .query_one("SELECT count(*) FROM applications", &[])
            .await
            .expect("a developer reads the tenant's tables")
            .get(0);
        assert_eq!(rows, 1, "ada reads {name}'s row");
        let (s, e) = add_user(
            &app,
            &name,
            json!({"email": "ada@example.com", "role": "auditor"}),
        )
        .await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("user_exists"))
        );
        assert_eq!(user_logins(&pg2_admin, &stem).await, 1);

        // --- an invitation: the link hands over credentials that work on pg2 ---
        let (s, inv) = add_user(
            &app,
            &name,
            json!({"email": "cy@example.com", "role": "auditor", "invited_by": "ada@example.com"}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{inv}");
        assert_eq!(inv["status"], "invited");
        assert!(inv.get("credentials").is_none(), "{inv}");
        let link = inv["invitation_url"].as_str().unwrap();
        let path = &link[link.find("/api/v1/invitations/").expect(link)..];
        let opened = app
            .http
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(opened.status(), StatusCode::OK);
        let opened: Value = opened.json().await.unwrap();
        assert_eq!(opened["status"], "active");
        assert_eq!(opened["credentials"]["port"], port, "{opened}");
        login(&opened["credentials"])
            .await
            .expect("the invitee logs in on pg2");

        // --- API keys and configuration: registry rows, as on default ---
        let (s, key) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/api-keys"),
                Some(json!({"name": "ci"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{key}");
        assert_eq!(
            app.me(key["api_key"].as_str().unwrap()).await,
            StatusCode::OK
        );
        let id = key["id"].as_str().unwrap();
        let (s, rotated) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/api-keys/{id}/rotate"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{rotated}");
        let new_key = rotated["api_key"].as_str().unwrap();
        assert_eq!(app.me(new_key).await, StatusCode::OK);
        let (s, b) = app
            .call(
                Method::DELETE,
                &format!(
                    "/api/v1/tenants/{name}/api-keys/{}",
                    rotated["id"].as_str().unwrap()
                ),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_ne!(
            app.me(new_key).await,
            StatusCode::OK,
            "a revoked key is refused"
        );
        let (s, b) = app
            .call(
                Method::PATCH,
                &format!("/api/v1/tenants/{name}/config"),
                Some(json!({"max_tokens": 2000})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");

        // --- a removal: the session ends, the login is gone from pg2 ---
        let (s, removed) = app
            .call(
                Method::DELETE,
                &format!("/api/v1/tenants/{name}/users/ada@example.com"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{removed}");
        assert_eq!(removed["db_user"], db_user.as_str());
        assert!(
            session.query_one("SELECT 1", &[]).await.is_err(),
            "ada's session on pg2 was ended"
        );
        assert_eq!(
            role_count(&pg2_admin, &db_user).await,
            0,
            "the login is gone from pg2"
        );
        assert!(login(&ada["credentials"]).await.is_err());
        let (s, e) = app
            .call(
                Method::DELETE,
                &format!("/api/v1/tenants/{name}/users/ada@example.com"),
                None,
            )
            .await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("user_not_found"))
        );
        assert_eq!(user_logins(&pg2_admin, &stem).await, 1, "cy stays");
        assert_eq!(registry_users(&control, &name).await, 1);
    }
}
