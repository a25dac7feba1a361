//! Issue 18 items 1 and 4 together: a tenant on a server other than `default` moves
//! into that server's shared pool and out of it (docs/moves.md "Out of and into
//! shared mode"), online, as on `default`: a client writes every 10 ms through the
//! tenant's own credentials, and every acknowledged write is found where the tenant
//! ends. The first move into shared mode there builds the server's pool. A tenant
//! over its disk quota keeps the block that pool's guard reads only while it is in
//! the pool. A tenant moves from one server's pool straight into another's.

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
use extra_cluster::{on, register_server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use moving::{
    as_tenant_after_move, can_write, counted_by_data_api, dsn_now, fill, follow, move_to_end,
    over_quota_in_pool, round, rt, serial, set_disk_quota, shape, stem, step_state, sums, world,
    writer_with,
};

/// A server of the test: `default` (the shared cluster, its control database) or an
/// extra cluster registered under `name`.
enum Side<'a> {
    Default {
        db: String,
        port: u16,
    },
    Extra {
        cluster: &'a Cluster,
        name: &'static str,
    },
}

impl Side<'_> {
    async fn default() -> Side<'static> {
        let c = common::superuser().await;
        let db: String = c
            .query_one("SELECT current_database()::text", &[])
            .await
            .unwrap()
            .get(0);
        let port = common::database().await.endpoint.port;
        Side::Default { db, port }
    }

    fn extra<'a>(cluster: &'a Cluster, name: &'static str) -> Side<'a> {
        Side::Extra { cluster, name }
    }

    fn name(&self) -> &str {
        match self {
            Side::Default { .. } => "default",
            Side::Extra { name, .. } => name,
        }
    }

    fn port(&self) -> u16 {
        match self {
            Side::Default { port, .. } => *port,
            Side::Extra { cluster, .. } => cluster.port(),
        }
    }

    /// The server's own database (its pool's, and its schema-mode tenants').
    fn server_db(&self) -> String {
        match self {
            Side::Default { db, .. } => db.clone(),
            Side::Extra { .. } => "postgres".into(),
        }
    }

    async fn connect(&self, db: &str) -> tokio_postgres::Client {
        match self {
            Side::Default { .. } => common::superuser_in(db).await,
            Side::Extra { cluster, .. } => on(cluster, db).await,
        }
    }

    /// The database holding a tenant's rows in `mode`, and its id when they are the
    /// pool's.
    fn rows_of(&self, mode: &str, name: &str, id: &str) -> (String, Option<String>) {
        let db = if mode == "database" {
            stem(name)
        } else {
            self.server_db()
        };
        (db, (mode == "shared").then(|| id.to_string()))
    }

    /// The tenant's per-table sums where `mode` keeps them here.
    async fn sums(&self, mode: &str, name: &str, id: &str) -> Vec<String> {
        let (db, pooled) = self.rows_of(mode, name, id);
        let c = self.connect(&db).await;
        match pooled {
            Some(id) => sums(&c, "berqenas_shared", Some(&id)).await,
            None => sums(&c, &stem(name), None).await,
        }
    }

    /// The tenant's roles here, with whether each can log in.
    async fn roles(&self, name: &str) -> Vec<String> {
        let like = format!("{}%", stem(name).replace('_', "\\_"));
        texts(
            &self.connect(&self.server_db()).await,
            &format!(
                "SELECT rolname || ':' || rolcanlogin FROM pg_roles WHERE rolname LIKE '{like}' ORDER BY 1"
            ),
        )
        .await
    }
}

/// `FROM ... WHERE` for the tenant's rows of `table` in `mode`.
fn of(mode: &str, name: &str, id: &str, table: &str) -> String {
    if mode == "shared" {
        format!("berqenas_shared.{table} WHERE tenant_id = '{id}'")
    } else {
        format!("\"{}\".{table} WHERE true", stem(name))
    }
}

