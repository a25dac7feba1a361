//! Per-tenant vector stores (docs/vector-store.md) against a real Chroma server
//! (`chroma run`, PyPI's `chromadb`; .ci/run installs it): the collection made at
//! onboarding, reached only through the tenant's own key, refused while suspended,
//! kept by a soft delete, deleted by a purge; a create whose Chroma is down, or whose
//! later step fails, leaves no tenant and no collection; a kill -9 inside the step is
//! undone by the restart. pgvector is checked where the server has the extension.

#[path = "support/chroma.rs"]
mod chroma;
mod common;
#[path = "support/process.rs"]
mod process;

use std::sync::Arc;

use berqenas::platform::Platform;
use chroma::Chroma;
use common::{footprint, superuser, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A server whose tenants' vector stores are on `chroma`.
async fn app_on(chroma: &Chroma) -> TestApp {
    TestApp::serve(platform_on(chroma).await).await
}

async fn platform_on(chroma: &Chroma) -> Platform {
    let mut p = common::platform(16).await;
    p.vectors = Some(Arc::new(
        berqenas::vector::chroma::Chroma::new(&chroma.url).unwrap(),
    ));
    p
}

async fn create_with_vectors(app: &TestApp, name: &str) -> Value {
    app.create_with(json!({"name": name, "isolation": "database", "vector_store": true}))
        .await
}

fn collection_of(t: &Value) -> String {
    format!("tenant_{}", t["id"].as_str().unwrap())
}

async fn as_tenant(app: &TestApp, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
    app.call_with(Method::POST, path, Some(body), Some(key), &[])
        .await
}

fn key(t: &Value) -> &str {
    t["api_key"].as_str().unwrap()
}

/// The ids a query through berqenas finds nearest `embedding`.
async fn nearest(app: &TestApp, key: &str, embedding: Value) -> Vec<String> {
    let (s, found) = as_tenant(
        app,
        key,
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

/// What berqenas holds of a tenant (by name): its roles, schema and registry row,
/// its row's vector store and update time, its keys, audit rows and users (a test
/// binary's tests run at once: only the tenant's own state can be compared).
async fn tenant_state(pg: &tokio_postgres::Client, name: &str) -> Vec<String> {
    let mut state = footprint(pg, name).await;
    let rows = pg
        .query(
            "SELECT 'row:' || coalesce(t.vector_store::text, 'null') || ' ' || t.updated_at::text FROM berqenas.tenants t WHERE t.name = $1
             UNION ALL SELECT 'keys:' || count(*) FROM berqenas.api_keys k JOIN berqenas.tenants t ON t.id = k.tenant_id WHERE t.name = $1
             UNION ALL SELECT 'audit:' || count(*) FROM berqenas.audit_log WHERE tenant_name = $1",
            &[&name],
        )
        .await
        .unwrap();
    state.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    state
}

async fn database_exists(pg: &tokio_postgres::Client, name: &str) -> bool {
    let db = format!("tenant_{}", name.replace('-', "_"));
    pg.query_one(
        "SELECT count(*) FROM pg_database WHERE datname = $1",
        &[&db],
    )
    .await
    .unwrap()
    .get::<_, i64>(0)
        == 1
}

#[tokio::test]
async fn a_tenant_gets_its_collection_and_reaches_only_its_own() {
    let chroma = Chroma::start().await;
    let app = app_on(&chroma).await;
    let a = create_with_vectors(&app, &unique("vec-a")).await;
    let b = create_with_vectors(&app, &unique("vec-b")).await;

    // The seed's collection: tenant_<id>, with the tenant's id in its metadata.
    let meta = chroma
        .collection(&collection_of(&a))
        .await
        .expect("a's collection");
    assert_eq!(meta["tenant_id"], a["id"], "{meta}");
    assert_eq!(
        a["vector_store"],
        json!({"backend": "chroma", "collection": collection_of(&a)})
    );
    let (_, shown) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{}", a["name"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(shown["vector_store"], a["vector_store"], "{shown}");

    let (s, up) = as_tenant(
        &app,
        key(&a),
        "/api/v1/vectors/upsert",
        json!({"ids": ["a1", "a2"], "embeddings": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
               "metadatas": [{"lang": "en"}, null], "documents": ["first", "second"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{up}");
    assert_eq!(up["upserted"], 2);
    let (s, found) = as_tenant(
        &app,
        key(&a),
        "/api/v1/vectors/query",
        json!({"embeddings": [[0.9, 0.1, 0.0]], "n_results": 1}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{found}");
    let top = &found["results"][0][0];
    assert_eq!(top["id"], "a1", "{found}");
    assert_eq!(top["document"], "first");
    assert_eq!(top["metadata"], json!({"lang": "en"}));

    // B's key reaches B's collection only: A's records are not there, and B's
    // writes do not land in A's.
    assert!(nearest(&app, key(&b), json!([1.0, 0.0, 0.0]))
        .await
        .is_empty());
    let (s, _) = as_tenant(
        &app,
        key(&b),
        "/api/v1/vectors/upsert",
        json!({"ids": ["a1"], "embeddings": [[5.0, 5.0, 5.0]]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(chroma.count(&collection_of(&a)).await, 2);
    assert_eq!(chroma.count(&collection_of(&b)).await, 1);
    assert_eq!(
        nearest(&app, key(&a), json!([1.0, 0.0, 0.0])).await,
        ["a1", "a2"]
    );

    // A tenant without a vector store is told so.
    let plain = app
        .create_with(json!({"name": unique("vec-none"), "isolation": "database"}))
        .await;
    assert!(plain["vector_store"].is_null(), "{plain}");
    let (s, e) = as_tenant(
        &app,
        key(&plain),
        "/api/v1/vectors/query",
        json!({"embeddings": [[1.0]]}),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_vector_store")),
        "{e}"
    );
    // No key, no access.
    let (s, _) = app
        .call_with(
            Method::POST,
            "/api/v1/vectors/query",
            Some(json!({"embeddings": [[1.0]]})),
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn suspend_refuses_soft_delete_keeps_restore_brings_back_purge_deletes() {
    let chroma = Chroma::start().await;
    let app = app_on(&chroma).await;
    let name = unique("vec-life");
    let t = create_with_vectors(&app, &name).await;
    let collection = collection_of(&t);
    let (s, _) = as_tenant(
        &app,
        key(&t),
        "/api/v1/vectors/upsert",
        json!({"ids": ["x"], "embeddings": [[0.5, 0.5]]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    // Suspended: the collection stays, and the key cannot reach it.
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/suspend"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    for path in ["/api/v1/vectors/query", "/api/v1/vectors/upsert"] {
        let body = json!({"ids": ["y"], "embeddings": [[0.1, 0.1]]});
        let body = if path.ends_with("query") {
            json!({"embeddings": [[0.1, 0.1]]})
        } else {
            body
        };
        let (s, e) = as_tenant(&app, key(&t), path, body).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("suspended"),
            "{e}"
        );
    }
    assert_eq!(
        chroma.count(&collection).await,
        1,
        "nothing written while suspended"
    );
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/resume"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(nearest(&app, key(&t), json!([0.5, 0.5])).await, ["x"]);

    // Soft delete keeps it; restore brings the tenant back with it.
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}"),
            Some(json!({"confirm": name})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        chroma.collection(&collection).await.is_some(),
        "kept by a soft delete"
    );
    let (s, e) = as_tenant(
        &app,
        key(&t),
        "/api/v1/vectors/query",
        json!({"embeddings": [[0.5, 0.5]]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{e}");
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/restore"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["vector_store"]["collection"], collection.as_str(), "{b}");
    assert_eq!(nearest(&app, key(&t), json!([0.5, 0.5])).await, ["x"]);

    // Purge deletes the collection and clears the tenant's record of it.
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}?purge=now"),
            Some(json!({"confirm": name})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "purged");
    assert!(
        chroma.collection(&collection).await.is_none(),
        "deleted by the purge"
    );
    assert!(b["vector_store"].is_null(), "{b}");
    // The purge journaled its intent: the collection, before deleting it.
    let pg = superuser().await;
    let intent: Value = pg
        .query_one(
            "SELECT s.intent FROM berqenas.operation_steps s JOIN berqenas.operations o ON o.id = s.operation_id
              WHERE o.kind = 'tenant.purge' AND o.tenant_name = $1 AND s.name = 'vector_store'",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        intent["objects"][0]["name"],
        collection.as_str(),
        "{intent}"
    );
}

#[tokio::test]
async fn a_chroma_that_is_down_fails_the_create_and_leaves_nothing() {
    let mut chroma = Chroma::start().await;
    let app = app_on(&chroma).await;
    let before = chroma.collections().await;
    chroma.stop().await;
    let name = unique("vec-down");
    let (s, e) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": name, "isolation": "database", "vector_store": true})),
        )
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert_eq!(e["error"]["code"], "vector_store_unavailable", "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("the tenant was not created"), "{message}");
    assert!(
        !message.contains("127.0.0.1"),
        "no internal text in a 5xx: {message}"
    );
    let pg = superuser().await;
    assert!(
        footprint(&pg, &name).await.is_empty(),
        "no tenant, no roles"
    );
    assert!(!database_exists(&pg, &name).await, "no database");
    chroma.run().await;
    assert_eq!(chroma.collections().await, before, "no collection");
    // With Chroma back, the same name works.
    let t = create_with_vectors(&app, &name).await;
    assert!(chroma.collection(&collection_of(&t)).await.is_some());
}

/// A step after the collection fails (an onboarding step whose endpoint refuses): the
/// create is undone, the collection it had made included.
#[tokio::test]
async fn a_failure_after_the_collection_was_made_deletes_it() {
    let chroma = Chroma::start().await;
    let mut p = platform_on(&chroma).await;
    p.onboarding_allow_private = true;
    let app = TestApp::serve(p).await;
    let pg = superuser().await;
    let plan = unique("vplan").replace('-', "_");
    common::plan_like_free(&pg, &plan, "").await;
    let step = unique("vstep").replace('-', "_");
    let (s, b) = app
        .call(
            Method::POST,
            "/api/v1/onboarding-steps",
            Some(json!({"name": step, "url": "http://127.0.0.1:9/hook", "when": {"plan": plan, "isolation": "database"}, "timeout": "5s"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let before = chroma.collections().await;
    let name = unique("vec-undo");
    let (s, e) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(
                json!({"name": name, "plan": plan, "isolation": "database", "vector_store": true}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{e}");
    // The collection was made (its intent is journaled) and then deleted.
    let intent: Value = pg
        .query_one(
            "SELECT s.intent FROM berqenas.operation_steps s JOIN berqenas.operations o ON o.id = s.operation_id
              WHERE o.tenant_name = $1 AND s.name = 'vector_store'",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        intent["data"]["collection"]
            .as_str()
            .unwrap()
            .starts_with("tenant_"),
        "{intent}"
    );
    assert_eq!(
        chroma.collections().await,
        before,
        "the collection was deleted"
    );
    assert!(footprint(&pg, &name).await.is_empty());
    assert!(!database_exists(&pg, &name).await);
    app.call(
        Method::DELETE,
        &format!("/api/v1/onboarding-steps/{step}"),
        None,
    )
    .await;
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let chroma = Chroma::start().await;
    let app = app_on(&chroma).await;
    let t = create_with_vectors(&app, &unique("vec-bad")).await;
    let collection = collection_of(&t);
    let (s, _) = as_tenant(
        &app,
        key(&t),
        "/api/v1/vectors/upsert",
        json!({"ids": ["a"], "embeddings": [[1.0, 2.0]]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let pg = superuser().await;
    let state = tenant_state(&pg, t["name"].as_str().unwrap()).await;
    let collections = chroma.collections().await;

    let mut refused_names = Vec::new();
    for (body, status, field) in [
        (
            json!({"name": unique("vec-bad"), "isolation": "database", "vector_store": "yes"}),
            400,
            "vector_store",
        ),
        (
            json!({"name": unique("vec-bad"), "isolation": "schema", "vector_store": 1}),
            400,
            "vector_store",
        ),
    ] {
        let (s, e) = app
            .call(Method::POST, "/api/v1/tenants", Some(body.clone()))
            .await;
        assert_eq!(s.as_u16(), status, "{body}: {e}");
        assert_eq!(e["error"]["field"], field, "{body}: {e}");
        refused_names.push(body["name"].as_str().unwrap().to_string());
    }
    for (path, body, field) in [
        (
            "/api/v1/vectors/upsert",
            json!({"ids": ["b"], "embeddings": []}),
            "embeddings",
        ),
        (
            "/api/v1/vectors/upsert",
            json!({"ids": ["b"], "embeddings": [[]]}),
            "embeddings[0]",
        ),
        (
            "/api/v1/vectors/upsert",
            json!({"ids": ["b", "c"], "embeddings": [[1.0, 2.0], [1.0]]}),
            "embeddings[1]",
        ),
        // The collection's dimension is 2: Chroma refuses 3, berqenas names the field.
        (
            "/api/v1/vectors/upsert",
            json!({"ids": ["b"], "embeddings": [[1.0, 2.0, 3.0]]}),
            "embeddings",
        ),
        (
            "/api/v1/vectors/upsert",
            json!({"ids": ["b"], "embeddings": "no"}),
            "embeddings",
        ),
        (
            "/api/v1/vectors/upsert",
            json!({"ids": [], "embeddings": []}),
            "ids",
        ),
        (
            "/api/v1/vectors/upsert",
            json!({"ids": ["b"], "embeddings": [[1.0, 2.0]], "documents": []}),
            "documents",
        ),
        (
            "/api/v1/vectors/upsert",
            json!({"ids": ["b"], "embeddings": [[1.0, 2.0]], "tenant": "other"}),
            "tenant",
        ),
        (
            "/api/v1/vectors/query",
            json!({"embeddings": []}),
            "embeddings",
        ),
        (
            "/api/v1/vectors/query",
            json!({"embeddings": [[1.0, 2.0]], "n_results": 0}),
            "n_results",
        ),
        (
            "/api/v1/vectors/query",
            json!({"embeddings": [[1.0, 2.0, 3.0]]}),
            "embeddings",
        ),
    ] {
        let (s, e) = as_tenant(&app, key(&t), path, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path} {body}: {e}");
        assert_eq!(e["error"]["field"], field, "{path} {body}: {e}");
    }
    assert_eq!(
        tenant_state(&pg, t["name"].as_str().unwrap()).await,
        state,
        "the tenant is unchanged"
    );
    for name in &refused_names {
        assert!(
            tenant_state(&pg, name)
                .await
                .iter()
                .all(|s| s.ends_with(":0")),
            "{name} left something"
        );
        assert!(!database_exists(&pg, name).await, "{name}");
    }
    assert_eq!(chroma.collections().await, collections);
    assert_eq!(
        chroma.count(&collection).await,
        1,
        "the collection is unchanged"
    );
}

#[tokio::test]
async fn without_a_backend_a_vector_store_is_refused_and_a_plan_can_default_to_one() {
    let plain = TestApp::spawn().await;
    let pg = superuser().await;
    let name = unique("vec-nob");
    let (s, e) = plain
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": name, "isolation": "database", "vector_store": true})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["code"], "vector_store_not_configured");
    assert_eq!(e["error"]["field"], "vector_store");
    assert!(
        tenant_state(&pg, &name)
            .await
            .iter()
            .all(|s| s.ends_with(":0")),
        "nothing made"
    );

    // A plan whose tenants get one by default (the request may still say no).
    let chroma = Chroma::start().await;
    let app = app_on(&chroma).await;
    let plan = unique("vdef").replace('-', "_");
    common::plan_like_free(
        &pg,
        &plan,
        "vector_store = true, default_isolation = 'database'",
    )
    .await;
    let by_plan = app
        .create_with(json!({"name": unique("vec-plan"), "plan": plan}))
        .await;
    assert_eq!(by_plan["vector_store"]["backend"], "chroma", "{by_plan}");
    assert!(chroma.collection(&collection_of(&by_plan)).await.is_some());
    let declined = app
        .create_with(json!({"name": unique("vec-plan"), "plan": plan, "vector_store": false}))
        .await;
    assert!(declined["vector_store"].is_null(), "{declined}");
    assert!(chroma.collection(&collection_of(&declined)).await.is_none());
    let (_, plans) = app.call(Method::GET, "/api/v1/plans", None).await;
    let listed = plans
        .as_array()
        .or_else(|| plans["plans"].as_array())
        .unwrap()
        .iter()
        .find(|p| p["name"] == plan.as_str())
        .cloned()
        .unwrap();
    assert_eq!(listed["vector_store"], true, "{listed}");

    // The CLI's --vector-store.
    let name = unique("vec-cli");
    let out = common::cli(
        &app,
        &[
            "tenant",
            "create",
            "--name",
            &name,
            "--isolation",
            "database",
            "--vector-store",
            "-o",
            "json",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created = common::stdout_json(&out);
    assert_eq!(
        created["vector_store"]["collection"],
        collection_of(&created).as_str(),
        "{created}"
    );
}

/// pgvector, where the server has the extension; this machine's PostgreSQL 15 has
/// none (Debian packages no pgvector for 15), and the test says it skips.
#[tokio::test]
async fn pgvector_where_the_server_has_it() {
    let pg = superuser().await;
    let available = pg
        .query_opt(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'",
            &[],
        )
        .await
        .unwrap()
        .is_some();
    let mut p = common::platform(8).await;
    p.vectors = Some(Arc::new(berqenas::vector::pgvector::Pgvector::new(
        p.config.clone(),
    )));
    let app = TestApp::serve(p).await;
    let name = unique("vec-pg");
    if !available {
        eprintln!("SKIPPED: pgvector is not installed on this PostgreSQL (pg_available_extensions has no `vector`); only its refusal is checked");
        let (s, e) = app
            .call(
                Method::POST,
                "/api/v1/tenants",
                Some(json!({"name": name, "isolation": "database", "vector_store": true})),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert_eq!(e["error"]["code"], "pgvector_unavailable", "{e}");
        assert!(
            tenant_state(&pg, &name)
                .await
                .iter()
                .all(|s| s.ends_with(":0")),
            "nothing left of the create"
        );
        assert!(!database_exists(&pg, &name).await);
        return;
    }
    let t = create_with_vectors(&app, &name).await;
    assert_eq!(
        t["vector_store"],
        json!({"backend": "pgvector", "collection": "public.berqenas_vectors"})
    );
    let (s, b) = as_tenant(
        &app,
        key(&t),
        "/api/v1/vectors/upsert",
        json!({"ids": ["a", "b"], "embeddings": [[1.0, 0.0], [0.0, 1.0]], "documents": ["x", null]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(nearest(&app, key(&t), json!([1.0, 0.1])).await, ["a", "b"]);
    let db = common::superuser_in(t["credentials"]["database"].as_str().unwrap()).await;
    let index: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'berqenas_vectors' AND indexdef LIKE '%hnsw%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(index, 1, "the HNSW index");
}

/// The real binary on `dir`'s embedded cluster, its vector store on `chroma`, killed
/// at `point`.
async fn serve(dir: &std::path::Path, chroma: &Chroma, point: &str) -> process::Server {
    process::Server::start(
        dir,
        &[
            ("BERQENAS_VECTOR_URL", chroma.url.as_str()),
            ("BERQENAS_FAILPOINT", point),
        ],
    )
    .await
}

/// kill -9 inside the create's `vector_store` step, after its intent and before the
/// collection (then after the collection, before the step's outcome): the restart
/// undoes the create, collection included.
#[tokio::test]
async fn a_kill_inside_the_step_is_undone_by_the_restart() {
    let chroma = Chroma::start().await;
    let dir = common::scratch_dir("vcrash");
    let _cleanup = process::Cleanup(dir.clone());
    let before = chroma.collections().await;
    let mut names = Vec::new();
    for point in ["vector_store/intended", "vector_store/created"] {
        let server = serve(&dir, &chroma, point).await;
        let name = format!("vcrash-{}", names.len());
        server
            .killed_by(
                point,
                Method::POST,
                "/api/v1/tenants",
                Some(json!({"name": name, "isolation": "database", "vector_store": true})),
            )
            .await;
        names.push(name);
    }
    assert_ne!(
        chroma.collections().await,
        before,
        "the second kill left its collection made"
    );
    // The restart settles both dead creates before it serves.
    let server = serve(&dir, &chroma, "none").await;
    let pg = process::superuser_in(&dir, None).await;
    for name in &names {
        let (s, _) = server
            .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
            .await
            .unwrap();
        assert_eq!(s, StatusCode::NOT_FOUND, "{name} was undone");
        let state: String = pg
            .query_one(
                "SELECT state FROM berqenas.operations WHERE tenant_name = $1",
                &[name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(state, "failed", "{name}");
        assert!(!database_exists(&pg, name).await, "{name}: no database");
    }
    assert_eq!(chroma.collections().await, before, "no collection left");
    // And the server works: the name again, this time to the end.
    let (s, t) = server
        .post(
            "/api/v1/tenants",
            Some(json!({"name": names[0], "isolation": "database", "vector_store": true})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert!(chroma.collection(&collection_of(&t)).await.is_some());
}
