//! Database per tenant: cloned from the template database, owned by the control role,
//! its objects by the tenant's owner, reachable only by the tenant's roles.

mod common;

use common::{connect_as, footprint, superuser, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_postgres::error::SqlState;

async fn create_db_tenant(app: &TestApp, name: &str) -> Value {
    let (s, body) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": name, "isolation": "database"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    body
}

/// The tenant's DSN pointed at another database.
fn dsn_for(credentials: &Value, database: &str) -> String {
    let dsn = credentials["dsn"].as_str().unwrap();
    format!("{}/{database}", dsn.rsplit_once('/').unwrap().0)
}

async fn refused(dsn: &str) {
    let err = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .err()
        .expect("connection refused");
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_database_tenant_is_isolated_owned_right_and_deleted_whole() {
    let app = TestApp::spawn().await;
    let name = unique("dbmode");
    let t = create_db_tenant(&app, &name).await;
    let db = t["database"].as_str().unwrap().to_string();
    let stem = format!("tenant_{}", name.replace('-', "_"));
    assert_eq!(
        (t["isolation"].as_str(), db.as_str(), t["schema"].as_str()),
        (Some("database"), stem.as_str(), Some(stem.as_str()))
    );
    assert_eq!(t["credentials"]["database"], db.as_str());

    let conn = connect_as(&t["credentials"]).await;
    let schema: String = conn
        .query_one(
            "INSERT INTO applications (name, team, created_by) VALUES ('web', 'core', 'me') RETURNING current_schema()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schema, stem);

    // The control role owns the database; the tenant's owner role owns its objects.
    let pg = superuser().await;
    let (owner, public_connect): (String, bool) = {
        let r = pg
            .query_one(
                "SELECT pg_get_userbyid(datdba)::text, has_database_privilege('public', datname, 'CONNECT')
                   FROM pg_database WHERE datname = $1",
                &[&db],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(owner, "berqenas");
    assert!(
        !public_connect,
        "PUBLIC may not connect to a tenant database"
    );
    let mut inside_cfg = common::database().await.config.clone();
    inside_cfg.dbname(&db);
    let inside = berqenas::pg::connect(&inside_cfg).await.unwrap();
    let owners: Vec<String> = inside
        .query(
            "SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = $1",
            &[&stem],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, vec![format!("{stem}_owner")]);
    let public_create: bool = inside
        .query_one(
            "SELECT has_schema_privilege('public', 'public', 'CREATE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!public_create);
    drop(inside);

    // Neither another database tenant nor a schema tenant can connect to it, and it
    // cannot connect to theirs, the control database or the template database.
    let other_db = create_db_tenant(&app, &unique("dbmode-b")).await;
    let schema_tenant = app.create(&unique("dbmode-s")).await;
    refused(&dsn_for(&other_db["credentials"], &db)).await;
    refused(&dsn_for(&schema_tenant["credentials"], &db)).await;
    refused(&dsn_for(
        &t["credentials"],
        other_db["database"].as_str().unwrap(),
    ))
    .await;
    refused(&dsn_for(&t["credentials"], "berqenas")).await;
    refused(&dsn_for(&t["credentials"], "berqenas_tenant_template")).await; // the embedded control database is `berqenas`
    refused(&dsn_for(&t["credentials"], "template1")).await;

    // Default roles work inside the tenant's database.
    let (s, dev) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/users"),
            Some(json!({"email": "dev@example.com", "role": "developer"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dev}");
    let dev_conn = connect_as(&dev["credentials"]).await;
    let n: i64 = dev_conn
        .query_one("SELECT count(*) FROM applications", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let err = dev_conn
        .batch_execute("INSERT INTO applications (name, team, created_by) VALUES ('x', 'y', 'z')")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));

    // Delete and purge end the sessions and drop the database and the roles; the
    // registry row stays (status purged, its archive restorable).
    let (s, body) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}?purge=now"),
            Some(serde_json::json!({"confirm": name})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "purged");
    assert!(conn.query_one("SELECT 1", &[]).await.is_err());
    let left: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&db],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    assert_eq!(footprint(&pg, &name).await, vec![format!("tenant:{name}")]);
}

#[tokio::test]
async fn duplicate_database_names_and_plans_are_refused_cleanly() {
    let app = TestApp::spawn().await;
    let name = unique("dbdup");
    create_db_tenant(&app, &name).await;
    let (s, e) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": name, "isolation": "database"})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("name_taken"))
    );
    let other = unique("dbplan");
    let (s, e) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": other, "isolation": "database", "plan": "gold"})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("plan"))
    );
    let pg = superuser().await;
    assert_eq!(footprint(&pg, &other).await, Vec::<String>::new());
    let db_left: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&format!("tenant_{}", other.replace('-', "_"))],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(db_left, 0);
    // A database someone else made is never dropped by a failed create.
    let squatter = unique("squat");
    let squat_db = format!("tenant_{}", squatter.replace('-', "_"));
    pg.batch_execute(&format!("CREATE DATABASE \"{squat_db}\""))
        .await
        .unwrap();
    let (s, _) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": squatter, "isolation": "database"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let kept: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&squat_db],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1, "the squatter's database is still there");
    assert_eq!(footprint(&pg, &squatter).await, Vec::<String>::new());
}
