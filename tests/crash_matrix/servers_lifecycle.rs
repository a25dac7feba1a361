//! The lifecycle kinds of a tenant on another server (`workflows::on_server`,
//! docs/servers.md), killed at every step boundary: the tenant is placed on cmpg2 (the
//! second cluster of `servers.rs`), brought to the state the kind starts from, and
//! after the restart its status and its login role on cmpg2 must agree: the change
//! done on both sides, or on neither.

use berqenas::tenant::suspension::SuspendTenant;
use berqenas::tenant::{Isolation, Slug};
use berqenas::workflows::{self as wf, on_server, rebuild_placed};
use reqwest::Method;
use serde_json::Value;

use super::servers::{admin, cluster, create_in, server};
use super::{Env, Fut, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            kind: on_server::SUSPEND,
            label: "schema on cmpg2",
            prepare: active,
            trigger: suspend,
            check: suspended_or_not,
        },
        Scenario {
            kind: on_server::RESUME,
            label: "schema on cmpg2",
            prepare: suspended,
            trigger: resume,
            check: suspended_or_not,
        },
        Scenario {
            kind: on_server::DELETE,
            label: "schema on cmpg2",
            prepare: active,
            trigger: delete,
            check: deleted_or_not,
        },
        Scenario {
            kind: on_server::RESTORE,
            label: "schema on cmpg2",
            prepare: deleted,
            trigger: restore,
            check: deleted_or_not,
        },
        Scenario {
            kind: on_server::PURGE,
            label: "database on cmpg2",
            prepare: deleted_database,
            trigger: purge,
            check: purged,
        },
        Scenario {
            kind: rebuild_placed::REBUILD_PLACED,
            label: "database on cmpg2",
            prepare: purged_database,
            trigger: restore,
            check: rebuilt_or_purged,
        },
        Scenario {
            kind: on_server::PURGE,
            label: "shared on cmpg2",
            prepare: deleted_shared,
            trigger: purge,
            check: purged,
        },
        Scenario {
            kind: rebuild_placed::REBUILD_PLACED,
            label: "shared on cmpg2",
            prepare: purged_shared,
            trigger: restore,
            check: rebuilt_or_purged,
        },
    ]
}

fn deleted_shared<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(deleted_in(env, Isolation::Shared))
}

fn purged_shared<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(purged_in(env, Isolation::Shared))
}

/// A tenant of `isolation` on cmpg2, deleted.
async fn deleted_in(env: &Env, isolation: Isolation) -> Value {
    placed(env, isolation).await;
    delete_now(env).await.expect("deleting the placed tenant");
    Value::Null
}

/// ... and purged.
async fn purged_in(env: &Env, isolation: Isolation) -> Value {
    deleted_in(env, isolation).await;
    let t = berqenas::tenant::service::get(&env.rt, &env.name)
        .await
        .expect("the deleted tenant");
    wf::offboarding::purge(&env.rt, &t, "crash-matrix")
        .await
        .expect("purging the placed tenant");
    Value::Null
}

/// How many member rows the tenant's roles have in cmpg2's shared pool (0 without one).
async fn pool_members(env: &Env) -> Result<i64, String> {
    let (c, _) = cluster().await;
    let pg2 = admin(c, "postgres").await;
    let pooled = pg2
        .query_opt(
            "SELECT 1 FROM pg_namespace WHERE nspname = 'berqenas_shared'",
            &[],
        )
        .await
        .map_err(err)?
        .is_some();
    if !pooled {
        return Ok(0);
    }
    let like = format!(
        "{}%",
        Slug::parse(&env.name)
            .map_err(err)?
            .schema()
            .as_str()
            .replace('_', "\\_")
    );
    Ok(pg2
        .query_one(
            "SELECT count(*) FROM berqenas_shared.members WHERE role LIKE $1",
            &[&like],
        )
        .await
        .map_err(err)?
        .get(0))
}

fn purged_database<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(purged_in(env, Isolation::Database))
}

/// Active and able to log in on cmpg2 with its database there, or still purged with
/// nothing of it there (the rebuild undone).
fn rebuilt_or_purged<'a>(env: &'a Env, v: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        match state(env).await? {
            (s, Some(true)) if s == "active" && pool_members(env).await? > 0 => {
                match pool_members(env).await? {
                    6 => Ok(()),
                    n => Err(format!("active, with {n} member rows in cmpg2's pool")),
                }
            }
            (s, Some(true)) if s == "active" => {
                let (c, _) = cluster().await;
                let db = Slug::parse(&env.name).map_err(err)?.schema();
                let there: i64 = admin(c, "postgres")
                    .await
                    .query_one(
                        "SELECT count(*) FROM pg_database WHERE datname = $1",
                        &[&db.as_str()],
                    )
                    .await
                    .map_err(err)?
                    .get(0);
                match there {
                    1 => Ok(()),
                    _ => Err("active, but its database is not on cmpg2".into()),
                }
            }
            (s, None) if s == "purged" => purged(env, v).await,
            other => Err(format!("status and login on cmpg2 disagree: {other:?}")),
        }
    })
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn placed(env: &Env, isolation: Isolation) {
    server(env).await;
    create_in(env, isolation)
        .await
        .expect("a placed create on cmpg2");
}

