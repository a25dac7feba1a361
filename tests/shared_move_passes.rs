//! A shared-mode move's copy in two passes (docs/moves.md "Out of and into shared
//! mode", `tenant::moving_catch_up`): the first pass while the tenant writes, then
//! the tenant updates, deletes and inserts rows, and the second pass must leave the
//! target equal to the source, table by table, ids included. Each direction, into a
//! schema (one database, rows moved by SQL) and into a database (rows through COPY).

mod common;
#[path = "support/moving.rs"]
mod moving;

use berqenas::pg::Ident;
use berqenas::tenant::moving_catch_up::{self as catch_up, Table};
use berqenas::tenant::{moving_shared, Isolation, Slug};
use common::unique;
use serde_json::{json, Value};
use uuid::Uuid;

use moving::{rt, serial, stem, sums, world};

/// Parents, children (one foreign key with ON DELETE CASCADE, one without) and
/// activity, written as the tenant.
const FILL: &str = "INSERT INTO applications (name, team, created_by)
       SELECT 'a' || i, 't', 'fill' FROM generate_series(1, 40) i;
     INSERT INTO resources (application_id, type, name)
       SELECT id, 'db', name || '-r' FROM applications;
     INSERT INTO deployments (application_id, version, status, triggered_by)
       SELECT id, 'v1', 'done', 'fill' FROM applications;
     INSERT INTO user_activity (user_id, action) SELECT 'u', 'seen' || i FROM generate_series(1, 30) i;
     SELECT realtime_publish('orders', '{\"n\": 1}');";

/// What the tenant does between the passes: updates (a parent's team, a child's
/// status), deletes (a parent with its children), inserts (activity only inserted).
const CHANGE: &str = "UPDATE applications SET team = 'moved' WHERE name IN ('a1', 'a2', 'a3');
     UPDATE deployments SET status = 'rolled back' WHERE application_id IN
       (SELECT id FROM applications WHERE name = 'a4');
     DELETE FROM deployments WHERE application_id IN (SELECT id FROM applications WHERE name = 'a5');
     DELETE FROM applications WHERE name = 'a5';
     INSERT INTO applications (name, team, created_by) VALUES ('late', 't', 'change');
     INSERT INTO user_activity (user_id, action) VALUES ('u', 'late');
     SELECT realtime_publish('orders', '{\"n\": 2}');";

struct Moving {
    name: String,
    id: Uuid,
    tenant: tokio_postgres::Client,
    /// Where the source's rows are: the pool (with the tenant's id) or its schema.
    source: (tokio_postgres::Client, String, Option<String>),
}

async fn tenant(from: &str, to: Isolation) -> Moving {
    let w = world().await;
    let name = unique(&format!("sp{}{}", &from[..1], &to.as_str()[..1]));
    let created = w
        .app
        .create_with(json!({"name": name, "isolation": from, "server": "default"}))
        .await;
    let tenant = common::connect_as(&created["credentials"]).await;
    tenant.batch_execute(FILL).await.unwrap();
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let source = if from == "shared" {
        (
            common::superuser().await,
            "berqenas_shared".to_string(),
            Some(id.to_string()),
        )
    } else {
        let db = created["database"].as_str().unwrap();
        (common::superuser_in(db).await, stem(&name), None)
    };
    Moving {
        name,
        id,
        tenant,
        source,
    }
}

impl Moving {
    async fn at_source(&self) -> Vec<String> {
        let (c, schema, tenant) = &self.source;
        sums(c, schema, tenant.as_deref()).await
    }
}

fn rows_of(outcome: &Value, table: &str) -> Value {
    outcome["rows"][table].clone()
}

/// The deletions were looked for by key where the tenant deleted (counting said so),
/// and not where it only inserted (its activity; the realtime events, with no
/// primary key, by their unique ids: only the new one copied.
fn only_inserts_counted(second: &Value) {
    let apps = rows_of(second, "applications");
    assert_eq!(apps["keys_read"], json!(true), "{second}");
    for table in ["user_activity", "realtime_events"] {
        let only_inserted = rows_of(second, table);
        assert_eq!(only_inserted["keys_read"], json!(false), "{second}");
        assert_eq!(only_inserted["whole"], json!(false), "{second}");
        assert_eq!(only_inserted["copied"], json!(1), "{second}");
        assert_eq!(only_inserted["deleted"], json!(0), "{second}");
    }
}

