//! Issue 18 item 1: a tenant on a second server lives its whole lifecycle there
//! (docs/servers.md): suspended (its login refused on that server), resumed, deleted
//! (its final backup taken from there), restored (its rows back), purged (nothing of
//! it left there). Roles and a schema of the same names made on `default` by the test
//! stay untouched throughout: every change went to the tenant's own server.

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;

use common::{unique, TestApp};
use extra_cluster::{footprint, on, register_pg2};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const DECOY_PASSWORD: &str = "decoy-on-default";

/// Tries a login with the tenant's credentials; the error's text when refused.
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

/// The decoy on `default` (a role and a schema with the tenant's names) is as made.
async fn decoy_untouched(default_pg: &tokio_postgres::Client, login_role: &str, schema: &str) {
    let can: bool = default_pg
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&login_role],
        )
        .await
        .unwrap()
        .get(0);
    assert!(can, "the decoy role on default lost LOGIN");
    let rows: i64 = default_pg
        .query_one(&format!("SELECT count(*) FROM \"{schema}\".decoy"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "the decoy schema on default was touched");
}

/// A shared-mode tenant's member rows and `applications` rows in pg2's pool (0 for
/// a tenant of another mode, or when pg2 has no pool).
async fn pool_rows(pg2: &tokio_postgres::Client, t: &Value) -> i64 {
    if t["isolation"] != "shared" {
        return 0;
    }
    let id: uuid::Uuid = t["id"].as_str().unwrap().parse().unwrap();
    pg2.query_one(
        "SELECT (SELECT count(*) FROM berqenas_shared.members WHERE tenant_id = $1)
              + (SELECT count(*) FROM berqenas_shared.applications WHERE tenant_id = $1)",
        &[&id],
    )
    .await
    .unwrap()
    .get(0)
}

