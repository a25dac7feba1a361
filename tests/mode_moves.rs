//! Issue 18 item 4: a tenant moved online between isolation modes (docs/moves.md
//! "Between isolation modes"): schema -> database on its own server, database ->
//! schema onto another server. Two throw-away clusters (the shared one, `default`,
//! and `pg2`); a client writes every 10 ms through the tenant's own credentials.
//! Afterwards the tenant must look as one created fresh in the new mode does.

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;
#[path = "support/moving.rs"]
mod moving;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berqenas::pg::cluster::Cluster;
use common::{unique, TestApp};
use extra_cluster::{on, register_pg2};
use reqwest::{Method, StatusCode};
use serde_json::json;

use moving::{
    add_ticks, dsn_now, exists, follow, leftovers, place, roles_of, rt, serial, shape, stem,
    step_state, sums, writer,
};

struct World {
    app: TestApp,
    pg2: Cluster,
}

async fn world() -> &'static World {
    static W: tokio::sync::OnceCell<World> = tokio::sync::OnceCell::const_new();
    W.get_or_init(|| async {
        let app = TestApp::spawn().await;
        let pg2 = register_pg2(&app, "mm-pg2").await;
        World { app, pg2 }
    })
    .await
}

async fn app_names(c: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    c.query(
        &format!("SELECT name::text FROM \"{schema}\".applications"),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<_, String>(0))
    .collect()
}

/// A session on `db` of `server` (`default` or `pg2`).
async fn session(w: &World, server: &str, db: &str) -> tokio_postgres::Client {
    if server == "pg2" {
        on(&w.pg2, db).await
    } else {
        common::superuser_in(db).await
    }
}