async fn texts(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    c.query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// One move of `t` from `from` mode on server `src` into `to` mode on `dst` (the same
/// server or another) under a writer, checked as tests/shared_moves.rs checks a move
/// on `default`: the rows, every acknowledged write, the password, what the tenant
/// sees, realtime after the move, the source gone after the grace (its roles too,
/// when the server changed), `neighbour` (in `dst`'s pool) untouched, and the catalog
/// against a fresh tenant in `to` mode on `dst`.
async fn hop(
    app: &TestApp,
    (src, from): (&Side<'_>, &str),
    (dst, to): (&Side<'_>, &str),
    t: &Value,
    neighbour: Option<&Value>,
) {
    let (name, id) = (t["name"].as_str().unwrap(), t["id"].as_str().unwrap());
    let (dst_db, _) = dst.rows_of(to, name, id);
    let neighbour_before = match neighbour {
        Some(n) => dst.sums("shared", "-", n["id"].as_str().unwrap()).await,
        None => Vec::new(),
    };
    let roles_before = src.roles(name).await;
    let base: tokio_postgres::Config = t["credentials"]["dsn"].as_str().unwrap().parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // The writer follows the tenant: `dsn_now` gives a server other than `default`
    // the extra cluster's port (one per test here).
    let extra_port = match (src, dst) {
        (Side::Extra { cluster, .. }, _) | (_, Side::Extra { cluster, .. }) => cluster.port(),
        _ => 0,
    };
    let writes = writer_with(
        base.clone(),
        name.to_string(),
        extra_port,
        (dst.port(), dst_db.clone()),
        stop.clone(),
        |row| format!("INSERT INTO user_activity (user_id, action) VALUES ('writer', '{row}')"),
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (s, op) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/move"),
            Some(json!({"to_server": dst.name(), "to_isolation": to, "grace": "4s"})),
        )
        .await;
    let label = format!("{from} on {} -> {to} on {}", src.name(), dst.name());
    assert_eq!(s, StatusCode::ACCEPTED, "{label}: {op}");
    assert_eq!(op["kind"], "tenant.move.shared", "{op}");
    let op_id = op["id"].as_str().unwrap().to_string();
    let op = follow(app, &op_id, |op| step_state(op, "login") == "applied").await;
    assert_eq!(step_state(&op, "login"), "applied", "{label}: {op}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let writes = writes.await.unwrap();
    eprintln!(
        "{label}: {} writes, {} retried ({}), longest gap {:?}",
        writes.ok.len(),
        writes.retried,
        writes.last_error,
        writes.longest_gap
    );
    assert!(writes.other.is_empty(), "writes failed: {:?}", writes.other);
    assert!(writes.ok.len() > 30, "too few writes: {}", writes.ok.len());
    assert!(writes.retried > 0, "the writes were never blocked");

    let (_, got) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(got["isolation"], to, "{got}");
    assert_eq!(got["server"], dst.name(), "{got}");
    assert_eq!(got["database"], dst_db.as_str(), "{got}");
    assert_eq!(counted_by_data_api(app, t).await, json!([3, dst_db]));

    // Before the grace ends both copies are there: equal but for the activity the
    // writer kept adding to, which is all at the target.
    let unwritten = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .filter(|l| !l.starts_with("user_activity"))
            .collect()
    };
    let at_source = unwritten(src.sums(from, name, id).await);
    assert!(
        at_source.iter().any(|l| l.starts_with("realtime_events:"))
            && at_source.iter().all(|l| !l.contains(":0:")),
        "{at_source:?}"
    );
    assert_eq!(unwritten(dst.sums(to, name, id).await), at_source);
    let dst_c = dst.connect(&dst_db).await;
    let moved = texts(
        &dst_c,
        &format!(
            "SELECT action::text FROM {}",
            of(to, name, id, "user_activity")
        ),
    )
    .await;
    for row in &writes.ok {
        assert!(moved.contains(row), "acknowledged write {row} missing");
    }

    // Its password; the session lands where its rows are and sees only its own;
    // realtime goes on after the copied events, the listed table's trigger too.
    let cfg = dsn_now(&base, name, extra_port).await;
    assert_eq!(cfg.get_ports(), [dst.port()]);
    let (c, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .expect("its password");
    tokio::spawn(conn);
    let path = if to == "shared" {
        "berqenas_shared".to_string()
    } else {
        stem(name)
    };
    as_tenant_after_move(
        &c,
        &dst_c,
        (&dst_db, &path),
        &of(to, name, id, "realtime_events"),
        &format!("after {label}"),
    )
    .await;
    drop(c);

    // After the grace the source is gone (its roles too, from a server it left), the
    // neighbour untouched.
    let op = follow(app, &op_id, |_| false).await;
    assert_eq!(op["state"], "succeeded", "{op}");
    let src_admin = src.connect(&src.server_db()).await;
    let found = |sql: &'static str| {
        let (admin, schema) = (&src_admin, stem(name));
        async move { admin.query_opt(sql, &[&schema]).await.unwrap().is_some() }
    };
    let members = |side: &'static str| {
        let (admin, id) = (&src_admin, id.to_string());
        async move {
            admin
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {side}.members WHERE tenant_id = $1::text::uuid"
                    ),
                    &[&id],
                )
                .await
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0)
        }
    };
    let same_server = src.name() == dst.name();
    if from == "shared" {
        let left = src.sums("shared", name, id).await;
        assert!(left.iter().all(|l| l.contains(":0:")), "{left:?}");
        assert_eq!(members("berqenas_shared").await, 0, "its member rows");
    } else {
        assert_eq!(
            members("berqenas_shared").await,
            if same_server { 6 } else { 0 },
            "its roles' member rows"
        );
        assert!(
            !found("SELECT 1 FROM pg_namespace WHERE nspname = $1").await
                && !found("SELECT 1 FROM pg_database WHERE datname = $1").await,
            "the source is left"
        );
    }
    let roles_after = dst.roles(name).await;
    assert!(
        roles_after.iter().any(|r| r.ends_with("_user:true")),
        "{roles_after:?}"
    );
    if !same_server {
        assert_eq!(
            src.roles(name).await,
            Vec::<String>::new(),
            "roles left on {}",
            src.name()
        );
        let names = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|r| r.split(':').next().unwrap().to_string())
                .collect()
        };
        assert_eq!(names(&roles_after), names(&roles_before), "the same roles");
    }
    if let Some(n) = neighbour {
        let nid = n["id"].as_str().unwrap();
        assert_eq!(dst.sums("shared", "-", nid).await, neighbour_before);
    }

    // It looks as a tenant created in `to` mode there does (its users' logins aside:
    // a fresh tenant has none).
    let fresh = unique(&format!("ssf{}", &to[..2]));
    let made = app
        .create_with(json!({"name": fresh, "isolation": to, "server": dst.name()}))
        .await;
    let fresh_db = made["database"].as_str().unwrap();
    let dst_admin = dst.connect(&dst.server_db()).await;
    let tenant_only =
        |v: Vec<String>| -> Vec<String> { v.into_iter().filter(|l| !names_a_user(l)).collect() };
    assert_eq!(
        tenant_only(shape(&dst_admin, &dst_c, name).await),
        shape(&dst_admin, &dst.connect(fresh_db).await, &fresh).await,
        "the moved tenant differs from a fresh {to}-mode one on {}",
        dst.name()
    );
}

