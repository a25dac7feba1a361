//! `tenant.move.shared` (docs/moves.md "Out of and into shared mode"): a tenant with
//! rows in a parent and a child table and a realtime event, moved out of shared mode
//! into schema and database mode on `default`, and back, and the same on cmpg2 (the
//! second cluster of `servers.rs`, with a pool of its own), from cmpg2's pool into
//! `default`'s, killed at every step boundary. After the restart, in whichever mode the registry says (the old or the
//! new): shared, with every row in the pool, its member rows and pool memberships,
//! and no schema or database of its name; schema or database mode, with every row
//! there and nothing of it in the pool (grace 0); its login able to log in.

use super::moves::count;
use super::servers::{admin, cluster, created_in, server, SERVER};
use berqenas::tenant::Isolation;
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
        // The pool of another server: its database, not the control database, holds
        // the rows and takes the copy's transactions.
        Scenario {
            kind: MOVE_SHARED,
            label: "shared cmpg2 -> database cmpg2",
            prepare: shared_to_database_on_pg2,
            trigger: out_of_shared,
            check: in_one_place_with_every_row,
        },
        Scenario {
            kind: MOVE_SHARED,
            label: "schema cmpg2 -> shared cmpg2",
            prepare: schema_to_shared_on_pg2,
            trigger: out_of_shared,
            check: in_one_place_with_every_row,
        },
        // Server and mode in one move (cmpg2 takes no tenants: from it to default).
        Scenario {
            kind: MOVE_SHARED,
            label: "shared cmpg2 -> schema default",
            prepare: shared_on_pg2_to_schema_on_default,
            trigger: out_of_shared,
            check: in_one_place_with_every_row,
        },
        Scenario {
            kind: MOVE_SHARED,
            label: "database cmpg2 -> shared default",
            prepare: database_on_pg2_to_shared_on_default,
            trigger: out_of_shared,
            check: in_one_place_with_every_row,
        },
        // From one server's pool into another's.
        Scenario {
            kind: MOVE_SHARED,
            label: "shared cmpg2 -> shared default",
            prepare: shared_on_pg2_to_shared_on_default,
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
        filled(&t, from, to).await
    })
}

/// A tenant in `from` mode on cmpg2 (registered draining: the move between modes
/// stays there), with rows as it writes them.
fn tenant_on_pg2<'a>(env: &'a Env, from: &'static str, to: &'static str) -> Fut<'a, Value> {
    Box::pin(async move {
        server(env).await;
        let mode = Isolation::parse(from).unwrap();
        let t = created_in(env, mode).await.expect("a tenant on cmpg2");
        let mut v = filled(&t, from, to).await;
        v["server"] = json!(SERVER);
        v
    })
}

fn shared_to_database_on_pg2<'a>(env: &'a Env) -> Fut<'a, Value> {
    tenant_on_pg2(env, "shared", "database")
}

fn schema_to_shared_on_pg2<'a>(env: &'a Env) -> Fut<'a, Value> {
    tenant_on_pg2(env, "schema", "shared")
}

fn shared_on_pg2_to_schema_on_default<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let mut v = tenant_on_pg2(env, "shared", "schema").await;
        v["to_server"] = json!("default");
        v
    })
}

fn shared_on_pg2_to_shared_on_default<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let mut v = tenant_on_pg2(env, "shared", "shared").await;
        v["to_server"] = json!("default");
        v
    })
}

fn database_on_pg2_to_shared_on_default<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let mut v = tenant_on_pg2(env, "database", "shared").await;
        v["to_server"] = json!("default");
        v
    })
}

/// `t`'s rows, written as `t`; the case's state.
async fn filled(t: &Value, from: &str, to: &str) -> Value {
    {
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
        json!({"from": from, "to_isolation": to, "id": t["id"], "server": "default"})
    }
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
    Box::pin(super::moves::move_with_no_grace(
        env,
        state["to_server"].as_str(),
        state,
    ))
}