/// The server's own database (the one schema-mode tenants live in).
async fn server_db(server: &str) -> String {
    if server == "pg2" {
        "postgres".into()
    } else {
        common::superuser()
            .await
            .query_one("SELECT current_database()::text", &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// Moves a tenant from `from` mode on `default` into `to` mode on `to_server` under
/// a writer, then checks the data, the password, the new mode's catalog state
/// against a fresh tenant's, and that nothing is left behind.
async fn mode_move_under_load(from: &str, to: &str, to_server: &str) {
    let _one = serial().await;
    let w = world().await;
    let app = &w.app;
    let name = unique(&format!("mm{}{}", &from[..1], &to[..1]));
    let created = app
        .create_with(json!({"name": name, "isolation": from, "server": "default"}))
        .await;
    assert_eq!(created["server"], "default", "{created}");
    add_ticks(&created).await;
    let base: tokio_postgres::Config = created["credentials"]["dsn"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let schema = stem(&name);
    let src_db = created["database"].as_str().unwrap().to_string();
    let dst_db = if to == "database" {
        schema.clone()
    } else {
        server_db(to_server).await
    };
    let target_port = if to_server == "pg2" {
        w.pg2.port()
    } else {
        *base.get_ports().first().unwrap()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let writes = writer(
        base.clone(),
        name.clone(),
        w.pg2.port(),
        (target_port, dst_db.clone()),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (s, op) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/move"),
            Some(json!({"to_server": to_server, "to_isolation": to, "grace": "10s"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{op}");
    let id = op["id"].as_str().unwrap().to_string();
    let op = follow(app, &id, |op| step_state(op, "login") == "applied").await;
    assert_eq!(step_state(&op, "login"), "applied", "{op}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    let writes = writes.await.unwrap();
    eprintln!(
        "{from} -> {to} on {to_server}: {} writes ({} at the target after the cutover), {} retried on a connection error ({}), longest gap {:?}",
        writes.ok.len(),
        writes.at_target,
        writes.retried,
        writes.last_error,
        writes.longest_gap
    );
    assert!(
        writes.other.is_empty(),
        "writes failed otherwise: {:?}",
        writes.other
    );
    assert!(writes.ok.len() > 50, "too few writes: {}", writes.ok.len());
    assert!(
        writes.at_target > 0,
        "no write reached the target: {}",
        writes.last_error
    );

    // The registry and the tenant JSON say the new mode, server and database.
    let (_, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(t["isolation"], to, "{t}");
    assert_eq!(t["server"], to_server, "{t}");
    assert_eq!(t["database"], dst_db.as_str(), "{t}");

    // Every acknowledged write is on the target; what the source has, the target has.
    let src = session(w, "default", &src_db).await;
    let dst = session(w, to_server, &dst_db).await;
    let on_target = app_names(&dst, &schema).await;
    for row in &writes.ok {
        assert!(
            on_target.contains(row),
            "acknowledged write {row} missing on the target"
        );
    }
    assert!(app_names(&src, &schema)
        .await
        .iter()
        .all(|n| on_target.contains(n)));
    let dup: i64 = dst
        .query_one(
            &format!("SELECT count(*) - count(DISTINCT n) FROM \"{schema}\".ticks"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dup, 0, "the sequence went back");
    // Tables the writer does not touch: row counts and sums equal.
    let stable = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .filter(|l| !l.starts_with("applications") && !l.starts_with("ticks"))
            .collect()
    };
    let at_source = stable(sums(&src, &schema, None).await);
    assert!(!at_source.is_empty());
    assert_eq!(stable(sums(&dst, &schema, None).await), at_source);
    // The password works at the new place, as the tenant's login.
    let cfg = dsn_now(&base, &name, w.pg2.port()).await;
    let (c, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .expect("the tenant's password after the move");
    tokio::spawn(conn);
    let (db_now, path): (String, String) = c
        .query_one(
            "SELECT current_database()::text, current_setting('search_path')",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(db_now, dst_db);
    assert!(path.contains(&schema), "{path}");
    c.batch_execute("SELECT count(*) FROM applications")
        .await
        .unwrap();
    drop(c);
    drop(src);
    // Within the grace, the old DSN no longer lets the tenant in where the source was
    // a database on the same server (the source copy is kept, and a write there would
    // be lost when it is dropped); from another server the source's logins stay off.
    if from == "database" {
        let err = base
            .connect(tokio_postgres::NoTls)
            .await
            .err()
            .expect("the tenant's login reaches the source copy during the grace");
        let code = err.as_db_error().map(|d| d.code().code().to_string());
        assert!(
            matches!(code.as_deref(), Some("42501") | Some("28000")),
            "{err:?}"
        );
    }

    // After the grace: the source copy gone, no replication objects anywhere.
    let op = follow(app, &id, |_| false).await;
    assert_eq!(op["state"], "succeeded", "{op}");
    let default_pg = common::superuser().await;
    let still_schema = exists(
        &default_pg,
        "SELECT 1 FROM pg_namespace WHERE nspname = $1",
        &schema,
    )
    .await;
    let still_db = exists(
        &default_pg,
        "SELECT 1 FROM pg_database WHERE datname = $1",
        &schema,
    )
    .await;
    if from == "schema" {
        assert!(!still_schema, "the source schema is left on default");
    } else {
        assert!(!still_db, "the source database is left on default");
    }
    if to_server == "default" {
        assert_eq!(
            roles_of(&default_pg, &name).await.len(),
            6,
            "the tenant's roles stay on its server"
        );
    } else {
        assert!(
            roles_of(&default_pg, &name).await.is_empty(),
            "roles left on default"
        );
        assert_eq!(
            roles_of(&on(&w.pg2, "postgres").await, &name).await.len(),
            6
        );
    }
    assert!(
        leftovers(&default_pg).await.is_empty(),
        "{:?}",
        leftovers(&default_pg).await
    );
    assert!(
        leftovers(&dst).await.is_empty(),
        "{:?}",
        leftovers(&dst).await
    );
    assert!(leftovers(&on(&w.pg2, "postgres").await).await.is_empty());

    // What a create in the new mode sets holds: compared with a tenant created fresh
    // in that mode on that server.
    let fresh = unique(&format!("mmf{}", &to[..1]));
    let made = app
        .create_with(json!({"name": fresh, "isolation": to, "server": to_server}))
        .await;
    let own_db = server_db(to_server).await;
    let fresh_db = made["database"].as_str().unwrap();
    let moved = shape(
        &session(w, to_server, &own_db).await,
        &session(w, to_server, &dst_db).await,
        &name,
    )
    .await;
    let expected = shape(
        &session(w, to_server, &own_db).await,
        &session(w, to_server, fresh_db).await,
        &fresh,
    )
    .await;
    assert!(moved.iter().any(|l| l.starts_with("schema X")), "{moved:?}");
    assert_eq!(
        moved, expected,
        "the moved tenant differs from a fresh {to}-mode one"
    );
}

#[test]
fn a_schema_mode_tenant_becomes_database_mode_on_its_server_under_writes() {
    rt().block_on(mode_move_under_load("schema", "database", "default"));
}

#[test]
fn a_database_mode_tenant_becomes_schema_mode_on_another_server_under_writes() {
    rt().block_on(mode_move_under_load("database", "schema", "pg2"));
}

#[test]
fn a_database_mode_tenant_becomes_schema_mode_on_its_server_under_writes() {
    rt().block_on(mode_move_under_load("database", "schema", "default"));
}

#[test]
fn a_schema_mode_tenant_becomes_database_mode_on_another_server_under_writes() {
    rt().block_on(mode_move_under_load("schema", "database", "pg2"));
}

/// Bad `to_isolation`: refused with the field named, and nothing changed.
#[test]
fn bad_mode_moves_are_refused_and_change_nothing() {
    rt().block_on(async {
        let _one = serial().await;
        let w = world().await;
        let app = &w.app;
        let name = unique("mmbad");
        app.create_with(json!({"name": name, "server": "default"}))
            .await;
        let pooled = unique("mmbads");
        app.create_with(json!({"name": pooled, "isolation": "shared", "server": "default"}))
            .await;
        let state = || async {
            let mut v = common::whole_state(&common::superuser().await).await;
            v.extend(roles_of(&on(&w.pg2, "postgres").await, &name).await);
            v.push(format!("{:?}", leftovers(&common::superuser().await).await));
            v.push(format!("{:?}", place(&name).await));
            v
        };
        let cases = [
            (
                &name,
                json!({"to_isolation": "sideways"}),
                StatusCode::BAD_REQUEST,
                "to_isolation",
                "invalid_field",
            ),
            // From one server's pool into another's, with a grace that is no
            // duration (tests/servers_shared_moves.rs moves between pools).
            (
                &pooled,
                json!({"to_server": "pg2", "to_isolation": "shared", "grace": "a while"}),
                StatusCode::BAD_REQUEST,
                "grace",
                "invalid_field",
            ),
            (
                &name,
                json!({"to_isolation": "schema"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "to_server",
                "move_to_same_place",
            ),
            (
                &name,
                json!({"to_server": "nowhere", "to_isolation": "database"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "to_server",
                "unknown_server",
            ),
        ];
        for (who, body, status, field, code) in cases {
            let before = state().await;
            let (s, b) = app
                .call(
                    Method::POST,
                    &format!("/api/v1/tenants/{who}/move"),
                    Some(body.clone()),
                )
                .await;
            assert_eq!(s, status, "{body}: {b}");
            assert_eq!(b["error"]["field"], field, "{body}: {b}");
            assert_eq!(b["error"]["code"], code, "{body}: {b}");
            assert!(
                b["error"]["message"].as_str().unwrap().contains(field),
                "{b}"
            );
            assert_eq!(state().await, before, "{body} changed something");
        }
    });
}

/// A move off a server whose `wal_level` is not `logical` (PostgreSQL's default) is
/// refused before it begins, naming the setting, and changes nothing: before, it got
/// as far as its `replicate` step and was undone there with an opaque failure.
#[tokio::test]
async fn a_move_off_a_server_without_logical_decoding_is_refused_naming_wal_level() {
    const PASSWORD: &str = "pg3-Pa55-word";
    let (pg3, _) = extra_cluster::start_cluster("mm-replica", PASSWORD).await;
    on(&pg3, "postgres")
        .await
        .batch_execute("ALTER SYSTEM SET wal_level = 'replica'")
        .await
        .unwrap();
    let dir = pg3.pgdata().parent().unwrap().to_path_buf();
    let pg3 = tokio::task::spawn_blocking(move || {
        pg3.stop().unwrap();
        let mut opts = berqenas::pg::cluster::ClusterOptions::new(&dir);
        opts.ephemeral = true;
        Cluster::ensure(&opts).unwrap()
    })
    .await
    .unwrap();
    let level: String = on(&pg3, "postgres")
        .await
        .query_one("SHOW wal_level", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        level, "replica",
        "the case needs a server without logical decoding"
    );
    let url = format!(
        "postgresql://{}:{PASSWORD}@127.0.0.1:{}/postgres",
        berqenas::pg::cluster::SUPERUSER,
        pg3.port()
    );
    // A control database of its own: no other test of this binary places tenants on
    // the server registered here.
    let own = common::control_database("mm_replica").await;
    let platform = berqenas::server::platform(&own, common::secret_key(), 8)
        .await
        .unwrap();
    let app = TestApp::serve(platform).await;
    let (s, b) = app
        .call(
            Method::POST,
            "/api/v1/servers",
            Some(json!({"name": "pg3", "url": url})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // `server list` shows it, beside `default`'s.
    assert_eq!(b["wal_level"], "replica", "{b}");
    let (_, d) = app.call(Method::GET, "/api/v1/servers/default", None).await;
    assert_eq!(d["wal_level"], "logical", "{d}");
    let name = unique("mmwal");
    app.create_with(json!({"name": name, "server": "pg3"}))
        .await;
    let operations = || async {
        let c = common::superuser_in("mm_replica").await;
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM berqenas.operations WHERE tenant_name = $1 AND kind LIKE 'tenant.move%'",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        n
    };
    for body in [
        json!({"to_server": "default"}),
        json!({"to_isolation": "database"}),
    ] {
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/move"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
        assert_eq!(b["error"]["code"], "move_unsupported", "{b}");
        let message = b["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("wal_level = replica") && message.contains("\"pg3\""),
            "{message}"
        );
        let (_, t) = app
            .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
            .await;
        assert_eq!(t["server"], "pg3", "{t}");
        assert_eq!(t["isolation"], "schema", "{t}");
        assert_eq!(operations().await, 0, "no move began");
    }
}
