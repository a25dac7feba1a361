//! Template 0003: every tenant's realtime_events triggers fire one shared copy of
//! their functions per database (`berqenas_realtime.event_*`, the control role's), not
//! copies of the tenant's own. Tenants made by a release without them (in every mode,
//! on `default` and on a second server, in their own databases too) are moved to them
//! by a template migration, after berqenas installs them where that release left
//! none; new tenants start there. Either way publishing, ordering and immutability
//! still work, and the tenant cannot change the functions its events pass through.

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;

use berqenas::server::{self, Database};
use berqenas::template::Template;
use common::{connect_as, unique, TestApp};
use extra_cluster::{on, register_pg2};
use serde_json::{json, Value};

const REALTIME: &str = include_str!("../templates/tenant/0002_realtime.sql");
const SHARED: [&str; 3] = ["event_gate", "event_immutable", "event_wake"];

async fn app(db: &Database, template: Template) -> TestApp {
    let platform = server::platform_with(db, common::secret_key(), 16, template)
        .await
        .unwrap();
    TestApp::serve(platform).await
}

/// A superuser session in the database the tenant's objects are in.
async fn catalog(
    db: &Database,
    pg2: &berqenas::pg::cluster::Cluster,
    t: &Value,
) -> tokio_postgres::Client {
    let own = t["credentials"]["database"].as_str().unwrap();
    match (
        t["server"].as_str().unwrap(),
        t["isolation"].as_str().unwrap(),
    ) {
        ("pg2", "database") => on(pg2, own).await,
        ("pg2", _) => on(pg2, "postgres").await,
        (_, "database") => common::superuser_in(own).await,
        _ => berqenas::pg::connect(&db.config).await.unwrap(),
    }
}

