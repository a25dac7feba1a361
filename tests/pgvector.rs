//! The pgvector backend in every isolation mode, on a real PostgreSQL with the
//! extension. Debian packages no pgvector for PostgreSQL 15, so this binary runs its
//! cluster on the PostgreSQL 16 + pgvector that PyPI's `pgserver` wheel ships
//! (.ci/run unpacks it and sets BERQENAS_TEST_PGVECTOR_BINDIR); without it, it says
//! it skips (tests/vector_store.rs checks the refusal on a server without pgvector).

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;

use std::sync::Arc;

use common::{connect_as, superuser, superuser_in, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Points this test binary's cluster at the pgvector build
/// (`BERQENAS_TEST_PGVECTOR_BINDIR`, else where .ci/run unpacks it): `false` (and a
/// line saying so) when there is none.
fn with_pgvector() -> bool {
    static SET: std::sync::Once = std::sync::Once::new();
    let dir = std::env::var("BERQENAS_TEST_PGVECTOR_BINDIR").unwrap_or_else(|_| {
        let tools =
            std::env::var("BERQENAS_CI_TOOLS").unwrap_or_else(|_| "/tmp/berqenas-ci-tools".into());
        format!("{tools}/pgvector-pg16/pgserver/pginstall/bin")
    });
    if !std::path::Path::new(&dir).join("postgres").is_file() {
        eprintln!("SKIPPED: no PostgreSQL with pgvector at {dir} (set BERQENAS_TEST_PGVECTOR_BINDIR, or run .ci/run, which unpacks one there)");
        return false;
    }
    // Before the first test starts the shared cluster (every test calls this first).
    SET.call_once(|| std::env::set_var("BERQENAS_PG_BINDIR", &dir));
    true
}

async fn app() -> TestApp {
    let mut p = common::platform(8).await;
    p.vectors = Some(Arc::new(berqenas::vector::pgvector::Pgvector::new(
        p.config.clone(),
    )));
    TestApp::serve(p).await
}

async fn call(app: &TestApp, t: &Value, path: &str, body: Value) -> (StatusCode, Value) {
    let key = t["api_key"].as_str().unwrap();
    app.call_with(Method::POST, path, Some(body), Some(key), &[])
        .await
}

async fn nearest(app: &TestApp, t: &Value, embedding: Value) -> Vec<String> {
    let (s, found) = call(
        app,
        t,
        "/api/v1/vectors/query",
        json!({"embeddings": [embedding], "n_results": 5}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{found}");
    found["results"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

async fn purge_now(app: &TestApp, t: &Value) {
    let name = t["name"].as_str().unwrap();
    let (s, r) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}?purge=now"),
            Some(json!({"confirm": name})),
        )
        .await;
    assert_eq!(
        (s, r["status"].clone()),
        (StatusCode::OK, json!("purged")),
        "{r}"
    );
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn every_mode_keeps_each_tenant_s_vectors_apart_and_a_purge_removes_them() {
    if !with_pgvector() {
        return;
    }
    let app = app().await;
    let pg = superuser().await;
    let version: String = pg
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);
    eprintln!("pgvector on PostgreSQL {version}");
    for mode in ["schema", "database", "shared"] {
        let a = app
            .create_with(json!({"name": unique(&format!("pgv-{mode}-a")), "isolation": mode, "vector_store": true}))
            .await;
        let b = app
            .create_with(json!({"name": unique(&format!("pgv-{mode}-b")), "isolation": mode, "vector_store": true}))
            .await;
        assert_eq!(a["vector_store"]["backend"], "pgvector", "{a}");
        let (s, r) = call(
            &app,
            &a,
            "/api/v1/vectors/upsert",
            json!({"ids": ["a1", "a2"], "embeddings": [[1.0, 0.0], [0.0, 1.0]], "documents": ["x", null]}),
        )
        .await;
        assert_eq!(
            (s, r["upserted"].clone()),
            (StatusCode::OK, json!(2)),
            "{mode}: {r}"
        );
        // Another tenant, another dimension: each collection fixes its own.
        let (s, r) = call(
            &app,
            &b,
            "/api/v1/vectors/upsert",
            json!({"ids": ["b1"], "embeddings": [[1.0, 0.0, 0.0]]}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{mode}: {r}");
        assert_eq!(
            nearest(&app, &a, json!([0.9, 0.1])).await,
            ["a1", "a2"],
            "{mode}"
        );
        assert_eq!(
            nearest(&app, &b, json!([1.0, 0.0, 0.1])).await,
            ["b1"],
            "{mode}"
        );
        let (s, e) = call(
            &app,
            &a,
            "/api/v1/vectors/upsert",
            json!({"ids": ["a3"], "embeddings": [[1.0, 0.0, 0.0]]}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{mode}: {e}");
        assert_eq!(e["error"]["field"], "embeddings", "{e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("dimension mismatch"),
            "{e}"
        );

        let db = a["credentials"]["database"].as_str().unwrap();
        let owner = superuser_in(db).await;
        let collection = a["vector_store"]["collection"].as_str().unwrap();
        let schema = collection.split('.').next().unwrap();
        let hnsw = count(
            &owner,
            &format!("SELECT count(*) FROM pg_indexes WHERE schemaname = '{schema}' AND tablename = 'berqenas_vectors' AND indexdef LIKE '%hnsw%'"),
        )
        .await;
        if mode == "shared" {
            // One table for every shared tenant, one partial HNSW index per tenant,
            // and each tenant's own login role sees only its own rows.
            assert!(hnsw >= 2, "a partial index per tenant: {hnsw}");
            let total = count(
                &owner,
                "SELECT count(*) FROM berqenas_shared.berqenas_vectors",
            )
            .await;
            assert!(total >= 3, "{total}");
            let as_b = connect_as(&b["credentials"]).await;
            let rows = as_b
                .query(
                    "SELECT id FROM berqenas_shared.berqenas_vectors ORDER BY id",
                    &[],
                )
                .await
                .unwrap();
            let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            assert_eq!(
                ids,
                ["b1"],
                "row-level security keeps the others' vectors out"
            );
            let dims = as_b
                .query("SELECT 1 FROM berqenas_shared.berqenas_vector_dims", &[])
                .await;
            assert!(dims.is_err(), "no tenant reads the dimensions table");
        } else {
            assert_eq!(hnsw, 1, "{mode}: the HNSW index");
        }

        purge_now(&app, &a).await;
        if mode == "shared" {
            let id = a["id"].as_str().unwrap();
            let left = count(
                &pg,
                &format!("SELECT count(*) FROM berqenas_shared.berqenas_vectors WHERE tenant_id = '{id}'"),
            )
            .await;
            let index = count(
                &pg,
                &format!(
                    "SELECT count(*) FROM pg_indexes WHERE indexname = 'berqenas_vectors_hnsw_{}'",
                    id.replace('-', "")
                ),
            )
            .await;
            assert_eq!(
                (left, index),
                (0, 0),
                "the purge removed its vectors and index"
            );
            assert_eq!(
                nearest(&app, &b, json!([1.0, 0.0, 0.0])).await,
                ["b1"],
                "b keeps its own"
            );
        } else if mode == "schema" {
            let gone: bool = pg
                .query_one("SELECT to_regclass($1) IS NULL", &[&collection])
                .await
                .unwrap()
                .get(0);
            assert!(gone, "schema mode: {collection} went with the purge");
        }
    }
}

/// A tenant on another server (docs/servers.md) keeps its vectors in its own schema or
/// database there: the table and its HNSW index are on pg2 (a second PostgreSQL with
/// pgvector), nothing of them on `default`, and the data API reads them there.
#[tokio::test]
async fn a_tenant_on_another_server_keeps_its_vectors_there() {
    if !with_pgvector() {
        return;
    }
    let (pg2, url) = extra_cluster::start_cluster("pgv-pg2", "pg2-Pa55-word").await;
    // A control database of its own: no other test of this binary places tenants on
    // the server registered here.
    let own = common::control_database("pgv_servers").await;
    let mut platform = berqenas::server::platform(&own, common::secret_key(), 8)
        .await
        .unwrap();
    platform.vectors = Some(Arc::new(berqenas::vector::pgvector::Pgvector::new(
        platform.config.clone(),
    )));
    let app = TestApp::serve(platform).await;
    let (s, b) = app
        .call(
            Method::POST,
            "/api/v1/servers",
            Some(json!({"name": "pg2", "url": url})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let pg = superuser().await;
    for mode in ["schema", "database"] {
        let t = app
            .create_with(json!({"name": unique(&format!("pgv2-{mode}")), "server": "pg2", "isolation": mode, "vector_store": true}))
            .await;
        assert_eq!(t["server"], "pg2", "{t}");
        assert_eq!(t["vector_store"]["backend"], "pgvector", "{t}");
        let (s, r) = call(
            &app,
            &t,
            "/api/v1/vectors/upsert",
            json!({"ids": ["v1", "v2"], "embeddings": [[1.0, 0.0], [0.0, 1.0]]}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{mode}: {r}");
        assert_eq!(nearest(&app, &t, json!([0.1, 0.9])).await, ["v2", "v1"]);

        let db = t["credentials"]["database"].as_str().unwrap();
        let collection = t["vector_store"]["collection"].as_str().unwrap();
        let schema = collection.split('.').next().unwrap();
        let there = extra_cluster::on(&pg2, db).await;
        let sql = format!(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = '{schema}' AND tablename = 'berqenas_vectors' AND indexdef LIKE '%hnsw%'"
        );
        assert_eq!(
            count(&there, &sql).await,
            1,
            "{mode}: the table and index on pg2"
        );
        assert_eq!(
            count(
                &there,
                &format!("SELECT count(*) FROM \"{schema}\".berqenas_vectors")
            )
            .await,
            2
        );
        if mode == "database" {
            let here = count(
                &pg,
                &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
            )
            .await;
            assert_eq!(here, 0, "no database of the tenant on default");
        } else {
            assert_eq!(
                count(
                    &pg,
                    &format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'")
                )
                .await,
                0,
                "{mode}: no schema of the tenant on default"
            );
        }
        // Its purge deletes the collection there (then the schema or database).
        purge_now(&app, &t).await;
        drop(there);
        let left = extra_cluster::on(&pg2, "postgres").await;
        let sql = match mode {
            "database" => format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
            _ => format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'"),
        };
        assert_eq!(count(&left, &sql).await, 0, "{mode}: gone from pg2");
    }
}
