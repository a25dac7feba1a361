//! `tenant.move` (docs/moves.md): a tenant on cmpg2 (the second cluster of
//! `servers.rs`, registered draining, so moves go *from* it) moved to `default`,
//! killed at every step boundary. After the restart: on `default` with every row, or
//! still on cmpg2 with every row and its logins back; nothing of it on the other
//! server, and no publication, slot or subscription of the move on either.

use berqenas::workflows::move_tenant::{self, MoveRequest};
use serde_json::{json, Value};

use super::servers::{admin, cluster, create_in, server};
use super::{Env, Fut, Scenario};
use berqenas::tenant::Isolation;

const ROWS: i64 = 20;

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            kind: move_tenant::MOVE,
            label: "schema cmpg2 -> default",
            prepare: schema_tenant,
            trigger: move_to_default,
            check: on_one_server_with_every_row,
        },
        Scenario {
            kind: move_tenant::MOVE,
            label: "database cmpg2 -> default",
            prepare: database_tenant,
            trigger: move_to_default,
            check: on_one_server_with_every_row,
        },
        // Moves between isolation modes (docs/moves.md): the same steps, the target
        // made in the other mode.
        Scenario {
            kind: move_tenant::MOVE,
            label: "schema cmpg2 -> database default",
            prepare: schema_tenant_to_database,
            trigger: move_to_default,
            check: on_one_server_with_every_row,
        },
        Scenario {
            kind: move_tenant::MOVE,
            label: "database cmpg2 -> schema default",
            prepare: database_tenant_to_schema,
            trigger: move_to_default,
            check: on_one_server_with_every_row,
        },
        // On one server: source and target are two databases of one cluster, and
        // the roles are the same ones (never made nor dropped).
        Scenario {
            kind: move_tenant::MOVE,
            label: "schema default -> database default",
            prepare: schema_tenant_on_default,
            trigger: into_database_mode,
            check: in_one_mode_with_every_row,
        },
    ]
}

/// A tenant on cmpg2 with `ROWS` rows in its `applications`.
fn tenant_on_pg2<'a>(env: &'a Env, isolation: Isolation) -> Fut<'a, Value> {
    Box::pin(async move {
        server(env).await;
        create_in(env, isolation).await.expect("a tenant on cmpg2");
        let (c, _) = cluster().await;
        let (db, schema) = where_on(env, isolation, "postgres");
        admin(c, &db)
            .await
            .batch_execute(&format!(
                "INSERT INTO \"{schema}\".applications (name, team, created_by)
                 SELECT 'r' || i, 't', 'cm' FROM generate_series(1, {ROWS}) i"
            ))
            .await
            .unwrap();
        json!({"isolation": isolation.as_str()})
    })
}

fn where_on(env: &Env, isolation: Isolation, server_db: &str) -> (String, String) {
    let schema = format!("tenant_{}", env.name.replace('-', "_"));
    let db = if isolation == Isolation::Database {
        schema.clone()
    } else {
        server_db.to_string()
    };
    (db, schema)
}

fn schema_tenant<'a>(env: &'a Env) -> Fut<'a, Value> {
    tenant_on_pg2(env, Isolation::Schema)
}

fn database_tenant<'a>(env: &'a Env) -> Fut<'a, Value> {
    tenant_on_pg2(env, Isolation::Database)
}

fn schema_tenant_to_database<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let mut v = tenant_on_pg2(env, Isolation::Schema).await;
        v["to_isolation"] = json!("database");
        v
    })
}

fn database_tenant_to_schema<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let mut v = tenant_on_pg2(env, Isolation::Database).await;
        v["to_isolation"] = json!("schema");
        v
    })
}

fn move_to_default<'a>(env: &'a Env, state: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(move_with_no_grace(env, Some("default"), state))
}

