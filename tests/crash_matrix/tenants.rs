//! Scenarios of creation, the lifecycle changes and the one-transaction changes.

use berqenas::workflows::{changes, create, lifecycle};
use reqwest::Method;
use serde_json::{json, Value};

use super::{Env, Fut, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            kind: create::CREATE,
            label: "schema",
            prepare: nothing,
            trigger: create_schema,
            check: created_or_absent,
        },
        Scenario {
            kind: create::CREATE,
            label: "shared",
            prepare: nothing,
            trigger: create_shared,
            check: created_or_absent,
        },
        Scenario {
            kind: create::CREATE_DATABASE,
            label: "database",
            prepare: nothing,
            trigger: create_database,
            check: created_or_absent,
        },
        Scenario {
            kind: lifecycle::SUSPEND,
            label: "schema",
            prepare: tenant,
            trigger: suspend,
            check: status_in(&["suspended", "active"]),
        },
        Scenario {
            kind: lifecycle::RESUME,
            label: "schema",
            prepare: suspended,
            trigger: resume,
            check: status_in(&["active", "suspended"]),
        },
        Scenario {
            kind: lifecycle::ACTIVATE,
            label: "schema",
            prepare: trial,
            trigger: activate,
            check: status_in(&["active", "trial"]),
        },
        Scenario {
            kind: lifecycle::TRIAL_END,
            label: "database",
            prepare: trial_due,
            trigger: end_trial,
            check: status_in(&["suspended", "trial"]),
        },
        Scenario {
            kind: changes::UPDATE,
            label: "schema",
            prepare: tenant,
            trigger: update,
            check: status_in(&["active"]),
        },
        Scenario {
            kind: changes::QUOTAS,
            label: "schema",
            prepare: tenant,
            trigger: quotas,
            check: status_in(&["active"]),
        },
        Scenario {
            kind: changes::USER_ADD,
            label: "shared",
            prepare: shared_tenant,
            trigger: add_user,
            check: status_in(&["active"]),
        },
        Scenario {
            kind: changes::USER_REMOVE,
            label: "schema",
            prepare: with_user,
            trigger: remove_user,
            check: status_in(&["active"]),
        },
        Scenario {
            kind: changes::KEY_CREATE,
            label: "schema",
            prepare: tenant,
            trigger: create_key,
            check: key_works,
        },
        Scenario {
            kind: changes::KEY_REVOKE,
            label: "schema",
            prepare: tenant,
            trigger: revoke_key,
            check: status_in(&["active"]),
        },
        Scenario {
            kind: changes::KEY_ROTATE,
            label: "schema",
            prepare: tenant,
            trigger: rotate_key,
            check: status_in(&["active"]),
        },
        Scenario {
            kind: changes::CREDENTIALS_ROTATE,
            label: "database",
            prepare: database_tenant,
            trigger: rotate_credentials,
            check: status_in(&["active"]),
        },
    ]
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn nothing<'a>(_: &'a Env) -> Fut<'a, Value> {
    Box::pin(async { Value::Null })
}

/// A tenant of the case's name in `isolation`; returns the create's answer.
/// One row, `name`, into the tenant's `applications`, through its own login.
pub async fn insert(creds: &Value, name: &str) -> Result<u64, tokio_postgres::Error> {
    super::common::connect_as(creds)
        .await
        .execute(
            "INSERT INTO applications (name, team, created_by) VALUES ($1, 'a', 'me')",
            &[&name],
        )
        .await
}

pub async fn make(env: &Env, isolation: &str, extra: Value) -> Value {
    let mut body = json!({"name": env.name, "isolation": isolation, "public_api": true});
    if let (Some(b), Some(x)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(x.clone());
    }
    env.ok(Method::POST, "/api/v1/tenants", Some(body)).await
}

pub fn tenant<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(make(env, "schema", json!({})))
}

fn shared_tenant<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(make(env, "shared", json!({})))
}

fn database_tenant<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(make(env, "database", json!({})))
}

fn suspended<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let v = make(env, "schema", json!({})).await;
        env.ok(
            Method::POST,
            &format!("/api/v1/tenants/{}/suspend", env.name),
            Some(json!({})),
        )
        .await;
        v
    })
}

fn trial<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(make(env, "schema", json!({"trial_days": 7})))
}

fn trial_due<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let v = make(env, "database", json!({"trial_days": 7})).await;
        env.pg
            .execute(
                "UPDATE berqenas.tenants SET trial_ends_at = now() - interval '1 minute' WHERE name = $1",
                &[&env.name],
            )
            .await
            .unwrap();
        v
    })
}

fn with_user<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let v = make(env, "schema", json!({})).await;
        env.ok(
            Method::POST,
            &format!("/api/v1/tenants/{}/users", env.name),
            Some(json!({"email": "dev@example.com", "role": "developer"})),
        )
        .await;
        v
    })
}

