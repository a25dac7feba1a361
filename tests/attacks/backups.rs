//! A tenant making its own backups unrestorable:
//! - `FORCE ROW LEVEL SECURITY` on a table with a materialized view over it once made
//!   every backup "succeeded" but unrestorable (verify and restore answered 500, and the
//!   archive was useless after a purge): such a tenant now restores, in place and from
//!   its archive, with the view as the tenant's own refresh saw it;
//! - a backup PostgreSQL refuses to load (a constraint of the tenant's that fails while
//!   restoring) is `ok: false` with the reason in verify, and a clear 409 on restore
//!   that leaves the tenant as it was.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{connect_as, unique, TestApp};

async fn ok(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let (s, b) = app.call(method, path, body).await;
    assert!(s.is_success(), "{path}: {s} {b}");
    b
}

/// A tenant and its tenant_admin user's session.
async fn tenant_with_admin(
    app: &TestApp,
    mode: &str,
) -> (String, Value, tokio_postgres::Client, Value) {
    let name = unique(&format!("bk-{mode}"));
    let created = app
        .create_with(json!({"name": name, "isolation": mode}))
        .await;
    ok(
        app,
        Method::PUT,
        &format!("/api/v1/tenants/{name}/quotas"),
        Some(json!({"max_users": 3})),
    )
    .await;
    let user = ok(
        app,
        Method::POST,
        &format!("/api/v1/tenants/{name}/users"),
        Some(json!({"email": format!("admin@{name}.example"), "role": "tenant_admin"})),
    )
    .await;
    let admin = connect_as(&user["credentials"]).await;
    (name, created, admin, user["credentials"].clone())
}

async fn view_rows(app: &TestApp, name: &str) -> i64 {
    let creds = ok(
        app,
        Method::GET,
        &format!("/api/v1/tenants/{name}/credentials"),
        None,
    )
    .await;
    connect_as(&creds)
        .await
        .query_one("SELECT count(*) FROM visible", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn forced_row_security_under_a_materialized_view_still_restores() {
    let _turn = crate::shared().await;
    let app = TestApp::spawn().await;
    for mode in ["schema", "database"] {
        let (name, created, admin, _) = tenant_with_admin(&app, mode).await;
        let login = created["role"].as_str().unwrap();
        admin
            .batch_execute(&format!(
                "CREATE TABLE secrets (id int, public boolean);
                 INSERT INTO secrets SELECT g, g % 2 = 0 FROM generate_series(1, 10) g;
                 ALTER TABLE secrets ENABLE ROW LEVEL SECURITY;
                 ALTER TABLE secrets FORCE ROW LEVEL SECURITY;
                 CREATE POLICY only_public ON secrets USING (public);
                 CREATE MATERIALIZED VIEW visible AS SELECT * FROM secrets;
                 GRANT SELECT ON secrets, visible TO \"{login}\";"
            ))
            .await
            .unwrap();
        assert_eq!(view_rows(&app, &name).await, 5, "{mode}");
        let path = format!("/api/v1/tenants/{name}");
        let backup = ok(&app, Method::POST, &format!("{path}/backups"), None).await;
        let b = backup["id"].as_str().unwrap();
        let report = ok(
            &app,
            Method::POST,
            &format!("{path}/backups/{b}/verify"),
            None,
        )
        .await;
        assert_eq!(report["ok"], true, "{mode}: {report}");
        ok(
            &app,
            Method::POST,
            &format!("{path}/backups/{b}/restore"),
            Some(json!({})),
        )
        .await;
        assert_eq!(view_rows(&app, &name).await, 5, "{mode}: in place");
        ok(
            &app,
            Method::DELETE,
            &format!("{path}?purge=now"),
            Some(json!({"confirm": name})),
        )
        .await;
        ok(&app, Method::POST, &format!("{path}/restore"), None).await;
        assert_eq!(view_rows(&app, &name).await, 5, "{mode}: from the archive");
    }
}

#[tokio::test]
async fn a_backup_postgres_refuses_to_load_says_so_and_changes_nothing() {
    let _turn = crate::shared().await;
    let app = TestApp::spawn().await;
    for mode in ["schema", "database"] {
        let (name, _, admin, user) = tenant_with_admin(&app, mode).await;
        admin
            .batch_execute(
                "CREATE FUNCTION not_while_restoring(int) RETURNS boolean LANGUAGE sql
                     AS $$ SELECT current_setting('application_name') <> 'berqenas-backup' $$;
                 CREATE TABLE items (v int CHECK (not_while_restoring(v)));
                 INSERT INTO items VALUES (1), (2);",
            )
            .await
            .unwrap();
        let path = format!("/api/v1/tenants/{name}");
        let backup = ok(&app, Method::POST, &format!("{path}/backups"), None).await;
        let b = backup["id"].as_str().unwrap();
        let report = ok(
            &app,
            Method::POST,
            &format!("{path}/backups/{b}/verify"),
            None,
        )
        .await;
        assert_eq!(report["ok"], false, "{mode}: {report}");
        assert!(
            report["error"]
                .as_str()
                .unwrap()
                .contains("check constraint"),
            "{mode}: {report}"
        );
        let (s, body) = app
            .call(
                Method::POST,
                &format!("{path}/backups/{b}/restore"),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{mode}: {body}");
        assert_eq!(body["error"]["code"], "backup_unrestorable", "{body}");
        // The restore ended the tenant's sessions while it ran: a new one.
        let n: i64 = connect_as(&user)
            .await
            .query_one("SELECT count(*) FROM items", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2, "{mode}: the tenant's data is as it was");
        let t = ok(&app, Method::GET, &path, None).await;
        assert_eq!(t["status"], "active", "{mode}");
    }
}
