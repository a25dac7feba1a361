//! Scenarios of backups taken, verified, and restored in place or into a new tenant.

use berqenas::backup::restore::RestoreRequest;
use berqenas::workflows::{backups as wf, restores};
use reqwest::Method;
use serde_json::{json, Value};

use super::tenants::{insert, make};
use super::{Env, Fut, Scenario};

type Prepare = for<'a> fn(&'a Env) -> Fut<'a, Value>;

pub fn scenarios() -> Vec<Scenario> {
    let mut out = Vec::new();
    for (label, prepare) in [
        ("schema", with_row_schema as Prepare),
        ("shared", with_row_shared),
    ] {
        out.push(Scenario {
            kind: wf::TAKE,
            label,
            prepare,
            trigger: take,
            check: taken_or_failed,
        });
    }
    out.push(Scenario {
        kind: wf::VERIFY,
        label: "schema",
        prepare: backed_up_schema,
        trigger: verify,
        check: |env, _| Box::pin(rows_are(env, &env.name, &["after", "kept"])),
    });
    for (label, prepare) in [
        ("schema", backed_up_schema as Prepare),
        ("database", backed_up_database),
        ("shared", backed_up_shared),
    ] {
        out.push(Scenario {
            kind: restores::RESTORE,
            label,
            prepare,
            trigger: restore_in_place,
            check: restored_or_as_before,
        });
    }
    for (label, prepare) in [
        ("schema", backed_up_schema as Prepare),
        ("shared", backed_up_shared),
    ] {
        out.push(Scenario {
            kind: restores::RESTORE_AS,
            label,
            prepare,
            trigger: restore_as_new,
            check: copied_or_nothing,
        });
    }
    out
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A tenant with one row, `kept`.
async fn with_row(env: &Env, isolation: &str) -> Value {
    let created = make(env, isolation, json!({})).await;
    insert(&created["credentials"], "kept").await.unwrap();
    created
}

fn with_row_schema<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(with_row(env, "schema"))
}

fn with_row_shared<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(with_row(env, "shared"))
}

/// A backup of the tenant with `kept`, then a second row, `after`; returns the
/// backup's id.
async fn backed_up(env: &Env, isolation: &str) -> Value {
    let created = with_row(env, isolation).await;
    let b = env
        .ok(
            Method::POST,
            &format!("/api/v1/tenants/{}/backups", env.name),
            None,
        )
        .await;
    insert(&created["credentials"], "after").await.unwrap();
    json!({"backup": b["id"]})
}

fn backed_up_schema<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(backed_up(env, "schema"))
}

fn backed_up_database<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(backed_up(env, "database"))
}

fn backed_up_shared<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(backed_up(env, "shared"))
}

fn take<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        wf::create(&env.rt, &env.name, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn verify<'a>(env: &'a Env, state: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let id = state["backup"].as_str().ok_or("no backup")?;
        wf::verify(&env.rt, None, id, "crash-matrix")
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

fn copy_name(env: &Env) -> String {
    format!("{}n", env.name)
}

fn restore_as_new<'a>(env: &'a Env, state: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let id = state["backup"].as_str().ok_or("no backup")?;
        let req = RestoreRequest {
            as_name: Some(copy_name(env)),
        };
        restores::restore(&env.rt, &env.name, id, &req, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

/// The tenant's rows, sorted, as its own login sees them.
async fn rows_are(env: &Env, name: &str, expected: &[&str]) -> Result<(), String> {
    let creds = env
        .ok(
            Method::GET,
            &format!("/api/v1/tenants/{name}/credentials"),
            None,
        )
        .await;
    let c = super::common::connect_as(&creds).await;
    let mut rows: Vec<String> = c
        .query("SELECT name FROM applications", &[])
        .await
        .map_err(err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    rows.sort();
    if rows == expected {
        Ok(())
    } else {
        Err(format!("{name}: rows {rows:?}, expected {expected:?}"))
    }
}

/// No backup left `running`; one that failed left no object in the store.
fn taken_or_failed<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let rows = env
            .pg
            .query(
                "SELECT id, tenant_id, status FROM berqenas.backups WHERE tenant_name = $1",
                &[&env.name],
            )
            .await
            .map_err(err)?;
        for r in rows {
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
        rows_are(env, &env.name, &["kept"]).await
    })
}

/// Schemas a restore set aside (`<schema>_r…`, `<schema>_d…`) still there.
async fn aside_left(env: &Env) -> Result<(), String> {
    let t = env
        .ok(Method::GET, &format!("/api/v1/tenants/{}", env.name), None)
        .await;
    let Some(schema) = t["schema"].as_str() else {
        return Ok(());
    };
    let database = t["database"].as_str().unwrap_or("berqenas");
    let pg = super::common::superuser_in(database).await;
    let left: Vec<String> = pg
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1 || '_')
                AND nspname ~ '_[rd][0-9a-f]{8}$'",
            &[&schema],
        )
        .await
        .map_err(err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("schemas set aside are left: {left:?}"))
    }
}

/// Active, with the backup's rows (restored) or its own (put back), nothing set aside.
fn restored_or_as_before<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        aside_left(env).await?;
        let restored = rows_are(env, &env.name, &["kept"]).await;
        let before = rows_are(env, &env.name, &["after", "kept"]).await;
        match (restored, before) {
            (Ok(()), _) | (_, Ok(())) => Ok(()),
            (Err(e), _) => Err(format!("neither restored nor as before: {e}")),
        }
    })
}

/// The copy exists with the backup's rows, or does not exist at all; the source is as
/// it was.
fn copied_or_nothing<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        rows_are(env, &env.name, &["after", "kept"]).await?;
        let copy = copy_name(env);
        let (status, _) = env
            .app
            .call(Method::GET, &format!("/api/v1/tenants/{copy}"), None)
            .await;
        match status.as_u16() {
            404 => Ok(()),
            200 => rows_are(env, &copy, &["kept"]).await,
            other => Err(format!("the copy answers {other}")),
        }
    })
}
