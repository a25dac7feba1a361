//! A shared-mode move's copy in two passes (docs/moves.md "Out of and into shared
//! mode", `tenant::moving_catch_up`): the first pass while the tenant writes, then
//! the tenant updates, deletes and inserts rows, and the second pass must leave the
//! target equal to the source, table by table, ids included. Each direction, into a
//! schema (one database, rows moved by SQL) and into a database (rows through COPY).

mod common;
#[path = "support/moving.rs"]
mod moving;

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
/// and not where it only inserted (its activity); the realtime events, with no
/// primary key, were copied whole again.
fn only_inserts_counted(second: &Value) {
    let apps = rows_of(second, "applications");
    assert_eq!(apps["keys_read"], json!(true), "{second}");
    let activity = rows_of(second, "user_activity");
    assert_eq!(activity["keys_read"], json!(false), "{second}");
    assert_eq!(activity["copied"], json!(1), "{second}");
    assert_eq!(activity["deleted"], json!(0), "{second}");
    let events = rows_of(second, "realtime_events");
    assert_eq!(events["whole"], json!(true), "{second}");
}

/// Out of the pool into `to` mode: first pass, the tenant's changes, second pass.
async fn out_of_pool(to: Isolation) {
    let _one = serial().await;
    let w = world().await;
    let m = tenant("shared", to).await;
    let view = &w.rt.platform;
    let slug = Slug::parse(&m.name).unwrap();
    moving_shared::make_target(view, &slug, to, 5)
        .await
        .unwrap();
    let first = moving_shared::precopy_rows(view, &slug, m.id, to)
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

    let second = moving_shared::copy_rows(view, &slug, m.id, to, first["since"].as_i64())
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
    let first = moving_shared::precopy_into_pool(view, &slug, m.id, from)
        .await
        .unwrap();
    assert_eq!(rows_of(&first, "applications"), json!(40), "{first}");
    m.tenant.batch_execute(CHANGE).await.unwrap();

    let pool = common::superuser().await;
    let id = m.id.to_string();
    let source = m.at_source().await;
    assert_ne!(sums(&pool, "berqenas_shared", Some(&id)).await, source);

    let second = moving_shared::copy_into_pool(view, &slug, m.id, from, first["since"].as_i64())
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
