//! Quotas that PostgreSQL enforces: connection limits, disk quotas that take write
//! privileges away (and give exactly them back), the watchdog behind statement
//! timeouts, atomic usage counters, and the quota API's bad input.

mod common;
#[path = "support/state.rs"]
mod support;

use std::time::{Duration, Instant};

use berqenas::api::AppState;
use berqenas::quota;
use common::{audit_count, cli, connect_as, stdout_json, superuser, superuser_in, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_postgres::error::SqlState;

async fn put_quotas(app: &TestApp, name: &str, body: Value) -> (StatusCode, Value) {
    app.call(
        Method::PUT,
        &format!("/api/v1/tenants/{name}/quotas"),
        Some(body),
    )
    .await
}

/// [`put_quotas`] that must succeed; returns the limits now in force.
async fn set_quotas(app: &TestApp, name: &str, body: Value) -> Value {
    let (s, limits) = put_quotas(app, name, body).await;
    assert_eq!(s, StatusCode::OK, "{limits}");
    limits
}

/// The role's connection limit and per-role settings, from the catalog.
async fn role_limits(pg: &tokio_postgres::Client, role: &str) -> (i32, Vec<String>) {
    let row = pg
        .query_one(
            "SELECT rolconnlimit, coalesce((SELECT setconfig FROM pg_db_role_setting s
                                             WHERE s.setrole = r.oid AND s.setdatabase = 0), '{}')
               FROM pg_roles r WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn quotas_are_read_changed_and_applied_to_the_roles() {
    let (app, _) = support::spawn().await;
    let pg = superuser().await;
    let name = unique("quota-put");
    let t = app.create(&name).await;
    let role = t["role"].as_str().unwrap();

    let (s, limits) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}/limits"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{limits}");
    // The free plan's values (seed 002), and the 1GB the tenant was created with.
    assert_eq!(limits["plan"], "free");
    assert_eq!(limits["limits"]["max_connections"], 5);
    assert_eq!(limits["limits"]["api_calls_per_minute"], 100);
    assert_eq!(limits["limits"]["max_llm_tokens_per_day"], 10000);
    assert_eq!(limits["limits"]["realtime_events_per_minute"], 60);
    assert_eq!(limits["overridden"], json!([]));

    let body = set_quotas(
        &app,
        &name,
        json!({"max_connections": 3, "statement_timeout_ms": 4000, "max_agents": 7}),
    )
    .await;
    assert_eq!(body["limits"]["max_connections"], 3);
    assert_eq!(body["limits"]["max_agents"], 7);
    assert_eq!(
        body["overridden"],
        json!(["max_connections", "statement_timeout_ms", "max_agents"])
    );
    let (connlimit, settings) = role_limits(&pg, role).await;
    assert_eq!(connlimit, 3);
    assert!(
        settings.contains(&"statement_timeout=4000".to_string()),
        "{settings:?}"
    );
    assert!(
        settings.contains(&"idle_in_transaction_session_timeout=8000".to_string()),
        "{settings:?}"
    );
    assert_eq!(audit_count(&pg, &name, "quotas_updated").await, 1);
    let details: Value = pg
        .query_one(
            "SELECT details FROM berqenas.audit_log WHERE tenant_name = $1 AND action = 'quotas_updated'",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        details["changes"]["max_connections"],
        json!({"from": 5, "to": 3})
    );

    // null: back to the plan's value.
    let body = set_quotas(&app, &name, json!({"max_connections": null})).await;
    assert_eq!(body["limits"]["max_connections"], 5);
    assert_eq!(role_limits(&pg, role).await.0, 5);

    // The plan change path (PATCH) goes through the same code: overrides survive it.
    let (s, body) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/tenants/{name}"),
            Some(json!({"plan": "starter"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(role_limits(&pg, role).await.0, 20);
    let settings = role_limits(&pg, role).await.1;
    assert!(
        settings.contains(&"statement_timeout=4000".to_string()),
        "{settings:?}"
    );
}

#[tokio::test]
async fn bad_quota_input_names_the_field_and_changes_nothing() {
    let (app, _) = support::spawn().await;
    let pg = superuser().await;
    let name = unique("quota-bad");
    app.create(&name).await;
    let before = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}/limits"), None)
        .await
        .1;
    let cases = [
        (json!({"colour": 1}), Some("colour")),
        (json!({"max_connections": 0}), Some("max_connections")),
        (json!({"max_connections": "many"}), Some("max_connections")),
        (
            json!({"statement_timeout_ms": 5}),
            Some("statement_timeout_ms"),
        ),
        (json!({"db_quota_bytes": 100}), Some("db_quota_bytes")),
        (json!({"force": true}), None),
        (json!({}), None),
    ];
    for (body, field) in cases {
        let (s, err) = put_quotas(&app, &name, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["error"]["field"].as_str(), field, "{body}: {err}");
    }
    let (s, _) = put_quotas(&app, "no-such-tenant", json!({"max_users": 3})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let after = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}/limits"), None)
        .await
        .1;
    assert_eq!(before, after);
    assert_eq!(audit_count(&pg, &name, "quotas_updated").await, 0);

    for (body, field) in [
        (json!({"metric": "tokens", "amount": 1}), "metric"),
        (json!({"metric": "llm_tokens", "amount": 0}), "amount"),
        (json!({"metric": "llm_tokens", "amount": -3}), "amount"),
        (json!({"metric": "llm_tokens"}), "amount"),
        (json!({"metric": "llm_tokens", "amount": 1, "x": 1}), "x"),
    ] {
        let (s, err) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/usage"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["error"]["field"], field, "{body}: {err}");
    }
}

#[tokio::test]
async fn connections_stop_at_the_quota_and_other_tenants_still_connect() {
    let (app, _) = support::spawn().await;
    let name = unique("conn");
    let t = app.create(&name).await;
    let other = app.create(&unique("conn-other")).await;
    set_quotas(&app, &name, json!({"max_connections": 2})).await;

    let dsn = t["credentials"]["dsn"].as_str().unwrap();
    let a = connect_as(&t["credentials"]).await;
    let b = connect_as(&t["credentials"]).await;
    let refused = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .err()
        .expect("a third session is refused");
    assert_eq!(refused.code(), Some(&SqlState::TOO_MANY_CONNECTIONS));
    let o = connect_as(&other["credentials"]).await;
    o.simple_query("SELECT 1").await.unwrap();

    // Lowering it below what is open needs force, and then the newest session ends.
    let (s, err) = put_quotas(&app, &name, json!({"max_connections": 1})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error"]["field"], "max_connections");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 open sessions"),
        "{err}"
    );
    set_quotas(&app, &name, json!({"max_connections": 1, "force": true})).await;
    a.simple_query("SELECT 1").await.unwrap();
    assert!(
        b.simple_query("SELECT 1").await.is_err(),
        "the newest session ended"
    );
}