/// Out of the pool into `to` mode: first pass, the tenant's changes, second pass.
async fn out_of_pool(to: Isolation) {
    let _one = serial().await;
    let w = world().await;
    let m = tenant("shared", to).await;
    let view = &w.rt.platform;
    let slug = Slug::parse(&m.name).unwrap();
    moving_shared::make_target(view, view, "default", &slug, to, 5)
        .await
        .unwrap();
    let first = moving_shared::precopy_rows(view, view, &slug, m.id, to)
        .await
        .unwrap();
    assert_eq!(rows_of(&first, "applications"), json!(40), "{first}");
    m.tenant.batch_execute(CHANGE).await.unwrap();

    let target = if to == Isolation::Database {
        common::superuser_in(&stem(&m.name)).await
    } else {
        common::superuser().await
    };
    let schema = stem(&m.name);
    let source = m.at_source().await;
    // The changes came after the first pass: it alone left the target behind.
    assert_ne!(sums(&target, &schema, None).await, source);

    let second = moving_shared::copy_rows(view, view, &slug, m.id, to, first["since"].as_i64())
        .await
        .unwrap();
    let apps = rows_of(&second, "applications");
    assert_eq!(apps["deleted"], json!(1), "{second}");
    assert_eq!(apps["whole"], json!(false), "{second}");
    only_inserts_counted(&second);
    // The three updated, the one inserted; never all forty again.
    let copied = apps["copied"].as_u64().unwrap();
    assert!((4..40).contains(&copied), "{second}");
    assert_eq!(sums(&target, &schema, None).await, source, "{second}");

    moving_cleanup(view, &slug, to).await;
}

/// From `from` mode into the pool: first pass, the tenant's changes, second pass.
async fn into_pool(from: Isolation) {
    let _one = serial().await;
    let w = world().await;
    let m = tenant(from.as_str(), Isolation::Shared).await;
    let view = &w.rt.platform;
    let slug = Slug::parse(&m.name).unwrap();
    let first = moving_shared::precopy_into_pool(view, view, &slug, m.id, from)
        .await
        .unwrap();
    assert_eq!(rows_of(&first, "applications"), json!(40), "{first}");
    m.tenant.batch_execute(CHANGE).await.unwrap();

    let pool = common::superuser().await;
    let id = m.id.to_string();
    let source = m.at_source().await;
    assert_ne!(sums(&pool, "berqenas_shared", Some(&id)).await, source);

    let second =
        moving_shared::copy_into_pool(view, view, &slug, m.id, from, first["since"].as_i64())
            .await
            .unwrap();
    let apps = rows_of(&second, "applications");
    assert_eq!(apps["deleted"], json!(1), "{second}");
    only_inserts_counted(&second);
    let copied = apps["copied"].as_u64().unwrap();
    assert!((4..40).contains(&copied), "{second}");
    assert_eq!(
        sums(&pool, "berqenas_shared", Some(&id)).await,
        source,
        "{second}"
    );

    moving_shared::purge_pool_rows(view, m.id).await.unwrap();
    assert_eq!(moving_shared::pool_rows(view, m.id).await.unwrap(), 0);
}

async fn moving_cleanup(view: &berqenas::platform::Platform, slug: &Slug, mode: Isolation) {
    berqenas::tenant::moving::drop_copy(view, slug, mode, &[])
        .await
        .unwrap();
}

