//! Backups, restores, backup policies, the worker, and reversible offboarding, in every
//! isolation mode, against real PostgreSQL. Every operation followed by its inverse is
//! checked with a catalog snapshot (roles, memberships, grants, tables, constraints,
//! indexes, default privileges) and the rows themselves.

mod common;

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
        berqenas::workflows::backups::worker_round(rt)
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

/// The whole story for one isolation mode.
async fn lifecycle(isolation: &str) {
    log();
    let app = TestApp::spawn().await;
    let name = unique(&format!("bk{}", &isolation[..2]));
    let t = create(&app, &name, isolation).await;
    fill(&t, 25).await;
    let original = snapshot(&t).await;
    assert!(original.iter().any(|l| l.contains(" 25 ")), "{original:#?}");

    // Back up: encrypted, with a manifest; the object holds no plaintext.
    let b = backup(&app, &name).await;
    assert_eq!(b["status"], "succeeded");
    assert_eq!(b["encrypted"], true);
    assert_eq!(b["isolation"], isolation);
    assert_eq!(b["sha256"].as_str().unwrap().len(), 64);
    let apps = b["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "applications")
        .unwrap();
    assert_eq!(apps["rows"], 25);
    let object = store_dir().await.join(format!(
        "{}/{}.bqb",
        t["id"].as_str().unwrap(),
        b["id"].as_str().unwrap()
    ));
    let bytes = std::fs::read(&object).unwrap();
    assert_eq!(bytes.len() as i64, b["size_bytes"].as_i64().unwrap());
    assert!(bytes.starts_with(b"BQB1"));
    assert!(
        !bytes.windows(7).any(|w| w == b"team-1\t"),
        "no plaintext rows in the object"
    );
    let (s, listed) = list_backups(&app, &name).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(listed["backups"][0]["id"], b["id"]);
    let bid = b["id"].as_str().unwrap().to_string();
    let (s, report) = verify(&app, &bid).await;
    assert_eq!(
        (s, report["ok"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{report}"
    );

    // Rows lost; the restore in place brings back exactly what was there.
    let c = connect_as(&t["credentials"]).await;
    c.batch_execute("DELETE FROM deployments; DELETE FROM resources; DELETE FROM applications WHERE name <> 'app-1';")
        .await
        .unwrap();
    assert_ne!(snapshot(&t).await, original);
    let (s, restored) = restore_backup(&app, &name, &bid, None).await;
    assert_eq!(s, StatusCode::OK, "{restored}");
    assert_eq!(snapshot(&t).await, original, "in-place restore");
    assert!(
        c.query_one("SELECT 1", &[]).await.is_err(),
        "sessions end during a restore"
    );
    assert!(can_log_in(&t).await, "logins are back after the restore");

    // Into a new tenant: same rows, new credentials and key; the source is untouched.
    let copy_name = unique(&format!("cp{}", &isolation[..2]));
    let (s, copy) = restore_backup(&app, &name, &bid, Some(json!({"as": copy_name}))).await;
    assert_eq!(s, StatusCode::CREATED, "{copy}");
    assert_eq!(copy["isolation"], isolation);
    let cc = connect_as(&copy["credentials"]).await;
    let n = count(&cc, "SELECT count(*) FROM resources", &[]).await;
    assert_eq!(n, 25);
    let apps_of = |c: &'static str| {
        format!("SELECT string_agg(name || desired_state::text, ',' ORDER BY name) FROM applications{c}")
    };
    let copied: String = cc.query_one(&apps_of(""), &[]).await.unwrap().get(0);
    let source: String = connect_as(&t["credentials"])
        .await
        .query_one(&apps_of(""), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(copied, source);
    assert!(key_works(&app, &copy).await);
    assert_eq!(snapshot(&t).await, original, "the source is untouched");
    drop(cc);
    let (s, _) = purge_now(&app, &copy_name).await;
    assert_eq!(s, StatusCode::OK);

    // Soft delete: the session dies, logins and the key are refused, nothing dropped.
    let session = connect_as(&t["credentials"]).await;
    let (s, deleted) = app
        .call(Method::DELETE, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["status"], "deleted");
    assert_eq!(deleted["previous_status"], "active");
    assert!(deleted["final_backup_id"].is_string());
    assert!(
        deleted["archive_expires_at"].as_str().unwrap() > deleted["purge_after"].as_str().unwrap()
    );
    assert!(session.query_one("SELECT 1", &[]).await.is_err());
    assert!(!can_log_in(&t).await, "login refused");
    assert!(!key_works(&app, &t).await, "API key refused");
    let (s, e) = app
        .call(Method::DELETE, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_state"))
    );
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("it is deleted"));

    // Restore within the retention: exactly as before, credentials and key included.
    let (s, back) = restore(&app, &name).await;
    assert_eq!(
        (s, back["status"].as_str()),
        (StatusCode::OK, Some("active")),
        "{back}"
    );
    assert_eq!(snapshot(&t).await, original, "delete + restore");
    assert!(can_log_in(&t).await && key_works(&app, &t).await);

    // Purge: every object gone from the catalog, the registry row kept.
    let (s, purged) = purge_now(&app, &name).await;
    assert_eq!(
        (s, purged["status"].as_str()),
        (StatusCode::OK, Some("purged")),
        "{purged}"
    );
    let gone = snapshot(&t).await;
    assert!(
        gone.iter().all(|l| l.starts_with("data ")
            || l.starts_with("applications 0")
            || l.starts_with("resources 0")
            || l.starts_with("deployments 0")
            || l.starts_with("user_activity 0")),
        "{gone:#?}"
    );
    let pg = superuser().await;
    let stem = format!("tenant_{}", name.replace('-', "_"));
    let left = count(
        &pg,
        "SELECT (SELECT count(*) FROM pg_roles WHERE rolname LIKE $1 || '%')
                  + (SELECT count(*) FROM pg_namespace WHERE nspname = $1)
                  + (SELECT count(*) FROM pg_database WHERE datname = $1)",
        &[&stem],
    )
    .await;
    assert_eq!(left, 0, "no role, schema or database left");
    assert!(!can_log_in(&t).await && !key_works(&app, &t).await);

    // Even purged, the archive brings it back, with the original password and key.
    let (s, back) = restore(&app, &name).await;
    assert_eq!(
        (s, back["status"].as_str()),
        (StatusCode::OK, Some("active")),
        "{back}"
    );
    assert_eq!(
        snapshot(&t).await,
        original,
        "purge + restore from the archive"
    );
    assert!(can_log_in(&t).await, "the original password works");
    assert!(key_works(&app, &t).await, "the original key works");
    let mut audited = audit_actions(&name).await;
    audited.retain(|a| {
        [
            "backup_created",
            "backup_restored",
            "tenant_soft_deleted",
            "tenant_restored",
            "tenant_purged",
        ]
        .contains(&a.as_str())
    });
    assert_eq!(
        audited,
        [
            "backup_created",
            "backup_restored",
            "backup_created",
            "tenant_soft_deleted",
            "tenant_restored",
            "backup_created",
            "tenant_soft_deleted",
            "tenant_purged",
            "tenant_restored"
        ]
    );
}

#[tokio::test]
async fn schema_mode_backup_restore_delete_purge_and_back() {
    lifecycle("schema").await;
}

#[tokio::test]
async fn database_mode_backup_restore_delete_purge_and_back() {
    lifecycle("database").await;
}

#[tokio::test]
async fn shared_mode_backup_restore_delete_purge_and_back() {
    lifecycle("shared").await;
}

/// A function the tenant planted in a CHECK constraint and a default runs during the
/// restore, and tries everything: it gets no more than the tenant's owner role has.
#[tokio::test]
async fn a_malicious_function_in_a_restored_dump_does_not_elevate() {
    log();
    let app = TestApp::spawn().await;
    let name = unique("evil");
    let t = create(&app, &name, "schema").await;
    let (s, admin) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/users"),
            Some(json!({"email": "mallory@example.com", "role": "tenant_admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let login = t["role"].as_str().unwrap();
    let mallory = connect_as(&admin["credentials"]).await;
    let stem = format!("tenant_{}", name.replace('-', "_"));
    mallory
        .batch_execute(&format!(
            "CREATE TABLE evidence (at text, who text, outcome text);
             CREATE FUNCTION {stem}.attempt(label text, stmt text) RETURNS void LANGUAGE plpgsql AS $f$
             BEGIN
                 BEGIN
                     IF label <> 'control' THEN EXECUTE 'RESET ROLE'; END IF;
                     EXECUTE stmt;
                     INSERT INTO {stem}.evidence VALUES (label, session_user || '/' || current_user, 'SUCCEEDED');
                 EXCEPTION WHEN others THEN
                     INSERT INTO {stem}.evidence VALUES (label, session_user || '/' || current_user, SQLERRM);
                 END;
             END $f$;
             CREATE FUNCTION {stem}.pwn(v int) RETURNS boolean LANGUAGE plpgsql AS $f$
             BEGIN
                 IF session_user::text LIKE 'tenant\\_%' THEN RETURN true; END IF;
                 PERFORM {stem}.attempt('super', 'ALTER ROLE {login} SUPERUSER');
                 PERFORM {stem}.attempt('createrole', 'ALTER ROLE {login} CREATEROLE');
                 PERFORM {stem}.attempt('newrole', 'CREATE ROLE pwned_{stem} SUPERUSER LOGIN');
                 PERFORM {stem}.attempt('control', 'INSERT INTO berqenas.audit_log (actor, action) VALUES (''mallory'', ''forged'')');
                 PERFORM {stem}.attempt('grant', 'GRANT pg_read_server_files TO {login}');
                 RETURN true;
             END $f$;
             CREATE TABLE victims (v int CHECK ({stem}.pwn(v)), w int DEFAULT 1);
             INSERT INTO victims (v) VALUES (1), (2);"
        ))
        .await
        .unwrap();
    let b = backup(&app, &name).await;
    let bid = b["id"].as_str().unwrap();
    let (s, body) = restore_backup(&app, &name, bid, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");

    let pg = superuser().await;
    let attrs: (bool, bool) = {
        let r = pg
            .query_one(
                "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = $1",
                &[&login],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(attrs, (false, false), "the login role gained nothing");
    let pwned = count(
        &pg,
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'pwned%'",
        &[],
    )
    .await;
    assert_eq!(pwned, 0);
    let forged = count(
        &pg,
        "SELECT count(*) FROM berqenas.audit_log WHERE action = 'forged'",
        &[],
    )
    .await;
    assert_eq!(forged, 0);
    let member: bool = pg
        .query_one(
            "SELECT pg_has_role($1, 'pg_read_server_files', 'MEMBER')",
            &[&login],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!member);
    // The function did run during the restore, as the throw-away role, and failed.
    let evidence = rows(&pg, &format!(
        "SELECT at || ' ' || who || ' ' || outcome FROM {stem}.evidence WHERE who LIKE 'berqenas\\_restore\\_%' ORDER BY 1"
    ))
    .await;
    assert!(
        !evidence.is_empty(),
        "the planted function ran during the restore"
    );
    assert!(
        evidence.iter().all(|e| !e.ends_with("SUCCEEDED")),
        "{evidence:#?}"
    );
    let temp_roles = count(
        &pg,
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'berqenas\\_restore\\_%'",
        &[],
    )
    .await;
    assert_eq!(temp_roles, 0, "the throw-away role is gone");
    // Verify restores the same archive in a scratch database, where the function
    // runs again (and can do even less); its own writes there show as a difference.
    let (s, report) = verify(&app, bid).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    let failing: Vec<&str> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["ok"] == false)
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(failing, ["evidence"], "{report}");
    let attrs: bool = pg
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = $1",
            &[&login],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!attrs);
}

/// A tampered object is refused (the tenant keeps its data); a failed backup leaves a
/// countable `failed` row with its error; unencrypted backups work too.
#[tokio::test]
async fn tampering_is_detected_and_failures_are_recorded() {
    let app = TestApp::spawn().await;
    let name = unique("tamper");
    let t = create(&app, &name, "schema").await;
    fill(&t, 5).await;
    let before = snapshot(&t).await;
    let b = backup(&app, &name).await;
    let bid = b["id"].as_str().unwrap();
    let object = store_dir()
        .await
        .join(format!("{}/{bid}.bqb", t["id"].as_str().unwrap()));
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&object, &bytes).unwrap();
    let (s, e) = restore_backup(&app, &name, bid, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "backup_corrupt", "{e}");
    assert_eq!(
        snapshot(&t).await,
        before,
        "a refused restore changes nothing"
    );
    assert!(
        can_log_in(&t).await,
        "logins are back after a failed restore"
    );
    let (s, e) = verify(&app, bid).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");

    // Unencrypted by policy: stored as pg_dump wrote it, checked by its digest.
    let (s, _) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/backup-policy"),
            Some(json!({"schedule": "0 4 * * 0", "retention_days": 7, "encryption": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let plain = backup(&app, &name).await;
    assert_eq!(plain["encrypted"], false);
    let pid = plain["id"].as_str().unwrap();
    let (s, report) = verify(&app, pid).await;
    assert_eq!(
        (s, report["ok"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{report}"
    );
    let object = store_dir()
        .await
        .join(format!("{}/{pid}.bqb", t["id"].as_str().unwrap()));
    let mut bytes = std::fs::read(&object).unwrap();
    assert!(bytes.starts_with(b"PGDMP"));
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&object, &bytes).unwrap();
    let (s, e) = restore_backup(&app, &name, pid, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "backup_corrupt", "{e}");
    assert_eq!(snapshot(&t).await, before);

    // A backup that fails: its schema dropped behind berqenas's back.
    let pg = superuser().await;
    let stem = format!("tenant_{}", name.replace('-', "_"));
    pg.batch_execute(&format!("DROP SCHEMA \"{stem}\" CASCADE"))
        .await
        .unwrap();
    let (s, _) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/backups"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    let (_, listed) = list_backups(&app, &name).await;
    let failed = &listed["backups"][0];
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("pg_dump"),
        "{failed}"
    );
    let counted = count(
        &pg,
        "SELECT count(*) FROM berqenas.backups WHERE status = 'failed' AND tenant_name = $1",
        &[&name],
    )
    .await;
    assert_eq!(counted, 1);
    let audited = audit_count(&pg, &name, "backup_failed").await;
    assert_eq!(audited, 1);
    let no_partial = std::fs::read_dir(store_dir().await.join(t["id"].as_str().unwrap()))
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().contains("partial"));
    assert!(no_partial);
}

/// A suspended tenant deleted and restored comes back suspended, logins still off,
/// also from its archive; the worker purges after the date and frees the name once
/// the archive has expired.
#[tokio::test]
async fn offboarding_keeps_the_previous_status_and_the_worker_purges_and_frees_names() {
    log();
    let app = TestApp::spawn().await;
    let platform = common::runtime(common::platform(4).await).await;
    let name = unique("susp");
    let t = create(&app, &name, "schema").await;
    fill(&t, 3).await;
    let pg = superuser().await;
    let login = t["role"].as_str().unwrap();
    pg.batch_execute(&format!(
        "UPDATE berqenas.tenants SET status = 'suspended' WHERE name = '{name}'; ALTER ROLE \"{login}\" NOLOGIN;"
    ))
    .await
    .unwrap();
    let suspended = snapshot(&t).await;
    let (s, d) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}?retention=0"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["previous_status"], "suspended");
    let (s, back) = restore(&app, &name).await;
    assert_eq!(
        (s, back["status"].as_str()),
        (StatusCode::OK, Some("suspended"))
    );
    assert_eq!(snapshot(&t).await, suspended);
    assert!(!can_log_in(&t).await);

    // Deleted with no retention: the worker's next round purges it.
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}?retention=0"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let purged = worker_until(&platform, &app, &name, |_, got| got["status"] == "purged").await;
    assert!(purged, "the worker purged the tenant");
    let (s, back) = restore(&app, &name).await;
    assert_eq!(
        (s, back["status"].as_str()),
        (StatusCode::OK, Some("suspended")),
        "{back}"
    );
    assert_eq!(
        snapshot(&t).await,
        suspended,
        "rebuilt from the archive, still suspended"
    );

    // Purged again; once its archive expires the name is free for a new tenant.
    let (s, _) = purge_now(&app, &name).await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = app
        .call(Method::POST, "/api/v1/tenants", Some(json!({"name": name})))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "the name stays reserved: {e}");
    pg.execute(
        "UPDATE berqenas.backups SET expires_at = now() - interval '1 second' WHERE tenant_name = $1 AND status = 'succeeded'",
        &[&name],
    )
    .await
    .unwrap();
    let freed = worker_until(&platform, &app, &name, |s, _| s == StatusCode::NOT_FOUND).await;
    assert!(freed, "the registry row went with the archive");
    assert!(
        !store_dir()
            .await
            .join(t["id"].as_str().unwrap())
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().ends_with(".bqb") }),
        "expired objects are deleted"
    );
    create(&app, &name, "schema").await;
}

/// Two servers (their own platforms and pools, one control database) run their
/// workers at once: a due scheduled backup is taken exactly once.
#[tokio::test]
async fn two_servers_take_a_due_scheduled_backup_once() {
    let app = TestApp::spawn().await;
    let name = unique("sched");
    let (s, t) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": name, "backup_schedule": "*/5 * * * *"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    fill(&t, 2).await;
    let (s, policy) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/backup-policy"),
            None,
        )
        .await;
    assert_eq!(
        (s, policy["schedule"].as_str()),
        (StatusCode::OK, Some("*/5 * * * *"))
    );
    let one = common::runtime(common::platform(4).await).await;
    let two = common::runtime(common::platform(4).await).await;
    let pg = superuser().await;
    pg.execute(
        "UPDATE berqenas.backup_policies SET next_run_at = now() - interval '1 second'
          WHERE tenant_id = (SELECT id FROM berqenas.tenants WHERE name = $1)",
        &[&name],
    )
    .await
    .unwrap();
    // Another test's worker may hold the lock for a round: wait for the backup, then
    // give both servers more rounds to take it a second time.
    let scheduled_of = |listed: &Value| -> Vec<Value> {
        listed["backups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["kind"] == "scheduled")
            .cloned()
            .collect()
    };
    let mut extra = 0;
    for _ in 0..40 {
        let (a, b) = tokio::join!(
            berqenas::workflows::backups::worker_round(&one),
            berqenas::workflows::backups::worker_round(&two)
        );
        a.unwrap();
        b.unwrap();
        let (_, listed) = list_backups(&app, &name).await;
        if !scheduled_of(&listed).is_empty() {
            extra += 1;
            if extra == 3 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, listed) = list_backups(&app, &name).await;
    let scheduled = scheduled_of(&listed);
    assert_eq!(scheduled.len(), 1, "{listed}");
    assert_eq!(scheduled[0]["status"], "succeeded");
    let next: bool = pg
        .query_one(
            "SELECT next_run_at > now() FROM berqenas.backup_policies
              WHERE tenant_id = (SELECT id FROM berqenas.tenants WHERE name = $1)",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(next, "the policy moved to its next run");
}

/// Bad input gets a 4xx naming the field, and changes nothing.
#[tokio::test]
async fn bad_input_is_refused_by_field_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let name = unique("badbk");
    let t = create(&app, &name, "schema").await;
    let other = create(&app, &unique("badbk"), "schema").await;
    let b = backup(&app, &name).await;
    let bid = b["id"].as_str().unwrap().to_string();
    let (s, p) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/backup-policy"),
            Some(json!({"schedule": "0 3 * * *", "retention_days": 14})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let pg = superuser().await;
    let never = unique("badbk");
    let names = [
        name.clone(),
        other["name"].as_str().unwrap().to_string(),
        never.clone(),
    ];
    // Other tests run beside this one: only what concerns these tenants is compared.
    let state = || async {
        let pg = superuser().await;
        let mut s = Vec::new();
        for n in &names {
            s.extend(common::footprint(&pg, n).await);
            s.extend(snapshot(&json!({"name": n, "id": "00000000-0000-0000-0000-000000000000", "isolation": "schema"})).await);
        }
        let list = names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(",");
        s.extend(rows(&pg, &format!(
            "SELECT 'backup ' || id || ' ' || status FROM berqenas.backups WHERE tenant_name IN ({list})
             UNION ALL SELECT 'policy ' || p.schedule || ' ' || p.retention_days || ' ' || p.next_run_at
                 FROM berqenas.backup_policies p JOIN berqenas.tenants t ON t.id = p.tenant_id WHERE t.name IN ({list})
             UNION ALL SELECT 'plan-policy ' || schedule FROM berqenas.plan_backup_policies WHERE plan = 'free'
             UNION ALL SELECT 'audit ' || count(*) FROM berqenas.audit_log WHERE tenant_name IN ({list}) OR (tenant_name IS NULL AND action = 'backup_policy_updated')
             UNION ALL SELECT 'ops ' || count(*) FROM berqenas.operations WHERE tenant_name IN ({list})
             UNION ALL SELECT 'keys ' || count(*) FROM berqenas.api_keys k JOIN berqenas.tenants t ON t.id = k.tenant_id
                 WHERE t.name IN ({list}) AND k.revoked_at IS NULL
             UNION ALL SELECT 'offboarding ' || count(*) FROM berqenas.offboarding o JOIN berqenas.tenants t ON t.id = o.tenant_id
                 WHERE t.name IN ({list})
             ORDER BY 1"
        )).await);
        s
    };
    let before = state().await;
    let n = name.as_str();
    let other_name = other["name"].as_str().unwrap();
    let cases: Vec<(Method, String, Option<Value>, StatusCode, &str)> = vec![
        (
            Method::PUT,
            format!("/api/v1/tenants/{n}/backup-policy"),
            Some(json!({"schedule": "0 3 * *"})),
            StatusCode::BAD_REQUEST,
            "schedule",
        ),
        (
            Method::PUT,
            format!("/api/v1/tenants/{n}/backup-policy"),
            Some(json!({"schedule": "every night"})),
            StatusCode::BAD_REQUEST,
            "schedule",
        ),
        (
            Method::PUT,
            format!("/api/v1/tenants/{n}/backup-policy"),
            Some(json!({"schedule": "0 3 * * *", "retention_days": -1})),
            StatusCode::BAD_REQUEST,
            "retention_days",
        ),
        (
            Method::PUT,
            format!("/api/v1/tenants/{n}/backup-policy"),
            Some(json!({"schedule": "0 3 * * *", "retention_days": "ten"})),
            StatusCode::BAD_REQUEST,
            "retention_days",
        ),
        (
            Method::PUT,
            format!("/api/v1/tenants/{n}/backup-policy"),
            Some(json!({"schedule": "0 3 * * *", "keep": 1})),
            StatusCode::BAD_REQUEST,
            "keep",
        ),
        (
            Method::PUT,
            "/api/v1/plans/free/backup-policy".into(),
            Some(json!({"schedule": "99 * * * *"})),
            StatusCode::BAD_REQUEST,
            "schedule",
        ),
        (
            Method::POST,
            "/api/v1/tenants".into(),
            Some(json!({"name": never, "backup_schedule": "daily"})),
            StatusCode::BAD_REQUEST,
            "backup_schedule",
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{n}?retention=-1"),
            None,
            StatusCode::BAD_REQUEST,
            "retention",
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{n}?retention=soon"),
            None,
            StatusCode::BAD_REQUEST,
            "retention",
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{n}"),
            Some(json!({"retention_days": -5})),
            StatusCode::BAD_REQUEST,
            "retention_days",
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{n}?purge=now"),
            None,
            StatusCode::BAD_REQUEST,
            "confirm",
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{n}?purge=now"),
            Some(json!({"confirm": other_name})),
            StatusCode::BAD_REQUEST,
            "confirm",
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{n}?purge=later"),
            None,
            StatusCode::BAD_REQUEST,
            "purge",
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{n}?force=1"),
            None,
            StatusCode::BAD_REQUEST,
            "force",
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{n}/backups/{bid}/restore"),
            Some(json!({"as": "Bad Name"})),
            StatusCode::BAD_REQUEST,
            "as",
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{n}/backups/{bid}/restore"),
            Some(json!({"as": other_name})),
            StatusCode::CONFLICT,
            "",
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{n}/backups/{bid}/restore"),
            Some(json!({"into": "x"})),
            StatusCode::BAD_REQUEST,
            "into",
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{other_name}/backups/{bid}/restore"),
            None,
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{n}/backups/0190e7a0-0000-7000-8000-000000000000/restore"),
            None,
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            Method::POST,
            "/api/v1/backups/not-a-uuid/verify".into(),
            None,
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            Method::GET,
            "/api/v1/backups/0190e7a0-0000-7000-8000-000000000000".into(),
            None,
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{n}/restore"),
            None,
            StatusCode::CONFLICT,
            "status",
        ),
        (
            Method::POST,
            "/api/v1/tenants/no-such-tenant/backups".into(),
            None,
            StatusCode::NOT_FOUND,
            "",
        ),
    ];
    for (method, path, body, want, field) in cases {
        let (s, e) = app.call(method.clone(), &path, body.clone()).await;
        assert_eq!(s, want, "{method} {path} {body:?}: {e}");
        if !field.is_empty() {
            assert_eq!(
                e["error"]["field"].as_str(),
                Some(field),
                "{method} {path}: {e}"
            );
        }
        assert!(
            e["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{e}"
        );
    }
    let (_, e) = app
        .call(Method::POST, &format!("/api/v1/tenants/{n}/restore"), None)
        .await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("it is active"),
        "{e}"
    );
    assert_eq!(state().await, before, "nothing changed");
    assert!(can_log_in(&t).await && key_works(&app, &t).await);
    drop(pg);
}

/// Checksums hash each row by its columns' own hash functions where every column type
/// has one, and fall back to the row's text where one does not (`json`, `point`); the
/// manifest records which, and verify takes the same one again.
#[tokio::test]
async fn checksums_fall_back_to_text_for_types_without_a_hash() {
    let app = TestApp::spawn().await;
    let name = unique("sums");
    let t = create(&app, &name, "schema").await;
    fill(&t, 3).await;
    let stem = format!("tenant_{}", name.replace('-', "_"));
    superuser()
        .await
        .batch_execute(&format!(
            "CREATE TABLE {stem}.odd (j json, p point, n numeric);
             ALTER TABLE {stem}.odd OWNER TO {stem}_owner;
             INSERT INTO {stem}.odd VALUES ('{{\"a\": 1}}', point(1, 2), 1.50), (NULL, NULL, 2);"
        ))
        .await
        .unwrap();
    let b = backup(&app, &name).await;
    let method = |table: &str| {
        b["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .map(|t| {
                (
                    t["rows"].as_i64().unwrap(),
                    t["method"].as_str().unwrap().to_string(),
                )
            })
            .unwrap()
    };
    assert_eq!(method("applications"), (3, "record".to_string()), "{b}");
    assert_eq!(method("odd"), (2, "text".to_string()), "{b}");
    let (s, report) = verify(&app, b["id"].as_str().unwrap()).await;
    assert_eq!(
        (s, report["ok"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{report}"
    );
}

/// One shape of a tenant: what `DELETE` answers is what `GET` and the list show of a
/// deleted or purged tenant; any other tenant has the same fields, null.
#[tokio::test]
async fn a_deleted_tenant_reads_as_its_delete_answered() {
    let app = TestApp::spawn().await;
    let name = unique("one-shape");
    let live = create(&app, &name, "schema").await;
    let fields = [
        "previous_status",
        "purge_after",
        "purged_at",
        "final_backup_id",
        "archive_expires_at",
    ];
    let (s, got) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    for f in fields {
        assert!(live[f].is_null() && got[f].is_null(), "{f}: {got}");
        assert!(
            got.as_object().unwrap().contains_key(f),
            "{f} missing: {got}"
        );
    }

    let (s, deleted) = app
        .call(Method::DELETE, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["previous_status"], "active");
    assert!(deleted["final_backup_id"].is_string());
    let (s, got) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    let without_time = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("updated_at");
        v
    };
    assert_eq!(without_time(&got), without_time(&deleted));
    let (s, page) = app
        .call(
            Method::GET,
            "/api/v1/tenants?status=deleted&limit=1000",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let listed = page["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name.as_str())
        .expect("listed")
        .clone();
    assert_eq!(without_time(&listed), without_time(&deleted));

    let (s, purged) = purge_now(&app, &name).await;
    assert_eq!(s, StatusCode::OK, "{purged}");
    assert_eq!(purged["status"], "purged");
    assert!(purged["purged_at"].is_string());
    let (s, got) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(without_time(&got), without_time(&purged));
    for f in [
        "previous_status",
        "purge_after",
        "final_backup_id",
        "archive_expires_at",
    ] {
        assert_eq!(got[f], deleted[f], "{f}");
    }
}
