//! Tenants through a real PgBouncer (Debian's `pgbouncer`) in transaction pooling
//! mode, in front of the test cluster: `auth_query` calls the lookup function berqenas
//! installs, a suspension empties the tenant's pools within 2 s (PostgreSQL's
//! termination and the admin console), and a resumed tenant connects again.

#[path = "support/bouncer.rs"]
mod bouncer;
mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;

use std::time::{Duration, Instant};

use berqenas::pg::pgbouncer::PgBouncer;
use berqenas::pg::Ident;
use berqenas::platform::Platform;
use common::{superuser, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_postgres::SimpleQueryMessage;

use bouncer::{free_port, Bouncer, ADMIN_PASSWORD, ADMIN_USER, AUTH_PASSWORD, AUTH_USER};

/// The auth user (LOGIN, with the password PgBouncer's auth_file holds), a platform
/// that installs the lookup function and knows the admin console, and its app.
async fn spawn(bouncer: &Bouncer) -> (TestApp, Platform) {
    superuser()
        .await
        .batch_execute(&format!(
            "DO $$ BEGIN
               CREATE ROLE {AUTH_USER} LOGIN PASSWORD '{AUTH_PASSWORD}';
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$"
        ))
        .await
        .unwrap();
    let platform = Platform {
        pgbouncer: PgBouncer {
            auth_user: Some(Ident::new(AUTH_USER).unwrap()),
            admin_url: Some(bouncer.admin_url().into()),
        },
        ..common::platform(8).await
    };
    berqenas::workflows::pooler::prepare(&platform)
        .await
        .unwrap();
    (TestApp::serve(platform.clone()).await, platform)
}

async fn create(app: &TestApp, prefix: &str, isolation: &str) -> Value {
    app.create_in(&unique(prefix), isolation).await
}

async fn one_value(c: &tokio_postgres::Client, sql: &str) -> Option<String> {
    c.simple_query(sql)
        .await
        .unwrap()
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).map(String::from)),
            _ => None,
        })
        .flatten()
}

/// `t` connects through `bouncer` as its own user, writes a row and reads it back.
async fn writes_through(bouncer: &Bouncer, t: &Value, label: &str) {
    let c = bouncer
        .connect_as(t)
        .await
        .unwrap_or_else(|e| panic!("{label}: {e}; log: {}", bouncer.log()));
    assert_eq!(
        one_value(&c, "SELECT current_user").await.as_deref(),
        t["credentials"]["user"].as_str()
    );
    c.simple_query(
        "INSERT INTO applications (name, team, created_by) VALUES ('web', 'core', 'pgb')",
    )
    .await
    .unwrap();
    assert_eq!(
        one_value(&c, "SELECT count(*) FROM applications")
            .await
            .as_deref(),
        Some("1"),
        "{label}"
    );
}

