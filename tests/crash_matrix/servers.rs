//! `tenant.create.placed` (docs/servers.md): a create on another server, killed at
//! every step boundary. The server is a second cluster, registered draining so no
//! other case's create is placed there; the case calls the placed create directly.

use std::sync::Mutex;

use berqenas::pg::cluster::{Cluster, ClusterOptions};
use berqenas::tenant::create::Validated;
use berqenas::tenant::{Isolation, Slug};
use berqenas::workflows::create_placed;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use super::{Env, Fut, Scenario};

pub(super) const SERVER: &str = "cmpg2";

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            kind: create_placed::CREATE_PLACED,
            label: "schema on cmpg2",
            prepare: server,
            trigger: create_schema,
            check: whole_there_or_nothing,
        },
        Scenario {
            kind: create_placed::CREATE_PLACED,
            label: "database on cmpg2",
            prepare: server,
            trigger: create_database,
            check: whole_there_or_nothing,
        },
        Scenario {
            kind: create_placed::CREATE_PLACED,
            label: "shared on cmpg2",
            prepare: server,
            trigger: create_shared,
            check: whole_there_or_nothing,
        },
    ]
}

static CLUSTER: OnceCell<(Cluster, String)> = OnceCell::const_new();
static STARTED: Mutex<Vec<Cluster>> = Mutex::new(Vec::new());

extern "C" fn stop_cluster() {
    if let Ok(list) = STARTED.lock() {
        for c in list.iter() {
            c.stop_immediately();
        }
    }
}

/// The second cluster, started once, with a password for TCP logins.
pub(super) async fn cluster() -> &'static (Cluster, String) {
    CLUSTER
        .get_or_init(|| async {
            let dir = super::common::scratch_dir("cmpg2");
            let mut opts = ClusterOptions::new(&dir);
            opts.ephemeral = true;
            let c = tokio::task::spawn_blocking(move || Cluster::ensure(&opts))
                .await
                .unwrap()
                .expect("starting the second cluster");
            STARTED.lock().unwrap().push(c.clone());
            unsafe { libc::atexit(stop_cluster) };
            let admin = admin(&c, "postgres").await;
            admin
                .batch_execute("ALTER ROLE berqenas PASSWORD 'cm-pg2-password'")
                .await
                .unwrap();
            let url = format!(
                "postgresql://berqenas:cm-pg2-password@127.0.0.1:{}/postgres",
                c.port()
            );
            (c, url)
        })
        .await
}

pub(super) async fn admin(c: &Cluster, db: &str) -> tokio_postgres::Client {
    berqenas::pg::connect(&berqenas::pg::parse_config(&c.superuser_dsn(db)).unwrap())
        .await
        .unwrap()
}

static REGISTERED: OnceCell<()> = OnceCell::const_new();

/// Registers the server once (draining: nothing else is placed there).
pub(super) fn server<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let (_, url) = cluster().await;
        REGISTERED
            .get_or_init(|| async {
                let (s, _) = env
                    .app
                    .call(Method::GET, &format!("/api/v1/servers/{SERVER}"), None)
                    .await;
                if s.as_u16() == 404 {
                    env.ok(
                        Method::POST,
                        "/api/v1/servers",
                        Some(json!({"name": SERVER, "url": url, "draining": true})),
                    )
                    .await;
                }
            })
            .await;
        Value::Null
    })
}

pub(super) fn create_in<'a>(env: &'a Env, isolation: Isolation) -> Fut<'a, Result<(), String>> {
    Box::pin(async move { created_in(env, isolation).await.map(drop) })
}

/// The tenant of the case created on cmpg2 in `isolation`, as the API would answer
/// (its credentials with it).
pub(super) async fn created_in(env: &Env, isolation: Isolation) -> Result<Value, String> {
    let v = Validated {
        slug: Slug::parse(&env.name).map_err(|e| e.to_string())?,
        db_quota_bytes: None,
        vpn_enabled: false,
        public_api: true,
        isolation,
        isolation_given: true,
        trial_days: Some(0),
        plan: "free".into(),
        metadata: json!({}),
        backup_schedule: None,
        vector_store: Some(false),
        server: Some(SERVER.into()),
        placement: None,
    };
    create_placed::create(&env.rt, &v, SERVER, None, "crash-matrix", true)
        .await
        .map(|t| serde_json::to_value(t).expect("plain fields"))
        .map_err(|e| e.to_string())
}

