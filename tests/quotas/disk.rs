//! Disk quotas: writes taken away over the quota and exactly them given back.

use super::*;
use berqenas::store::quotas as quota_store;

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
    common::disk_round(&state.platform).await;

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
    common::disk_round(&state.platform).await;
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
        common::disk_round(&state.platform).await;
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
    common::disk_round(&state.platform).await;
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
        common::disk_round(&state.platform).await;
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
    common::disk_round(&state.platform).await;
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
    // A terminated backend exits on its own time: looked at until two are left (or
    // fewer: one too many ended), not after a fixed wait, which a loaded machine
    // outlasted.
    let mut alive = sessions.len();
    for _ in 0..100 {
        alive = 0;
        for c in &sessions {
            if c.simple_query("SELECT 1").await.is_ok() {
                alive += 1;
            }
        }
        if alive <= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
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

/// The round's lock is held by a session that runs nothing else, outside any
/// transaction, while the round measures: a transaction held open as long as a round
/// (9 s for a process's first at 10,000 tenants) held the server's xmin horizon back
/// as long, and every row updated meanwhile kept its dead versions (docs/scale.md).
#[tokio::test]
async fn a_disk_round_holds_its_lock_outside_any_transaction() {
    let (app, state) = support::spawn().await;
    let pg = superuser().await;
    let locked = app.create(&unique("disk-horizon")).await;
    let l = connect_as(&locked["credentials"]).await;
    // The round's statement on this tenant waits out its lock_timeout (5 s).
    l.batch_execute("BEGIN; LOCK TABLE user_activity IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let running = {
        let state = state.clone();
        tokio::spawn(async move { common::disk_round(&state.platform).await })
    };
    let mut holder = None;
    for _ in 0..400 {
        holder = pg
            .query_opt(
                "SELECT a.state, a.backend_xmin::text, a.backend_xid::text
                   FROM pg_locks k JOIN pg_stat_activity a ON a.pid = k.pid
                  WHERE k.locktype = 'advisory' AND k.granted AND k.objsubid = 1
                    AND (k.classid::bigint << 32 | k.objid::bigint) = $1
                    AND EXISTS (SELECT FROM pg_stat_activity m
                                 WHERE m.application_name = 'berqenas-disk-round'
                                   AND m.wait_event_type = 'Lock')",
                &[&berqenas::quota::worker::ROUND_LOCK],
            )
            .await
            .unwrap()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    r.get::<_, Option<String>>(1),
                    r.get::<_, Option<String>>(2),
                )
            });
        if holder.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let holder = holder.expect("a round measuring while a tenant's table is locked");
    assert_eq!(holder, ("idle".to_string(), None, None));
    l.batch_execute("ROLLBACK").await.unwrap();
    running.await.unwrap();
}

