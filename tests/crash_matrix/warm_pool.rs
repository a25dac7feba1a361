//! Scenarios of the warm pool (docs/warm_pool.md): a refill and a recycle killed at
//! their commit (database mode: at any step) leave their member whole or absent; a
//! create that claims a member, killed at its commit, leaves the member unclaimed or
//! the tenant whole.

use berqenas::isolation::warm::Mode;
use berqenas::names::Slug;
use berqenas::workflows::{create, warm_pool};
use serde_json::{json, Value};

use super::{Env, Fut, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            kind: warm_pool::REFILL,
            label: "schema",
            prepare: key,
            trigger: refill_schema,
            check: whole_or_absent,
        },
        Scenario {
            kind: warm_pool::REFILL,
            label: "shared",
            prepare: key,
            trigger: refill_shared,
            check: whole_or_absent,
        },
        Scenario {
            kind: warm_pool::RECYCLE,
            label: "schema",
            prepare: stale_member,
            trigger: recycle,
            check: whole_or_absent,
        },
        Scenario {
            kind: warm_pool::REFILL_DATABASE,
            label: "database",
            prepare: key,
            trigger: refill_database,
            check: whole_or_absent,
        },
        Scenario {
            kind: warm_pool::RECYCLE_DATABASE,
            label: "database",
            prepare: stale_database_member,
            trigger: recycle_database,
            check: whole_or_absent,
        },
        Scenario {
            // A claim is one transaction, as in the other modes (docs/warm_pool.md).
            kind: create::CREATE,
            label: "database, from the warm pool",
            prepare: database_member,
            trigger: create_database_claiming,
            check: claimed_or_unclaimed,
        },
        Scenario {
            kind: create::CREATE,
            label: "schema, from the warm pool",
            prepare: member,
            trigger: create_claiming,
            check: claimed_or_unclaimed,
        },
    ]
}

fn key<'a>(_: &'a Env) -> Fut<'a, Value> {
    Box::pin(async { json!({"key": warm_pool::new_key()}) })
}

/// A ready schema-mode member (the pool of this cluster may hold others too).
fn member<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let key = warm_pool::new_key();
        warm_pool::refill_one(&env.rt, Mode::Schema, &key, i64::MAX)
            .await
            .unwrap()
            .expect("a member made");
        json!({"key": key})
    })
}

/// A ready database-mode member.
pub(super) fn database_member<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let key = warm_pool::new_key();
        warm_pool::refill_one(&env.rt, Mode::Database, &key, i64::MAX)
            .await
            .unwrap()
            .expect("a member made");
        json!({"key": key})
    })
}

/// A database-mode member left at a template version that is not the current one.
fn stale_database_member<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let v = database_member(env).await;
        env.pg
            .execute(
                "UPDATE berqenas.warm_pool SET template_version = -1 WHERE key = $1",
                &[&v["key"].as_str().unwrap()],
            )
            .await
            .unwrap();
        v
    })
}

/// A member left at a template version that is not the current one.
fn stale_member<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let v = member(env).await;
        env.pg
            .execute(
                "UPDATE berqenas.warm_pool SET template_version = -1 WHERE key = $1",
                &[&v["key"].as_str().unwrap()],
            )
            .await
            .unwrap();
        v
    })
}

fn key_of(v: &Value) -> String {
    v["key"].as_str().unwrap().to_string()
}

fn refill_schema<'a>(env: &'a Env, v: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        warm_pool::refill_one(&env.rt, Mode::Schema, &key_of(v), i64::MAX)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

fn refill_shared<'a>(env: &'a Env, v: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        warm_pool::refill_one(&env.rt, Mode::Shared, &key_of(v), i64::MAX)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

fn refill_database<'a>(env: &'a Env, v: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        warm_pool::refill_one(&env.rt, Mode::Database, &key_of(v), i64::MAX)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

fn recycle_database<'a>(env: &'a Env, v: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(recycle_in(env, v, Mode::Database))
}

fn create_database_claiming<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(create_in(env, "database"))
}

fn recycle<'a>(env: &'a Env, v: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(recycle_in(env, v, Mode::Schema))
}

fn create_claiming<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(create_in(env, "schema"))
}

