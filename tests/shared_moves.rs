//! Issue 18 item 4: a shared-mode tenant moved online into schema and into database
//! mode on its server (docs/moves.md "Out of shared mode"). Its rows are copied in two
//! passes, the second while its writes are blocked; a client writes every 10 ms
//! through the tenant's own credentials, and the longest gap between its successful
//! writes is reported.

mod common;
#[path = "support/moving.rs"]
mod moving;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;

use moving::{
    as_tenant_after_move, can_write, counted_by_data_api, dsn_now, fill, follow, move_to_end,
    over_quota_in_pool, place, round, rt, serial, set_disk_quota, shape, stem, step_state, sums,
    world, writer_with,
};

async fn app() -> &'static TestApp {
    &world().await.app
}

async fn actions(c: &tokio_postgres::Client, table: &str) -> Vec<String> {
    c.query(&format!("SELECT action::text FROM {table}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Where a tenant's rows are in a mode: the pool (its rows of `tenant_id`, in the
/// control database) or its schema (in the control database or its own).
struct Rows {
    pooled: bool,
    db: String,
    schema: String,
    id: String,
}

impl Rows {
    async fn client(&self) -> tokio_postgres::Client {
        common::superuser_in(&self.db).await
    }

    async fn sums(&self) -> Vec<String> {
        let c = self.client().await;
        if self.pooled {
            sums(&c, "berqenas_shared", Some(&self.id)).await
        } else {
            sums(&c, &self.schema, None).await
        }
    }

    /// `FROM` and `WHERE` for the tenant's rows of `table`.
    fn of(&self, table: &str) -> String {
        if self.pooled {
            format!("berqenas_shared.{table} WHERE tenant_id = '{}'", self.id)
        } else {
            format!("\"{}\".{table} WHERE true", self.schema)
        }
    }
}

/// Moves a tenant from `from` mode into `to` mode on `default` (one of them shared)
/// under a writer, then checks its rows, its password, what it sees, its realtime
/// events, the source gone after the grace, a shared neighbour untouched, and its
/// catalog state against a tenant created fresh in `to` mode.
async fn move_under_load(from: &str, to: &str) {
    let _one = serial().await;
    let app = app().await;
    let name = unique(&format!("sm{}{}", &from[..1], &to[..1]));
    let created = app
        .create_with(
            json!({"name": name, "isolation": from, "server": "default", "public_api": true}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    fill(app, &created, "m").await;
    let neighbour = unique("smn");
    let other = app
        .create_with(json!({"name": neighbour, "isolation": "shared", "server": "default"}))
        .await;
    fill(app, &other, "n").await;
    let other_id = other["id"].as_str().unwrap().to_string();
    let pg = common::superuser().await;
    let neighbour_before = sums(&pg, "berqenas_shared", Some(&other_id)).await;
    let control_db: String = pg
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap()
        .get(0);
    let schema = stem(&name);
    let rows = |mode: &str| Rows {
        pooled: mode == "shared",
        db: if mode == "database" {
            schema.clone()
        } else {
            control_db.clone()
        },
        schema: schema.clone(),
        id: id.clone(),
    };
    let (src, dst) = (rows(from), rows(to));
    // The data API holds a connection of the tenant's from before the move.
    let before = counted_by_data_api(app, &created).await;
    assert_eq!(before, json!([3, src.db]), "{before}");

    let base: tokio_postgres::Config = created["credentials"]["dsn"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let port = *base.get_ports().first().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writes = writer_with(
        base.clone(),
        name.clone(),
        0,
        (port, dst.db.clone()),
        stop.clone(),
        |row| format!("INSERT INTO user_activity (user_id, action) VALUES ('writer', '{row}')"),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (s, op) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/move"),
            Some(json!({"to_isolation": to, "grace": "5s"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{op}");
    assert_eq!(op["kind"], "tenant.move.shared", "{op}");
    let op_id = op["id"].as_str().unwrap().to_string();
    let op = follow(app, &op_id, |op| step_state(op, "login") == "applied").await;
    assert_eq!(step_state(&op, "login"), "applied", "{op}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    let writes = writes.await.unwrap();
    let copy = op["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "copy")
        .map(|s| s["summary"].clone())
        .unwrap_or_default();
    eprintln!(
        "{from} -> {to}: {} writes, {} retried on a connection error ({}), longest gap {:?}; copy {copy}",
        writes.ok.len(),
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
    assert!(writes.retried > 0, "the writes were never blocked");

    let (_, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(t["isolation"], to, "{t}");
    assert_eq!(t["server"], "default", "{t}");
    assert_eq!(t["database"], dst.db.as_str(), "{t}");
    assert_eq!(place(&name).await.1, dst.db);

    // The data API follows the tenant (the old database is there until the grace
    // ends, its rows frozen: a stale connection would still read them).
    let after = counted_by_data_api(app, &created).await;
    assert_eq!(after, json!([3, dst.db]), "{after}");

    // Before the grace ends: the source's rows and the target's are the same (ids
    // included), but for the activity the writer kept adding to.
    let unwritten = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .filter(|l| !l.starts_with("user_activity"))
            .collect()
    };
    let at_source = unwritten(src.sums().await);
    assert!(at_source.iter().any(|l| l.starts_with("realtime_events:")));
    assert!(
        at_source.iter().all(|l| !l.contains(":0:")),
        "{at_source:?}"
    );
    assert_eq!(unwritten(dst.sums().await), at_source);
    let (src_c, dst_c) = (src.client().await, dst.client().await);
    let moved_actions = actions(&dst_c, &dst.of("user_activity")).await;
    for row in &writes.ok {
        assert!(
            moved_actions.contains(row),
            "acknowledged write {row} missing"
        );
    }
    for a in actions(&src_c, &src.of("user_activity")).await {
        assert!(moved_actions.contains(&a), "{a} left behind");
    }

    // The password works; the session lands where its rows are, and sees only its
    // own; realtime goes on (ids after the copied ones; the listed table's trigger).
    let cfg = dsn_now(&base, &name, 0).await;
    let (c, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .expect("its password");
    tokio::spawn(conn);
    let path = if to == "shared" {
        "berqenas_shared"
    } else {
        schema.as_str()
    };
    as_tenant_after_move(
        &c,
        &dst_c,
        (&dst.db, path),
        &dst.of("realtime_events"),
        "after",
    )
    .await;
    if from == "shared" {
        match c
            .query_one("SELECT count(*) FROM berqenas_shared.applications", &[])
            .await
        {
            Ok(r) => assert_eq!(r.get::<_, i64>(0), 0, "the moved tenant sees the pool"),
            // Schema mode: no privilege on the pool; database mode: no pool there.
            Err(e) => {
                use tokio_postgres::error::SqlState;
                let code = e.code().unwrap();
                assert!(
                    *code == SqlState::INSUFFICIENT_PRIVILEGE || *code == SqlState::UNDEFINED_TABLE,
                    "{e:?}"
                )
            }
        }
    }
    drop((c, src_c));

    // After the grace: the source gone (its pool rows and member rows, or its schema
    // or database); the neighbour's rows untouched, and still all it sees.
    let op = follow(app, &op_id, |_| false).await;
    assert_eq!(op["state"], "succeeded", "{op}");
    let members: i64 = pg
        .query_one(
            "SELECT count(*) FROM berqenas_shared.members WHERE tenant_id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    let found = |sql: &'static str| {
        let (pg, schema) = (&pg, &schema);
        async move { pg.query_opt(sql, &[schema]).await.unwrap().is_some() }
    };
    let left_schema = found("SELECT 1 FROM pg_namespace WHERE nspname = $1").await;
    let left_db = found("SELECT 1 FROM pg_database WHERE datname = $1").await;
    match from {
        "shared" => {
            let left = sums(&pg, "berqenas_shared", Some(&id)).await;
            assert!(left.iter().all(|l| l.contains(":0:")), "{left:?}");
            assert_eq!(members, 0);
        }
        _ => {
            assert_eq!(members, 6, "its roles' member rows");
            assert!(!left_schema && !left_db, "the source is left");
        }
    }
    assert_eq!(
        sums(&pg, "berqenas_shared", Some(&other_id)).await,
        neighbour_before
    );
    let n = common::connect_as(&other["credentials"]).await;
    let seen: Vec<String> = n
        .query("SELECT name::text FROM applications ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seen, ["n1", "n2", "n3"]);

    // It looks as a tenant created in the new mode does.
    let fresh = unique(&format!("smf{}", &to[..2]));
    let made = app
        .create_with(json!({"name": fresh, "isolation": to, "server": "default"}))
        .await;
    let fresh_db = made["database"].as_str().unwrap();
    let moved = shape(&pg, &dst_c, &name).await;
    let expected = shape(&pg, &common::superuser_in(fresh_db).await, &fresh).await;
    assert_eq!(
        moved.iter().any(|l| l.starts_with("schema X")),
        to != "shared",
        "{moved:?}"
    );
    assert_eq!(
        moved, expected,
        "the moved tenant differs from a fresh {to}-mode one"
    );
}

#[test]
fn a_shared_mode_tenant_becomes_schema_mode_under_writes() {
    rt().block_on(move_under_load("shared", "schema"));
}

#[test]
fn a_shared_mode_tenant_becomes_database_mode_under_writes() {
    rt().block_on(move_under_load("shared", "database"));
}

#[test]
fn a_schema_mode_tenant_becomes_shared_mode_under_writes() {
    rt().block_on(move_under_load("schema", "shared"));
}

#[test]
fn a_database_mode_tenant_becomes_shared_mode_under_writes() {
    rt().block_on(move_under_load("database", "shared"));
}

/// Bad requests for a shared-mode tenant: refused naming the field, nothing changed.
#[test]
fn bad_moves_out_of_shared_mode_are_refused_and_change_nothing() {
    rt().block_on(async {
        let _one = serial().await;
        let app = app().await;
        let name = unique("smbad");
        let created = app
            .create_with(json!({"name": name, "isolation": "shared", "server": "default"}))
            .await;
        let id = created["id"].as_str().unwrap().to_string();
        fill(app, &created, "b").await;
        let state = || async {
            let pg = common::superuser().await;
            let mut v = common::whole_state(&pg).await;
            v.extend(sums(&pg, "berqenas_shared", Some(&id)).await);
            v.push(format!("{:?}", place(&name).await));
            v
        };
        let cases = [
            (
                json!({"to_isolation": "sideways"}),
                StatusCode::BAD_REQUEST,
                "to_isolation",
                "invalid_field",
            ),
            (
                json!({"to_isolation": "schema", "grace": "soon"}),
                StatusCode::BAD_REQUEST,
                "grace",
                "invalid_field",
            ),
            (
                json!({"to_isolation": "shared"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "to_server",
                "move_to_same_place",
            ),
            (
                json!({"to_server": "nowhere", "to_isolation": "schema"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "to_server",
                "unknown_server",
            ),
        ];
        for (body, status, field, code) in cases {
            let before = state().await;
            let (s, b) = app
                .call(
                    Method::POST,
                    &format!("/api/v1/tenants/{name}/move"),
                    Some(body.clone()),
                )
                .await;
            assert_eq!(s, status, "{body}: {b}");
            assert_eq!(b["error"]["field"], field, "{body}: {b}");
            assert_eq!(b["error"]["code"], code, "{body}: {b}");
            assert_eq!(state().await, before, "{body} changed something");
        }
        // Into shared mode: refused while the tenant's schema has a table or a column
        // the template has not.
        let own = unique("smbads");
        let made = app
            .create_with(json!({"name": own, "server": "default"}))
            .await;
        let (schema, owner) = (
            made["schema"].as_str().unwrap(),
            made["owner_role"].as_str().unwrap(),
        );
        let pg = common::superuser().await;
        for (extra, undo, named) in [
            (
                "CREATE TABLE {s}.notes (n int)",
                "DROP TABLE {s}.notes",
                "notes",
            ),
            (
                "ALTER TABLE {s}.applications ADD COLUMN color text",
                "ALTER TABLE {s}.applications DROP COLUMN color",
                "applications.color",
            ),
            // Anything else its copied rows would leave behind, lost with its schema.
            (
                "ALTER TABLE {s}.applications ALTER COLUMN team TYPE text",
                "ALTER TABLE {s}.applications ALTER COLUMN team TYPE varchar(255)",
                "applications.team text",
            ),
            // A column's default or NOT NULL the pool's has not: the tenant would take
            // the pool's.
            (
                "ALTER TABLE {s}.applications ALTER COLUMN description SET DEFAULT 'none'",
                "ALTER TABLE {s}.applications ALTER COLUMN description DROP DEFAULT",
                "applications.description text default 'none'::text",
            ),
            (
                "ALTER TABLE {s}.applications ALTER COLUMN status DROP DEFAULT",
                "ALTER TABLE {s}.applications ALTER COLUMN status SET DEFAULT 'pending'",
                "applications.status character varying(50) not null)",
            ),
            (
                "ALTER TABLE {s}.applications ALTER COLUMN updated_by SET NOT NULL",
                "ALTER TABLE {s}.applications ALTER COLUMN updated_by DROP NOT NULL",
                "applications.updated_by character varying(255) not null",
            ),
            (
                "CREATE VIEW {s}.busy AS SELECT id FROM {s}.applications",
                "DROP VIEW {s}.busy",
                "busy",
            ),
            (
                "CREATE SEQUENCE {s}.counter",
                "DROP SEQUENCE {s}.counter",
                "counter",
            ),
            (
                "CREATE INDEX by_name_length ON {s}.applications (length(name))",
                "DROP INDEX {s}.by_name_length",
                "index applications.by_name_length",
            ),
            (
                "ALTER TABLE {s}.applications ADD CONSTRAINT short_name CHECK (length(name) < 100)",
                "ALTER TABLE {s}.applications DROP CONSTRAINT short_name",
                "constraint applications.short_name",
            ),
            (
                "CREATE POLICY own_team ON {s}.applications USING (team = current_user)",
                "DROP POLICY own_team ON {s}.applications",
                "policy applications.own_team",
            ),
            (
                "CREATE FUNCTION {s}.kept() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
                 CREATE TRIGGER kept BEFORE UPDATE ON {s}.applications FOR EACH ROW EXECUTE FUNCTION {s}.kept()",
                "DROP TRIGGER kept ON {s}.applications; DROP FUNCTION {s}.kept()",
                "trigger applications.kept",
            ),
            (
                "CREATE RULE no_delete AS ON DELETE TO {s}.deployments DO INSTEAD NOTHING",
                "DROP RULE no_delete ON {s}.deployments",
                "rule deployments.no_delete",
            ),
            (
                "CREATE FUNCTION {s}.touch() RETURNS int LANGUAGE sql AS 'SELECT 1'",
                "DROP FUNCTION {s}.touch()",
                "function touch",
            ),
            (
                "CREATE TYPE {s}.mood AS ENUM ('ok', 'not')",
                "DROP TYPE {s}.mood",
                "type mood",
            ),
            (
                "CREATE DOMAIN {s}.short AS text CHECK (length(VALUE) < 10)",
                "DROP DOMAIN {s}.short",
                "type short",
            ),
            (
                "CREATE STATISTICS {s}.team_status ON team, status FROM {s}.applications",
                "DROP STATISTICS {s}.team_status",
                "statistics team_status",
            ),
            (
                "COMMENT ON TABLE {s}.applications IS 'our apps'",
                "COMMENT ON TABLE {s}.applications IS NULL",
                "comment applications.* 'our apps'",
            ),
            (
                "COMMENT ON COLUMN {s}.applications.team IS 'who runs it'",
                "COMMENT ON COLUMN {s}.applications.team IS NULL",
                "comment applications.team 'who runs it'",
            ),
        ] {
            let on = |sql: &str| {
                format!(
                    "SET ROLE \"{owner}\"; {}; RESET ROLE;",
                    sql.replace("{s}", &format!("\"{schema}\""))
                )
            };
            pg.batch_execute(&on(extra)).await.unwrap();
            let message = refused_into_shared(app, &own).await;
            assert!(message.contains(named), "{message}");
            pg.batch_execute(&on(undo)).await.unwrap();
        }
        // A database-mode tenant's schema is read in its own database.
        let own = unique("smbadd");
        let made = app
            .create_with(json!({"name": own, "server": "default", "isolation": "database"}))
            .await;
        let (schema, owner) = (
            made["schema"].as_str().unwrap(),
            made["owner_role"].as_str().unwrap(),
        );
        let inside = common::superuser_in(made["database"].as_str().unwrap()).await;
        inside
            .batch_execute(&format!(
                "SET ROLE \"{owner}\"; CREATE FUNCTION \"{schema}\".touch() RETURNS int LANGUAGE sql AS 'SELECT 1'; RESET ROLE;"
            ))
            .await
            .unwrap();
        let message = refused_into_shared(app, &own).await;
        assert!(message.contains("(function touch)"), "{message}");
    });
}

/// A move of `name` into shared mode: refused (422, naming what the pool has no room
/// for), changing nothing; returns the message.
async fn refused_into_shared(app: &TestApp, name: &str) -> String {
    let pg = common::superuser().await;
    let before = common::whole_state(&pg).await;
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/move"),
            Some(json!({"to_isolation": "shared"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["code"], "unsupported_in_shared_mode", "{b}");
    assert_eq!(b["error"]["field"], "to_isolation", "{b}");
    assert_eq!(common::whole_state(&pg).await, before, "{b}");
    b["error"]["message"].as_str().unwrap().to_string()
}

/// A shared-mode tenant over its disk quota (writes refused by the pool's guard)
/// moved into schema mode: still refused there after the next round, by schema
/// mode's means; under quota again, its writes come back.
#[test]
fn a_moved_tenant_stays_held_to_its_disk_quota() {
    rt().block_on(async {
        let _one = serial().await;
        let w = world().await;
        let app = &w.app;
        let created = over_quota_in_pool(w, "default", "smq").await;
        let name = created["name"].as_str().unwrap().to_string();

        move_to_end(app, &name, json!({"to_isolation": "schema", "grace": "0"})).await;
        round(&w.rt).await;
        let c = common::connect_as(&created["credentials"]).await;
        let n: i64 = c
            .query_one("SELECT count(*) FROM user_activity", &[])
            .await
            .expect("reads keep working")
            .get(0);
        assert_eq!(n, 1500);
        assert!(
            !can_write(&c).await,
            "over quota in schema mode after the move"
        );
        set_disk_quota(app, &name, 1 << 30).await;
        round(&w.rt).await;
        assert!(can_write(&c).await, "under quota again");
    });
}

/// The CLI as the brief has it: `tenant move NAME --to-isolation schema --watch`
/// follows the move to its new DSN and shows the copy.
#[test]
fn the_cli_moves_a_shared_tenant_and_watches_it() {
    rt().block_on(async {
        let _one = serial().await;
        let app = app().await;
        let name = unique("smcli");
        app.create_with(json!({"name": name, "isolation": "shared", "server": "default"}))
            .await;
        let out = common::cli(
            app,
            &[
                "tenant",
                "move",
                &name,
                "--to-isolation",
                "schema",
                "--move-grace",
                "0",
                "--watch",
            ],
        )
        .await;
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{said} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains("precopy: the rows copied in "), "{said}");
        assert!(
            said.contains("\n  copy: what changed since, copied in "),
            "{said}"
        );
        let db = place(&name).await.1;
        assert!(
            said.contains(&format!(", database {db} (same user and password)")),
            "{said}"
        );
        let (_, t) = app
            .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
            .await;
        assert_eq!(t["isolation"], "schema", "{t}");
    });
}
