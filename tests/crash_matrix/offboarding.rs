//! Scenarios of delete, purge, restore (of a deleted tenant), rebuild (of a purged one
//! from its archive) and the release of a purged tenant's name.

use berqenas::workflows::offboarding as wf;
use reqwest::Method;
use serde_json::{json, Value};

use super::tenants::{check_status, make};
use super::{Env, Fut, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    let mut out = Vec::new();
    for (label, prepare) in [
        (
            "schema",
            with_row_schema as for<'a> fn(&'a Env) -> Fut<'a, Value>,
        ),
        ("database", with_row_database),
        ("shared", with_row_shared),
    ] {
        out.push(Scenario {
            kind: wf::DELETE,
            label,
            prepare,
            trigger: delete,
            check: deleted_or_back,
        });
    }
    for (label, prepare) in [
        (
            "database",
            deleted_database as for<'a> fn(&'a Env) -> Fut<'a, Value>,
        ),
        ("shared", deleted_shared),
    ] {
        out.push(Scenario {
            kind: wf::PURGE,
            label,
            prepare,
            trigger: purge,
            check: |env, _| check_status(env, &["deleted", "purged"]),
        });
    }
    for (label, prepare) in [
        (
            "schema",
            purged_schema as for<'a> fn(&'a Env) -> Fut<'a, Value>,
        ),
        ("database", purged_database),
    ] {
        out.push(Scenario {
            kind: wf::REBUILD,
            label,
            prepare,
            trigger: restore,
            check: rebuilt_or_purged,
        });
    }
    out.push(Scenario {
        kind: wf::RESTORE,
        label: "schema",
        prepare: deleted_schema,
        trigger: restore,
        check: deleted_or_back,
    });
    out.push(Scenario {
        kind: wf::RELEASE_NAME,
        label: "schema",
        prepare: released,
        trigger: release,
        check: released_or_purged,
    });
    out
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A tenant with one application row of its own; returns the create's answer.
async fn with_row(env: &Env, isolation: &str) -> Value {
    let created = make(env, isolation, json!({})).await;
    let c = super::common::connect_as(&created["credentials"]).await;
    c.execute(
        "INSERT INTO applications (name, team, created_by) VALUES ('kept', 'a', 'me')",
        &[],
    )
    .await
    .unwrap();
    created
}

fn with_row_schema<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(with_row(env, "schema"))
}

fn with_row_database<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(with_row(env, "database"))
}

fn with_row_shared<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(with_row(env, "shared"))
}

async fn deleted(env: &Env, isolation: &str) -> Value {
    let created = with_row(env, isolation).await;
    env.ok(
        Method::DELETE,
        &format!("/api/v1/tenants/{}", env.name),
        None,
    )
    .await;
    created
}

fn deleted_schema<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(deleted(env, "schema"))
}

fn deleted_database<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(deleted(env, "database"))
}

fn deleted_shared<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(deleted(env, "shared"))
}

async fn purged(env: &Env, isolation: &str) -> Value {
    let created = with_row(env, isolation).await;
    env.ok(
        Method::DELETE,
        &format!("/api/v1/tenants/{}?purge=now", env.name),
        Some(json!({"confirm": env.name})),
    )
    .await;
    created
}

fn purged_schema<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(purged(env, "schema"))
}

fn purged_database<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(purged(env, "database"))
}

/// Purged, and its archive expired: its name is due for release.
fn released<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let created = purged(env, "schema").await;
        env.pg
            .execute(
                "UPDATE berqenas.backups SET status = 'expired' WHERE tenant_name = $1",
                &[&env.name],
            )
            .await
            .unwrap();
        created
    })
}

fn delete<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let opts = berqenas::tenant::offboarding::DeleteOptions {
            retention_field: "retention_days",
            ..Default::default()
        };
        wf::delete(&env.rt, &env.name, &opts, "crash-matrix")
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
        wf::purge(&env.rt, &t, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn restore<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        wf::restore(&env.rt, &env.name, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn release<'a>(env: &'a Env, created: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let id = created["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or("no tenant id")?;
        wf::release_name(&env.rt, id).await.map_err(err)
    })
}

/// The tenant's rows, as the tenant sees them (None: it cannot log in).
async fn rows(env: &Env) -> Option<Vec<String>> {
    let (status, creds) = env
        .app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{}/credentials", env.name),
            None,
        )
        .await;
    if !status.is_success() {
        return None;
    }
    let (c, conn) = tokio_postgres::connect(creds["dsn"].as_str()?, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(conn);
    let rows = c.query("SELECT name FROM applications", &[]).await.ok()?;
    Some(rows.iter().map(|r| r.get(0)).collect())
}

/// Deleted (its archive succeeded), or back as it was with its row; no backup of it
/// left `running`.
fn deleted_or_back<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let running: i64 = env
            .pg
            .query_one(
                "SELECT count(*) FROM berqenas.backups WHERE tenant_name = $1 AND status = 'running'",
                &[&env.name],
            )
            .await
            .unwrap()
            .get(0);
        if running > 0 {
            return Err(format!("{running} backups left running"));
        }
        let t = env
            .ok(Method::GET, &format!("/api/v1/tenants/{}", env.name), None)
            .await;
        match t["status"].as_str() {
            Some("deleted") => {
                let archive = t["final_backup_id"].as_str().ok_or("no final_backup_id")?;
                let b = env
                    .ok(Method::GET, &format!("/api/v1/backups/{archive}"), None)
                    .await;
                if b["status"] != "succeeded" {
                    return Err(format!("the archive is {}", b["status"]));
                }
                Ok(())
            }
            Some("active") => match rows(env).await {
                Some(r) if r == ["kept"] => Ok(()),
                other => Err(format!("back, but its rows are {other:?}")),
            },
            other => Err(format!("status {other:?}")),
        }
    })
}

/// Rebuilt with its row, or still purged with nothing of it in PostgreSQL (the matrix
/// checks that part).
fn rebuilt_or_purged<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let t = env
            .ok(Method::GET, &format!("/api/v1/tenants/{}", env.name), None)
            .await;
        match t["status"].as_str() {
            Some("purged") => Ok(()),
            Some("active") => match rows(env).await {
                Some(r) if r == ["kept"] => Ok(()),
                other => Err(format!("rebuilt, but its rows are {other:?}")),
            },
            other => Err(format!("status {other:?}")),
        }
    })
}

fn released_or_purged<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let (status, t) = env
            .app
            .call(Method::GET, &format!("/api/v1/tenants/{}", env.name), None)
            .await;
        match (status.as_u16(), t["status"].as_str()) {
            (404, _) | (200, Some("purged")) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
}