/// The move the scenario's state asks for (`to_isolation`), to `to_server`, the
/// source dropped at once.
pub(super) async fn move_with_no_grace(
    env: &Env,
    to_server: Option<&str>,
    state: &Value,
) -> Result<(), String> {
    let req = MoveRequest {
        to_server: to_server.map(String::from),
        to_isolation: state["to_isolation"].as_str().map(String::from),
        grace: Some("0".into()),
    };
    move_tenant::run(&env.rt, &env.name, req, "crash-matrix")
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

pub(super) async fn count(c: &tokio_postgres::Client, sql: &str, arg: &str) -> Result<i64, String> {
    c.query_one(sql, &[&arg])
        .await
        .map(|r| r.get::<_, i64>(0))
        .map_err(|e| e.to_string())
}

/// Roles, schemas, databases of the tenant on a server, and the objects of the
/// case's moves (`links`: their names; other cases run at the same time).
async fn traces(
    c: &tokio_postgres::Client,
    stem: &str,
    links: &[String],
) -> Result<(i64, i64, i64, i64), String> {
    let like = format!("{}%", stem.replace('_', "\\_"));
    Ok((
        count(
            c,
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE $1",
            &like,
        )
        .await?,
        count(
            c,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1",
            &like,
        )
        .await?,
        count(
            c,
            "SELECT count(*) FROM pg_database WHERE datname LIKE $1",
            &like,
        )
        .await?,
        c.query_one(
            "SELECT (SELECT count(*) FROM pg_publication WHERE pubname = ANY($1))
                  + (SELECT count(*) FROM pg_replication_slots WHERE slot_name = ANY($1))
                  + (SELECT count(*) FROM pg_subscription WHERE subname = ANY($1))",
            &[&links],
        )
        .await
        .map(|r| r.get::<_, i64>(0))
        .map_err(|e| e.to_string())?,
    ))
}

fn on_one_server_with_every_row<'a>(env: &'a Env, state: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let from = state["isolation"].as_str().unwrap();
        let to = state["to_isolation"].as_str().unwrap_or(from);
        let (c, _) = cluster().await;
        let stem = format!("tenant_{}", env.name.replace('-', "_"));
        let row = env
            .pg
            .query_one(
                "SELECT server, isolation FROM berqenas.tenants WHERE name = $1",
                &[&env.name],
            )
            .await
            .map_err(|e| e.to_string())?;
        let (server, mode): (String, String) = (row.get(0), row.get(1));
        // A mode move changes the mode with the server, in one transaction.
        let expected = if server == "default" { to } else { from };
        if mode != expected {
            return Err(format!(
                "on {server} in {mode} mode: the move changed the server or the mode alone"
            ));
        }
        let isolation = Isolation::parse(&mode).unwrap();
        let links: Vec<String> = env
            .pg
            .query(
                "SELECT 'bq_move_' || replace(id::text, '-', '') FROM berqenas.operations
                  WHERE kind = 'tenant.move' AND tenant_name = $1",
                &[&env.name],
            )
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let pg2 = admin(c, "postgres").await;
        let pg2_traces = traces(&pg2, &stem, &links).await?;
        let default_traces = traces(&env.pg, &stem, &links).await?;
        let control_db: String = env
            .pg
            .query_one("SELECT current_database()::text", &[])
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        let (here, gone, db) = match server.as_str() {
            "default" => {
                let (db, schema) = where_on(env, isolation, &control_db);
                let c = if db == control_db {
                    super::common::superuser().await
                } else {
                    super::common::superuser_in(&db).await
                };
                (c, pg2_traces, (db, schema))
            }
            _ => {
                let (db, schema) = where_on(env, isolation, "postgres");
                (admin(c, &db).await, default_traces, (db, schema))
            }
        };
        if gone.0 + gone.1 + gone.2 != 0 {
            return Err(format!(
                "on {server}, but the other server keeps {} role(s), {} schema(s), {} database(s)",
                gone.0, gone.1, gone.2
            ));
        }
        if pg2_traces.3 + default_traces.3 != 0 {
            return Err(format!(
                "replication objects left: {} on cmpg2, {} on default",
                pg2_traces.3, default_traces.3
            ));
        }
        let rows = count(
            &here,
            &format!(
                "SELECT count(*) FROM \"{}\".applications WHERE created_by <> $1",
                db.1
            ),
            "",
        )
        .await?;
        if rows != ROWS {
            return Err(format!("on {server} with {rows} of {ROWS} rows ({})", db.0));
        }
        Ok(())
    })
}

/// A schema-mode tenant on `default` with `ROWS` rows in its `applications`.
fn schema_tenant_on_default<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        env.ok(
            reqwest::Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": env.name, "isolation": "schema", "server": "default"})),
        )
        .await;
        let schema = format!("tenant_{}", env.name.replace('-', "_"));
        env.pg
            .batch_execute(&format!(
                "INSERT INTO \"{schema}\".applications (name, team, created_by)
                 SELECT 'r' || i, 't', 'cm' FROM generate_series(1, {ROWS}) i"
            ))
            .await
            .unwrap();
        json!({"isolation": "schema", "to_isolation": "database"})
    })
}

fn into_database_mode<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let req = MoveRequest {
            to_server: None,
            to_isolation: Some("database".into()),
            grace: Some("0".into()),
        };
        move_tenant::run(&env.rt, &env.name, req, "crash-matrix")
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

/// Still in schema mode with every row and no database of its name, or in database
/// mode with every row and no schema left in the control database; its roles (the
/// same ones) there and its login able to log in; no replication objects.
fn in_one_mode_with_every_row<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let stem = format!("tenant_{}", env.name.replace('-', "_"));
        let row = env
            .pg
            .query_one(
                "SELECT server, isolation, database_name FROM berqenas.tenants WHERE name = $1",
                &[&env.name],
            )
            .await
            .map_err(|e| e.to_string())?;
        let (server, mode, db): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let links: Vec<String> = env
            .pg
            .query(
                "SELECT 'bq_move_' || replace(id::text, '-', '') FROM berqenas.operations
                  WHERE kind = 'tenant.move' AND tenant_name = $1",
                &[&env.name],
            )
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let (roles, schemas, databases, links_left) = traces(&env.pg, &stem, &links).await?;
        let expected = match mode.as_str() {
            "schema" => (0, db != stem),
            "database" => (0, db == stem),
            _ => (1, false),
        };
        if server != "default" || expected != (0, true) {
            return Err(format!("registry: {server}, {mode} mode, database {db}"));
        }
        // The control database shows its schema only in schema mode; the cluster its
        // database only in database mode.
        let (want_schemas, want_dbs) = if mode == "schema" { (1, 0) } else { (0, 1) };
        if (schemas, databases) != (want_schemas, want_dbs) {
            return Err(format!(
                "{mode} mode, but {schemas} schema(s) in the control database and {databases} database(s)"
            ));
        }
        if roles != 6 {
            return Err(format!("{roles} of its 6 roles"));
        }
        if links_left != 0 {
            return Err(format!("{links_left} replication object(s) left"));
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
        let here = if mode == "schema" {
            super::common::superuser().await
        } else {
            super::common::superuser_in(&db).await
        };
        let rows = count(
            &here,
            &format!("SELECT count(*) FROM \"{stem}\".applications WHERE created_by <> $1"),
            "",
        )
        .await?;
        if rows != ROWS {
            return Err(format!("{mode} mode with {rows} of {ROWS} rows"));
        }
        Ok(())
    })
}