#[tokio::test]
async fn database_mode_connection_limit_follows_the_quota() {
    let (app, _) = support::spawn().await;
    let pg = superuser().await;
    let name = unique("conn-db");
    let t = app.create_in(&name, "database").await;
    set_quotas(&app, &name, json!({"max_connections": 4})).await;
    let limit: i32 = pg
        .query_one(
            "SELECT datconnlimit FROM pg_database WHERE datname = $1",
            &[&t["database"].as_str().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(limit, 4);
}

#[tokio::test]
async fn users_stop_at_max_users_and_lowering_below_needs_force() {
    let (app, _) = support::spawn().await;
    let name = unique("users-quota");
    app.create(&name).await;
    let add = |email: &'static str| {
        let app = &app;
        let name = name.clone();
        async move {
            app.call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/users"),
                Some(json!({"email": email, "role": "developer"})),
            )
            .await
        }
    };
    // The free plan allows one user.
    assert_eq!(add("a@example.com").await.0, StatusCode::CREATED);
    let (s, err) = add("b@example.com").await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error"]["code"], "quota_exceeded");
    assert_eq!(
        put_quotas(&app, &name, json!({"max_users": 3})).await.0,
        StatusCode::OK
    );
    assert_eq!(add("b@example.com").await.0, StatusCode::CREATED);
    let (s, err) = put_quotas(&app, &name, json!({"max_users": 1})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error"]["code"], "quota_below_usage");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 users"),
        "{err}"
    );
    set_quotas(&app, &name, json!({"max_users": 1, "force": true})).await;
    assert_eq!(add("c@example.com").await.0, StatusCode::CONFLICT);
}