/// Sessions of `role` in PostgreSQL.
async fn sessions_of(role: &str) -> i64 {
    superuser()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_tenant_connects_with_its_own_password_and_not_with_another_tenants() {
    let bouncer = Bouncer::start().await;
    let (app, _) = spawn(&bouncer).await;
    for isolation in ["schema", "database", "shared"] {
        let a = create(&app, &format!("pgb-{isolation}-a"), isolation).await;
        let b = create(&app, &format!("pgb-{isolation}-b"), isolation).await;
        let a_user = a["credentials"]["user"].as_str().unwrap();
        let a_db = a["credentials"]["database"].as_str().unwrap();

        writes_through(&bouncer, &a, isolation).await;

        // b's password does not let anyone in as a.
        let wrong = bouncer
            .connect(a_user, b["credentials"]["password"].as_str().unwrap(), a_db)
            .await;
        assert!(
            wrong.is_err(),
            "{isolation}: another tenant's password let it in"
        );

        // The data API keeps working beside the pooler.
        let (s, body) = app
            .call_with(
                Method::POST,
                "/api/v1/query",
                Some(json!({"sql": "SELECT count(*) AS n FROM applications", "params": []})),
                a["api_key"].as_str(),
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{isolation}: {body}");
    }

    // Nobody the lookup should not answer for gets in: a superuser, the auth user.
    let db = common::database().await;
    let control = db.endpoint.database.as_str();
    let su = db.config.get_user().unwrap().to_string();
    assert!(bouncer.connect(&su, "anything", control).await.is_err());
    assert!(bouncer
        .connect(AUTH_USER, "not-the-password", control)
        .await
        .is_err());
}

#[tokio::test]
async fn the_lookup_function_is_hardened() {
    let bouncer = Bouncer::start().await;
    let (app, _) = spawn(&bouncer).await;
    let t = create(&app, "pgb-hard", "schema").await;
    let role = t["credentials"]["user"].as_str().unwrap().to_string();
    let pg = superuser().await;
    let row = pg
        .query_one(
            "SELECT p.prosecdef, p.proconfig::text[],
                    has_function_privilege($1, p.oid, 'EXECUTE'),
                    has_function_privilege($2, p.oid, 'EXECUTE'),
                    has_function_privilege('public', p.oid, 'EXECUTE')
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'berqenas_pgbouncer' AND p.proname = 'user_lookup'",
            &[&AUTH_USER, &role],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "SECURITY DEFINER");
    assert_eq!(
        row.get::<_, Vec<String>>(1),
        ["search_path=pg_catalog, pg_temp"]
    );
    assert!(row.get::<_, bool>(2), "the auth user may execute it");
    assert!(!row.get::<_, bool>(3), "a tenant may not");
    assert!(!row.get::<_, bool>(4), "PUBLIC may not");

    // A tenant cannot call it, even knowing its name.
    let direct = common::connect_as(&t["credentials"]).await;
    let e = direct
        .simple_query(&format!(
            "SELECT * FROM berqenas_pgbouncer.user_lookup('{role}')"
        ))
        .await
        .unwrap_err();
    let message = e.as_db_error().map(|d| d.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("permission denied")),
        "{e:?}"
    );

    // It answers for the tenant's login role, not for a superuser or a NOLOGIN role.
    let lookup = |name: String| {
        let pg = &pg;
        async move {
            pg.query(
                "SELECT usename FROM berqenas_pgbouncer.user_lookup($1)",
                &[&name],
            )
            .await
            .unwrap()
            .len()
        }
    };
    assert_eq!(lookup(role.clone()).await, 1);
    let su = common::database()
        .await
        .config
        .get_user()
        .unwrap()
        .to_string();
    assert_eq!(lookup(su).await, 0);
    assert_eq!(
        lookup(format!("{}_owner", role.trim_end_matches("_user"))).await,
        0
    );

    // A second start changes nothing and leaves it as it was.
    let before: i64 = pg
        .query_one(
            "SELECT xmin::text::bigint FROM pg_proc WHERE proname = 'user_lookup'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (_app, _) = spawn(&bouncer).await;
    let after: i64 = pg
        .query_one(
            "SELECT xmin::text::bigint FROM pg_proc WHERE proname = 'user_lookup'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(before, after, "a restart rewrote the function");
}

async fn suspension_holds_through_the_pooler(isolation: &str, console: bool) {
    let bouncer = Bouncer::start().await;
    let (app, platform) = spawn(&bouncer).await;
    let app = if console {
        app
    } else {
        let mut platform = platform;
        platform.pgbouncer.admin_url = None;
        TestApp::serve(platform).await
    };
    let t = create(&app, &format!("pgb-susp-{isolation}"), isolation).await;
    let name = t["name"].as_str().unwrap().to_string();
    let role = t["credentials"]["user"].as_str().unwrap().to_string();

    let pooled = bouncer.connect_as(&t).await.unwrap();
    assert_eq!(one_value(&pooled, "SELECT 1").await.as_deref(), Some("1"));
    assert!(
        bouncer.servers_of(&role).await >= 1,
        "a pooled server connection"
    );
    assert!(sessions_of(&role).await >= 1);

    let started = Instant::now();
    app.lifecycle(&name, "suspend").await;
    loop {
        let servers = bouncer.servers_of(&role).await;
        let sessions = sessions_of(&role).await;
        if servers == 0 && sessions == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{isolation}: {servers} pooled server connections and {sessions} sessions 2 s after the suspension"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The client PgBouncer held gets no more work done, and new connections are refused.
    let asked = Instant::now();
    let refused = pooled.simple_query("SELECT 1").await;
    eprintln!(
        "{isolation}: a pooled client's query after the suspension: {:?} after {:?}",
        refused
            .as_ref()
            .map(|_| ())
            .map_err(|e| e.as_db_error().map(|d| d.message().to_string())),
        asked.elapsed()
    );
    assert!(
        refused.is_err(),
        "{isolation}: a pooled client still runs queries"
    );
    assert!(
        bouncer.connect_as(&t).await.is_err(),
        "{isolation}: a suspended tenant connected through PgBouncer"
    );
    assert_eq!(sessions_of(&role).await, 0);

    app.lifecycle(&name, "resume").await;
    // PgBouncer waits `server_login_retry` (1 s here) after a failed server login
    // before it tries the pool's login again.
    let resumed = Instant::now();
    loop {
        let again = bouncer.connect_as(&t).await;
        let ok = match &again {
            Ok(c) => c.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        };
        if ok {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(5),
            "{isolation}: resumed tenant refused: {:?}; log: {}",
            again.err(),
            bouncer.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{isolation}: connected again {:?} after the resume",
        resumed.elapsed()
    );
}

#[tokio::test]
async fn a_suspended_schema_tenant_is_cut_off_within_2s_and_a_resumed_one_connects_again() {
    suspension_holds_through_the_pooler("schema", true).await;
}

/// Without the admin console PostgreSQL's termination alone empties PgBouncer's pools
/// (PgBouncer closes a server connection whose backend ended); the console is the
/// second line, and in database mode also drops the clients PgBouncer holds.
#[tokio::test]
async fn without_the_console_postgresql_alone_ends_the_pooled_connections() {
    suspension_holds_through_the_pooler("schema", false).await;
}

#[tokio::test]
async fn a_suspended_database_tenant_is_cut_off_within_2s_and_a_resumed_one_connects_again() {
    suspension_holds_through_the_pooler("database", true).await;
}

#[tokio::test]
async fn a_purged_tenants_role_is_gone_from_the_pooler() {
    let bouncer = Bouncer::start().await;
    let (app, _) = spawn(&bouncer).await;
    let t = create(&app, "pgb-purge", "schema").await;
    let name = t["name"].as_str().unwrap().to_string();
    let role = t["credentials"]["user"].as_str().unwrap().to_string();
    let c = bouncer.connect_as(&t).await.unwrap();
    assert_eq!(one_value(&c, "SELECT 1").await.as_deref(), Some("1"));

    let (s, e) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}?purge=now"),
            Some(json!({"confirm": name})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let pg = superuser().await;
    let left = pg
        .query(
            "SELECT usename FROM berqenas_pgbouncer.user_lookup($1)",
            &[&role],
        )
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "the lookup still answers for a purged role"
    );
    assert!(bouncer.connect_as(&t).await.is_err());
    assert!(c.simple_query("SELECT 1").await.is_err());
    assert_eq!(
        bouncer.servers_of(&role).await,
        0,
        "a pooled server connection of a dropped role"
    );
}

#[tokio::test]
async fn a_console_that_is_down_does_not_fail_a_suspension() {
    let bouncer = Bouncer::start().await;
    let (_, platform) = spawn(&bouncer).await;
    let platform = Platform {
        pgbouncer: PgBouncer {
            admin_url: Some(format!("postgresql://x:y@127.0.0.1:{}/pgbouncer", free_port()).into()),
            ..platform.pgbouncer.clone()
        },
        ..platform
    };
    let app = TestApp::serve(platform).await;
    let t = create(&app, "pgb-down", "schema").await;
    let started = Instant::now();
    app.lifecycle(t["name"].as_str().unwrap(), "suspend").await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(bouncer.connect_as(&t).await.is_err());
}

#[tokio::test]
async fn a_deleted_database_tenants_pooled_clients_are_dropped_at_once() {
    let bouncer = Bouncer::start().await;
    let (app, _) = spawn(&bouncer).await;
    let t = create(&app, "pgb-del", "database").await;
    let name = t["name"].as_str().unwrap().to_string();
    let role = t["credentials"]["user"].as_str().unwrap().to_string();
    let held = bouncer.connect_as(&t).await.unwrap();
    assert_eq!(one_value(&held, "SELECT 1").await.as_deref(), Some("1"));

    let (s, e) = app
        .call(Method::DELETE, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let asked = Instant::now();
    assert!(held.simple_query("SELECT 1").await.is_err());
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "the held client waited {:?}: not dropped",
        asked.elapsed()
    );
    assert_eq!(bouncer.servers_of(&role).await, 0);
    assert!(bouncer.connect_as(&t).await.is_err());
}

/// A database-mode tenant created while berqenas knew nothing of PgBouncer gets the
/// lookup function's CONNECT (and the function, if its clone lacked it) at the next
/// start.
#[tokio::test]
async fn a_start_prepares_the_databases_of_tenants_created_before() {
    let bouncer = Bouncer::start().await;
    let (_, shared) = spawn(&bouncer).await;
    // A control database of its own: another test's start (which prepares every
    // tenant database its registry lists) never prepares this test's tenant.
    let own = common::control_database("pgb_before").await;
    let platform = Platform {
        pgbouncer: shared.pgbouncer.clone(),
        ..berqenas::server::platform(&own, common::secret_key(), 8)
            .await
            .unwrap()
    };
    let plain = Platform {
        pgbouncer: PgBouncer::default(),
        ..platform.clone()
    };
    let app = TestApp::serve(plain).await;
    let t = create(&app, "pgb-before", "database").await;
    let db = t["credentials"]["database"].as_str().unwrap().to_string();
    let there = common::superuser_in(&db).await;
    there
        .batch_execute("DROP SCHEMA IF EXISTS berqenas_pgbouncer CASCADE")
        .await
        .unwrap();
    let can_connect = |pg: tokio_postgres::Client, db: String| async move {
        pg.query_one(
            "SELECT has_database_privilege($1, $2, 'CONNECT')",
            &[&AUTH_USER, &db],
        )
        .await
        .unwrap()
        .get::<_, bool>(0)
    };
    assert!(!can_connect(superuser().await, db.clone()).await);
    assert!(bouncer.connect_as(&t).await.is_err(), "no lookup there yet");

    berqenas::workflows::pooler::prepare(&platform)
        .await
        .unwrap();
    assert!(can_connect(superuser().await, db.clone()).await);
    // The refused attempt above makes PgBouncer wait `server_login_retry` (1 s).
    let started = Instant::now();
    let c = loop {
        match bouncer.connect_as(&t).await {
            Ok(c) => break c,
            Err(e) if started.elapsed() > Duration::from_secs(5) => {
                panic!("{e:?}; log: {}", bouncer.log())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert_eq!(one_value(&c, "SELECT 1").await.as_deref(), Some("1"));
}

/// Tenants on another server (docs/servers.md) log in through the PgBouncer in front of
/// that server: its add installs the lookup function in its database and template
/// database, a database-mode create there in the tenant's database; a start installs
/// what a server lacks. The server's registered console drops a suspended tenant's
/// pooled clients there.
#[tokio::test]
async fn tenants_on_another_server_log_in_through_the_pgbouncer_in_front_of_it() {
    let (pg2, url) = extra_cluster::start_cluster("pgb-pg2", "pg2-Pa55-word").await;
    let pg2_admin = extra_cluster::on(&pg2, "postgres").await;
    // The operator's step on that server, as on `default`.
    pg2_admin
        .batch_execute(&format!(
            "CREATE ROLE {AUTH_USER} LOGIN PASSWORD '{AUTH_PASSWORD}'"
        ))
        .await
        .unwrap();
    let bouncer = Bouncer::in_front_of("127.0.0.1", pg2.port()).await;
    // A control database of its own: no other test of this binary places tenants on
    // the server registered here.
    let own = common::control_database("pgb_servers").await;
    let platform = Platform {
        pgbouncer: PgBouncer {
            auth_user: Some(Ident::new(AUTH_USER).unwrap()),
            admin_url: None,
        },
        ..berqenas::server::platform(&own, common::secret_key(), 8)
            .await
            .unwrap()
    };
    berqenas::workflows::pooler::prepare(&platform)
        .await
        .unwrap();
    let app = TestApp::serve(platform.clone()).await;
    // A console URL that is not one: refused naming the field, never echoed, nothing
    // recorded.
    let wrong = format!("postgresql://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:1/postgres");
    let (s, b) = app
        .call(
            Method::POST,
            "/api/v1/servers",
            Some(json!({"name": "pg2", "url": url, "pgbouncer_admin_url": wrong})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["field"], "pgbouncer_admin_url", "{b}");
    assert!(!b.to_string().contains(ADMIN_PASSWORD), "{b}");
    let (s, _) = app.call(Method::GET, "/api/v1/servers/pg2", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = app
        .call(
            Method::POST,
            "/api/v1/servers",
            Some(json!({"name": "pg2", "url": url, "pgbouncer_admin_url": bouncer.admin_url()})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["pgbouncer_admin"], true, "{b}");
    assert!(!b.to_string().contains(ADMIN_PASSWORD), "{b}");

    let mut made = Vec::new();
    for isolation in ["schema", "database", "shared"] {
        let t = app
            .create_with(json!({"name": unique(&format!("pgb2-{isolation}")), "server": "pg2", "isolation": isolation}))
            .await;
        assert_eq!(t["server"], "pg2", "{t}");
        writes_through(&bouncer, &t, isolation).await;
        let wrong = bouncer
            .connect(
                t["credentials"]["user"].as_str().unwrap(),
                "not-the-password",
                t["credentials"]["database"].as_str().unwrap(),
            )
            .await;
        assert!(wrong.is_err(), "{isolation}: a wrong password let it in");
        made.push(t);
    }

    // A suspended tenant there is refused (its login is off there; the lookup
    // answers nothing for it).
    let name = made[0]["name"].as_str().unwrap();
    app.lifecycle(name, "suspend").await;
    assert!(bouncer.connect_as(&made[0]).await.is_err());
    app.lifecycle(name, "resume").await;

    // The database-mode tenant's client PgBouncer holds is dropped at once: the
    // suspension asked pg2's console to KILL its database. (Without the console its
    // next query would wait out query_wait_timeout, 5 s here.)
    let (name, role) = (
        made[1]["name"].as_str().unwrap(),
        made[1]["credentials"]["user"].as_str().unwrap(),
    );
    let held = bouncer.connect_as(&made[1]).await.unwrap();
    assert_eq!(one_value(&held, "SELECT 1").await.as_deref(), Some("1"));
    app.lifecycle(name, "suspend").await;
    let asked = Instant::now();
    assert!(held.simple_query("SELECT 1").await.is_err());
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "the held client waited {:?}: not dropped by pg2's console",
        asked.elapsed()
    );
    assert_eq!(bouncer.servers_of(role).await, 0);
    app.lifecycle(name, "resume").await;

    // What the server lost, a start installs again.
    let db = made[1]["credentials"]["database"].as_str().unwrap();
    for database in ["postgres", db] {
        let there = extra_cluster::on(&pg2, database).await;
        there
            .batch_execute(&format!(
                "DROP SCHEMA berqenas_pgbouncer CASCADE;
                 REVOKE CONNECT ON DATABASE \"{database}\" FROM {AUTH_USER}"
            ))
            .await
            .unwrap();
    }
    for t in &made {
        assert!(bouncer.connect_as(t).await.is_err(), "no lookup there now");
    }
    berqenas::workflows::pooler::prepare_servers(&platform).await;
    for t in &made {
        // A refused attempt makes PgBouncer wait `server_login_retry` (1 s).
        let started = Instant::now();
        let c = loop {
            match bouncer.connect_as(t).await {
                Ok(c) => break c,
                Err(e) if started.elapsed() > Duration::from_secs(5) => {
                    panic!("{e:?}; log: {}", bouncer.log())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        assert_eq!(
            one_value(&c, "SELECT count(*) FROM applications")
                .await
                .as_deref(),
            Some("1")
        );
    }

    // A database-mode tenant that arrives on pg2 by a move logs in through pg2's
    // PgBouncer too, by the lookup the move installs there: the one its database had
    // on `default` is dropped first, so the copied schemas cannot bring it along.
    let moved = app
        .create_with(json!({"name": unique("pgb-moved"), "isolation": "database"}))
        .await;
    assert_eq!(moved["server"], "default");
    let name = moved["name"].as_str().unwrap();
    common::superuser_in(moved["credentials"]["database"].as_str().unwrap())
        .await
        .batch_execute("DROP SCHEMA berqenas_pgbouncer CASCADE")
        .await
        .unwrap();
    let (s, op) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/move"),
            Some(json!({"to_server": "pg2"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{op}");
    let id = op["id"].as_str().unwrap().to_string();
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, op) = app
            .call(Method::GET, &format!("/api/v1/operations/{id}"), None)
            .await;
        let cut_over = op["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "login" && s["state"] == "applied");
        if cut_over || op["state"] != "running" {
            assert!(cut_over, "the move did not cut over: {op}");
            break;
        }
        assert!(Instant::now() < until, "the move did not finish: {op}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(t["server"], "pg2", "{t}");
    writes_through(&bouncer, &moved, "moved database").await;
}

/// A database-mode tenant claimed from the warm pool: its database gets the lookup
/// function's CONNECT at the claim (members are made without it), and the tenant
/// connects through PgBouncer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_database_tenant_connects_through_the_pooler() {
    let bouncer = Bouncer::start().await;
    let (_, shared) = spawn(&bouncer).await;
    // A control database of its own: no other test's create takes this member.
    let own = common::control_database("pgb_claim").await;
    let platform = Platform {
        pgbouncer: shared.pgbouncer.clone(),
        ..berqenas::server::platform(&own, common::secret_key(), 8)
            .await
            .unwrap()
    };
    berqenas::tenant::database_mode::ensure_template(&platform)
        .await
        .unwrap();
    let rt = common::runtime(platform).await;
    let key = berqenas::workflows::warm_pool::new_key();
    berqenas::workflows::warm_pool::refill_one(
        &rt,
        berqenas::isolation::warm::Mode::Database,
        &key,
        i64::MAX,
    )
    .await
    .unwrap()
    .expect("a member made");
    let oid = |name: String| async move {
        superuser()
            .await
            .query_one("SELECT oid FROM pg_database WHERE datname = $1", &[&name])
            .await
            .unwrap()
            .get::<_, u32>(0)
    };
    let member = oid(format!("tenant_wp__{key}")).await;
    let app = TestApp::over(rt.clone()).await;
    let t = create(&app, "pgb-claim", "database").await;
    let db = t["credentials"]["database"].as_str().unwrap().to_string();
    assert_eq!(oid(db).await, member, "the create did not claim the member");
    writes_through(&bouncer, &t, "claimed").await;
}
