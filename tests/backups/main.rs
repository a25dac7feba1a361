//! Backups, restores, backup policies, the worker, and reversible offboarding, in every
//! isolation mode, against real PostgreSQL. Every operation followed by its inverse is
//! checked with a catalog snapshot (roles, memberships, grants, tables, constraints,
//! indexes, default privileges) and the rows themselves.

#[path = "../common/mod.rs"]
mod common;

mod offboarding;
mod safety;
mod story;

use std::path::PathBuf;

use common::{audit_actions, audit_count, connect_as, superuser, superuser_in, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn rows(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    c.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
        .collect()
}

/// Everything of the tenant in the catalog and its rows, as sorted text.
async fn snapshot(t: &Value) -> Vec<String> {
    let name = t["name"].as_str().unwrap();
    let stem = format!("tenant_{}", name.replace('-', "_"));
    let id = t["id"].as_str().unwrap();
    let pg = superuser().await;
    let like = format!("{stem}\\_%");
    let mut out = rows(&pg, &format!(
        "SELECT 'role ' || rolname || ' login=' || rolcanlogin || ' limit=' || rolconnlimit || ' super=' || rolsuper
                || ' cfg=' || coalesce(array_to_string(ARRAY(SELECT unnest(rolconfig) ORDER BY 1), ','), '')
           FROM pg_roles WHERE rolname = '{stem}' OR rolname LIKE '{like}'
         UNION ALL
         SELECT 'member ' || m.member::regrole::text || ' in ' || m.roleid::regrole::text
           FROM pg_auth_members m WHERE m.member::regrole::text LIKE '%{stem}%' OR m.roleid::regrole::text LIKE '%{stem}%'
         ORDER BY 1"
    ))
    .await;
    let (db, schema_db): (String, tokio_postgres::Client) = match t["isolation"].as_str().unwrap() {
        "database" => {
            let db = t["database"].as_str().unwrap().to_string();
            let exists: bool = pg
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                    &[&db],
                )
                .await
                .unwrap()
                .get(0);
            if !exists {
                return out;
            }
            out.extend(
                rows(&pg, &format!(
                    "SELECT 'database ' || datname || ' limit=' || datconnlimit || ' acl=' ||
                            array_to_string(ARRAY(SELECT a.grantee::regrole::text || ':' || a.privilege_type
                              FROM aclexplode(datacl) a WHERE a.grantee <> 0 ORDER BY 1), ',')
                       FROM pg_database WHERE datname = '{db}'"
                ))
                .await,
            );
            (db.clone(), superuser_in(&db).await)
        }
        _ => ("berqenas".into(), superuser().await),
    };
    if t["isolation"] == "shared" {
        out.extend(rows(&pg, &format!(
            "SELECT 'member-row ' || role FROM berqenas_shared.members WHERE tenant_id = '{id}' ORDER BY 1"
        )).await);
        for table in ["applications", "resources", "deployments", "user_activity"] {
            out.extend(rows(&pg, &format!(
                "SELECT '{table} ' || count(*) || ' ' || coalesce(md5(string_agg(r::text, ',' ORDER BY r::text)), '')
                   FROM (SELECT to_jsonb(x) - 'tenant_id' AS r FROM berqenas_shared.{table} x WHERE tenant_id = '{id}') s"
            )).await);
        }
        return out;
    }
    let c = &schema_db;
    out.extend(rows(c, &format!(
        "SELECT 'schema ' || nspname || ' owner=' || nspowner::regrole::text || ' acl=' ||
                array_to_string(ARRAY(SELECT a.grantee::regrole::text || ':' || a.privilege_type || '/' || a.grantor::regrole::text
                  FROM aclexplode(nspacl) a ORDER BY 1), ',')
           FROM pg_namespace WHERE nspname = '{stem}'
         UNION ALL
         SELECT 'object ' || c.relname || ' kind=' || c.relkind::text || ' owner=' || c.relowner::regrole::text || ' acl=' ||
                array_to_string(ARRAY(SELECT a.grantee::regrole::text || ':' || a.privilege_type || '/' || a.grantor::regrole::text
                  FROM aclexplode(c.relacl) a ORDER BY 1), ',')
           FROM pg_class c WHERE c.relnamespace = to_regnamespace('{stem}')
         UNION ALL
         SELECT 'column ' || a.attrelid::regclass::text || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE c.relnamespace = to_regnamespace('{stem}') AND a.attnum > 0 AND NOT a.attisdropped
         UNION ALL
         SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
           FROM pg_constraint WHERE connamespace = to_regnamespace('{stem}')
         UNION ALL
         SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = '{stem}'
         UNION ALL
         SELECT 'default-acl ' || defaclrole::regrole::text || ' ' || defaclobjtype::text || ' ' ||
                array_to_string(ARRAY(SELECT a.grantee::regrole::text || ':' || a.privilege_type
                  FROM aclexplode(defaclacl) a ORDER BY 1), ',')
           FROM pg_default_acl WHERE defaclnamespace = to_regnamespace('{stem}')
         ORDER BY 1"
    ))
    .await);
    for table in rows(c, &format!("SELECT relname::text FROM pg_class WHERE relnamespace = to_regnamespace('{stem}') AND relkind = 'r' ORDER BY 1")).await {
        out.extend(rows(c, &format!(
            "SELECT 'data {table} ' || count(*) || ' ' || coalesce(md5(string_agg(r::text, ',' ORDER BY r::text)), '')
               FROM \"{stem}\".\"{table}\" r"
        )).await);
    }
    let _ = db;
    out
}

