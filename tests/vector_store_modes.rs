//! Vector stores for schema- and shared-mode tenants (docs/vector-store.md): such a
//! create runs staged (`tenant.create.staged`, its `vector_store` step between the
//! provisioning and the activation), against a real Chroma server. The collection is
//! made and reached only through the tenant's key; a purge deletes it; a Chroma that
//! is down undoes the create: no schema, no roles, no pool rows, no registry row.

#[path = "support/chroma.rs"]
mod chroma;
mod common;

use std::sync::Arc;

use chroma::Chroma;
use common::{footprint, superuser, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn app_on(chroma: &Chroma) -> TestApp {
    let mut p = common::platform(16).await;
    p.vectors = Some(Arc::new(
        berqenas::vector::chroma::Chroma::new(&chroma.url).unwrap(),
    ));
    TestApp::serve(p).await
}

fn collection_of(t: &Value) -> String {
    format!("tenant_{}", t["id"].as_str().unwrap())
}

async fn as_tenant(app: &TestApp, t: &Value, path: &str, body: Value) -> (StatusCode, Value) {
    let key = t["api_key"].as_str().unwrap();
    app.call_with(Method::POST, path, Some(body), Some(key), &[])
        .await
}

/// The registry row and the rows of the shared tables that belong to tenant `id`.
async fn rows_of(pg: &tokio_postgres::Client, id: &str) -> i64 {
    let id: uuid::Uuid = id.parse().unwrap();
    let mut n: i64 = pg
        .query_one(
            "SELECT count(*) FROM berqenas.tenants WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    let tables = pg
        .query(
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.columns
              WHERE table_schema = 'berqenas_shared' AND column_name = 'tenant_id'",
            &[],
        )
        .await
        .unwrap();
    for t in tables {
        let table: String = t.get(0);
        let sql = format!("SELECT count(*) FROM {table} WHERE tenant_id = $1");
        n += pg.query_one(&sql, &[&id]).await.unwrap().get::<_, i64>(0);
    }
    n
}

#[tokio::test]
async fn schema_and_shared_tenants_get_their_collection_and_a_purge_deletes_it() {
    let chroma = Chroma::start().await;
    let app = app_on(&chroma).await;
    let pg = superuser().await;
    for isolation in ["schema", "shared"] {
        let name = unique(&format!("vec-{isolation}"));
        let t = app
            .create_with(json!({"name": name, "isolation": isolation, "vector_store": true}))
            .await;
        assert_eq!(t["isolation"], isolation, "{t}");
        assert_eq!(t["status"], "active", "{t}");
        let collection = collection_of(&t);
        let meta = chroma
            .collection(&collection)
            .await
            .expect("its collection");
        assert_eq!(meta["tenant_id"], t["id"], "{meta}");
        assert_eq!(
            t["vector_store"],
            json!({"backend": "chroma", "collection": collection})
        );
        // The create ran staged, with the vector store as one of its steps.
        let kind: String = pg
            .query_one(
                "SELECT o.kind FROM berqenas.operations o JOIN berqenas.operation_steps s ON s.operation_id = o.id
                  WHERE o.tenant_name = $1 AND s.name = 'vector_store'",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(kind, "tenant.create.staged");

        let (s, b) = as_tenant(
            &app,
            &t,
            "/api/v1/vectors/upsert",
            json!({"ids": ["v1"], "embeddings": [[0.0, 1.0]]}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, found) = as_tenant(
            &app,
            &t,
            "/api/v1/vectors/query",
            json!({"embeddings": [[0.1, 0.9]], "n_results": 1}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{found}");
        assert_eq!(found["results"][0][0]["id"], "v1", "{found}");
        assert_eq!(chroma.count(&collection).await, 1);

        let (s, b) = app
            .call(
                Method::DELETE,
                &format!("/api/v1/tenants/{name}?purge=now"),
                Some(json!({"confirm": name})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "purged", "{b}");
        assert!(
            chroma.collection(&collection).await.is_none(),
            "{isolation}: deleted by the purge"
        );
    }
}

#[tokio::test]
async fn a_chroma_that_is_down_undoes_a_schema_or_shared_create() {
    let mut chroma = Chroma::start().await;
    let app = app_on(&chroma).await;
    let before = chroma.collections().await;
    chroma.stop().await;
    let pg = superuser().await;
    for isolation in ["schema", "shared"] {
        let name = unique(&format!("vec-down-{isolation}"));
        let (s, e) = app
            .call(
                Method::POST,
                "/api/v1/tenants",
                Some(json!({"name": name, "isolation": isolation, "vector_store": true})),
            )
            .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{isolation}: {e}");
        assert_eq!(e["error"]["code"], "vector_store_unavailable", "{e}");
        assert!(
            footprint(&pg, &name).await.is_empty(),
            "{isolation}: no schema, roles or registry row"
        );
        // The staged create's operation names the tenant it made and undid.
        let undone: Vec<String> = pg
            .query(
                "SELECT coalesce(tenant_id::text, '') FROM berqenas.operations WHERE tenant_name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        for id in undone.iter().filter(|id| !id.is_empty()) {
            assert_eq!(
                rows_of(&pg, id).await,
                0,
                "{isolation}: registry or pool rows"
            );
        }
    }
    chroma.run().await;
    assert_eq!(chroma.collections().await, before, "no collection");
}
