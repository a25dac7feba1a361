//! Attacks on a tenant's own offboarding and restores:
//! - objects its roles hold in another database (a large object, a table) once made a
//!   purge fail forever; a purge now clears them and finishes;
//! - once any shared-mode tenant had been over its quota, every later shared restore
//!   failed (`permission denied for function writes_blocked`).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{self, superuser, superuser_in, unique, TestApp};

async fn ok(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let (s, b) = app.call(method, path, body).await;
    assert!(s.is_success(), "{path}: {s} {b}");
    b
}

#[tokio::test]
async fn a_purge_finishes_whatever_the_roles_hold_in_other_databases() {
    let _turn = crate::shared().await;
    let app = TestApp::spawn().await;
    let pg = superuser().await;
    let postgres = superuser_in("postgres").await;
    for mode in ["schema", "database", "shared"] {
        let name = unique(&format!("purge-{mode}"));
        let created = app
            .create_with(json!({"name": name, "isolation": mode}))
            .await;
        let login = created["role"].as_str().unwrap();
        let table = format!("left_by_{}", name.replace('-', "_"));
        // What a tenant could once make in `postgres` (open to PUBLIC by default).
        let lo: u32 = postgres
            .query_one("SELECT lo_from_bytea(0, 'kept')", &[])
            .await
            .unwrap()
            .get(0);
        postgres
            .batch_execute(&format!(
                "ALTER LARGE OBJECT {lo} OWNER TO \"{login}\";
                 CREATE TABLE public.{table} (x int); ALTER TABLE public.{table} OWNER TO \"{login}\";"
            ))
            .await
            .unwrap();
        let path = format!("/api/v1/tenants/{name}");
        let purged = ok(
            &app,
            Method::DELETE,
            &format!("{path}?purge=now"),
            Some(json!({"confirm": name})),
        )
        .await;
        assert_eq!(purged["status"], "purged", "{mode}: {purged}");
        let left: i64 = postgres
            .query_one(
                "SELECT (SELECT count(*) FROM pg_largeobject_metadata WHERE oid = $1)
                      + (SELECT count(*) FROM pg_class WHERE relname = $2)",
                &[&lo, &table],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "{mode}: nothing of the tenant is left in postgres");
        let roles: i64 = pg
            .query_one(
                "SELECT count(*) FROM pg_roles WHERE rolname = $1",
                &[&login],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(roles, 0, "{mode}: its roles are gone");
        // And the archive still brings it back.
        let restored = ok(&app, Method::POST, &format!("{path}/restore"), None).await;
        assert_eq!(restored["status"], "active", "{mode}: {restored}");
    }
}

#[tokio::test]
async fn shared_restores_work_after_a_tenant_was_over_its_quota() {
    let _turn = crate::shared().await;
    let app = TestApp::spawn().await;
    let p = common::runtime(common::platform(4).await).await;
    let name = unique("blocked-shared");
    let created = app
        .create_with(json!({"name": name, "isolation": "shared", "public_api": true}))
        .await;
    let id = created["id"].as_str().unwrap().parse().unwrap();
    let tenant = common::connect_as(&created["credentials"]).await;
    tenant
        .batch_execute(
            "INSERT INTO applications (name, team, description, created_by)
             SELECT 'app-' || g, 't', (SELECT string_agg(md5(random()::text || g || i), '')
                                         FROM generate_series(1, 60) i), 'me'
               FROM generate_series(1, 800) g",
        )
        .await
        .unwrap();
    let path = format!("/api/v1/tenants/{name}");
    ok(
        &app,
        Method::PUT,
        &format!("{path}/quotas"),
        Some(json!({"db_quota_bytes": 1 << 20, "force": true})),
    )
    .await;
    berqenas::quota::disk::measure_now(&p, id).await.unwrap();
    berqenas::workflows::quotas::enforce_disk(&p, id)
        .await
        .unwrap();
    let e = tenant
        .batch_execute("INSERT INTO applications (name, team, created_by) VALUES ('no', 't', 'me')")
        .await
        .expect_err("blocked");
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e}");
    ok(
        &app,
        Method::PUT,
        &format!("{path}/quotas"),
        Some(json!({"db_quota_bytes": null})),
    )
    .await;
    berqenas::quota::disk::measure_now(&p, id).await.unwrap();
    berqenas::workflows::quotas::enforce_disk(&p, id)
        .await
        .unwrap();

    let backup = ok(&app, Method::POST, &format!("{path}/backups"), None).await;
    let b = backup["id"].as_str().unwrap();
    ok(
        &app,
        Method::POST,
        &format!("{path}/backups/{b}/restore"),
        Some(json!({})),
    )
    .await;
    let copy = unique("blocked-copy");
    let (s, body) = app
        .call(
            Method::POST,
            &format!("{path}/backups/{b}/restore"),
            Some(json!({"as": copy})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    ok(
        &app,
        Method::DELETE,
        &format!("{path}?purge=now"),
        Some(json!({"confirm": name})),
    )
    .await;
    ok(&app, Method::POST, &format!("{path}/restore"), None).await;
    let rows: i64 = tenant_rows(&app, &created).await;
    assert_eq!(rows, 800, "every row came back from the archive");
}

async fn tenant_rows(app: &TestApp, created: &Value) -> i64 {
    let (s, creds) = app
        .call(
            Method::GET,
            &format!(
                "/api/v1/tenants/{}/credentials",
                created["name"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{creds}");
    common::connect_as(&creds)
        .await
        .query_one("SELECT count(*) FROM applications", &[])
        .await
        .unwrap()
        .get(0)
}