/// Fills a tenant through its own login: rows in three related tables.
async fn fill(t: &Value, n: usize) {
    let c = connect_as(&t["credentials"]).await;
    c.batch_execute(&format!(
        "INSERT INTO applications (name, team, created_by, desired_state)
              SELECT 'app-' || i, 'team-' || (i % 3), 'me', jsonb_build_object('replicas', i) FROM generate_series(1, {n}) i;
         INSERT INTO resources (application_id, type, name)
              SELECT id, 'db', 'res-' || name FROM applications;
         INSERT INTO deployments (application_id, version, status, triggered_by)
              SELECT id, 'v1', 'done', 'ci' FROM applications;
         INSERT INTO user_activity (user_id, action, ip_address) VALUES ('u1', 'login', '10.0.0.1');"
    ))
    .await
    .unwrap();
}

async fn create(app: &TestApp, name: &str, isolation: &str) -> Value {
    app.create_with(json!({"name": name, "isolation": isolation, "db_quota": "1GB"}))
        .await
}

async fn backup(app: &TestApp, name: &str) -> Value {
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/backups"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b
}

/// Restores a backup: in place with no body, into a new tenant with `{"as": name}`.
async fn restore_backup(
    app: &TestApp,
    name: &str,
    bid: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    app.call(
        Method::POST,
        &format!("/api/v1/tenants/{name}/backups/{bid}/restore"),
        body,
    )
    .await
}

/// Brings a deleted or purged tenant back.
async fn restore(app: &TestApp, name: &str) -> (StatusCode, Value) {
    app.call(
        Method::POST,
        &format!("/api/v1/tenants/{name}/restore"),
        None,
    )
    .await
}

async fn list_backups(app: &TestApp, name: &str) -> (StatusCode, Value) {
    app.call(
        Method::GET,
        &format!("/api/v1/tenants/{name}/backups"),
        None,
    )
    .await
}

async fn verify(app: &TestApp, bid: &str) -> (StatusCode, Value) {
    app.call(Method::POST, &format!("/api/v1/backups/{bid}/verify"), None)
        .await
}

async fn purge_now(app: &TestApp, name: &str) -> (StatusCode, Value) {
    app.call(
        Method::DELETE,
        &format!("/api/v1/tenants/{name}?purge=now"),
        Some(json!({"confirm": name})),
    )
    .await
}

/// Runs backup worker rounds until the tenant's GET answer satisfies `done` (another
/// test's worker may hold the lock for a round); false if it never does.
async fn worker_until(
    rt: &std::sync::Arc<berqenas::workflows::Runtime>,
    app: &TestApp,
    name: &str,
    done: impl Fn(StatusCode, &Value) -> bool,
) -> bool {
    for _ in 0..20 {
        berqenas::workflows::backups::worker_round(rt, 1)
            .await
            .unwrap();
        berqenas::workflows::offboarding::run_due(rt).await.unwrap();
        let (s, got) = app
            .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
            .await;
        if done(s, &got) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    false
}

/// The one count a query returns.
async fn count(
    pg: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> i64 {
    pg.query_one(sql, params).await.unwrap().get(0)
}

async fn can_log_in(t: &Value) -> bool {
    tokio_postgres::connect(
        t["credentials"]["dsn"].as_str().unwrap(),
        tokio_postgres::NoTls,
    )
    .await
    .is_ok()
}

async fn key_works(app: &TestApp, t: &Value) -> bool {
    match t["api_key"].as_str() {
        Some(key) => app.me(key).await == StatusCode::OK,
        None => false,
    }
}

async fn store_dir() -> PathBuf {
    // TestApp's platform keeps backups beside the shared cluster.
    let db = common::database().await;
    db.cluster
        .as_ref()
        .unwrap()
        .socket_dir()
        .parent()
        .unwrap()
        .join("backups")
}

/// The server's errors in the test output (they are opaque in the API's answers).
fn log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("berqenas=warn")
        .with_test_writer()
        .try_init();
}
