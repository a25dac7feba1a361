//! What the move tests share (tests/moves.rs, tests/mode_moves.rs, tests/move_abort.rs):
//! a client that writes every 10 ms through the tenant's own credentials and follows
//! the tenant wherever the registry says it is, per-table checksums, the operation
//! followed to its end, the replication objects a move may leave behind, and what a
//! create in a mode sets (to compare a moved tenant with a fresh one).
#![allow(dead_code)] // each test binary uses its own part

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{self, TestApp};

/// A test binary's tests one at a time (they share its clusters and world, and some
/// toggle a server's flags).
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static M: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    M.lock().await
}

/// A test binary's engine on the shared cluster (an instance of its own) and its app,
/// for the tests that move tenants on `default` only.
pub struct World {
    pub rt: Arc<berqenas::workflows::Runtime>,
    pub app: TestApp,
}

pub async fn world() -> &'static World {
    static W: tokio::sync::OnceCell<World> = tokio::sync::OnceCell::const_new();
    W.get_or_init(|| async {
        let rt = common::runtime(common::platform(16).await).await;
        let app = TestApp::over(rt.clone()).await;
        World { rt, app }
    })
    .await
}

/// One runtime for every test of a binary (its world's app lives on it).
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Where the registry says the tenant is now: (server, database).
pub async fn place(name: &str) -> (String, String) {
    let row = common::superuser()
        .await
        .query_one(
            "SELECT server, database_name FROM berqenas.tenants WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The tenant's own connection string for where it is now (a mode move changes the
/// database name; a move to another server, at `pg2_port`, or back to `default`, the
/// host and port too). The password is the one it was created with.
pub async fn dsn_now(
    base: &tokio_postgres::Config,
    name: &str,
    pg2_port: u16,
) -> tokio_postgres::Config {
    let (server, database) = place(name).await;
    let e = &common::database().await.endpoint;
    let (host, port) = match server.as_str() {
        "default" => (e.host.as_str(), e.port),
        _ => ("127.0.0.1", pg2_port),
    };
    let mut c = tokio_postgres::Config::new();
    c.host(host)
        .port(port)
        .user(base.get_user().unwrap())
        .password(base.get_password().unwrap())
        .dbname(&database)
        .connect_timeout(Duration::from_secs(2));
    c
}

#[derive(Default)]
pub struct Writes {
    pub ok: Vec<String>,
    /// Of those, the ones made where the tenant is after the move.
    pub at_target: usize,
    pub retried: usize,
    pub last_error: String,
    pub other: Vec<String>,
    pub longest_gap: Duration,
}

/// Writes every 10 ms as the tenant, reconnecting (to wherever the registry says) on
/// a connection error, until `stop`. `target`: (port, database) after the move.
pub fn writer(
    base: tokio_postgres::Config,
    name: String,
    pg2_port: u16,
    target: (u16, String),
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Writes> {
    writer_with(base, name, pg2_port, target, stop, |row| {
        format!(
            "BEGIN; INSERT INTO applications (name, team, created_by) VALUES ('{row}', 'w', 'writer');
             INSERT INTO ticks (note) VALUES ('{row}');
             UPDATE ticks SET note = note || '+' WHERE n = (SELECT min(n) FROM ticks); COMMIT;"
        )
    })
}

/// [`writer`] with its own statement for write `row` (a shared-mode tenant has no
/// table of its own to tick).
pub fn writer_with(
    base: tokio_postgres::Config,
    name: String,
    pg2_port: u16,
    target: (u16, String),
    stop: Arc<AtomicBool>,
    statement: fn(&str) -> String,
) -> tokio::task::JoinHandle<Writes> {
    tokio::spawn(async move {
        let mut w = Writes::default();
        let mut client: Option<(tokio_postgres::Client, bool)> = None;
        let mut last_ok = Instant::now();
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if client.as_ref().is_none_or(|(c, _)| c.is_closed()) {
                let cfg = dsn_now(&base, &name, pg2_port).await;
                let there = cfg.get_ports().first() == Some(&target.0)
                    && cfg.get_dbname() == Some(target.1.as_str());
                match cfg.connect(tokio_postgres::NoTls).await {
                    Ok((c, conn)) => {
                        tokio::spawn(conn);
                        client = Some((c, there));
                    }
                    Err(e) => {
                        w.retried += 1;
                        w.last_error = e.to_string();
                        continue;
                    }
                }
            }
            let (c, there) = client.as_ref().map(|(c, t)| (c, *t)).unwrap();
            let row = format!("w{i}");
            let res = c.batch_execute(&statement(&row)).await;
            match res {
                Ok(()) => {
                    w.ok.push(row);
                    w.at_target += usize::from(there);
                    w.longest_gap = w.longest_gap.max(last_ok.elapsed());
                    last_ok = Instant::now();
                    i += 1;
                }
                Err(e)
                    if e.is_closed()
                        || e.code().is_some_and(|c| {
                            c.code().starts_with("57") || c.code().starts_with("08")
                        })
                        || e.to_string().contains("connection") =>
                {
                    w.retried += 1;
                    w.last_error = e.to_string();
                    client = None;
                }
                Err(e) => {
                    w.other.push(match e.as_db_error() {
                        Some(d) => format!("{}: {}", d.code().code(), d.message()),
                        None => e.to_string(),
                    });
                    client = None;
                    i += 1;
                }
            }
        }
        w
    })
}

pub async fn follow(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(180);
    loop {
        let (s, op) = app
            .call(Method::GET, &format!("/api/v1/operations/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{op}");
        if done(&op) || op["state"] != "running" {
            return op;
        }
        assert!(Instant::now() < until, "the move did not finish: {op}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn step_state(op: &Value, name: &str) -> String {
    op["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| s["state"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Publications (of this database), slots (a move's own, and the table-sync slots of a
/// copy) and subscriptions (of the cluster) of moves.
pub async fn leftovers(c: &tokio_postgres::Client) -> Vec<String> {
    c.query(
        "SELECT 'publication:' || pubname FROM pg_publication WHERE pubname LIKE 'bq_move_%'
         UNION ALL SELECT 'slot:' || slot_name FROM pg_replication_slots WHERE slot_name LIKE 'bq_move_%' OR slot_name LIKE 'pg\\_%\\_sync\\_%'
         UNION ALL SELECT 'subscription:' || subname FROM pg_subscription WHERE subname LIKE 'bq_move_%'",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

pub fn stem(name: &str) -> String {
    format!("tenant_{}", name.replace('-', "_"))
}

pub async fn roles_of(c: &tokio_postgres::Client, name: &str) -> Vec<String> {
    c.query(
        "SELECT rolname::text FROM pg_roles WHERE rolname = $1 OR rolname LIKE $1 || '\\_%' ORDER BY 1",
        &[&stem(name)],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

pub async fn exists(c: &tokio_postgres::Client, sql: &str, name: &str) -> bool {
    c.query_opt(sql, &[&name]).await.unwrap().is_some()
}

/// A table with a sequence and no primary key, the tenant's own, for the writer.
pub async fn add_ticks(created: &Value) {
    let schema = created["schema"].as_str().unwrap();
    let owner = created["owner_role"].as_str().unwrap();
    let login = created["credentials"]["user"].as_str().unwrap();
    let db = created["database"].as_str().unwrap();
    let c = if created["isolation"] == "database" {
        common::superuser_in(db).await
    } else {
        common::superuser().await
    };
    c.batch_execute(&format!(
        "SET ROLE \"{owner}\"; CREATE TABLE \"{schema}\".ticks (n bigserial, note text);
         GRANT SELECT, INSERT, UPDATE ON \"{schema}\".ticks TO \"{login}\";
         GRANT USAGE ON SEQUENCE \"{schema}\".ticks_n_seq TO \"{login}\"; RESET ROLE;"
    ))
    .await
    .unwrap();
}

/// What a create in a mode sets, read from the catalogs with the tenant's name
/// replaced by `X`: its roles (attributes, settings, memberships), its schema (owner,
/// ACL, default privileges), the template's tables (owner, ACL), and in database
/// mode its database (owner, ACL, connection limit) and realtime gate. `server`: a
/// session on the server's own database; `data`: on the database holding the schema.
pub async fn shape(
    server: &tokio_postgres::Client,
    data: &tokio_postgres::Client,
    name: &str,
) -> Vec<String> {
    let stem = stem(name);
    let like = format!("{}\\_%", stem.replace('_', "\\_"));
    let mut out = Vec::new();
    let queries_server = [
        "SELECT 'role ' || rolname || ' login=' || rolcanlogin || ' inherit=' || rolinherit
                || ' connlimit=' || rolconnlimit || ' super=' || rolsuper || ' createdb=' || rolcreatedb
           FROM pg_roles WHERE rolname = $1 OR rolname LIKE $2",
        "SELECT 'setting ' || r.rolname || ' db=' || coalesce(d.datname, '-') || ' ' || array_to_string(s.setconfig, ';')
           FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
           LEFT JOIN pg_database d ON d.oid = s.setdatabase
          WHERE r.rolname = $1 OR r.rolname LIKE $2",
        "SELECT 'member ' || m.rolname || ' of ' || g.rolname || ' admin=' || a.admin_option
           FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
          WHERE m.rolname = $1 OR m.rolname LIKE $2",
        "SELECT 'database ' || datname || ' owner=' || datdba::regrole::text || ' acl=' || coalesce(datacl::text, '-')
                || ' connlimit=' || datconnlimit
           FROM pg_database WHERE datname = $1 OR datname LIKE $2",
    ];
    let queries_data = [
        "SELECT 'schema ' || nspname || ' owner=' || nspowner::regrole::text || ' acl=' || coalesce(nspacl::text, '-')
           FROM pg_namespace WHERE nspname = $1 OR (nspname LIKE $2 AND false)",
        "SELECT 'default acl ' || defaclrole::regrole::text || ' ' || defaclobjtype::text || ' ' || defaclacl::text
           FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace
          WHERE n.nspname = $1 OR (n.nspname LIKE $2 AND false)",
        "SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' owner=' || c.relowner::regrole::text
                || ' acl=' || coalesce(c.relacl::text, '-')
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE (n.nspname = $1 OR (n.nspname LIKE $2 AND false)) AND c.relname NOT LIKE 'ticks%'
            AND c.relkind IN ('r', 'S', 'v', 'p')",
        "SELECT 'function ' || p.proname || ' owner=' || p.proowner::regrole::text || ' acl=' || coalesce(p.proacl::text, '-')
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = $1 OR (n.nspname LIKE $2 AND false)",
        "SELECT 'gate ' || per_minute || '/' || per_hour FROM berqenas_realtime.limits
          WHERE to_regclass('berqenas_realtime.limits') IS NOT NULL AND current_database() = $1 AND $2 <> ''",
    ];
    for q in queries_server {
        for r in server.query(q, &[&stem, &like]).await.unwrap() {
            out.push(r.get::<_, String>(0).replace(&stem, "X"));
        }
    }
    for q in queries_data {
        // The gate's table is only in a tenant database: its query would not plan
        // elsewhere.
        if q.contains("berqenas_realtime.limits")
            && data
                .query_one(
                    "SELECT to_regclass('berqenas_realtime.limits') IS NULL",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, bool>(0)
        {
            continue;
        }
        for r in data.query(q, &[&stem, &like]).await.unwrap() {
            out.push(r.get::<_, String>(0).replace(&stem, "X"));
        }
    }
    out.sort();
    out
}

/// Row count and checksum of each table (its rows as JSON without `tenant_id`):
/// `schema`'s tables, or the pool's rows of `tenant` when `tenant` is given.
pub async fn sums(c: &tokio_postgres::Client, schema: &str, tenant: Option<&str>) -> Vec<String> {
    let tables: Vec<String> = c
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 AND tablename <> 'members' ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let filter = tenant.map_or(String::new(), |t| format!("WHERE x.tenant_id = '{t}'"));
    let mut out = Vec::new();
    for t in tables {
        let r = c
            .query_one(
                &format!(
                    "SELECT count(*), coalesce(md5(string_agg(j, ',' ORDER BY j)), '')
                       FROM (SELECT (to_jsonb(x) - 'tenant_id')::text j FROM \"{schema}\".\"{t}\" x {filter}) s"
                ),
                &[],
            )
            .await
            .unwrap();
        out.push(format!(
            "{t}:{}:{}",
            r.get::<_, i64>(0),
            r.get::<_, String>(1)
        ));
    }
    out
}

/// Rows in every template table as the tenant: parents, children (one foreign key
/// with ON DELETE CASCADE, one without), activity, realtime events (published and
/// from a listed table's trigger).
pub async fn fill(app: &TestApp, created: &Value, tag: &str) {
    let name = created["name"].as_str().unwrap();
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/realtime/tables"),
            Some(json!({"table": "resources"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let c = common::connect_as(&created["credentials"]).await;
    c.batch_execute(&format!(
        "INSERT INTO applications (name, team, created_by)
           SELECT '{tag}' || i, 't', 'fill' FROM generate_series(1, 3) i;
         INSERT INTO resources (application_id, type, name)
           SELECT id, 'db', name || '-r' FROM applications;
         INSERT INTO deployments (application_id, version, status, triggered_by)
           SELECT id, 'v1', 'done', 'fill' FROM applications;
         INSERT INTO user_activity (user_id, action) VALUES ('u', '{tag}-seen');
         SELECT realtime_publish('orders', '{{\"n\": 1}}');
         SELECT realtime_publish('orders', '{{\"n\": 2}}');"
    ))
    .await
    .unwrap();
}

/// The tenant's applications counted through the data API (`POST /api/v1/query` with
/// its API key: the tenant's login role, wherever the registry says it is), and the
/// database it answered from.
pub async fn counted_by_data_api(app: &TestApp, created: &Value) -> Value {
    let res = app
        .http
        .post(format!("{}/api/v1/query", app.url))
        .bearer_auth(created["api_key"].as_str().unwrap())
        .json(&json!({"sql": "SELECT count(*)::int AS n, current_database()::text AS db FROM applications", "params": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["rows"][0].clone()
}

/// Moves `name` with `body` (`POST .../move`, 202) and follows the operation to its
/// end, which must be success. Returns the operation.
pub async fn move_to_end(app: &TestApp, name: &str, body: Value) -> Value {
    let (s, op) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/move"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}: {op}");
    let op = follow(app, op["id"].as_str().unwrap(), |_| false).await;
    assert_eq!(op["state"], "succeeded", "{body}: {op}");
    op
}

pub use crate::common::disk_round as round;

/// Whether the tenant's session may write (a disk block refuses with 42501).
pub async fn can_write(c: &tokio_postgres::Client) -> bool {
    match c
        .batch_execute("INSERT INTO user_activity (user_id, action) VALUES ('q', 'probe')")
        .await
    {
        Ok(()) => true,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            false
        }
        Err(e) => panic!("{e:?}"),
    }
}

/// The tenant's disk quota set (`PUT .../quotas`, 200), below its usage too.
pub async fn set_disk_quota(app: &TestApp, name: &str, bytes: i64) {
    let (s, b) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/quotas"),
            Some(serde_json::json!({"db_quota_bytes": bytes, "force": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

/// A shared-mode tenant made on `server` (named `prefix-N`) with a 1 MiB disk quota,
/// filled past it as the tenant, then blocked by a disk round: its writes refused by
/// the pool's guard. The create's answer.
pub async fn over_quota_in_pool(w: &World, server: &str, prefix: &str) -> Value {
    let name = common::unique(prefix);
    let t = w
        .app
        .create_with(json!({"name": name, "isolation": "shared", "server": server}))
        .await;
    set_disk_quota(&w.app, &name, 1 << 20).await;
    let c = common::connect_as(&t["credentials"]).await;
    c.batch_execute(
        "INSERT INTO user_activity (user_id, action, user_agent)
         SELECT 'u', 'fill', (SELECT string_agg(md5(random()::text || g::text || x::text), '') FROM generate_series(1, 32) x)
           FROM generate_series(1, 1500) g",
    )
    .await
    .unwrap();
    round(&w.rt).await;
    assert!(!can_write(&c).await, "over quota in {server}'s pool");
    t
}

/// After a move, as the tenant (`c`: its own session, where the registry says it is):
/// the session is in `db` with `path` on its `search_path` and sees its 3 applications
/// only; a new realtime event gets an id past every copied one (`events`: `FROM ...
/// WHERE` of the tenant's events, read on `dst`, a superuser session there); and its
/// listed `resources` table still publishes (a row named `row`).
pub async fn as_tenant_after_move(
    c: &tokio_postgres::Client,
    dst: &tokio_postgres::Client,
    (db, path): (&str, &str),
    events: &str,
    row: &str,
) {
    let r = c
        .query_one(
            "SELECT current_database()::text, current_setting('search_path'), (SELECT count(*) FROM applications)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), db);
    let search_path: String = r.get(1);
    assert!(search_path.contains(path), "{search_path}");
    assert_eq!(
        r.get::<_, i64>(2),
        3,
        "its own applications, and only those"
    );
    let last: i64 = dst
        .query_one(&format!("SELECT max(id) FROM {events}"), &[])
        .await
        .unwrap()
        .get(0);
    let next: i64 = c
        .query_one("SELECT realtime_publish('orders', '{}')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(next > last, "event id {next} after {last}");
    c.batch_execute(&format!(
        "INSERT INTO resources (application_id, type, name) SELECT id, 'q', '{row}' FROM applications LIMIT 1"
    ))
    .await
    .unwrap();
    let published: i64 = dst
        .query_one(
            &format!("SELECT count(*) FROM {events} AND channel = 'table.resources' AND id > $1"),
            &[&last],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(published, 1, "the listed table's trigger after the move");
}