/// Whether a line of `shape` names a user's login (`X_u` and 12 hex digits).
fn names_a_user(line: &str) -> bool {
    line.match_indices("X_u").any(|(i, _)| {
        let rest = &line[i + 3..];
        rest.len() >= 12 && rest[..12].bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// A schema-mode tenant on a server with no shared pool moves into shared mode (the
/// move builds the pool, at the template's version), then into database mode, back
/// into the pool, and into schema mode, each under writes.
#[test]
fn a_tenant_on_another_server_moves_into_its_pool_and_out_under_writes() {
    rt().block_on(async {
        let _one = serial().await;
        let app = &world().await.app;
        let cluster = register_server(app, "pg2", "ssm-pg2", json!({})).await;
        let pg2 = Side::extra(&cluster, "pg2");
        let admin = on(&cluster, "postgres").await;
        let pool_marker = "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = 'berqenas_shared'";
        assert!(admin.query_opt(pool_marker, &[]).await.unwrap().is_none());
        let t = app
            .create_with(json!({"name": unique("ssm"), "isolation": "schema", "server": "pg2", "public_api": true}))
            .await;
        fill(app, &t, "m").await;
        hop(app, (&pg2, "schema"), (&pg2, "shared"), &t, None).await;
        let marker: String = admin.query_one(pool_marker, &[]).await.unwrap().get(0);
        assert!(marker.starts_with("berqenas template_version="), "{marker}");

        let n = app
            .create_with(json!({"name": unique("ssn"), "isolation": "shared", "server": "pg2"}))
            .await;
        fill(app, &n, "n").await;
        hop(app, (&pg2, "shared"), (&pg2, "database"), &t, None).await;
        hop(app, (&pg2, "database"), (&pg2, "shared"), &t, Some(&n)).await;
        hop(app, (&pg2, "shared"), (&pg2, "schema"), &t, None).await;
        // The neighbour still sees only its own.
        let c = common::connect_as(&n["credentials"]).await;
        let seen = texts(&c, "SELECT name::text FROM applications ORDER BY 1").await;
        assert_eq!(seen, ["n1", "n2", "n3"]);
    });
}

/// Into and out of a pool while changing server, in one move each way: a tenant on
/// `default` in schema mode goes into pg5's pool (which the move builds), out of it
/// into database mode on `default`, into `default`'s pool, out of it into schema
/// mode on pg5, and back into `default`'s pool, each under writes; its roles follow
/// it (same names, same password) and leave the server it left.
#[test]
fn a_tenant_changes_server_and_pool_in_one_move() {
    rt().block_on(async {
        let _one = serial().await;
        let app = &world().await.app;
        let cluster = register_server(app, "pg5", "ssm-pg5", json!({})).await;
        let (home, pg5) = (Side::default().await, Side::extra(&cluster, "pg5"));
        let t = app
            .create_with(json!({"name": unique("ssx"), "isolation": "schema", "server": "default", "public_api": true}))
            .await;
        fill(app, &t, "m").await;
        hop(app, (&home, "schema"), (&pg5, "shared"), &t, None).await;
        hop(app, (&pg5, "shared"), (&home, "database"), &t, None).await;
        let n = app
            .create_with(json!({"name": unique("ssy"), "isolation": "shared", "server": "default"}))
            .await;
        fill(app, &n, "n").await;
        hop(app, (&home, "database"), (&home, "shared"), &t, Some(&n)).await;
        hop(app, (&home, "shared"), (&pg5, "schema"), &t, None).await;
        hop(app, (&pg5, "schema"), (&home, "shared"), &t, Some(&n)).await;
    });
}

async fn moved(app: &TestApp, name: &str, to: &str) {
    move_to_end(app, name, json!({"to_isolation": to, "grace": "0"})).await;
}

/// Over its disk quota in pg3's pool (its guard reads pg3's own flags), a tenant
/// moved into schema mode is held there by schema mode's means; under quota again it
/// writes; moved back into the pool it still writes: no block of its time in the
/// pool was left behind on pg3. Over quota again, moved into `default`'s pool, it is
/// held there, and nothing is left on pg3.
#[test]
fn a_tenant_leaving_another_servers_pool_leaves_no_block_behind() {
    rt().block_on(async {
        let _one = serial().await;
        let w = world().await;
        let app = &w.app;
        let pg = register_server(app, "pg3", "ssm-pg3", json!({})).await;
        let t = over_quota_in_pool(w, "pg3", "ssq").await;
        let name = t["name"].as_str().unwrap().to_string();
        let flags = |id: String| {
            let pg = &pg;
            async move {
                on(pg, "postgres")
                    .await
                    .query_one(
                        "SELECT count(*) FROM berqenas_quota.blocked WHERE tenant_id = $1::text::uuid",
                        &[&id],
                    )
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
            }
        };
        let id = t["id"].as_str().unwrap().to_string();
        assert_eq!(flags(id.clone()).await, 1);

        moved(app, &name, "schema").await;
        assert_eq!(flags(id.clone()).await, 0, "the block left with the tenant");
        round(&w.rt).await;
        let dsn_base: tokio_postgres::Config =
            t["credentials"]["dsn"].as_str().unwrap().parse().unwrap();
        let connect = || async {
            let (c, conn) = dsn_now(&dsn_base, &name, pg.port())
                .await
                .connect(tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            c
        };
        let c = connect().await;
        assert!(!can_write(&c).await, "over quota in schema mode after the move");
        set_disk_quota(app, &name, 1 << 30).await;
        round(&w.rt).await;
        assert!(can_write(&c).await, "under quota again");
        drop(c);

        moved(app, &name, "shared").await;
        assert!(can_write(&connect().await).await, "back in the pool, not blocked");
        assert_eq!(flags(id.clone()).await, 0);

        // Over its quota again in pg3's pool, then moved straight into `default`'s:
        // the block leaves pg3 with it, and `default`'s pool (whose guard reads the
        // registry) holds it until it is under quota.
        set_disk_quota(app, &name, 1 << 20).await;
        round(&w.rt).await;
        assert_eq!(flags(id.clone()).await, 1);
        move_to_end(app, &name, json!({"to_server": "default", "grace": "0"})).await;
        assert_eq!(flags(id).await, 0, "the block stayed on pg3");
        let c = connect().await;
        assert!(!can_write(&c).await, "over quota in default's pool after the move");
        set_disk_quota(app, &name, 1 << 30).await;
        round(&w.rt).await;
        assert!(can_write(&c).await, "under quota again in default's pool");
    });
}

/// From one server's pool straight into another's, under writes, each way: pg4's
/// pool into `default`'s (beside a neighbour there) and back; before that, a move
/// the target pool has no column for fails and is undone. Then, on a draining
/// server a tenant still moves between modes (how a tenant leaves its pool).
#[test]
fn a_tenant_moves_from_one_servers_pool_into_anothers_under_writes() {
    rt().block_on(async {
        let _one = serial().await;
        let app = &world().await.app;
        let cluster = register_server(app, "pg4", "ssm-pg4", json!({})).await;
        let (home, pg4) = (Side::default().await, Side::extra(&cluster, "pg4"));
        let pooled = app
            .create_with(json!({"name": unique("ssr"), "isolation": "shared", "server": "pg4", "public_api": true}))
            .await;
        fill(app, &pooled, "m").await;
        let pooled_name = pooled["name"].as_str().unwrap();
        // A user of the tenant: its login moves with it.
        let (s, ada) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{pooled_name}/users"),
                Some(json!({"email": "ada@example.com", "role": "developer"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{ada}");
        let ada: tokio_postgres::Config = ada["credentials"]["dsn"].as_str().unwrap().parse().unwrap();
        let ada_sees = || async {
            let (c, conn) = dsn_now(&ada, pooled_name, cluster.port())
                .await
                .connect(tokio_postgres::NoTls)
                .await
                .expect("the user's password where the tenant is");
            tokio::spawn(conn);
            texts(&c, "SELECT name::text FROM applications ORDER BY 1").await
        };
        let schema = app
            .create_with(json!({"name": unique("ssr"), "isolation": "schema", "server": "pg4"}))
            .await;
        let n = app
            .create_with(json!({"name": unique("ssr"), "isolation": "shared", "server": "default"}))
            .await;
        fill(app, &n, "n").await;

        // A source pool with a column the target's lacks (as a pool at another shape
        // would have): the move fails before it copies a row, and is undone.
        let pg4_admin = on(&cluster, "postgres").await;
        let extra = |sql: &'static str| {
            let c = &pg4_admin;
            async move {
                c.batch_execute(&format!(
                    "ALTER TABLE berqenas_shared.applications {sql}"
                ))
                .await
                .unwrap()
            }
        };
        extra("ADD COLUMN extra text").await;
        let (s, op) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{pooled_name}/move"),
                Some(json!({"to_server": "default", "grace": "0"})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{op}");
        let op = follow(app, op["id"].as_str().unwrap(), |op| op["state"] != "running").await;
        assert_eq!(op["state"], "failed", "{op}");
        assert_eq!(step_state(&op, "switch"), "pending", "{op}");
        let (_, got) = app
            .call(Method::GET, &format!("/api/v1/tenants/{pooled_name}"), None)
            .await;
        assert_eq!((&got["server"], &got["status"]), (&json!("pg4"), &json!("active")), "{got}");
        extra("DROP COLUMN extra").await;
        assert_eq!(ada_sees().await, ["m1", "m2", "m3"], "on pg4, after the failed move");
        // (The next move's `prepare` would refuse a pool holding rows of the tenant.)
        hop(app, (&pg4, "shared"), (&home, "shared"), &pooled, Some(&n)).await;
        assert_eq!(ada_sees().await, ["m1", "m2", "m3"], "on default");
        hop(app, (&home, "shared"), (&pg4, "shared"), &pooled, None).await;
        assert_eq!(ada_sees().await, ["m1", "m2", "m3"], "back on pg4");
        // The neighbour still sees only its own.
        let c = common::connect_as(&n["credentials"]).await;
        let seen = texts(&c, "SELECT name::text FROM applications ORDER BY 1").await;
        assert_eq!(seen, ["n1", "n2", "n3"]);

        // Draining pg4 keeps tenants from coming to it, not from leaving its pool:
        // a move between modes there brings it no tenant.
        let (s, b) = app
            .call(
                Method::PATCH,
                "/api/v1/servers/pg4",
                Some(json!({"draining": true})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, e) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{}/move", schema["name"].as_str().unwrap()),
                Some(json!({"to_server": "pg4", "to_isolation": "database", "grace": "0"})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{e}");
        let done = follow(app, e["id"].as_str().unwrap(), |_| false).await;
        assert_eq!(done["state"], "succeeded", "{done}");
        moved(app, pooled["name"].as_str().unwrap(), "schema").await;
        let (_, got) = app
            .call(
                Method::GET,
                &format!("/api/v1/tenants/{}", pooled["name"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(
            (&got["server"], &got["isolation"]),
            (&json!("pg4"), &json!("schema")),
            "{got}"
        );
    });
}