fn create_in<'a>(env: &'a Env, isolation: &'a str) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let req = serde_json::from_value(
            json!({"name": env.name, "isolation": isolation, "public_api": true}),
        )
        .map_err(err)?;
        create::create(&env.rt, &req, None, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn create_schema<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    create_in(env, "schema")
}

fn create_shared<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    create_in(env, "shared")
}

fn create_database<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    create_in(env, "database")
}

/// A created tenant is whole and usable (the matrix logs in with it); or there is none.
fn created_or_absent<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let (status, v) = env
            .app
            .call(Method::GET, &format!("/api/v1/tenants/{}", env.name), None)
            .await;
        match status.as_u16() {
            404 => Ok(()),
            200 if v["status"] == "active" => Ok(()),
            _ => Err(format!("after a crashed create: {status} {v}")),
        }
    })
}

/// The tenant's status is one of `allowed` (which one depends on where it was killed).
fn status_in(
    allowed: &'static [&'static str],
) -> for<'a> fn(&'a Env, &'a Value) -> Fut<'a, Result<(), String>> {
    // A closure cannot capture into a fn pointer: one fn per set the scenarios use.
    match allowed {
        ["suspended", "active"] => |env, _| check_status(env, &["suspended", "active"]),
        ["active", "suspended"] => |env, _| check_status(env, &["active", "suspended"]),
        ["active", "trial"] => |env, _| check_status(env, &["active", "trial"]),
        ["suspended", "trial"] => |env, _| check_status(env, &["suspended", "trial"]),
        ["active"] => |env, _| check_status(env, &["active"]),
        _ => panic!("add a status set to status_in: {allowed:?}"),
    }
}

pub fn check_status<'a>(
    env: &'a Env,
    allowed: &'static [&'static str],
) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let (status, v) = env
            .app
            .call(Method::GET, &format!("/api/v1/tenants/{}", env.name), None)
            .await;
        let now = v["status"].as_str().unwrap_or_default();
        if status.is_success() && allowed.contains(&now) {
            Ok(())
        } else {
            Err(format!(
                "status {status} {now:?}, expected one of {allowed:?}"
            ))
        }
    })
}

fn suspend<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let req = serde_json::from_value(json!({"reason": "crash matrix"})).map_err(err)?;
        lifecycle::suspend(&env.rt, &env.name, &req, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn resume<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        lifecycle::resume(&env.rt, &env.name, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn activate<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        lifecycle::activate(&env.rt, &env.name, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn end_trial<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let t = berqenas::tenant::service::get(&env.rt, &env.name)
            .await
            .map_err(err)?;
        lifecycle::end_trial(&env.rt, &t)
            .await
            .map(drop)
            .map_err(err)
    })
}

fn update<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let req =
            serde_json::from_value(json!({"metadata": {"tier": "gold"}, "public_api": false}))
                .map_err(err)?;
        changes::update(&env.rt, &env.name, &req, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn quotas<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let req = serde_json::from_value(json!({"max_connections": 7})).map_err(err)?;
        changes::set_quotas(&env.rt, &env.name, &req, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn add_user<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let req = serde_json::from_value(json!({"email": "new@example.com", "role": "auditor"}))
            .map_err(err)?;
        changes::add_user(&env.rt, &env.name, &req, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn remove_user<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        changes::remove_user(&env.rt, &env.name, "dev@example.com", "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn create_key<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let req = serde_json::from_value(json!({"name": "ci"})).map_err(err)?;
        changes::create_key(&env.rt, &env.name, &req, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

/// The key the create handed out still works, whatever became of the new one.
fn key_works<'a>(env: &'a Env, created: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let key = created["api_key"].as_str().unwrap_or_default();
        match env.app.me(key).await.as_u16() {
            200 => Ok(()),
            s => Err(format!("the first API key answers {s}")),
        }
    })
}

fn first_key_id(created: &Value) -> String {
    created["api_key_id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_default()
}

async fn key_id(env: &Env) -> Result<String, String> {
    let list = env
        .ok(
            Method::GET,
            &format!("/api/v1/tenants/{}/api-keys", env.name),
            None,
        )
        .await;
    list["api_keys"][0]["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no API key listed: {list}"))
}

fn revoke_key<'a>(env: &'a Env, created: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let id = match first_key_id(created) {
            id if !id.is_empty() => id,
            _ => key_id(env).await?,
        };
        changes::revoke_key(&env.rt, &env.name, &id, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn rotate_key<'a>(env: &'a Env, created: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let id = match first_key_id(created) {
            id if !id.is_empty() => id,
            _ => key_id(env).await?,
        };
        let req = serde_json::from_value(json!({})).map_err(err)?;
        changes::rotate_key(&env.rt, &env.name, &id, &req, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn rotate_credentials<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        changes::rotate_credentials(&env.rt, &env.name, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}