/// The tenant deletes a parent (with its children) while the first pass is held on a
/// superuser's lock of `user_activity`, a table it copies after `applications`: the
/// catch-up inside `precopy`, the writes still on, finds the deletion by key; the pass
/// with the writes blocked then reads no key and copies nothing, and the target
/// equals the source.
async fn deleted_during_first_pass(from: Isolation, to: Isolation) {
    let _one = serial().await;
    let w = world().await;
    let m = tenant(from.as_str(), to).await;
    let view = &w.rt.platform;
    let slug = Slug::parse(&m.name).unwrap();
    let (source_schema, into) = if from == Isolation::Shared {
        moving_shared::make_target(view, view, "default", &slug, to, 5)
            .await
            .unwrap();
        ("berqenas_shared".to_string(), false)
    } else {
        (stem(&m.name), true)
    };
    // The source's tables are all in the control database here (the pool's, or a
    // schema-mode tenant's).
    assert_ne!(from, Isolation::Database);
    let locked = format!("{source_schema}.user_activity");
    let mut holder = common::superuser().await;
    let lock = holder.transaction().await.unwrap();
    lock.batch_execute(&format!("LOCK TABLE {locked} IN ACCESS EXCLUSIVE MODE"))
        .await
        .unwrap();
    let (id, name) = (m.id, slug.clone());
    let first = tokio::spawn(async move {
        let view = &world().await.rt.platform;
        if into {
            moving_shared::precopy_into_pool(view, view, &name, id, from).await
        } else {
            moving_shared::precopy_rows(view, view, &name, id, to).await
        }
    });
    let watcher = common::superuser().await;
    let waiting = format!(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '{locked}'::regclass"
    );
    let started = std::time::Instant::now();
    while watcher
        .query_one(&waiting, &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(
            started.elapsed().as_secs() < 30,
            "the first pass never reached the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    m.tenant
        .batch_execute(
            "DELETE FROM deployments WHERE application_id IN (SELECT id FROM applications WHERE name = 'a5');
             DELETE FROM applications WHERE name = 'a5';",
        )
        .await
        .unwrap();
    lock.rollback().await.unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(rows_of(&first, "applications"), json!(40), "{first}");
    let caught = &first["caught_up"]["applications"];
    assert_eq!(caught["deleted"], json!(1), "{first}");
    assert_eq!(caught["keys_read"], json!(true), "{first}");

    let second = if into {
        moving_shared::copy_into_pool(view, view, &slug, m.id, from, first["since"].as_i64()).await
    } else {
        moving_shared::copy_rows(view, view, &slug, m.id, to, first["since"].as_i64()).await
    }
    .unwrap();
    for table in ["applications", "deployments", "resources"] {
        let t = rows_of(&second, table);
        assert_eq!(t["keys_read"], json!(false), "{table}: {second}");
        assert_eq!(t["deleted"], json!(0), "{table}: {second}");
        assert_eq!(t["copied"], json!(0), "{table}: {second}");
    }
    let source = m.at_source().await;
    if into {
        let pool = common::superuser().await;
        let id = m.id.to_string();
        assert_eq!(sums(&pool, "berqenas_shared", Some(&id)).await, source);
        moving_shared::purge_pool_rows(view, m.id).await.unwrap();
    } else {
        let target = if to == Isolation::Database {
            common::superuser_in(&stem(&m.name)).await
        } else {
            common::superuser().await
        };
        assert_eq!(sums(&target, &stem(&m.name), None).await, source);
        moving_cleanup(view, &slug, to).await;
    }
}

#[test]
fn a_deletion_during_the_first_pass_into_the_pool_is_caught_up_with_the_writes_on() {
    rt().block_on(deleted_during_first_pass(
        Isolation::Schema,
        Isolation::Shared,
    ));
}

#[test]
fn a_deletion_during_the_first_pass_out_of_the_pool_is_caught_up_with_the_writes_on() {
    rt().block_on(deleted_during_first_pass(
        Isolation::Shared,
        Isolation::Database,
    ));
}

#[test]
fn the_second_pass_out_of_the_pool_into_a_schema_carries_every_change() {
    rt().block_on(out_of_pool(Isolation::Schema));
}

#[test]
fn the_second_pass_out_of_the_pool_into_a_database_carries_every_change() {
    rt().block_on(out_of_pool(Isolation::Database));
}

#[test]
fn the_second_pass_from_a_schema_into_the_pool_carries_every_change() {
    rt().block_on(into_pool(Isolation::Schema));
}

#[test]
fn the_second_pass_from_a_database_into_the_pool_carries_every_change() {
    rt().block_on(into_pool(Isolation::Database));
}

#[test]
fn written_since_follows_transaction_ids_around_their_wrap() {
    rt().block_on(async {
        let c = common::superuser().await;
        let top = 4_294_967_000_i64;
        for (since, xmin, after) in [
            (top, 4_294_967_100_i64, true),
            (top, 100, true),
            (top, 4_294_966_000, false),
            (100, 4_294_967_000, false),
            (100, 50, false),
            (100, 100, true),
            (100, 150, true),
        ] {
            let q = format!(
                "SELECT {} FROM (VALUES ('{xmin}'::xid)) AS v(xmin)",
                catch_up::written_since(since)
            );
            let got: bool = c.query_one(&q, &[]).await.unwrap().get(0);
            assert_eq!(got, after, "xmin {xmin} since {since}");
        }
    });
}

/// Tables of the test's own: one with no key (copied whole again), one keyed by a
/// unique NOT NULL column and no primary key (caught up by its changes), each pass
/// through SQL in one database and through COPY.
#[test]
fn a_table_with_no_key_is_copied_whole_and_a_uniquely_keyed_one_by_its_changes() {
    rt().block_on(async {
        let _one = serial().await;
        for same in [true, false] {
            let schema = unique("cu").replace('-', "_");
            let src = common::superuser().await;
            let mut dst = common::superuser().await;
            let other = Uuid::new_v4();
            let mine = Uuid::new_v4();
            src.batch_execute(&format!(
                "CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.src_nokey (tenant_id uuid NOT NULL, a int, b text);
                 CREATE TABLE {schema}.dst_nokey (a int, b text);
                 CREATE TABLE {schema}.src_uniq (tenant_id uuid NOT NULL, id bigint NOT NULL, b text,
                                                UNIQUE (tenant_id, id));
                 CREATE TABLE {schema}.dst_uniq (id bigint NOT NULL UNIQUE, b text);
                 INSERT INTO {schema}.src_nokey SELECT t, i, 'v' FROM generate_series(1, 20) i,
                   (VALUES ('{mine}'::uuid), ('{other}'::uuid)) AS x(t);
                 INSERT INTO {schema}.src_uniq SELECT t, i, 'v' FROM generate_series(1, 20) i,
                   (VALUES ('{mine}'::uuid), ('{other}'::uuid)) AS x(t);"
            ))
            .await
            .unwrap();
            let table = |name: &str, columns: [&str; 2]| Table {
                name: name.into(),
                source: format!("{schema}.src_{name}"),
                target: format!("{schema}.dst_{name}"),
                columns: columns.map(|c| Ident::new(c).unwrap()).to_vec(),
                tenant: format!("'{mine}'::uuid"),
                pool: catch_up::Pool::Source,
            };
            let tables = [table("nokey", ["a", "b"]), table("uniq", ["id", "b"])];
            let since = catch_up::since(&src).await.unwrap();
            let tx = dst.transaction().await.unwrap();
            for t in &tables {
                assert_eq!(catch_up::bulk(&src, &tx, same, t).await.unwrap(), 20);
            }
            tx.commit().await.unwrap();
            src.batch_execute(&format!(
                "UPDATE {schema}.src_nokey SET b = 'changed' WHERE a = 3;
                 DELETE FROM {schema}.src_nokey WHERE a = 4;
                 UPDATE {schema}.src_uniq SET b = 'changed' WHERE id = 3;
                 DELETE FROM {schema}.src_uniq WHERE id = 4;
                 INSERT INTO {schema}.src_uniq VALUES ('{mine}', 21, 'new');
                 UPDATE {schema}.src_uniq SET b = 'theirs' WHERE tenant_id = '{other}';"
            ))
            .await
            .unwrap();
            let tx = dst.transaction().await.unwrap();
            let mut caught = Vec::new();
            for (n, t) in tables.iter().enumerate() {
                caught.push(catch_up::catch_up(&src, &tx, same, t, since, n).await.unwrap());
            }
            tx.commit().await.unwrap();
            let caught = serde_json::to_value(&caught).unwrap();
            assert_eq!(caught[0]["whole"], json!(true), "{caught}");
            assert_eq!(caught[0]["copied"], json!(19), "{caught}");
            assert_eq!(
                caught[1],
                json!({"copied": 2, "deleted": 1, "whole": false, "keys_read": true}),
                "the tenant's update and insert, its delete; not the other's rows"
            );
            for (name, order) in [("nokey", "a"), ("uniq", "id")] {
                let rows = |q: String| {
                    let src = &src;
                    async move {
                        src.query(&q, &[])
                            .await
                            .unwrap()
                            .iter()
                            .map(|r| r.get::<_, String>(0))
                            .collect::<Vec<_>>()
                    }
                };
                let cols = if name == "nokey" { "a, b" } else { "id, b" };
                let want = rows(format!(
                    "SELECT row({cols})::text FROM {schema}.src_{name} WHERE tenant_id = '{mine}' ORDER BY {order}"
                ))
                .await;
                let got = rows(format!(
                    "SELECT row({cols})::text FROM {schema}.dst_{name} ORDER BY {order}"
                ))
                .await;
                assert_eq!(got, want, "{name}, same database: {same}");
            }
            src.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .await
                .unwrap();
        }
    });
}