/// A process's first round starts from the sizes and signatures the rounds before it
/// recorded: a schema whose relations did not move keeps its recorded size (it is not
/// measured again), one written to since is measured.
#[tokio::test]
async fn a_first_round_measures_only_what_moved_since_the_recorded_signatures() {
    let (app, state) = support::spawn().await;
    let pg = superuser().await;
    let kept = app.create(&unique("disk-kept")).await;
    let moved = app.create(&unique("disk-moved")).await;
    let id = |t: &Value| t["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap();
    let ids = vec![id(&kept), id(&moved)];
    common::disk_round(&state.platform).await;
    let signatures = pg
        .query(
            "SELECT schema_signature FROM berqenas.disk_usage
              WHERE tenant_id = ANY($1) AND schema_signature IS NOT NULL",
            &[&ids],
        )
        .await
        .unwrap();
    assert_eq!(
        signatures.len(),
        2,
        "each measured schema's signature recorded"
    );
    // The digest as versions before 2026-12-07 computed it (summed after joining the
    // schemas): an upgrade must find the signatures it recorded unchanged.
    let earlier: i64 = pg
        .query_one(
            "WITH d AS (
                 SELECT t.id, coalesce(md5(concat_ws(':', count(c.oid), sum(c.oid::int8),
                        sum(c.relfilenode::int8), sum(c.reltoastrelid::int8),
                        sum(CASE WHEN c.relkind IN ('r', 'm') THEN
                            pg_stat_get_tuples_inserted(c.oid) + pg_stat_get_tuples_updated(c.oid)
                            + pg_stat_get_tuples_deleted(c.oid) + pg_stat_get_vacuum_count(c.oid)
                            + pg_stat_get_autovacuum_count(c.oid)
                            + pg_stat_get_vacuum_count(c.reltoastrelid)
                            + pg_stat_get_autovacuum_count(c.reltoastrelid) END))), '') AS digest
                   FROM berqenas.tenants t
                   JOIN pg_namespace n ON n.nspname = t.schema_name
                   LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm', 'S', 'i')
                  WHERE t.id = ANY($1) GROUP BY t.id)
             SELECT count(*) FROM d JOIN berqenas.disk_usage u
                 ON u.tenant_id = d.id AND u.schema_signature = d.digest::uuid",
            &[&ids],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(earlier, 2, "the signatures differ from earlier versions'");
    // A size no measurement gives: which tenant keeps it shows which was not measured.
    const MADE_UP: i64 = 123_456_789;
    pg.execute(
        "UPDATE berqenas.disk_usage SET schema_bytes = $2 WHERE tenant_id = ANY($1)",
        &[&ids, &MADE_UP],
    )
    .await
    .unwrap();
    connect_as(&moved["credentials"])
        .await
        .batch_execute(&fill_sql(64))
        .await
        .unwrap();
    berqenas::quota::disk::unchanged::forget();
    common::disk_round(&state.platform).await;
    let bytes = |t: uuid::Uuid| {
        let pg = &pg;
        async move {
            pg.query_one(
                "SELECT bytes FROM berqenas.disk_usage WHERE tenant_id = $1",
                &[&t],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };
    assert_eq!(
        bytes(id(&kept)).await,
        MADE_UP,
        "an unmoved schema was measured"
    );
    let measured = bytes(id(&moved)).await;
    assert!(
        measured != MADE_UP && measured > 64 * 1024,
        "the schema written to kept its recorded size: {measured}"
    );
}

#[tokio::test]
async fn a_size_that_did_not_change_is_not_written_again_until_its_time_is_due_a_refresh() {
    let (app, state) = support::spawn().await;
    let name = unique("remeasured");
    let t = app.create(&name).await;
    let id: uuid::Uuid = t["id"].as_str().unwrap().parse().unwrap();
    // Deleted (restorable): no round measures it, so only this test writes its row.
    let (s, e) = app
        .call(Method::DELETE, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let c = state.platform.pool.get().await.unwrap();
    let record = |bytes: i64| {
        let c = &c;
        async move {
            quota_store::record_measurements(c, &[(id, bytes)])
                .await
                .unwrap();
            let r = c
                .query_one(
                    "SELECT bytes, measured_at, xmin::text FROM berqenas.disk_usage WHERE tenant_id = $1",
                    &[&id],
                )
                .await
                .unwrap();
            (
                r.get::<_, i64>(0),
                r.get::<_, chrono::DateTime<chrono::Utc>>(1),
                r.get::<_, String>(2),
            )
        }
    };
    let first = record(1_000).await;
    assert_eq!(first.0, 1_000);
    // The same size again: the row is left as it was (the same row version).
    assert_eq!(record(1_000).await, first);
    // A new size is written, with its time.
    let moved = record(2_000).await;
    assert_eq!(moved.0, 2_000);
    assert!(
        moved.1 > first.1 && moved.2 != first.2,
        "{first:?} {moved:?}"
    );
    // The same size once its time is older than the refresh: the time is written.
    c.execute(
        "UPDATE berqenas.disk_usage SET measured_at = measured_at - make_interval(secs => $2::float8 + 1)
          WHERE tenant_id = $1",
        &[&id, &quota_store::UNCHANGED_REFRESH_SECS],
    )
    .await
    .unwrap();
    let aged = c
        .query_one(
            "SELECT measured_at FROM berqenas.disk_usage WHERE tenant_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get::<_, chrono::DateTime<chrono::Utc>>(0);
    let refreshed = record(2_000).await;
    assert_eq!(refreshed.0, 2_000);
    assert!(refreshed.1 > aged, "{aged} -> {:?}", refreshed.1);
}
