//! Backups and restores of a tenant on another server (docs/servers.md,
//! docs/backups.md), killed at every step boundary: a schema-mode tenant on cmpg2 (the
//! second cluster of `servers.rs`), and a shared-mode one in cmpg2's pool, with a row
//! `kept`, backed up, then a row `after`.
//! `backup.restore.placed` must end with the backup's rows or the tenant's own, its
//! login working on cmpg2 (the matrix checks that through its credentials), nothing set
//! aside and no throw-away role or database left on cmpg2. A `backup.take` of it must
//! end with its backup succeeded (and stored) or failed (and not stored).

use berqenas::backup::restore::RestoreRequest;
use berqenas::tenant::{Isolation, Slug};
use berqenas::workflows::{backups, restores, restores_placed};
use reqwest::Method;
use serde_json::{json, Value};

use super::servers::{admin, cluster, create_in, server};
use super::tenants::insert;
use super::{Env, Fut, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            kind: restores_placed::RESTORE_PLACED,
            label: "schema on cmpg2",
            prepare: backed_up,
            trigger: restore_in_place,
            check: restored_or_as_before,
        },
        Scenario {
            kind: backups::TAKE,
            label: "schema on cmpg2",
            prepare: with_row,
            trigger: take,
            check: taken_or_failed,
        },
        Scenario {
            kind: restores_placed::RESTORE_PLACED,
            label: "shared on cmpg2",
            prepare: backed_up_shared,
            trigger: restore_in_place,
            check: restored_or_as_before,
        },
        Scenario {
            kind: backups::TAKE,
            label: "shared on cmpg2",
            prepare: with_row_shared,
            trigger: take,
            check: taken_or_failed,
        },
    ]
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn credentials(env: &Env) -> Value {
    env.ok(
        Method::GET,
        &format!("/api/v1/tenants/{}/credentials", env.name),
        None,
    )
    .await
}

/// A tenant of `isolation` on cmpg2 with one row, `kept`.
async fn with_row_in(env: &Env, isolation: Isolation) {
    server(env).await;
    create_in(env, isolation)
        .await
        .expect("a placed create on cmpg2");
    insert(&credentials(env).await, "kept").await.unwrap();
}

/// ... backed up, then a second row, `after`.
async fn backed_up_in(env: &Env, isolation: Isolation) -> Value {
    with_row_in(env, isolation).await;
    let b = backups::create(&env.rt, &env.name, "crash-matrix")
        .await
        .expect("a backup of the placed tenant");
    insert(&credentials(env).await, "after").await.unwrap();
    json!({"backup": b.id})
}

/// A schema-mode tenant on cmpg2 with one row, `kept`.
fn with_row<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        with_row_in(env, Isolation::Schema).await;
        Value::Null
    })
}

/// A shared-mode tenant in cmpg2's pool with one row, `kept`.
fn with_row_shared<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        with_row_in(env, Isolation::Shared).await;
        Value::Null
    })
}

fn backed_up<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(backed_up_in(env, Isolation::Schema))
}

fn backed_up_shared<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(backed_up_in(env, Isolation::Shared))
}

fn take<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        backups::create(&env.rt, &env.name, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn restore_in_place<'a>(env: &'a Env, state: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let id = state["backup"].as_str().ok_or("no backup")?;
        restores::restore(
            &env.rt,
            &env.name,
            id,
            &RestoreRequest::default(),
            "crash-matrix",
        )
        .await
        .map(drop)
        .map_err(err)
    })
}

/// The tenant's rows, sorted, as its own login sees them (on cmpg2).
async fn rows(env: &Env) -> Result<Vec<String>, String> {
    let c = super::common::connect_as(&credentials(env).await).await;
    let mut rows: Vec<String> = c
        .query("SELECT name FROM applications", &[])
        .await
        .map_err(err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    rows.sort();
    Ok(rows)
}

/// What a restore set aside or made to throw away, still on cmpg2: the tenant's
/// schemas other than its own, and the scratch objects its operations declared there.
async fn left_on_cmpg2(env: &Env) -> Result<Vec<String>, String> {
    let (c, _) = cluster().await;
    let pg2 = admin(c, "postgres").await;
    let schema = Slug::parse(&env.name).map_err(err)?.schema();
    let mut left: Vec<String> = pg2
        .query(
            "SELECT 'schema ' || nspname FROM pg_namespace WHERE starts_with(nspname, $1 || '_')",
            &[&schema.as_str()],
        )
        .await
        .map_err(err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let declared = env
        .pg
        .query(
            "SELECT obj ->> 'kind', obj ->> 'name' FROM berqenas.operations o
               JOIN berqenas.operation_steps s ON s.operation_id = o.id,
                    jsonb_array_elements(coalesce(s.intent -> 'objects', '[]')) obj
              WHERE o.tenant_name = $1 AND (obj ->> 'scratch')::boolean
                AND obj ->> 'kind' LIKE '%@server'",
            &[&env.name],
        )
        .await
        .map_err(err)?;
    for r in declared {
        let (kind, name): (String, String) = (r.get(0), r.get(1));
        let object = name.split_once('/').map(|(_, n)| n).unwrap_or(&name);
        let sql = match kind.as_str() {
            "role@server" => "SELECT 1 FROM pg_roles WHERE rolname = $1",
            "database@server" => "SELECT 1 FROM pg_database WHERE datname = $1",
            _ => "SELECT 1 FROM pg_namespace WHERE nspname = $1",
        };
        if pg2.query_opt(sql, &[&object]).await.map_err(err)?.is_some() {
            left.push(format!("{kind} {object}"));
        }
    }
    Ok(left)
}

/// The backup's rows (restored) or the tenant's own (put back); nothing left over.
fn restored_or_as_before<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let left = left_on_cmpg2(env).await?;
        if !left.is_empty() {
            return Err(format!("left on cmpg2: {left:?}"));
        }
        match rows(env).await? {
            r if r == ["kept"] || r == ["after", "kept"] => Ok(()),
            r => Err(format!("neither restored nor as before: {r:?}")),
        }
    })
}

/// No backup left `running`; one that failed left no object in the store; the rows
/// are the tenant's.
fn taken_or_failed<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let found = env
            .pg
            .query(
                "SELECT id, tenant_id, status FROM berqenas.backups WHERE tenant_name = $1",
                &[&env.name],
            )
            .await
            .map_err(err)?;
        for r in found {
            let (id, tenant, status): (uuid::Uuid, uuid::Uuid, String) =
                (r.get(0), r.get(1), r.get(2));
            let stored = env
                .rt
                .backups
                .open(&berqenas::backup::registry::object_key(tenant, id))
                .await
                .is_ok();
            match (status.as_str(), stored) {
                ("succeeded", true) | ("failed", false) => {}
                other => return Err(format!("backup {id}: {other:?} (status, stored)")),
            }
        }
        match rows(env).await? {
            r if r == ["kept"] => Ok(()),
            r => Err(format!("the rows changed: {r:?}")),
        }
    })
}
