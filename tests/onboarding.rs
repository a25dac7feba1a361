//! Schema-mode onboarding through the API, checked against the real catalog.

mod common;

use common::{connect_as, footprint, superuser, unique, TestApp, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn create_returns_the_contract_and_the_credentials_work() {
    let app = TestApp::spawn().await;
    let name = unique("acme");
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(
                json!({"name": name, "db_quota": "5GB", "vpn_enabled": true, "public_api": true,
                        "plan": "starter", "metadata": {"team": "core"}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for field in [
        "id",
        "name",
        "status",
        "plan",
        "isolation",
        "schema",
        "database",
        "role",
        "db_quota_bytes",
        "vpn_enabled",
        "public_api",
        "access_mode",
        "created_at",
        "updated_at",
        "api_key",
        "credentials",
    ] {
        assert!(body.get(field).is_some(), "missing {field} in {body}");
    }
    let stem = format!("tenant_{}", name.replace('-', "_"));
    assert_eq!(body["status"], "active");
    assert_eq!(body["plan"], "starter");
    assert_eq!(body["isolation"], "schema");
    assert_eq!(body["schema"], stem.as_str());
    assert_eq!(body["role"], format!("{stem}_user").as_str());
    assert_eq!(body["db_quota_bytes"], 5i64 * 1024 * 1024 * 1024);
    assert_eq!(body["access_mode"], "hybrid");
    assert_eq!(body["metadata"]["team"], "core");
    let key = body["api_key"].as_str().unwrap();
    assert!(key.starts_with("bqk_") && key.len() > 40, "{key}");
    for field in ["user", "password", "host", "port", "database", "dsn"] {
        assert!(
            body["credentials"].get(field).is_some(),
            "credentials lack {field}"
        );
    }

    // Hybrid: the database from the VPN subnet only, and from ranges a rule opens.
    let (s, rule) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/firewall"),
            Some(json!({"cidr": "127.0.0.1", "service": "postgres"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rule}");
    // The login role works, lands in its schema, and can use the template's tables.
    let tenant = connect_as(&body["credentials"]).await;
    let row = tenant
        .query_one(
            "INSERT INTO applications (name, team, created_by) VALUES ('web', 'core', 'me') RETURNING current_schema()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), stem);
    let n: i64 = tenant
        .query_one("SELECT count(*) FROM applications", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    for table in ["resources", "deployments", "user_activity"] {
        tenant
            .execute(&format!("SELECT * FROM {table}"), &[])
            .await
            .unwrap();
    }

    // Limits are on the role, the schema belongs to the NOLOGIN owner, and only a
    // keyed hash of the API key is stored.
    let pg = superuser().await;
    let role = pg
        .query_one(
            "SELECT rolcanlogin, rolconnlimit, rolconfig::text FROM pg_roles WHERE rolname = $1",
            &[&format!("{stem}_user")],
        )
        .await
        .unwrap();
    assert!(role.get::<_, bool>(0));
    assert_eq!(role.get::<_, i32>(1), 20, "starter plan's connection limit");
    let config: String = role.get(2);
    assert!(config.contains("statement_timeout=60000"), "{config}");
    assert!(config.contains(&format!("search_path={stem}")), "{config}");
    assert!(config.contains("temp_file_limit=5242880"), "{config}");
    let owner: String = pg
        .query_one(
            "SELECT r.rolname::text FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE nspname = $1",
            &[&stem],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, format!("{stem}_owner"));
    let owner_login: bool = pg
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&owner],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!owner_login);
    let table_owners: Vec<String> = pg
        .query(
            "SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = $1",
            &[&stem],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(table_owners, vec![owner.clone()]);
    let secret = key.rsplit('_').next().unwrap();
    let stored: i64 = pg
        .query_one(
            "SELECT count(*) FROM berqenas.api_keys k JOIN berqenas.tenants t ON t.id = k.tenant_id
              WHERE t.name = $1 AND position(convert_to($2, 'UTF8') in k.hash) = 0 AND length(k.hash) = 32",
            &[&name, &secret],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "one key, stored as a 32-byte keyed hash");
    let audit = common::audit_count(&pg, &name, "tenant_created").await;
    assert_eq!(audit, 1);
    let version: i32 = pg
        .query_one(
            "SELECT template_version FROM berqenas.tenants WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        version,
        berqenas::template::Template::builtin().latest_version()
    );
}

#[tokio::test]
async fn access_mode_follows_the_two_flags() {
    let app = TestApp::spawn().await;
    for (vpn, api, mode) in [
        (false, true, "public"),
        (false, false, "public"),
        (true, true, "hybrid"),
        (true, false, "vpn-only"),
    ] {
        let (status, body) = app
            .call(
                Method::POST,
                "/api/v1/tenant",
                Some(json!({"name": unique("mode"), "vpn_enabled": vpn, "public_api": api})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["access_mode"], mode, "vpn={vpn} api={api}");
        assert_eq!(
            body["db_quota_bytes"],
            1i64 << 30,
            "the free plan's storage by default"
        );
    }
}

#[tokio::test]
async fn tenants_cannot_reach_each_other_public_or_the_control_plane() {
    let app = TestApp::spawn().await;
    let a = app.create(&unique("iso-a")).await;
    let b = app.create(&unique("iso-b")).await;
    let b_schema = b["schema"].as_str().unwrap();
    let a_conn = connect_as(&a["credentials"]).await;
    let b_conn = connect_as(&b["credentials"]).await;
    b_conn
        .execute(
            "INSERT INTO applications (name, team, created_by) VALUES ('secret', 'b', 'b')",
            &[],
        )
        .await
        .unwrap();

    let denied = |sql: String| {
        let a_conn = &a_conn;
        async move {
            let err = a_conn.batch_execute(&sql).await.expect_err(&sql);
            assert_eq!(
                err.code(),
                Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
                "{sql}: {err:?}"
            );
        }
    };
    denied(format!("SELECT * FROM \"{b_schema}\".applications")).await;
    denied(format!(
        "INSERT INTO \"{b_schema}\".applications (name, team, created_by) VALUES ('x','x','x')"
    ))
    .await;
    denied(format!("CREATE TABLE \"{b_schema}\".planted (id int)")).await;
    denied("CREATE TABLE public.planted (id int)".into()).await;
    denied("SELECT * FROM berqenas.tenants".into()).await;
    denied("SELECT * FROM berqenas.api_keys".into()).await;
    denied("CREATE TABLE berqenas.planted (id int)".into()).await;
    denied(format!("SET ROLE \"{}\"", b["role"].as_str().unwrap())).await;
    // A tenant cannot create tables in its own schema either: the schema is the owner's.
    denied(format!(
        "CREATE TABLE \"{}\".mine (id int)",
        a["schema"].as_str().unwrap()
    ))
    .await;
}

#[tokio::test]
async fn get_by_name_or_id_list_update_and_delete() {
    let app = TestApp::spawn().await;
    let name = unique("crud");
    let created = app.create(&name).await;
    let id = created["id"].as_str().unwrap();

    let (s, by_name) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, by_id) = app
        .call(Method::GET, &format!("/api/v1/tenants/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(by_name, by_id);
    assert!(
        by_name.get("api_key").is_none() && by_name.get("credentials").is_none(),
        "secrets are shown once"
    );
    let (s, _) = app
        .call(Method::GET, "/api/v1/tenant/nobody-here", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Pagination walks every tenant exactly once.
    for _ in 0..3 {
        app.create(&unique("page")).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/tenants?limit=2&cursor={c}"),
            None => "/api/v1/tenants?limit=2".to_string(),
        };
        let (s, page) = app.call(Method::GET, &path, None).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let names: Vec<String> = page["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect();
        assert!(names.len() <= 2);
        seen.extend(names);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), seen.len(), "no tenant twice");
    assert!(seen.contains(&name));
    let (s, body) = app
        .call(Method::GET, "/api/v1/tenants?status=sleeping", None)
        .await;
    assert_eq!(
        (s, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("status"))
    );
    let (s, filtered) = app
        .call(
            Method::GET,
            "/api/v1/tenants?status=active&plan=free&limit=1000",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(filtered["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["plan"] == "free" && t["status"] == "active"));

    // Update: plan change re-applies the connection limit in PostgreSQL.
    let (s, updated) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/tenants/{name}"),
            Some(json!({"db_quota": "10GB", "public_api": false, "vpn_enabled": true, "plan": "professional", "metadata": {"tier": "gold"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{updated}");
    assert_eq!(updated["db_quota_bytes"], 10i64 << 30);
    assert_eq!(updated["access_mode"], "vpn-only");
    assert_eq!(updated["plan"], "professional");
    let pg = superuser().await;
    let limit: i32 = pg
        .query_one(
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1",
            &[&created["role"].as_str().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(limit, 50);
    let (s, body) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/tenants/{name}"),
            Some(json!({"colour": "red"})),
        )
        .await;
    assert_eq!(
        (s, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("colour"))
    );
    let (s, body) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/tenants/{name}"),
            Some(json!({"plan": "platinum"})),
        )
        .await;
    assert_eq!(
        (s, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("plan"))
    );

    // Delete is soft: sessions end, logins stop, the objects stay until the purge;
    // a purge then drops every object and role, the registry row stays. Both audited.
    // (vpn-only now: a rule lets this test's address in.)
    let (s, rule) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/firewall"),
            Some(json!({"cidr": "127.0.0.1", "service": "postgres"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rule}");
    let session = connect_as(&created["credentials"]).await;
    let before = footprint(&pg, &name).await;
    let (s, deleted) = app
        .call(Method::DELETE, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["status"], "deleted");
    assert!(
        session.query_one("SELECT 1", &[]).await.is_err(),
        "open sessions are terminated"
    );
    assert_eq!(footprint(&pg, &name).await, before, "nothing dropped yet");
    let (s, got) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(
        (s, got["status"].as_str()),
        (StatusCode::OK, Some("deleted"))
    );
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}?purge=now"),
            Some(json!({"confirm": name})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(footprint(&pg, &name).await, vec![format!("tenant:{name}")]);
    for action in ["tenant_soft_deleted", "tenant_purged"] {
        assert_eq!(common::audit_count(&pg, &name, action).await, 1, "{action}");
    }
}

#[tokio::test]
async fn duplicate_name_is_409_and_50_concurrent_creates_leave_one_tenant() {
    let app = TestApp::spawn().await;
    let name = unique("dup");
    app.create(&name).await;
    let (s, body) = app
        .call(Method::POST, "/api/v1/tenants", Some(json!({"name": name})))
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("name_taken"))
    );

    let race = unique("race");
    let statuses = futures::future::join_all((0..50).map(|_| {
        let app = &app;
        let race = race.clone();
        async move {
            app.call(Method::POST, "/api/v1/tenants", Some(json!({"name": race})))
                .await
                .0
        }
    }))
    .await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        49,
        "{statuses:?}"
    );
    let stem = format!("tenant_{}", race.replace('-', "_"));
    let mut want: Vec<String> = [
        "owner",
        "user",
        "tenant_admin",
        "application_manager",
        "developer",
        "auditor",
    ]
    .iter()
    .map(|r| format!("role:{stem}_{r}"))
    .collect();
    want.push(format!("schema:{stem}"));
    want.push(format!("tenant:{race}"));
    want.sort();
    assert_eq!(footprint(&superuser().await, &race).await, want);
}

#[tokio::test]
async fn idempotency_key_replays_and_refuses_another_body() {
    let app = TestApp::spawn().await;
    let name = unique("idem");
    let key = format!("key-{name}");
    let body = json!({"name": name, "db_quota": "2GB"});
    let hdr = [("Idempotency-Key", key.as_str())];
    let (s1, first) = app
        .call_with(
            Method::POST,
            "/api/v1/tenants",
            Some(body.clone()),
            Some(TOKEN),
            &hdr,
        )
        .await;
    assert_eq!(s1, StatusCode::CREATED, "{first}");
    let (s2, second) = app
        .call_with(
            Method::POST,
            "/api/v1/tenants",
            Some(body),
            Some(TOKEN),
            &hdr,
        )
        .await;
    assert_eq!(s2, StatusCode::CREATED);
    assert_eq!(
        first, second,
        "the replay is the first response, secrets included"
    );
    let (s3, third) = app
        .call_with(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": name, "db_quota": "3GB"})),
            Some(TOKEN),
            &hdr,
        )
        .await;
    assert_eq!(s3, StatusCode::UNPROCESSABLE_ENTITY, "{third}");
    let count: i64 = superuser()
        .await
        .query_one(
            "SELECT count(*) FROM berqenas.tenants WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);

    // A refusal is replayed too, and a different key is a different request.
    let bad = json!({"name": "X"});
    let hdr = [("Idempotency-Key", "bad-one")];
    let (a, _) = app
        .call_with(
            Method::POST,
            "/api/v1/tenants",
            Some(bad.clone()),
            Some(TOKEN),
            &hdr,
        )
        .await;
    let (b, body) = app
        .call_with(
            Method::POST,
            "/api/v1/tenants",
            Some(bad),
            Some(TOKEN),
            &hdr,
        )
        .await;
    assert_eq!((a, b), (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST));
    assert_eq!(body["error"]["field"], "name");
}

#[tokio::test]
async fn admin_token_is_required_and_nothing_happens_without_it() {
    let app = TestApp::spawn().await;
    let name = unique("auth");
    let body = json!({"name": name});
    for token in [None, Some("wrong-token-wrong-token")] {
        for (method, path) in [
            (Method::POST, "/api/v1/tenants"),
            (Method::POST, "/api/v1/tenant"),
            (Method::GET, "/api/v1/tenants"),
            (Method::GET, "/api/v1/plans"),
            (Method::GET, "/api/v1/status"),
        ] {
            let (s, err) = app
                .call_with(method, path, Some(body.clone()), token, &[])
                .await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(err["error"]["code"], "unauthorized");
        }
    }
    assert_eq!(
        footprint(&superuser().await, &name).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn health_plans_and_openapi() {
    let app = TestApp::spawn().await;
    let (s, health) = app.call_with(Method::GET, "/health", None, None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["database"], "ok");
    assert!(health["tenants_count"].as_i64().is_some());
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));

    let (s, plans) = app.call(Method::GET, "/api/v1/plans", None).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = plans
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["free", "starter", "professional", "enterprise", "custom"]
    );

    let (s, doc) = app
        .call_with(Method::GET, "/api/v1/openapi.json", None, None, &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/health", &["get"][..]),
        ("/api/v1/tenants", &["get", "post"][..]),
        ("/api/v1/tenants/{name}", &["get", "patch", "delete"][..]),
        ("/api/v1/tenants/{name}/credentials", &["get"][..]),
        ("/api/v1/plans", &["get"][..]),
        ("/api/v1/status", &["get"][..]),
    ] {
        for m in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(*m)).is_some(),
                "{m} {path} missing from the document"
            );
        }
    }
}

#[tokio::test]
async fn credentials_endpoint_returns_what_create_returned() {
    let app = TestApp::spawn().await;
    let created = app.create(&unique("creds")).await;
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
    assert_eq!(s, StatusCode::OK);
    assert_eq!(creds, created["credentials"]);
}

/// `--database-url` with a role that has CREATEROLE and CREATEDB but is no superuser:
/// the whole lifecycle works, and the tenant's roles stay least-privileged.
#[tokio::test]
async fn works_as_a_createrole_createdb_role_that_is_not_superuser() {
    let pg = superuser().await;
    let db = common::database().await;
    pg.batch_execute("CREATE ROLE bq_operator LOGIN CREATEROLE CREATEDB PASSWORD 'operator-pw'")
        .await
        .unwrap();
    pg.batch_execute("CREATE DATABASE bq_operator_db OWNER bq_operator")
        .await
        .unwrap();
    // What a DBA does once for such a role: template1 belongs to the bootstrap
    // superuser, and berqenas refuses to start while tenants could connect to it.
    pg.batch_execute("REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC")
        .await
        .unwrap();
    let url = format!(
        "postgresql://bq_operator:operator-pw@127.0.0.1:{}/bq_operator_db",
        db.endpoint.port
    );
    let mut external = berqenas::server::external(&url).unwrap();
    external.backup_dir = Some(common::scratch_dir("nonsuper-backups"));
    assert_eq!(external.endpoint.database, "bq_operator_db");
    let platform = berqenas::server::platform(
        &external,
        berqenas::secrets::SecretKey::from_bytes([9; 32]),
        4,
    )
    .await
    .unwrap();
    assert!(!platform.caps.superuser);
    let name = unique("nonsuper");
    let rt = common::runtime(platform.clone()).await;
    let created = berqenas::workflows::create::create(
        &rt,
        &berqenas::tenant::service::CreateTenant {
            name: name.clone(),
            db_quota: Some("1GB".into()),
            ..Default::default()
        },
        None,
        "test",
    )
    .await
    .unwrap();
    let creds = serde_json::to_value(&created.credentials).unwrap();
    let tenant = connect_as(&creds).await;
    tenant
        .execute(
            "INSERT INTO applications (name, team, created_by) VALUES ('a', 'b', 'c')",
            &[],
        )
        .await
        .unwrap();
    let role = created.tenant.role.clone();
    let attrs = pg
        .query_one(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap();
    assert!(
        !attrs.get::<_, bool>(0),
        "the tenant role holds no elevated attribute"
    );
    // Offboarding as that role too: the final backup (pg_dump over TCP with its
    // password), then the purge.
    berqenas::workflows::offboarding::delete(
        &rt,
        &name,
        &berqenas::tenant::offboarding::DeleteOptions {
            purge_now: true,
            confirm: Some(name.clone()),
            ..Default::default()
        },
        "test",
    )
    .await
    .unwrap();
    let left: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE $1",
            &[&format!("tenant_{}%", name.replace('-', "_"))],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[tokio::test]
async fn api_key_identifies_its_tenant_and_nothing_else() {
    let app = TestApp::spawn().await;
    let name = unique("keyme");
    let created = app.create(&name).await;
    let key = created["api_key"].as_str().unwrap().to_string();

    let (status, me) = app
        .call_with(Method::GET, "/api/v1/me", None, Some(&key), &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["name"], name.as_str());
    assert_eq!(me["tenant_id"], created["id"]);

    // Wrong secret, unknown id, admin token, malformed: one and the same 401.
    let (id, _) = key.strip_prefix("bqk_").unwrap().split_once('_').unwrap();
    let wrong_secret = format!("bqk_{id}_{}", "A".repeat(43));
    let unknown_id = format!("bqk_{}_{}", "0".repeat(16), &key[21..]);
    let mut answers = Vec::new();
    for bad in [wrong_secret.as_str(), unknown_id.as_str(), TOKEN, "bqk_x"] {
        let (status, body) = app
            .call_with(Method::GET, "/api/v1/me", None, Some(bad), &[])
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}: {body}");
        answers.push(body);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    let (status, _) = app
        .call_with(Method::GET, "/api/v1/me", None, None, &[])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
