//! Scenarios of disk quota enforcement: a tenant over its quota losing its writes, and
//! one under it again getting them back.

use berqenas::workflows::quotas as wf;
use serde_json::{json, Value};

use super::tenants::{insert, make};
use super::{Env, Fut, Scenario};

type Prepare = for<'a> fn(&'a Env) -> Fut<'a, Value>;

pub fn scenarios() -> Vec<Scenario> {
    let mut out = Vec::new();
    for (label, prepare) in [
        ("block schema", over_schema as Prepare),
        ("block database", over_database),
        ("give back database", back_under_database),
        ("give back shared", back_under_shared),
    ] {
        out.push(Scenario {
            kind: wf::DISK,
            label,
            prepare,
            trigger: enforce,
            check: writes_as_recorded,
        });
    }
    out
}

async fn set_quota(env: &Env, bytes: i64) {
    env.pg
        .execute(
            "UPDATE berqenas.tenants SET db_quota_bytes = $2 WHERE name = $1",
            &[&env.name, &bytes],
        )
        .await
        .unwrap();
}

async fn measure(env: &Env, created: &Value) -> uuid::Uuid {
    let id = created["id"].as_str().unwrap().parse().unwrap();
    berqenas::quota::disk::measure_now(&env.rt, id)
        .await
        .unwrap();
    id
}

/// A tenant with a row, its quota now one byte: over it, not blocked yet.
async fn over(env: &Env, isolation: &str) -> Value {
    let created = make(env, isolation, json!({})).await;
    insert(&created["credentials"], "kept").await.unwrap();
    set_quota(env, 1).await;
    measure(env, &created).await;
    created
}

fn over_schema<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(over(env, "schema"))
}

fn over_database<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(over(env, "database"))
}

/// Blocked for being over its quota, then the quota raised again (not enforced yet).
async fn back_under(env: &Env, isolation: &str) -> Value {
    let created = over(env, isolation).await;
    let id = measure(env, &created).await;
    wf::enforce_disk(&env.rt, id).await.unwrap();
    set_quota(env, 1 << 40).await;
    created
}

fn back_under_database<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(back_under(env, "database"))
}

fn back_under_shared<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(back_under(env, "shared"))
}

fn enforce<'a>(env: &'a Env, created: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let id = created["id"].as_str().unwrap().parse().unwrap();
        wf::enforce_disk(&env.rt, id)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

/// The tenant writes exactly when its record says it is not blocked (and reads
/// either way).
fn writes_as_recorded<'a>(env: &'a Env, created: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let blocked: bool = env
            .pg
            .query_one(
                "SELECT writes_blocked FROM berqenas.disk_usage WHERE tenant_id = $1::text::uuid",
                &[&created["id"].as_str().unwrap()],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        let creds = &created["credentials"];
        let c = super::common::connect_as(creds).await;
        c.query("SELECT name FROM applications", &[])
            .await
            .map_err(|e| format!("reads fail: {e}"))?;
        match (blocked, insert(creds, "probe").await) {
            (true, Err(_)) | (false, Ok(_)) => Ok(()),
            (true, Ok(_)) => Err("blocked, yet it writes".into()),
            (false, Err(e)) => Err(format!("not blocked, yet it cannot write: {e}")),
        }
    })
}