fn create_schema<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    create_in(env, Isolation::Schema)
}

fn create_database<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    create_in(env, Isolation::Database)
}

fn create_shared<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    create_in(env, Isolation::Shared)
}

/// Whether the cluster `c` is a session of has a shared pool.
pub(super) async fn has_pool(c: &tokio_postgres::Client) -> Result<bool, String> {
    c.query_opt(
        "SELECT 1 FROM pg_namespace WHERE nspname = 'berqenas_shared'",
        &[],
    )
    .await
    .map(|r| r.is_some())
    .map_err(|e| e.to_string())
}

/// Active with its roles and schema (or database) on cmpg2 and nothing on default;
/// or no registry row and nothing of it on cmpg2.
pub(super) fn whole_there_or_nothing<'a>(
    env: &'a Env,
    _: &'a Value,
) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let (c, _) = cluster().await;
        let pg2 = admin(c, "postgres").await;
        let stem = format!("tenant_{}", env.name.replace('-', "_"));
        let like = format!("{}%", stem.replace('_', "\\_"));
        let count = |sql: &'static str| {
            let (pg2, like) = (&pg2, like.clone());
            async move {
                pg2.query_one(sql, &[&like])
                    .await
                    .map(|r| r.get::<_, i64>(0))
                    .map_err(|e| e.to_string())
            }
        };
        let roles = count("SELECT count(*) FROM pg_roles WHERE rolname LIKE $1").await?;
        let schemas = count("SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1").await?;
        let dbs = count("SELECT count(*) FROM pg_database WHERE datname LIKE $1").await?;
        // Its member rows in cmpg2's shared pool (once a shared-mode create built it).
        let pooled = has_pool(&pg2).await?;
        let members = match pooled {
            true => {
                count("SELECT count(*) FROM berqenas_shared.members WHERE role LIKE $1").await?
            }
            false => 0,
        };
        let on_default: i64 = env
            .pg
            .query_one(
                "SELECT count(*) FROM pg_roles WHERE rolname LIKE $1",
                &[&like],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        if on_default != 0 {
            return Err(format!("{on_default} role(s) of it on default"));
        }
        let (status, v) = env
            .app
            .call(Method::GET, &format!("/api/v1/tenants/{}", env.name), None)
            .await;
        match status.as_u16() {
            404 if roles + schemas + dbs + members == 0 => Ok(()),
            404 => Err(format!(
                "undone, but cmpg2 keeps {roles} role(s), {schemas} schema(s), {dbs} database(s), {members} pool member row(s)"
            )),
            200 if v["status"] == "active" && v["server"] == SERVER && roles == 6 => {
                let wanted = match v["isolation"].as_str() {
                    Some("database") => (0, 1, 0),
                    Some("shared") => (0, 0, 6),
                    _ => (1, 0, 0),
                };
                // A shared-mode tenant's member rows map its roles to its id (a
                // claimed member's were mapped to the member's until its claim).
                let mapped = match pooled {
                    true => pg2
                        .query_one(
                            "SELECT count(*) FROM berqenas_shared.members
                              WHERE role LIKE $1 AND tenant_id::text = $2",
                            &[&like, &v["id"].as_str().unwrap_or_default()],
                        )
                        .await
                        .map_err(|e| e.to_string())?
                        .get::<_, i64>(0),
                    false => 0,
                };
                if (schemas, dbs, members) == wanted && mapped == members {
                    Ok(())
                } else {
                    Err(format!(
                        "active, but cmpg2 has {schemas} schema(s), {dbs} database(s), {members} pool member row(s), {mapped} mapped to the tenant"
                    ))
                }
            }
            _ => Err(format!(
                "after a crashed placed create: {status} {v}; {roles} role(s) on cmpg2"
            )),
        }
    })
}