fn active<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        placed(env, Isolation::Schema).await;
        Value::Null
    })
}

fn suspended<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        placed(env, Isolation::Schema).await;
        wf::lifecycle::suspend(
            &env.rt,
            &env.name,
            &SuspendTenant::default(),
            "crash-matrix",
        )
        .await
        .expect("suspending the placed tenant");
        Value::Null
    })
}

async fn delete_now(env: &Env) -> Result<(), String> {
    let opts = berqenas::tenant::offboarding::DeleteOptions {
        retention_field: "retention_days",
        ..Default::default()
    };
    wf::offboarding::delete(&env.rt, &env.name, &opts, "crash-matrix")
        .await
        .map(drop)
        .map_err(err)
}

fn deleted<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(deleted_in(env, Isolation::Schema))
}

fn deleted_database<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(deleted_in(env, Isolation::Database))
}

fn suspend<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        wf::lifecycle::suspend(
            &env.rt,
            &env.name,
            &SuspendTenant::default(),
            "crash-matrix",
        )
        .await
        .map(drop)
        .map_err(err)
    })
}

fn resume<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        wf::lifecycle::resume(&env.rt, &env.name, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn delete<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(delete_now(env))
}

fn restore<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        wf::offboarding::restore(&env.rt, &env.name, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn purge<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let t = berqenas::tenant::service::get(&env.rt, &env.name)
            .await
            .map_err(err)?;
        wf::offboarding::purge(&env.rt, &t, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

/// The tenant's status (from the API) and whether its login role on cmpg2 may log in
/// (`None`: the role is not there).
async fn state(env: &Env) -> Result<(String, Option<bool>), String> {
    let (status, v) = env
        .app
        .call(Method::GET, &format!("/api/v1/tenants/{}", env.name), None)
        .await;
    if !status.is_success() {
        return Err(format!("the tenant: {status} {v}"));
    }
    let login = Slug::parse(&env.name).map_err(err)?.login_role();
    let (c, _) = cluster().await;
    let can = admin(c, "postgres")
        .await
        .query_opt(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&login.as_str()],
        )
        .await
        .map_err(err)?
        .map(|r| r.get::<_, bool>(0));
    Ok((v["status"].as_str().unwrap_or_default().to_string(), can))
}

/// Active and able to log in on cmpg2, or suspended and not.
fn suspended_or_not<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        match state(env).await? {
            (s, Some(true)) if s == "active" => Ok(()),
            (s, Some(false)) if s == "suspended" => Ok(()),
            other => Err(format!("status and login on cmpg2 disagree: {other:?}")),
        }
    })
}

/// Active and able to log in on cmpg2, or deleted (with its archive) and not.
fn deleted_or_not<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        match state(env).await? {
            (s, Some(true)) if s == "active" => Ok(()),
            (s, Some(false)) if s == "deleted" => {
                let (_, v) = env
                    .app
                    .call(
                        Method::GET,
                        &format!("/api/v1/tenants/{}/backups", env.name),
                        None,
                    )
                    .await;
                if v.to_string().contains("succeeded") {
                    Ok(())
                } else {
                    Err(format!("deleted without a final backup: {v}"))
                }
            }
            other => Err(format!("status and login on cmpg2 disagree: {other:?}")),
        }
    })
}

/// Purged (a purge goes forward once the tenant is owned), or still deleted if it did
/// not get that far; purged means nothing of it left on cmpg2.
fn purged<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        match state(env).await? {
            (s, None) if s == "purged" => {
                let (c, _) = cluster().await;
                let db = Slug::parse(&env.name).map_err(err)?.schema();
                let left: i64 = admin(c, "postgres")
                    .await
                    .query_one(
                        "SELECT count(*) FROM pg_database WHERE datname = $1",
                        &[&db.as_str()],
                    )
                    .await
                    .map_err(err)?
                    .get(0);
                match (left, pool_members(env).await?) {
                    (0, 0) => Ok(()),
                    (0, n) => Err(format!(
                        "purged, but {n} member rows are left in cmpg2's pool"
                    )),
                    _ => Err("purged, but its database is left on cmpg2".into()),
                }
            }
            (s, Some(false)) if s == "deleted" => Ok(()),
            other => Err(format!("after a purge: {other:?}")),
        }
    })
}