/// Rows of the tenant in the pool's applications, deployments and realtime_events,
/// and its member rows, on the server `home` is a session of.
async fn in_pool(home: &tokio_postgres::Client, id: &str) -> Result<(i64, i64), String> {
    // cmpg2's pool is built by its first shared-mode tenant (or move into it).
    let pool = count(
        home,
        "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
        "berqenas_shared",
    )
    .await?;
    if pool == 0 {
        return Ok((0, 0));
    }
    let rows = count(
        home,
        "SELECT (SELECT count(*) FROM berqenas_shared.applications WHERE tenant_id = $1::text::uuid)
              + (SELECT count(*) FROM berqenas_shared.deployments WHERE tenant_id = $1::text::uuid)
              + (SELECT count(*) FROM berqenas_shared.realtime_events WHERE tenant_id = $1::text::uuid)",
        id,
    )
    .await?;
    let members = count(
        home,
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
        let at: String = env
            .pg
            .query_one(
                "SELECT server FROM berqenas.tenants WHERE name = $1",
                &[&env.name],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        // The tenant's server, as the registry has it: the control database's
        // cluster, or cmpg2 (its pool and schemas in its database `postgres`).
        let on_pg2 = at == SERVER;
        let across = state["to_server"].is_string();
        let pg2 = match on_pg2 || across {
            true => Some(admin(&cluster().await.0, "postgres").await),
            false => None,
        };
        let home = match (&pg2, on_pg2) {
            (Some(c), true) => c,
            _ => &env.pg,
        };
        // A move that changed server leaves nothing of the tenant on the other one,
        // whichever way it ended.
        if across {
            let other = match (&pg2, on_pg2) {
                (Some(c), false) => c,
                _ => &env.pg,
            };
            let left = (
                count(
                    other,
                    "SELECT count(*) FROM pg_roles WHERE rolname LIKE $1 || '%'",
                    &stem,
                )
                .await?,
                count(
                    other,
                    "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                    &stem,
                )
                .await?,
                count(
                    other,
                    "SELECT count(*) FROM pg_database WHERE datname = $1",
                    &stem,
                )
                .await?,
                in_pool(other, id).await?,
            );
            if left != (0, 0, 0, (0, 0)) {
                return Err(format!(
                    "on {at}, but the other server keeps (roles, schemas, databases, (pool rows, member rows)) {left:?}"
                ));
            }
        }
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
            home,
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            &stem,
        )
        .await?;
        let databases = count(
            home,
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &stem,
        )
        .await?;
        let pool_members = count(
            home,
            "SELECT count(*) FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid
               JOIN pg_roles m ON m.oid = a.member
              WHERE g.rolname LIKE 'berqenas\\_shared\\_%' AND m.rolname LIKE $1 || '%'",
            &stem,
        )
        .await?;
        let (pooled, members) = in_pool(home, id).await?;
        let expected = 2 * ROWS + 1;
        let (from_server, to_server) = (
            state["server"].as_str().unwrap(),
            state["to_server"]
                .as_str()
                .unwrap_or(state["server"].as_str().unwrap()),
        );
        if (at.as_str(), mode.as_str()) != (from_server, state["from"].as_str().unwrap())
            && (at.as_str(), mode.as_str()) != (to_server, state["to_isolation"].as_str().unwrap())
        {
            return Err(format!("registry: {mode} mode on {at}"));
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
                    "{mode} mode, but {schemas} schema(s) in the server's database and {databases} database(s)"
                ));
            }
            if (pooled, members, pool_members) != (0, 0, 0) {
                return Err(format!(
                    "{mode} mode, but the pool keeps {pooled} row(s), {members} member row(s), {pool_members} membership(s)"
                ));
            }
            let here = match (on_pg2, mode.as_str()) {
                (true, "schema") => admin(&cluster().await.0, "postgres").await,
                (true, _) => admin(&cluster().await.0, &db).await,
                (false, "schema") => super::common::superuser().await,
                (false, _) => super::common::superuser_in(&db).await,
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
        let login: bool = home
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