/// The schema and function each trigger of the tenant's realtime_events fires, and
/// how many of 0002's own trigger functions are left in its schema.
async fn triggers(c: &tokio_postgres::Client, schema: &str) -> (Vec<String>, i64) {
    let fired = c
        .query(
            "SELECT t.tgname || '=' || pn.nspname || '.' || p.proname
               FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid
               JOIN pg_namespace n ON n.oid = r.relnamespace
               JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace
              WHERE n.nspname = $1 AND r.relname = 'realtime_events' AND NOT t.tgisinternal
              ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let own: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = $1 AND p.proname IN ('realtime_gate', 'realtime_immutable', 'realtime_wake')",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    (fired, own)
}

fn on_shared() -> Vec<String> {
    [
        "realtime_gate=berqenas_realtime.event_gate",
        "realtime_immutable=berqenas_realtime.event_immutable",
        "realtime_wake=berqenas_realtime.event_wake",
    ]
    .map(String::from)
    .to_vec()
}

/// The tenant's own login publishes twice (ids in order), cannot change an event, and
/// cannot touch the shared functions.
async fn still_works(t: &Value) {
    let name = t["name"].as_str().unwrap();
    let c = connect_as(&t["credentials"]).await;
    let first: i64 = c
        .query_one("SELECT realtime_publish('orders', '{\"n\": 1}')", &[])
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .get(0);
    let second: i64 = c
        .query_one("SELECT realtime_publish('orders', '{\"n\": 2}')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(first > 0 && second > first, "{name}: ids {first}, {second}");
    let e = c
        .batch_execute("UPDATE realtime_events SET channel = 'other'")
        .await
        .unwrap_err();
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("cannot be changed once published"),
        "{name}: {e}"
    );
    for attack in [
        "CREATE OR REPLACE FUNCTION berqenas_realtime.event_gate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "ALTER FUNCTION berqenas_realtime.event_gate() RENAME TO gone",
        "DROP FUNCTION berqenas_realtime.event_immutable() CASCADE",
        "CREATE FUNCTION berqenas_realtime.event_gate2() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    ] {
        assert!(c.batch_execute(attack).await.is_err(), "{name}: {attack}");
    }
}

/// What the tenant's schema holds, in names and definitions with the schema's name
/// (its roles' names start with it) written `S`: tables, columns, defaults,
/// constraints, indexes, functions, triggers, owners, privileges and default
/// privileges (not the schema's comment: the version marker only a migration writes).
async fn fingerprint(c: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    c.query(
        "SELECT replace(kind || ' ' || def, $1, 'S') FROM (
           SELECT 'rel' kind, c.relname || ' ' || c.relkind::text || ' ' || pg_get_userbyid(c.relowner)
                  || ' ' || coalesce(c.relacl::text, '') def
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1
           UNION ALL
           SELECT 'col', c.relname || '.' || a.attname || ' ' || a.attnum || ' '
                  || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' '
                  || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
            WHERE n.nspname = $1
           UNION ALL
           SELECT 'con', r.relname || ' ' || con.conname || ' ' || pg_get_constraintdef(con.oid)
             FROM pg_constraint con JOIN pg_class r ON r.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = con.connamespace WHERE n.nspname = $1
           UNION ALL
           SELECT 'idx', pg_get_indexdef(i.indexrelid)
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1
           UNION ALL
           SELECT 'fn', pg_get_functiondef(p.oid) || ' ' || pg_get_userbyid(p.proowner) || ' '
                  || coalesce(p.proacl::text, '')
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1
           UNION ALL
           SELECT 'trg', pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND NOT t.tgisinternal
           UNION ALL
           SELECT 'acl', pg_get_userbyid(d.defaclrole) || ' ' || d.defaclobjtype::text || ' '
                  || d.defaclacl::text
             FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace
            WHERE n.nspname = $1
           UNION ALL
           SELECT 'nsp', pg_get_userbyid(nspowner) || ' ' || coalesce(nspacl::text, '')
             FROM pg_namespace WHERE nspname = $1
         ) x ORDER BY 1",
        &[&schema],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn drop_shared(c: &tokio_postgres::Client) {
    for f in SHARED {
        c.batch_execute(&format!("DROP FUNCTION berqenas_realtime.{f}()"))
            .await
            .unwrap();
    }
}

const PLACES: [(&str, &str); 5] = [
    ("default", "schema"),
    ("default", "database"),
    ("default", "shared"),
    ("pg2", "schema"),
    ("pg2", "database"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_of_an_older_release_move_to_the_shared_trigger_functions() {
    let db = common::control_database("rt_triggers").await;
    let v2 = Template::from_files(&[
        ("0001_init.sql", common::INIT),
        ("0002_realtime.sql", REALTIME),
    ]);
    let before = app(&db, v2).await;
    let pg2 = register_pg2(&before, "rttrig-pg2").await;
    let mut tenants = Vec::new();
    for (server, isolation) in PLACES {
        let name = unique(&format!("rtt{}{}", &server[..1], &isolation[..1]));
        let t = before
            .create_with(json!({"name": name, "server": server, "isolation": isolation}))
            .await;
        let (fired, own) =
            triggers(&catalog(&db, &pg2, &t).await, t["schema"].as_str().unwrap()).await;
        assert_eq!(own, 3, "{name}: 0002 makes the tenant's own copies");
        assert!(
            !fired.is_empty() && fired.iter().all(|f| !f.contains("berqenas_realtime")),
            "{fired:?}"
        );
        tenants.push(t);
    }
    drop(before);
    // What a release without them left: no shared functions anywhere.
    drop_shared(&berqenas::pg::connect(&db.config).await.unwrap()).await;
    drop_shared(&on(&pg2, "postgres").await).await;
    for t in tenants.iter().filter(|t| t["isolation"] == "database") {
        drop_shared(&catalog(&db, &pg2, t).await).await;
    }

    let app = app(&db, Template::builtin()).await;
    let run = app.migrate(json!({})).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["migrated"], PLACES.len(), "{run}");
    assert_eq!(run["failed"], 0, "{run}");
    for t in &tenants {
        let (fired, own) =
            triggers(&catalog(&db, &pg2, t).await, t["schema"].as_str().unwrap()).await;
        assert_eq!((fired, own), (on_shared(), 0), "{}", t["name"]);
        still_works(t).await;
    }

    // New tenants start on them, everywhere, and have what a migrated tenant has (a
    // create runs 0002 and 0003 as one: `Template::full_sql`). Shared-mode tenants
    // share the pool's schema.
    for (t, (server, isolation)) in tenants.iter().zip(PLACES) {
        let name = unique(&format!("rtn{}{}", &server[..1], &isolation[..1]));
        let fresh = app
            .create_with(json!({"name": name, "server": server, "isolation": isolation}))
            .await;
        assert_eq!(fresh["template_version"], 3, "{fresh}");
        let c = catalog(&db, &pg2, &fresh).await;
        let schema = fresh["schema"].as_str().unwrap();
        assert_eq!(triggers(&c, schema).await, (on_shared(), 0), "{name}");
        if isolation != "shared" {
            let migrated = catalog(&db, &pg2, t).await;
            assert_eq!(
                fingerprint(&c, schema).await,
                fingerprint(&migrated, t["schema"].as_str().unwrap()).await,
                "{name} against {}",
                t["name"]
            );
        }
        still_works(&fresh).await;
    }
}