/// INSERT of about `kb` kilobytes of incompressible text into user_activity.
fn fill_sql(kb: usize) -> String {
    format!(
        "INSERT INTO user_activity (user_id, action, user_agent)
         SELECT 'u', 'fill', (SELECT string_agg(md5(random()::text || g::text || x::text), '') FROM generate_series(1, 32) x)
           FROM generate_series(1, {kb}) g"
    )
}

async fn can_write(c: &tokio_postgres::Client, table: &str) -> bool {
    match c
        .batch_execute(&format!(
            "INSERT INTO {table} (user_id, action) VALUES ('u', 'probe')"
        ))
        .await
    {
        Ok(()) => true,
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => false,
        Err(e) => panic!("{e:?}"),
    }
}

async fn count(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT count(*) FROM user_activity", &[])
        .await
        .expect("reads keep working")
        .get(0)
}

/// The privileges on every relation and the schema of a tenant (and on its database,
/// in database mode), for before/after.
/// A never-changed ACL (NULL) is compared as the owner's default it stands for, and
/// items in any order (neither changes a privilege).
async fn grants(c: &tokio_postgres::Client, schema: &str, own_database: bool) -> Vec<String> {
    c.query(
        "SELECT c.relname || ':' || pg_get_userbyid(c.relowner) || ':' ||
                (SELECT string_agg(x::text, ',' ORDER BY x::text)
                   FROM unnest(coalesce(c.relacl, acldefault('r', c.relowner))) x)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1
          UNION ALL SELECT 'schema:' || coalesce(nspacl::text, '') FROM pg_namespace WHERE nspname = $1
          UNION ALL SELECT 'database:' || coalesce(datacl::text, '') FROM pg_database
                     WHERE $2 AND datname = current_database()
          ORDER BY 1",
        &[&schema, &own_database],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Every membership of the tenant's roles, for before/after.
async fn memberships(pg: &tokio_postgres::Client, name: &str) -> Vec<String> {
    let stem = format!("tenant_{}", name.replace('-', "_"));
    pg.query(
        "SELECT g.rolname || ' > ' || m.rolname FROM pg_auth_members am
           JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
          WHERE m.rolname LIKE $1 || '\\_%' ORDER BY 1",
        &[&stem],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// A disk round; tests run in parallel, so wait for another test's round to end.
async fn round(state: &AppState) {
    for _ in 0..600 {
        if berqenas::workflows::quotas::disk_round(&state.platform)
            .await
            .unwrap()
            .is_some()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no disk round could run for 30 s");
}

async fn summary(app: &TestApp, name: &str) -> Value {
    let (s, body) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}/usage"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body
}

async fn disk_quota_cycle(isolation: &str) {
    let (app, state) = support::spawn().await;
    let pg = superuser().await;
    let name = unique(&format!("disk-{isolation}"));
    let t = app.create_in(&name, isolation).await;
    set_quotas(&app, &name, json!({"max_users": 5})).await;
    let (s, admin) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/users"),
            Some(json!({"email": "admin@example.com", "role": "tenant_admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{admin}");
    let login = connect_as(&t["credentials"]).await;
    let admin = connect_as(&admin["credentials"]).await;
    let schema = t["schema"].as_str().unwrap().to_string();
    let database = t["database"].as_str().unwrap().to_string();
    let owner_db = superuser_in(&database).await;
    // A table of the admin's own (schema and database mode): owned by the admin user.
    let own_table = isolation != "shared";
    if own_table {
        admin
            .batch_execute(
                "CREATE TABLE notes (user_id text, action text, user_agent text);
                 INSERT INTO notes VALUES ('u', 'a', 'b')",
            )
            .await
            .unwrap();
    }
    let before = grants(&owner_db, &schema, isolation == "database").await;
    let members_before = memberships(&pg, &name).await;

    set_quotas(&app, &name, json!({"db_quota_bytes": 1 << 20})).await;
    login.batch_execute(&fill_sql(1500)).await.unwrap();
    round(&state).await;

    // Over quota: writes fail with a permission error, for every role; reads work.
    assert!(!can_write(&login, "user_activity").await);
    assert!(!can_write(&admin, "user_activity").await);
    if own_table {
        assert!(
            !can_write(&admin, "notes").await,
            "the admin's own table too"
        );
        let e = admin
            .batch_execute("CREATE TABLE more (x int)")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
        // The owner of a table could grant itself anything: it is not the owner now.
        // (It still reads it, so PostgreSQL only warns "no privileges were granted".)
        if let Err(e) = admin
            .batch_execute("GRANT INSERT ON notes TO CURRENT_USER")
            .await
        {
            assert!(e.as_db_error().is_some(), "{e:?}");
        }
        assert!(!can_write(&admin, "notes").await);
        let n: i64 = admin
            .query_one("SELECT count(*) FROM notes", &[])
            .await
            .expect("the creator still reads its table")
            .get(0);
        assert_eq!(n, 1);
    }
    assert_eq!(count(&login).await, 1500);
    // Through the data API too: the same permission error, as 403.
    let (s, body) = app
        .call_with(
            Method::POST,
            "/api/v1/query",
            Some(json!({"sql": "INSERT INTO user_activity (user_id, action) VALUES ('u', 'api')"})),
            t["api_key"].as_str(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "permission_denied");
    if isolation == "database" {
        let temp = login
            .batch_execute("CREATE TEMP TABLE scratch (x int)")
            .await;
        assert_eq!(
            temp.unwrap_err().code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "no temporary tables in its database while over"
        );
    }
    if isolation == "shared" {
        // Privileges belong to the pool roles all tenants share: a restrictive policy
        // refuses this tenant's writes instead, and other tenants write on.
        let other = app.create_in(&unique("disk-shared-other"), "shared").await;
        let o = connect_as(&other["credentials"]).await;
        assert!(can_write(&o, "user_activity").await);
    }
    let sum = summary(&app, &name).await;
    assert_eq!(sum["writes_blocked"], true, "{sum}");
    assert_eq!(sum["at_risk"], true, "{sum}");
    assert!(
        sum["usage"]["storage_bytes"].as_i64().unwrap() > 1 << 20,
        "{sum}"
    );
    assert!(
        sum["utilization_percent"]["storage_bytes"]
            .as_f64()
            .unwrap()
            > 100.0
    );
    assert_eq!(audit_count(&pg, &name, "quota_exceeded").await, 1);
    // A second round while still over changes nothing and audits nothing new.
    round(&state).await;
    assert_eq!(audit_count(&pg, &name, "quota_exceeded").await, 1);
    assert!(!can_write(&login, "user_activity").await);

    // Delete and vacuum: under quota, writes come back, exactly as they were.
    login
        .batch_execute("DELETE FROM user_activity")
        .await
        .unwrap();
    // VACUUM can only reclaim rows no running snapshot still sees; the other tests of
    // this binary run statements concurrently, so retry for a while.
    let vacuum = if isolation == "shared" {
        "VACUUM berqenas_shared.user_activity".to_string()
    } else {
        format!("VACUUM FULL {schema}.user_activity")
    };
    let started = Instant::now();
    loop {
        owner_db.batch_execute(&vacuum).await.unwrap();
        round(&state).await;
        let blocked = summary(&app, &name).await["writes_blocked"] == true;
        if !blocked || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("restored after {:?}", started.elapsed());
    let sum = summary(&app, &name).await;
    assert_eq!(sum["writes_blocked"], false, "{sum}");
    assert!(can_write(&login, "user_activity").await);
    assert!(can_write(&admin, "user_activity").await);
    if own_table {
        assert!(can_write(&admin, "notes").await);
    }
    assert_eq!(
        grants(&owner_db, &schema, isolation == "database").await,
        before
    );
    assert_eq!(memberships(&pg, &name).await, members_before);
    assert_eq!(audit_count(&pg, &name, "quota_restored").await, 1);
    assert_eq!(summary(&app, &name).await["writes_blocked"], false);
}

#[tokio::test]
async fn disk_quota_blocks_and_restores_writes_in_schema_mode() {
    disk_quota_cycle("schema").await;
}

#[tokio::test]
async fn disk_quota_blocks_and_restores_writes_in_database_mode() {
    disk_quota_cycle("database").await;
}

#[tokio::test]
async fn disk_quota_blocks_and_restores_writes_in_shared_mode() {
    disk_quota_cycle("shared").await;
}

/// Blocks and restores `name`'s writes: fills past a 1 MiB quota, a round, then
/// deletes, vacuums and rounds until restored.
async fn block(app: &TestApp, state: &AppState, name: &str, login: &tokio_postgres::Client) {
    set_quotas(app, name, json!({"db_quota_bytes": 1 << 20})).await;
    login.batch_execute(&fill_sql(1500)).await.unwrap();
    round(state).await;
    assert_eq!(summary(app, name).await["writes_blocked"], true);
}

async fn restore(
    app: &TestApp,
    state: &AppState,
    name: &str,
    login: &tokio_postgres::Client,
    owner_db: &tokio_postgres::Client,
    schema: &str,
) {
    login
        .batch_execute("DELETE FROM user_activity")
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        owner_db
            .batch_execute(&format!("VACUUM FULL {schema}.user_activity"))
            .await
            .unwrap();
        round(state).await;
        let blocked = summary(app, name).await["writes_blocked"] == true;
        if !blocked || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(summary(app, name).await["writes_blocked"], false);
}

async fn current_user(c: &tokio_postgres::Client) -> String {
    c.query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0)
}

/// A tenant role holding INSERT WITH GRANT OPTION that passed it on, and a rule on a
/// tenant user's own table that turns DELETE into INSERT: blocked, none of it writes;
/// restored, every privilege is back as it was, grant option and grantor included.
async fn grant_options_and_rules(isolation: &str) {
    let (app, state) = support::spawn().await;
    let name = unique(&format!("disk-grants-{isolation}"));
    let t = app.create_in(&name, isolation).await;
    set_quotas(&app, &name, json!({"max_users": 5})).await;
    let (s, admin) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/users"),
            Some(json!({"email": "admin@example.com", "role": "tenant_admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{admin}");
    let login = connect_as(&t["credentials"]).await;
    let admin = connect_as(&admin["credentials"]).await;
    let (login_role, admin_role) = (current_user(&login).await, current_user(&admin).await);
    let schema = t["schema"].as_str().unwrap().to_string();
    let owner_db = superuser_in(t["database"].as_str().unwrap()).await;
    owner_db
        .batch_execute(&format!(
            "GRANT INSERT ON {schema}.user_activity TO {login_role} WITH GRANT OPTION"
        ))
        .await
        .unwrap();
    login
        .batch_execute(&format!("GRANT INSERT ON user_activity TO {admin_role}"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!(
            "CREATE TABLE notes (x text);
             CREATE TABLE sink (x text);
             INSERT INTO notes VALUES ('a');
             CREATE RULE grow AS ON DELETE TO notes DO INSTEAD INSERT INTO sink VALUES (repeat('x', 1000));
             GRANT SELECT, DELETE ON notes TO {login_role}"
        ))
        .await
        .unwrap();
    let before = grants(&owner_db, &schema, isolation == "database").await;

    block(&app, &state, &name, &login).await;
    assert!(!can_write(&login, "user_activity").await);
    assert!(!can_write(&admin, "user_activity").await);
    for c in [&login, &admin] {
        let e = c.batch_execute("DELETE FROM notes").await.unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e:?}");
    }
    // The creator of a table handed over still reads it.
    let n: i64 = admin
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // A second round while blocked fails nothing (and changes nothing).
    round(&state).await;
    assert_eq!(summary(&app, &name).await["writes_blocked"], true);

    restore(&app, &state, &name, &login, &owner_db, &schema).await;
    assert!(can_write(&login, "user_activity").await);
    assert!(can_write(&admin, "user_activity").await);
    let grantable: bool = owner_db
        .query_one(
            &format!("SELECT has_table_privilege('{login_role}', '{schema}.user_activity', 'INSERT WITH GRANT OPTION')"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(grantable);
    assert_eq!(
        grants(&owner_db, &schema, isolation == "database").await,
        before
    );
}

#[tokio::test]
async fn grant_options_and_rules_do_not_defeat_the_block_in_schema_mode() {
    grant_options_and_rules("schema").await;
}

#[tokio::test]
async fn grant_options_and_rules_do_not_defeat_the_block_in_database_mode() {
    grant_options_and_rules("database").await;
}

/// A tenant holding an exclusive lock on its table in an idle transaction: its own
/// measurement fails (lock_timeout), every other tenant is measured.
#[tokio::test]
async fn a_locked_tenant_does_not_hold_up_the_others_measurement() {
    let (app, state) = support::spawn().await;
    let locked = app.create(&unique("disk-locked")).await;
    let other = app.create(&unique("disk-unlocked")).await;
    let l = connect_as(&locked["credentials"]).await;
    l.batch_execute("BEGIN; LOCK TABLE user_activity IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = Instant::now();
    let sizes = quota::disk::measure(&state.platform, None).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let id = |t: &Value| t["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap();
    assert!(sizes.iter().any(|s| s.0 == id(&other)));
    assert!(!sizes.iter().any(|s| s.0 == id(&locked)));
    // Measuring just that tenant tells why.
    quota::disk::measure(&state.platform, Some(id(&locked)))
        .await
        .expect_err("lock_timeout");
    l.batch_execute("ROLLBACK").await.unwrap();
    let sizes = quota::disk::measure(&state.platform, Some(id(&locked)))
        .await
        .unwrap();
    assert_eq!(sizes.len(), 1);
}

/// In database mode the database's limit caps all the tenant's roles together: a
/// forced lower limit leaves that many sessions in the database, not that many per role.
#[tokio::test]
async fn a_forced_connection_limit_counts_per_database_in_database_mode() {
    let (app, _) = support::spawn().await;
    let name = unique("conn-db-force");
    let t = app.create_in(&name, "database").await;
    set_quotas(&app, &name, json!({"max_users": 5, "max_connections": 4})).await;
    let (s, user) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/users"),
            Some(json!({"email": "dev@example.com", "role": "developer"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let mut sessions = Vec::new();
    for creds in [
        &t["credentials"],
        &t["credentials"],
        &user["credentials"],
        &user["credentials"],
    ] {
        sessions.push(connect_as(creds).await);
    }
    set_quotas(&app, &name, json!({"max_connections": 2, "force": true})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut alive = 0;
    for c in &sessions {
        if c.simple_query("SELECT 1").await.is_ok() {
            alive += 1;
        }
    }
    assert_eq!(alive, 2);
}

#[tokio::test]
async fn a_forced_disk_quota_below_usage_is_enforced_at_once() {
    let (app, _) = support::spawn().await;
    let name = unique("disk-force");
    let t = app.create(&name).await;
    let login = connect_as(&t["credentials"]).await;
    login.batch_execute(&fill_sql(1500)).await.unwrap();
    let (s, err) = put_quotas(&app, &name, json!({"db_quota_bytes": 1 << 20})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error"]["field"], "db_quota_bytes");
    assert!(can_write(&login, "user_activity").await, "nothing changed");
    set_quotas(
        &app,
        &name,
        json!({"db_quota_bytes": 1 << 20, "force": true}),
    )
    .await;
    assert!(!can_write(&login, "user_activity").await);
    // Raised again: writes come back without waiting for the worker.
    set_quotas(&app, &name, json!({"db_quota_bytes": null})).await;
    assert!(can_write(&login, "user_activity").await);
}

#[tokio::test]
async fn the_watchdog_cancels_at_the_hard_limit_even_with_statement_timeout_zero() {
    let (app, state) = support::spawn().await;
    let name = unique("watchdog");
    let t = app.create(&name).await;
    set_quotas(&app, &name, json!({"statement_timeout_ms": 1000})).await;
    let c = connect_as(&t["credentials"]).await;
    c.batch_execute("SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0")
        .await
        .unwrap();
    let started = Instant::now();
    let sleeper = tokio::spawn(async move {
        let r = c.batch_execute("SELECT pg_sleep(30)").await;
        (r, c)
    });
    let mut acted = Vec::new();
    while !sleeper.is_finished() && started.elapsed() < Duration::from_secs(15) {
        acted.extend(quota::watchdog::run_once(&state.platform).await.unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (result, c) = sleeper.await.unwrap();
    let e = result.expect_err("the statement was cancelled");
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(acted
        .iter()
        .any(|a| a.action == "cancel" && a.reason == "statement"));

    // A transaction left idle past twice the limit ends, whatever the session set.
    c.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let idle_from = Instant::now();
    while !c.is_closed() && idle_from.elapsed() < Duration::from_secs(10) {
        quota::watchdog::run_once(&state.platform).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(c.simple_query("SELECT 1").await.is_err(), "session ended");
    assert!(idle_from.elapsed() >= Duration::from_secs(2));

    // Another tenant's long statement within its own limit is left alone.
    let other = app.create(&unique("watchdog-other")).await;
    let o = connect_as(&other["credentials"]).await;
    let sleeping = tokio::spawn(async move { o.batch_execute("SELECT pg_sleep(1.5)").await });
    for _ in 0..5 {
        let acted = quota::watchdog::run_once(&state.platform).await.unwrap();
        assert!(acted.iter().all(|a| !a.role.contains("watchdog_other")));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sleeping.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_thousand_concurrent_increments_add_up_exactly() {
    let (app, _) = support::spawn().await;
    let name = unique("usage");
    app.create(&name).await;
    set_quotas(
        &app,
        &name,
        json!({"api_calls_per_minute": 100000, "max_llm_tokens_per_day": 1000000}),
    )
    .await;
    let path = format!("/api/v1/tenants/{name}/usage");
    let calls = (0..1000).map(|_| {
        app.call(
            Method::POST,
            &path,
            Some(json!({"metric": "llm_tokens", "amount": 7})),
        )
    });
    let results = futures::future::join_all(calls).await;
    for (s, body) in &results {
        assert_eq!(*s, StatusCode::OK, "{body}");
    }
    let mut used: Vec<i64> = results
        .iter()
        .map(|(_, b)| b["used"].as_i64().unwrap())
        .collect();
    used.sort();
    used.dedup();
    assert_eq!(used.len(), 1000, "every increment saw its own total");
    assert_eq!(*used.last().unwrap(), 7000);
    assert_eq!(summary(&app, &name).await["usage"]["llm_tokens"], 7000);

    // Once the quota is spent: 429, Retry-After until the day resets, nothing counted.
    set_quotas(&app, &name, json!({"max_llm_tokens_per_day": 7500})).await;
    let ok = app
        .call(
            Method::POST,
            &path,
            Some(json!({"metric": "llm_tokens", "amount": 400})),
        )
        .await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
    assert_eq!(ok.1["remaining"], 100);
    let res = app
        .http
        .post(format!("{}{path}", app.url))
        .bearer_auth(common::TOKEN)
        .json(&json!({"metric": "llm_tokens", "amount": 200}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86400).contains(&retry));
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "quota_exceeded");
    let sum = summary(&app, &name).await;
    assert_eq!(sum["usage"]["llm_tokens"], 7400);
    assert_eq!(sum["at_risk"], true, "98.7% of the daily tokens");

    // Running totals go down as well as up, never below zero.
    for (amount, want) in [
        (3, StatusCode::OK),
        (-1, StatusCode::OK),
        (-5, StatusCode::BAD_REQUEST),
    ] {
        let (s, body) = app
            .call(
                Method::POST,
                &path,
                Some(json!({"metric": "agents", "amount": amount})),
            )
            .await;
        assert_eq!(s, want, "{amount}: {body}");
    }
    let (s, res) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/resources"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let agents = res["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource_type"] == "agents")
        .unwrap()
        .clone();
    assert_eq!(agents["used"], 2);
    assert_eq!(agents["limit_value"], 10);
}

#[tokio::test]
async fn realtime_events_and_usage_calls_are_rate_limited() {
    let (app, _) = support::spawn().await;
    let name = unique("realtime");
    app.create(&name).await;
    set_quotas(
        &app,
        &name,
        json!({"realtime_events_per_minute": 10, "api_calls_per_minute": 4}),
    )
    .await;
    let path = format!("/api/v1/tenants/{name}/usage");
    let post = |body: Value| {
        app.http
            .post(format!("{}{path}", app.url))
            .bearer_auth(common::TOKEN)
            .json(&body)
            .send()
    };
    let r = post(json!({"metric": "realtime_events", "amount": 8}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["ratelimit-limit"], "4");
    assert_eq!(r.headers()["ratelimit-remaining"], "3");
    let r = post(json!({"metric": "realtime_events", "amount": 5}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let r = post(json!({"metric": "realtime_events", "amount": 2}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["used"], 10);
    // The fourth call is the last the API rate allows; the fifth is refused whatever it asks.
    let r = post(json!({"metric": "agents", "amount": 1}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = post(json!({"metric": "agents", "amount": 1}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=15).contains(&retry), "{retry}");
    let sum = summary(&app, &name).await;
    assert_eq!(sum["usage"]["realtime_events"], 10);
    assert_eq!(
        sum["usage"]["agents"], 1,
        "the refused call counted nothing"
    );
}

#[tokio::test]
async fn the_quota_cli_shows_sets_and_reports_usage() {
    let (app, _) = support::spawn().await;
    let name = unique("quota-cli");
    app.create(&name).await;
    let out = cli(
        &app,
        &[
            "quota",
            "set",
            &name,
            "max_connections=3",
            "max_agents=plan",
            "-o",
            "json",
        ],
    )
    .await;
    let limits = stdout_json(&out);
    assert_eq!(limits["limits"]["max_connections"], 3);
    let out = cli(&app, &["quota", "show", &name]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("max_connections") && table.contains("tenant"),
        "{table}"
    );
    let usage = stdout_json(&cli(&app, &["quota", "usage", &name, "-o", "json"]).await);
    assert_eq!(usage["tenant_slug"], name.as_str());
    // A field the API does not know is refused before anything is sent.
    let out = cli(&app, &["quota", "set", &name, "colour=1"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
    // Below usage without --force: the server's 409, on stderr, exit 1.
    let _c = connect_as(&app.create(&unique("quota-cli-x")).await["credentials"]).await;
    let t = connect_as(
        &app.call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/credentials"),
            None,
        )
        .await
        .1,
    )
    .await;
    let _t2 = connect_as(
        &app.call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/credentials"),
            None,
        )
        .await
        .1,
    )
    .await;
    let out = cli(&app, &["quota", "set", &name, "max_connections=1"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("open sessions"));
    drop(t);
}

/// One name per quota: a plan's quotas, a tenant's limits and the quotas of its usage
/// summary have the same fields, and agree with each other for a tenant on its plan.
#[tokio::test]
async fn plans_limits_and_usage_name_the_quotas_alike() {
    let (app, _) = support::spawn().await;
    let name = unique("quota-names");
    app.create(&name).await;
    let (s, plans) = app.call(Method::GET, "/api/v1/plans", None).await;
    assert_eq!(s, StatusCode::OK, "{plans}");
    let free = plans
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "free")
        .unwrap()
        .clone();
    let (s, limits) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}/limits"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{limits}");
    let usage = summary(&app, &name).await;

    let fields = |v: &Value| -> Vec<String> {
        let mut f: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        f.sort();
        f
    };
    let quota_fields = fields(&limits["limits"]);
    assert_eq!(fields(&usage["quotas"]), quota_fields);
    for field in &quota_fields {
        assert_eq!(
            free[field], limits["limits"][field],
            "{field}: the plan says {} and the tenant's limits {}",
            free[field], limits["limits"][field]
        );
    }
    let mut plan_fields = fields(&free);
    plan_fields.retain(|f| !["name", "trial_days", "default_isolation"].contains(&f.as_str()));
    assert_eq!(plan_fields, quota_fields);
    // Seed 002's names, and none of the plan table's old ones.
    for seed in [
        "max_users",
        "max_agents",
        "max_concurrent_agents",
        "max_llm_tokens_per_day",
        "max_data_retention_days",
        "max_storage_gb",
        "db_quota_bytes",
    ] {
        assert!(quota_fields.iter().any(|f| f == seed), "{seed}");
    }
    for old in [
        "storage_bytes",
        "llm_tokens_per_day",
        "concurrent_agents",
        "retention_days",
    ] {
        assert!(free.get(old).is_none(), "plans still say {old}");
    }
    assert_eq!(free["max_storage_gb"], 1);
    assert_eq!(free["db_quota_bytes"], 1_i64 << 30);
    assert_eq!(limits["max_storage_gb"], 1);
}
