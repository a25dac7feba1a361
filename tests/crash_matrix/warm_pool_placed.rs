//! The warm pool on another server (docs/warm_pool.md): a refill and a recycle of a
//! schema-, a shared- and a database-mode member on cmpg2, and placed creates that
//! claim one, each killed at every step boundary. A member's pool row (on the control
//! database) and its schema, database or shared-pool member rows and six roles (on
//! cmpg2) exist together or not at all,
//! unless a create still
//! running claimed it (its row is gone, its objects are renamed by that create's
//! `provision` or dropped by its undo; that create's own case checks them).

use berqenas::isolation::Strategy;
use berqenas::names::Slug;
use berqenas::tenant::Isolation;
use berqenas::workflows::create_placed;
use berqenas::workflows::warm_pool::new_key;
use berqenas::workflows::warm_pool_placed::{self as placed, Which};
use serde_json::{json, Value};

use super::servers::{admin, cluster, create_in, has_pool, server, whole_there_or_nothing, SERVER};
use super::{Env, Fut, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    let mut all = Vec::new();
    for (label, claiming, key, member, stale_member, create_claiming) in [
        (
            "schema on cmpg2",
            "schema on cmpg2, from its warm pool",
            key_schema as Prepare,
            member_schema as Prepare,
            stale_schema as Prepare,
            create_schema as Trigger,
        ),
        (
            "shared on cmpg2",
            "shared on cmpg2, from its warm pool",
            key_shared,
            member_shared,
            stale_shared,
            create_shared,
        ),
        (
            "database on cmpg2",
            "database on cmpg2, from its warm pool",
            key_database,
            member_database,
            stale_database,
            create_database,
        ),
    ] {
        all.push(Scenario {
            kind: placed::REFILL,
            label,
            prepare: key,
            trigger: refill,
            check: member_whole_or_absent,
        });
        all.push(Scenario {
            kind: placed::RECYCLE,
            label,
            prepare: stale_member,
            trigger: recycle,
            check: member_whole_or_absent,
        });
        all.push(Scenario {
            kind: create_placed::CREATE_PLACED,
            label: claiming,
            prepare: member,
            trigger: create_claiming,
            check: claimed_whole_or_dropped,
        });
    }
    all
}

type Prepare = for<'a> fn(&'a Env) -> Fut<'a, Value>;
type Trigger = for<'a> fn(&'a Env, &'a Value) -> Fut<'a, Result<(), String>>;

fn key_in(env: &Env, isolation: Isolation) -> Fut<'_, Value> {
    Box::pin(async move {
        server(env).await;
        json!({"key": new_key(), "isolation": isolation.as_str()})
    })
}

fn key_schema<'a>(env: &'a Env) -> Fut<'a, Value> {
    key_in(env, Isolation::Schema)
}

fn key_shared<'a>(env: &'a Env) -> Fut<'a, Value> {
    key_in(env, Isolation::Shared)
}

fn key_database<'a>(env: &'a Env) -> Fut<'a, Value> {
    key_in(env, Isolation::Database)
}

fn key_of(v: &Value) -> String {
    v["key"].as_str().unwrap().to_string()
}

fn isolation_of(v: &Value) -> Isolation {
    serde_json::from_value(v["isolation"].clone()).unwrap()
}

/// A ready member on cmpg2.
fn member_in(env: &Env, isolation: Isolation) -> Fut<'_, Value> {
    Box::pin(async move {
        let v = key_in(env, isolation).await;
        placed::refill_one(&env.rt, SERVER, isolation, &key_of(&v), i64::MAX)
            .await
            .unwrap()
            .expect("a member made on cmpg2");
        v
    })
}

fn member_schema<'a>(env: &'a Env) -> Fut<'a, Value> {
    member_in(env, Isolation::Schema)
}

fn member_shared<'a>(env: &'a Env) -> Fut<'a, Value> {
    member_in(env, Isolation::Shared)
}

fn member_database<'a>(env: &'a Env) -> Fut<'a, Value> {
    member_in(env, Isolation::Database)
}

fn stale_schema<'a>(env: &'a Env) -> Fut<'a, Value> {
    stale_in(env, Isolation::Schema)
}

fn stale_shared<'a>(env: &'a Env) -> Fut<'a, Value> {
    stale_in(env, Isolation::Shared)
}

fn stale_database<'a>(env: &'a Env) -> Fut<'a, Value> {
    stale_in(env, Isolation::Database)
}

/// A member on cmpg2 at a template version that is not the current one.
fn stale_in(env: &Env, isolation: Isolation) -> Fut<'_, Value> {
    Box::pin(async move {
        let v = member_in(env, isolation).await;
        env.pg
            .execute(
                "UPDATE berqenas.warm_pool SET template_version = -1 WHERE key = $1",
                &[&key_of(&v)],
            )
            .await
            .unwrap();
        v
    })
}

fn refill<'a>(env: &'a Env, v: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        placed::refill_one(&env.rt, SERVER, isolation_of(v), &key_of(v), i64::MAX)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

