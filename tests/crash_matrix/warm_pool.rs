//! Scenarios of the warm pool (docs/warm_pool.md): a refill and a recycle killed at
//! their commit leave their member whole or absent; a create that claims a member,
//! killed at its commit, leaves the member unclaimed or the tenant whole.

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

fn recycle<'a>(env: &'a Env, v: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        warm_pool::recycle_one(&env.rt, Mode::Schema, Some(&key_of(v)))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

fn create_claiming<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let req = berqenas::tenant::create::CreateTenant {
            name: env.name.clone(),
            isolation: Some("schema".into()),
            public_api: true,
            ..Default::default()
        };
        create::create(&env.rt, &req, None, "crash-matrix")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

/// The member's pool row, its schema (schema mode), its six roles and its shared
/// member rows all exist, or none does. Then it is dropped, so it is nobody's.
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
                        (SELECT count(*) FROM berqenas_shared.members WHERE starts_with(role, $2 || '_'))",
                &[&key, &stem],
            )
            .await
            .map_err(|e| e.to_string())?;
        let (mode, id, schema, roles, rows): (Option<String>, Option<String>, bool, i64, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let expected = match mode.as_deref() {
            None => (false, 0, 0),
            Some("schema") => (true, 6, 0),
            Some(_) => (false, 6, 6),
        };
        if (schema, roles, rows) != expected {
            return Err(format!(
                "warm pool member {key} ({mode:?}) is half made: schema {schema}, {roles} roles, {rows} member rows"
            ));
        }
        if let (Some(mode), Some(id)) = (mode, id) {
            let mode = if mode == "schema" {
                Mode::Schema
            } else {
                Mode::Shared
            };
            let slug = Slug::warm_member(&key).unwrap();
            env.pg
                .batch_execute(&format!(
                    "BEGIN;\nDELETE FROM berqenas.warm_pool WHERE key = '{key}';\n{}COMMIT;",
                    berqenas::isolation::warm::drop_sql(mode, &slug, &id)
                ))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// The prepared member is unclaimed and whole, or gone (claimed by this create or
/// another case's); every member of the cluster is whole, none half claimed.
fn claimed_or_unclaimed<'a>(env: &'a Env, v: &'a Value) -> Fut<'a, Result<(), String>> {
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
                "SELECT key FROM berqenas.warm_pool m WHERE isolation = 'schema' AND (
                    NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'tenant_wp__' || m.key)
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