/// A create of the case's tenant in `isolation`, which claims a member if one is there.
async fn create_in(env: &Env, isolation: &str) -> Result<(), String> {
    let req = berqenas::tenant::create::CreateTenant {
        name: env.name.clone(),
        isolation: Some(isolation.into()),
        public_api: true,
        ..Default::default()
    };
    create::create(&env.rt, &req, None, "crash-matrix")
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn recycle_in(env: &Env, v: &Value, mode: Mode) -> Result<(), String> {
    warm_pool::recycle_one(&env.rt, mode, Some(&key_of(v)))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The member's pool row, its schema (schema mode) or database (database mode), its
/// six roles and its shared member rows all exist, or none does. Then it is dropped,
/// so it is nobody's.
fn whole_or_absent<'a>(env: &'a Env, v: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let key = key_of(v);
        let stem = format!("tenant_wp__{key}");
        let r = env
            .pg
            .query_one(
                "SELECT (SELECT isolation FROM berqenas.warm_pool WHERE key = $1),
                        (SELECT id::text FROM berqenas.warm_pool WHERE key = $1),
                        EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $2),
                        (SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $2 || '_')),
                        (SELECT count(*) FROM berqenas_shared.members WHERE starts_with(role, $2 || '_')),
                        EXISTS (SELECT 1 FROM pg_database WHERE datname = $2)",
                &[&key, &stem],
            )
            .await
            .map_err(|e| e.to_string())?;
        let (mode, id, schema, roles, rows, database): (
            Option<String>,
            Option<String>,
            bool,
            i64,
            i64,
            bool,
        ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        let expected = match mode.as_deref() {
            None => (false, 0, 0, false),
            Some("schema") => (true, 6, 0, false),
            Some("database") => (false, 6, 0, true),
            Some(_) => (false, 6, 6, false),
        };
        if (schema, roles, rows, database) != expected {
            return Err(format!(
                "warm pool member {key} ({mode:?}) is half made: schema {schema}, {roles} roles, {rows} member rows, database {database}"
            ));
        }
        if let (Some(mode), Some(id)) = (mode, id) {
            let mode = match mode.as_str() {
                "schema" => Mode::Schema,
                "database" => Mode::Database,
                _ => Mode::Shared,
            };
            let slug = Slug::warm_member(&key).unwrap();
            // Its row first: another case's create may be claiming it right now (then
            // the claim's delete holds the row, this one waits and finds it gone: it
            // is that create's, renamed, and not ours to drop).
            env.pg.batch_execute("BEGIN").await.map_err(shown)?;
            let ours = env
                .pg
                .execute("DELETE FROM berqenas.warm_pool WHERE key = $1", &[&key])
                .await
                .map_err(shown)?;
            if ours == 0 {
                env.pg.batch_execute("ROLLBACK").await.map_err(shown)?;
                return Ok(());
            }
            if mode == Mode::Database {
                // DROP DATABASE cannot run in a transaction: the row goes first.
                env.pg.batch_execute("COMMIT").await.map_err(shown)?;
                env.pg
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {}", slug.schema()))
                    .await
                    .map_err(shown)?;
                env.pg.batch_execute("BEGIN").await.map_err(shown)?;
            }
            env.pg
                .batch_execute(&format!(
                    "{}COMMIT;",
                    berqenas::isolation::warm::drop_sql(mode, &slug, &id)
                ))
                .await
                .map_err(shown)?;
        }
        Ok(())
    })
}

/// A database error with PostgreSQL's message (its `Display` says only "db error").
fn shown(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

/// The prepared member is unclaimed and whole, or gone (claimed by this create or
/// another case's); every member of the cluster is whole, none half claimed.
pub(super) fn claimed_or_unclaimed<'a>(env: &'a Env, v: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let (status, t) = env
            .app
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/tenants/{}", env.name),
                None,
            )
            .await;
        if !(status == 404 || (status == 200 && t["status"] == "active")) {
            return Err(format!("after a crashed create: {status} {t}"));
        }
        let half: Vec<String> = env
            .pg
            .query(
                "SELECT key FROM berqenas.warm_pool m WHERE server = 'default' AND isolation IN ('schema', 'database') AND (
                    (isolation = 'schema' AND NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'tenant_wp__' || m.key))
                    OR (isolation = 'database' AND NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'tenant_wp__' || m.key))
                    OR (SELECT count(*) FROM pg_roles WHERE starts_with(rolname, 'tenant_wp__' || m.key || '_')) <> 6)",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !half.is_empty() {
            return Err(format!("half-claimed warm pool members: {half:?}"));
        }
        whole_or_absent(env, v).await
    })
}
