//! A move between servers whose berqenas roles have other names (docs/moves.md): what
//! the source's berqenas role owns or was granted in the tenant's schema definition
//! is the target's berqenas role's once copied, and the other way back. On `pg3` the
//! server's role is `platform`; `berqenas` there is only the cluster's first
//! superuser, which must own nothing of a tenant moved in.

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;
#[path = "support/moving.rs"]
mod moving;

use berqenas::pg::cluster::Cluster;
use common::{unique, TestApp};
use extra_cluster::{add_server, on, start_cluster};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use moving::{follow, rt, serial};

const ROLE: &str = "platform";

struct World {
    app: TestApp,
    pg3: Cluster,
}

async fn world() -> &'static World {
    static W: tokio::sync::OnceCell<World> = tokio::sync::OnceCell::const_new();
    W.get_or_init(|| async {
        let app = TestApp::spawn().await;
        let (pg3, _) = start_cluster("mv-role", "unused-Pa55").await;
        on(&pg3, "postgres")
            .await
            .batch_execute(&format!(
                "CREATE ROLE {ROLE} LOGIN SUPERUSER REPLICATION PASSWORD 'pl4tform-Pa55'"
            ))
            .await
            .unwrap();
        let url = format!(
            "postgresql://{ROLE}:pl4tform-Pa55@127.0.0.1:{}/postgres",
            pg3.port()
        );
        add_server(&app, "pg3", &url, json!({})).await;
        World { app, pg3 }
    })
    .await
}

/// Moves `name` to `server` with no grace, to its end; it must succeed.
async fn moved(app: &TestApp, name: &str, server: &str) {
    let (s, op) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/move"),
            Some(json!({"to_server": server, "grace": "0"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{op}");
    let op = follow(app, op["id"].as_str().unwrap(), |_| false).await;
    assert_eq!(op["state"], "succeeded", "{op}");
}

/// Who owns the database, and every owner of anything in it, by role name.
async fn owners(c: &tokio_postgres::Client, db: &str) -> (String, Vec<String>) {
    let database: String = c
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&db],
        )
        .await
        .unwrap()
        .get(0);
    let all = c
        .query(
            "SELECT DISTINCT pg_get_userbyid(o)::text FROM (
                 SELECT nspowner FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
                 UNION ALL SELECT relowner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
                 UNION ALL SELECT proowner FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                            WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema') x(o)
              ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (database, all)
}

/// The tenant's rows of `applications`, by name.
async fn rows(c: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    c.query(
        &format!("SELECT name::text FROM \"{schema}\".applications ORDER BY 1"),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn filled(app: &TestApp, isolation: &str) -> (String, Value) {
    let name = unique(&format!("mvr{}", &isolation[..1]));
    let created = app
        .create_with(json!({"name": name, "isolation": isolation, "server": "default"}))
        .await;
    let c = common::connect_as(&created["credentials"]).await;
    c.batch_execute(
        "INSERT INTO applications (name, team, created_by)
         SELECT 'app-' || g, 'core', 'test' FROM generate_series(1, 20) g",
    )
    .await
    .unwrap();
    (name, created)
}

#[test]
fn a_database_mode_tenant_moves_to_a_server_whose_role_has_another_name_and_back() {
    rt().block_on(async {
        let _one = serial().await;
        let w = world().await;
        let (name, created) = filled(&w.app, "database").await;
        let (db, schema) = (
            created["database"].as_str().unwrap(),
            created["schema"].as_str().unwrap(),
        );
        let at_source = rows(&common::superuser_in(db).await, schema).await;
        assert_eq!(at_source.len(), 20);
        let (database_owner, _) = owners(&common::superuser_in(db).await, db).await;
        assert_eq!(database_owner, "berqenas");

        moved(&w.app, &name, "pg3").await;
        let inside = on(&w.pg3, db).await;
        assert_eq!(rows(&inside, schema).await, at_source);
        let (database_owner, all) = owners(&inside, db).await;
        assert_eq!(
            database_owner, ROLE,
            "the database is pg3's berqenas role's"
        );
        assert!(
            !all.iter().any(|o| o == "berqenas"),
            "pg3's first superuser owns part of the moved tenant: {all:?}"
        );
        drop(inside);

        moved(&w.app, &name, "default").await;
        let inside = common::superuser_in(db).await;
        assert_eq!(rows(&inside, schema).await, at_source);
        let (database_owner, all) = owners(&inside, db).await;
        assert_eq!(database_owner, "berqenas");
        assert!(!all.iter().any(|o| o == ROLE), "{all:?}");
        // Its own password still logs in, back where it began.
        let c = common::connect_as(&created["credentials"]).await;
        let n: i64 = c
            .query_one("SELECT count(*) FROM applications", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 20);
    });
}

#[test]
fn a_schema_mode_tenant_moves_to_a_server_whose_role_has_another_name_and_back() {
    rt().block_on(async {
        let _one = serial().await;
        let w = world().await;
        let (name, created) = filled(&w.app, "schema").await;
        let schema = created["schema"].as_str().unwrap();
        let at_source = rows(&common::superuser().await, schema).await;

        moved(&w.app, &name, "pg3").await;
        assert_eq!(rows(&on(&w.pg3, "postgres").await, schema).await, at_source);
        moved(&w.app, &name, "default").await;
        assert_eq!(rows(&common::superuser().await, schema).await, at_source);
    });
}
