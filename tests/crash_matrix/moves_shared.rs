//! `tenant.move.shared` (docs/moves.md "Out of and into shared mode"): a tenant with
//! rows in a parent and a child table and a realtime event, moved out of shared mode
//! into schema and database mode on `default`, and back, killed at every step
//! boundary. After the restart, in whichever mode the registry says (the old or the
//! new): shared, with every row in the pool, its member rows and pool memberships,
//! and no schema or database of its name; schema or database mode, with every row
//! there and nothing of it in the pool (grace 0); its login able to log in.

use super::moves::count;
use berqenas::workflows::move_shared::MOVE_SHARED;
use serde_json::{json, Value};

use super::{Env, Fut, Scenario};

const ROWS: i64 = 20;

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            kind: MOVE_SHARED,
            label: "shared default -> schema default",
            prepare: shared_to_schema,
            trigger: out_of_shared,
            check: in_one_place_with_every_row,
        },
        Scenario {
            kind: MOVE_SHARED,
            label: "shared default -> database default",
            prepare: shared_to_database,
            trigger: out_of_shared,
            check: in_one_place_with_every_row,
        },
        Scenario {
            kind: MOVE_SHARED,
            label: "schema default -> shared default",
            prepare: schema_to_shared,
            trigger: out_of_shared,
            check: in_one_place_with_every_row,
        },
        Scenario {
            kind: MOVE_SHARED,
            label: "database default -> shared default",
            prepare: database_to_shared,
            trigger: out_of_shared,
            check: in_one_place_with_every_row,
        },
    ]
}

/// A tenant in `from` mode on `default` with rows as it writes them.
fn tenant<'a>(env: &'a Env, from: &'static str, to: &'static str) -> Fut<'a, Value> {
    Box::pin(async move {
        let t = env
            .ok(
                reqwest::Method::POST,
                "/api/v1/tenants",
                Some(json!({"name": env.name, "isolation": from, "server": "default"})),
            )
            .await;
        let c = super::common::connect_as(&t["credentials"]).await;
        c.batch_execute(&format!(
            "INSERT INTO applications (name, team, created_by)
               SELECT 'r' || i, 't', 'cm' FROM generate_series(1, {ROWS}) i;
             INSERT INTO deployments (application_id, version, status, triggered_by)
               SELECT id, 'v1', 'done', 'cm' FROM applications;
             SELECT realtime_publish('cm', '{{}}');"
        ))
        .await
        .unwrap();
        json!({"from": from, "to_isolation": to, "id": t["id"]})
    })
}

fn shared_to_schema<'a>(env: &'a Env) -> Fut<'a, Value> {
    tenant(env, "shared", "schema")
}

fn shared_to_database<'a>(env: &'a Env) -> Fut<'a, Value> {
    tenant(env, "shared", "database")
}

fn schema_to_shared<'a>(env: &'a Env) -> Fut<'a, Value> {
    tenant(env, "schema", "shared")
}

fn database_to_shared<'a>(env: &'a Env) -> Fut<'a, Value> {
    tenant(env, "database", "shared")
}

fn out_of_shared<'a>(env: &'a Env, state: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(super::moves::move_with_no_grace(env, None, state))
}

/// Rows of the tenant in the pool's applications, deployments and realtime_events,
/// and its member rows.
async fn in_pool(env: &Env, id: &str) -> Result<(i64, i64), String> {
    let rows = count(
        &env.pg,
        "SELECT (SELECT count(*) FROM berqenas_shared.applications WHERE tenant_id = $1::text::uuid)
              + (SELECT count(*) FROM berqenas_shared.deployments WHERE tenant_id = $1::text::uuid)
              + (SELECT count(*) FROM berqenas_shared.realtime_events WHERE tenant_id = $1::text::uuid)",
        id,
    )
    .await?;
    let members = count(
        &env.pg,
        "SELECT count(*) FROM berqenas_shared.members WHERE tenant_id = $1::text::uuid",
        id,
    )
    .await?;
    Ok((rows, members))
}

fn in_one_place_with_every_row<'a>(env: &'a Env, state: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let id = state["id"].as_str().unwrap();
        let stem = format!("tenant_{}", env.name.replace('-', "_"));
        let row = env
            .pg
            .query_one(
                "SELECT isolation, database_name, schema_name FROM berqenas.tenants WHERE name = $1",
                &[&env.name],
            )
            .await
            .map_err(|e| e.to_string())?;
        let (mode, db, schema): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let schemas = count(
            &env.pg,
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            &stem,
        )
        .await?;
        let databases = count(
            &env.pg,
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &stem,
        )
        .await?;
        let pool_members = count(
            &env.pg,
            "SELECT count(*) FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid
               JOIN pg_roles m ON m.oid = a.member
              WHERE g.rolname LIKE 'berqenas\\_shared\\_%' AND m.rolname LIKE $1 || '%'",
            &stem,
        )
        .await?;
        let (pooled, members) = in_pool(env, id).await?;
        let expected = 2 * ROWS + 1;
        if mode != state["from"] && mode != state["to_isolation"] {
            return Err(format!("registry: {mode} mode"));
        }
        if mode == "shared" {
            if (schemas, databases) != (0, 0) {
                return Err(format!(
                    "shared, but {schemas} schema(s) and {databases} database(s) of its name"
                ));
            }
            if pooled != expected || members != 6 || pool_members != 5 {
                return Err(format!(
                    "shared with {pooled} of {expected} rows, {members} member rows, {pool_members} pool memberships"
                ));
            }
        } else {
            if schema != stem {
                return Err(format!("registry: {mode} mode, schema {schema}"));
            }
            let want = if mode == "schema" { (1, 0) } else { (0, 1) };
            if (schemas, databases) != want {
                return Err(format!(
                    "{mode} mode, but {schemas} schema(s) in the control database and {databases} database(s)"
                ));
            }
            if (pooled, members, pool_members) != (0, 0, 0) {
                return Err(format!(
                    "{mode} mode, but the pool keeps {pooled} row(s), {members} member row(s), {pool_members} membership(s)"
                ));
            }
            let here = if mode == "schema" {
                super::common::superuser().await
            } else {
                super::common::superuser_in(&db).await
            };
            let rows = count(
                &here,
                &format!(
                    "SELECT (SELECT count(*) FROM \"{stem}\".applications)
                          + (SELECT count(*) FROM \"{stem}\".deployments)
                          + (SELECT count(*) FROM \"{stem}\".realtime_events) WHERE $1 <> ''"
                ),
                "x",
            )
            .await?;
            if rows != expected {
                return Err(format!("{mode} mode with {rows} of {expected} rows"));
            }
        }
        let login: bool = env
            .pg
            .query_one(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1 || '_user'",
                &[&stem],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        if !login {
            return Err("its login cannot log in".into());
        }
        Ok(())
    })
}