fn recycle<'a>(env: &'a Env, v: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        placed::recycle_one(
            &env.rt,
            SERVER,
            isolation_of(v),
            Which::Stale(Some(&key_of(v))),
        )
        .await
        .map(drop)
        .map_err(|e| e.to_string())
    })
}

fn create_schema<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    create_in(env, Isolation::Schema)
}

fn create_shared<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    create_in(env, Isolation::Shared)
}

fn create_database<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    create_in(env, Isolation::Database)
}

/// The member's schema, database or shared-pool member rows (whichever its mode has)
/// and roles on cmpg2.
async fn objects_of(key: &str) -> Result<(bool, i64), String> {
    let pg2 = admin(&cluster().await.0, "postgres").await;
    let stem = format!("tenant_wp__{key}");
    let r = pg2
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)
                    OR EXISTS (SELECT 1 FROM pg_database WHERE datname = $1),
                    (SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1 || '_'))",
            &[&stem],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok((r.get(0) || member_rows(&pg2, &stem).await? > 0, r.get(1)))
}

/// The rows of cmpg2's shared pool that map roles named `stem_...` (none while it has
/// no pool).
async fn member_rows(pg2: &tokio_postgres::Client, stem: &str) -> Result<i64, String> {
    if !has_pool(pg2).await? {
        return Ok(0);
    }
    pg2.query_one(
        "SELECT count(*) FROM berqenas_shared.members WHERE starts_with(role, $1 || '_')",
        &[&stem],
    )
    .await
    .map(|r| r.get(0))
    .map_err(|e| e.to_string())
}

/// Whether a create still running claimed the member (its `register` names it).
async fn claimed_by_a_running_create(env: &Env, key: &str) -> Result<bool, String> {
    Ok(env
        .pg
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM berqenas.operation_steps s
                              JOIN berqenas.operations o ON o.id = s.operation_id
                             WHERE o.state = 'running' AND s.name = 'register'
                               AND s.outcome->>'member' = $1)",
            &[&key],
        )
        .await
        .map_err(|e| e.to_string())?
        .get(0))
}

/// The member's row and its objects on cmpg2 together, or neither (or claimed by a
/// running create); a whole member is then dropped, so it is nobody's.
fn member_whole_or_absent<'a>(env: &'a Env, v: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let key = key_of(v);
        // Its row held first: a create claiming it now waits, then finds it gone.
        env.pg
            .batch_execute("BEGIN")
            .await
            .map_err(|e| e.to_string())?;
        let row = env
            .pg
            .execute(
                "DELETE FROM berqenas.warm_pool WHERE key = $1 AND server = $2",
                &[&key, &SERVER],
            )
            .await
            .map_err(|e| e.to_string())?;
        let (schema, roles) = objects_of(&key).await?;
        let verdict = match (row, schema, roles) {
            (1, true, 6) => {
                let slug = Slug::warm_member(&key).unwrap();
                let pg2 = admin(&cluster().await.0, "postgres").await;
                pg2.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    slug.schema()
                ))
                .await
                .map_err(|e| e.to_string())?;
                if member_rows(&pg2, slug.schema().as_str()).await? > 0 {
                    pg2.execute(
                        "DELETE FROM berqenas_shared.members WHERE starts_with(role, $1)",
                        &[&format!("{}_", slug.schema())],
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                }
                let roles = slug.fixed_roles();
                pg2.batch_execute(&berqenas::isolation::schema::SchemaPerTenant.drop_sql(&slug, &roles))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
            (0, false, 0) => Ok(()),
            (0, _, _) if claimed_by_a_running_create(env, &key).await? => Ok(()),
            _ => Err(format!(
                "warm pool member {key} on cmpg2 is half made: {row} pool row(s), schema {schema}, {roles} role(s)"
            )),
        };
        env.pg
            .batch_execute("COMMIT")
            .await
            .map_err(|e| e.to_string())?;
        verdict
    })
}

/// The tenant whole on cmpg2 or not there at all, and the member its create claimed
/// (if it got one) renamed or dropped: no row of it, nothing of it on cmpg2.
fn claimed_whole_or_dropped<'a>(env: &'a Env, v: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        whole_there_or_nothing(env, v).await?;
        let claimed: Vec<String> = env
            .pg
            .query(
                "SELECT s.outcome->>'member' FROM berqenas.operation_steps s
                   JOIN berqenas.operations o ON o.id = s.operation_id
                  WHERE o.tenant_name = $1 AND o.kind = $2 AND s.name = 'register'
                    AND s.outcome->>'member' IS NOT NULL",
                &[&env.name, &create_placed::CREATE_PLACED],
            )
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for key in claimed {
            let (schema, roles) = objects_of(&key).await?;
            if schema || roles > 0 {
                return Err(format!(
                    "the claimed member {key} is left on cmpg2: schema {schema}, {roles} role(s)"
                ));
            }
        }
        // The prepared member: whole, or taken by this create or another case's.
        member_whole_or_absent(env, v).await
    })
}