async fn status_of(app: &TestApp, name: &str) -> Value {
    let (s, b) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

async fn can_login_on(c: &tokio_postgres::Client, role: &str) -> bool {
    c.query_one(
        "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
        &[&role],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_on_another_server_lives_its_whole_lifecycle_there() {
    let app = TestApp::spawn().await;
    let default_pg = common::superuser().await;
    let pg2 = register_pg2(&app, "plc-pg2").await;
    let pg2_admin = on(&pg2, "postgres").await;

    for isolation in ["schema", "database", "shared"] {
        let name = unique(&format!("plc{}", &isolation[..1]));
        let created = app
            .create_with(json!({"name": name, "server": "pg2", "isolation": isolation}))
            .await;
        let creds = created["credentials"].clone();
        let t = status_of(&app, &name).await;
        assert_eq!(t["server"], "pg2", "{t}");
        let login_role = creds["user"].as_str().unwrap().to_string();
        let stem = format!("tenant_{}", name.replace('-', "_"));
        let schema = stem.clone();
        let pg2_db = if isolation == "database" {
            on(&pg2, creds["database"].as_str().unwrap()).await
        } else {
            on(&pg2, "postgres").await
        };

        // The decoy: the tenant's login role and schema, made on default by hand.
        default_pg
            .batch_execute(&format!(
                "CREATE ROLE \"{login_role}\" LOGIN PASSWORD '{DECOY_PASSWORD}';
                 CREATE SCHEMA \"{schema}\"; CREATE TABLE \"{schema}\".decoy (x int);
                 INSERT INTO \"{schema}\".decoy VALUES (1);"
            ))
            .await
            .unwrap();

        // Rows of the tenant's, on pg2.
        let tenant = login(&creds).await.expect("the new tenant logs in on pg2");
        tenant
            .batch_execute(
                "INSERT INTO applications (name, team, created_by)
                 VALUES ('one', 'a', 'plc'), ('two', 'a', 'plc')",
            )
            .await
            .unwrap();

        // --- bad input: refused, naming the field, nothing changed ---
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/suspend"),
                Some(json!({"reason": "   "})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(b["error"]["field"], "reason", "{b}");
        assert_eq!(status_of(&app, &name).await["status"], "active");
        assert!(can_login_on(&pg2_admin, &login_role).await);
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/resume"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
        assert_eq!(status_of(&app, &name).await["status"], "active");
        assert!(can_login_on(&pg2_admin, &login_role).await);
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/restore"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
        assert_eq!(status_of(&app, &name).await["status"], "active");

        // --- suspend: its login refused on pg2, its session ended ---
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/suspend"),
                Some(json!({"reason": "payment overdue"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "suspended", "{b}");
        assert!(!can_login_on(&pg2_admin, &login_role).await);
        let Err(refused) = login(&creds).await else {
            panic!("a suspended tenant's login is refused");
        };
        assert!(refused.contains("not permitted to log in"), "{refused}");
        assert!(
            tenant.simple_query("SELECT 1").await.is_err(),
            "the suspended tenant's session was ended"
        );
        decoy_untouched(&default_pg, &login_role, &schema).await;

        // --- resume: it logs in again ---
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/resume"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "active", "{b}");
        let tenant = login(&creds).await.expect("a resumed tenant logs in");
        let n: i64 = tenant
            .query_one(
                "SELECT count(*) FROM applications WHERE created_by = 'plc'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2);
        decoy_untouched(&default_pg, &login_role, &schema).await;

        // --- soft delete: logins off, the final backup taken from pg2 ---
        let (s, b) = app
            .call(Method::DELETE, &format!("/api/v1/tenants/{name}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "deleted", "{b}");
        assert!(
            login(&creds).await.is_err(),
            "a deleted tenant cannot log in"
        );
        let (s, backups) = app
            .call(
                Method::GET,
                &format!("/api/v1/tenants/{name}/backups"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{backups}");
        let text = backups.to_string();
        assert!(
            text.contains("\"final\"") && text.contains("succeeded"),
            "{backups}"
        );
        decoy_untouched(&default_pg, &login_role, &schema).await;

        // Rows changed while deleted are not the point; the restore gives back the
        // tenant as it was (its objects were never dropped).
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/restore"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "active", "{b}");
        let tenant = login(&creds).await.expect("a restored tenant logs in");
        let n: i64 = tenant
            .query_one(
                "SELECT count(*) FROM applications WHERE created_by = 'plc'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2, "rows back after the restore");
        drop(tenant);

        // --- delete and purge now: nothing of it left on pg2 ---
        let (s, b) = app
            .call(
                Method::DELETE,
                &format!("/api/v1/tenants/{name}?purge=now"),
                Some(json!({"confirm": name})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "purged", "{b}");
        drop(pg2_db);
        assert_eq!(
            footprint(&pg2_admin, &stem).await,
            (0, 0, 0),
            "roles, schemas, databases of {name} left on pg2"
        );
        assert_eq!(
            pool_rows(&pg2_admin, &t).await,
            0,
            "{name}'s rows left in pg2's pool"
        );
        decoy_untouched(&default_pg, &login_role, &schema).await;

        // --- the purged tenant rebuilt from its archive, on pg2 ---
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/restore"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "active", "{b}");
        assert_eq!(b["server"], "pg2", "{b}");
        let tenant = login(&creds)
            .await
            .expect("the rebuilt tenant logs in on pg2 with its password");
        let n: i64 = tenant
            .query_one(
                "SELECT count(*) FROM applications WHERE created_by = 'plc'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2, "rows back from the archive");
        drop(tenant);
        decoy_untouched(&default_pg, &login_role, &schema).await;
        let (s, b) = app
            .call(
                Method::DELETE,
                &format!("/api/v1/tenants/{name}?purge=now"),
                Some(json!({"confirm": name})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(footprint(&pg2_admin, &stem).await, (0, 0, 0));
        assert_eq!(pool_rows(&pg2_admin, &t).await, 0);
        default_pg
            .batch_execute(&format!(
                "DROP SCHEMA \"{schema}\" CASCADE; DROP ROLE \"{login_role}\";"
            ))
            .await
            .unwrap();
    }
}
