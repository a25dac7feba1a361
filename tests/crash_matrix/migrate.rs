//! The template migration run (`migrate.run`): a few tenants of a plan of the case's
//! own (schema and database modes), a template with one migration more than the
//! server's. The run journals its SQL, so the restarted server (built-in template)
//! finishes it the same. After the restart: the run is over, every tenant is at the
//! new version with its column and its schema's marker, or at the old one without
//! them, and no session role of the run is left. The same with the tenants on the
//! second cluster (`cmpg2`, of `servers.rs`): their sessions, roles and markers are
//! there, and no session role is left there either.

use std::time::Duration;

use berqenas::migrate::MigrateRequest;
use berqenas::platform::Platform;
use berqenas::template::Template;
use berqenas::tenant::create::Validated;
use berqenas::tenant::{Isolation, Slug};
use berqenas::workflows::{self, create_placed, Runtime};
use reqwest::Method;
use serde_json::{json, Value};

use super::tenants::make;
use super::{Env, Fut, Scenario};

const INIT: &str = include_str!("../../templates/tenant/0001_init.sql");
const REALTIME: &str = include_str!("../../templates/tenant/0002_realtime.sql");
const SHARED_TRIGGERS: &str =
    include_str!("../../templates/tenant/0003_shared_realtime_triggers.sql");
const PRIORITY: &str = "ALTER TABLE applications ADD COLUMN priority integer NOT NULL DEFAULT 0;\n";

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            kind: workflows::migrate::RUN,
            label: "schema+database",
            prepare: tenants_on_a_plan,
            trigger: migrate,
            check: migrated_or_old,
        },
        Scenario {
            kind: workflows::migrate::RUN,
            label: "schema+database on cmpg2",
            prepare: tenants_on_cmpg2,
            trigger: migrate,
            check: migrated_or_old,
        },
    ]
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn plan_of(env: &Env) -> String {
    format!("{}-mig", env.name)
}

/// A plan of the case's own (a copy of the smallest).
async fn own_plan(env: &Env) -> String {
    let plan = plan_of(env);
    env.pg
        .execute(
            "INSERT INTO berqenas.plans
             SELECT (jsonb_populate_record(NULL::berqenas.plans,
                        to_jsonb(p) || jsonb_build_object('name', $1::text))).*
               FROM berqenas.plans p ORDER BY storage_bytes LIMIT 1",
            &[&plan],
        )
        .await
        .unwrap();
    plan
}

/// A plan of the case's own, and two schema- and one database-mode tenants on it on
/// cmpg2.
fn tenants_on_cmpg2<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        super::servers::server(env).await;
        let plan = own_plan(env).await;
        let mut tenants = Vec::new();
        for (suffix, isolation) in [
            ("", Isolation::Schema),
            ("b", Isolation::Schema),
            ("d", Isolation::Database),
        ] {
            let name = format!("{}{suffix}", env.name);
            let slug = Slug::parse(&name).unwrap();
            let v = Validated {
                slug: slug.clone(),
                db_quota_bytes: None,
                vpn_enabled: false,
                public_api: true,
                isolation,
                isolation_given: true,
                trial_days: Some(0),
                plan: plan.clone(),
                metadata: json!({}),
                backup_schedule: None,
                vector_store: Some(false),
                server: Some(super::servers::SERVER.into()),
                placement: None,
            };
            create_placed::create(
                &env.rt,
                &v,
                super::servers::SERVER,
                None,
                "crash-matrix",
                true,
            )
            .await
            .expect("a placed create on cmpg2");
            let schema = slug.schema().as_str().to_string();
            let database = match isolation {
                Isolation::Database => schema.clone(),
                _ => "postgres".to_string(),
            };
            tenants.push(json!({"name": name, "schema": schema, "database": database,
                                "isolation": isolation.as_str(), "server": super::servers::SERVER}));
        }
        json!({"plan": plan, "tenants": tenants})
    })
}

/// A plan of the case's own (a copy of the smallest), and three tenants on it.
fn tenants_on_a_plan<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let plan = own_plan(env).await;
        let mut tenants = Vec::new();
        for (suffix, isolation) in [("", "schema"), ("b", "schema"), ("d", "database")] {
            let body = json!({"name": format!("{}{suffix}", env.name), "plan": plan});
            tenants.push(make(env, isolation, body).await);
        }
        json!({"plan": plan, "tenants": tenants})
    })
}

/// The next template: the built-in one and one `ADD COLUMN` more.
fn next_template() -> Template {
    Template::from_files(&[
        ("0001_init.sql", INIT),
        ("0002_realtime.sql", REALTIME),
        ("0003_shared_realtime_triggers.sql", SHARED_TRIGGERS),
        ("0004_priority.sql", PRIORITY),
    ])
}

/// Runs the migration of the case's plan on the doomed server's engine, with the next
/// template (a run of another case may hold the one-run slot for a while: waits).
fn migrate<'a>(env: &'a Env, state: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let rt = Runtime {
            platform: Platform {
                template: next_template(),
                ..env.rt.platform.clone()
            },
            engine: env.rt.engine.clone(),
            holds: Default::default(),
        };
        let req = MigrateRequest {
            plan: state["plan"].as_str().map(String::from),
            jobs: Some(2),
            ..MigrateRequest::default()
        };
        for _ in 0..600 {
            match workflows::migrate::run(&rt, req.clone(), "crash-matrix").await {
                Err(workflows::Error::Rejected(p)) if p.code == "migration_running" => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(_) => return Ok(()),
                Err(e) => return Err(err(e)),
            }
        }
        Err("another migration run held the slot for a minute".into())
    })
}

/// The run is over (succeeded: it only goes forward), and every tenant agrees with
/// itself: registry, column and marker at the new version, or all at the old one.
fn migrated_or_old<'a>(env: &'a Env, state: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let plan = state["plan"].as_str().unwrap_or_default();
        let (id, run_state) = run_of(env, plan).await?;
        if run_state != "succeeded" {
            return Err(format!("migration run {id} is {run_state}"));
        }
        let mut problems = Vec::new();
        for t in state["tenants"].as_array().into_iter().flatten() {
            let name = t["name"].as_str().unwrap_or_default();
            let version: i32 = env
                .pg
                .query_one(
                    "SELECT template_version FROM berqenas.tenants WHERE name = $1",
                    &[&name],
                )
                .await
                .map_err(err)?
                .get(0);
            let (column, marker) = objects_of(t).await?;
            let consistent = match version {
                4 => column && marker == Some(4),
                3 => !column && marker.is_none_or(|m| m == 3),
                _ => false,
            };
            if !consistent {
                problems.push(format!(
                    "{name}: registry at {version}, column {column}, marker {marker:?}"
                ));
            } else if version != 4 {
                problems.push(format!("{name}: the finished run left it at {version}"));
            }
        }
        let prefix = format!("berqenas_migrate_{}_", &id.simple().to_string()[20..]);
        let (pg2, _) = super::servers::cluster().await;
        let on_pg2 = super::servers::admin(pg2, "postgres").await;
        for (server, c) in [("default", &env.pg), ("cmpg2", &on_pg2)] {
            let left: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)",
                    &[&prefix],
                )
                .await
                .map_err(err)?
                .get(0);
            if left > 0 {
                problems.push(format!("{left} session roles of run {id} left on {server}"));
            }
        }
        let (status, _) = env
            .app
            .call(Method::GET, &format!("/api/v1/migrations/{id}"), None)
            .await;
        if !status.is_success() {
            problems.push(format!("GET the run: {status}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    })
}

/// The case's run (by its plan), once it is no longer running: the restart settled
/// it; a settling that failed once is retried here, as the worker would.
async fn run_of(env: &Env, plan: &str) -> Result<(uuid::Uuid, String), String> {
    for _ in 0..100 {
        let row = env
            .pg
            .query_opt(
                "SELECT id, state FROM berqenas.migration_runs WHERE selector ->> 'plan' = $1",
                &[&plan],
            )
            .await
            .map_err(err)?;
        let Some(row) = row else {
            return Err(format!("no migration run of plan {plan}"));
        };
        let (id, state): (uuid::Uuid, String) = (row.get(0), row.get(1));
        if state != "running" {
            return Ok((id, state));
        }
        env.rt
            .engine
            .reconcile(&env.rt)
            .await
            .map_err(|e| format!("reconcile: {e}"))?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the migration run is still running after the restart".into())
}

/// Whether the tenant's `applications` has the new column, and its schema's marker.
async fn objects_of(t: &Value) -> Result<(bool, Option<i32>), String> {
    let schema = t["schema"].as_str().unwrap_or_default();
    let pg = match (t["server"].as_str(), t["isolation"].as_str()) {
        (Some(server), _) if server == super::servers::SERVER => {
            let (pg2, _) = super::servers::cluster().await;
            super::servers::admin(pg2, t["database"].as_str().unwrap_or_default()).await
        }
        (_, Some("database")) => {
            super::common::superuser_in(t["database"].as_str().unwrap_or_default()).await
        }
        _ => super::common::superuser().await,
    };
    let row = pg
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                              JOIN pg_namespace n ON n.oid = c.relnamespace
                             WHERE n.nspname = $1 AND c.relname = 'applications'
                               AND a.attname = 'priority' AND NOT a.attisdropped),
                    substring(obj_description((SELECT oid FROM pg_namespace WHERE nspname = $1), 'pg_namespace')
                              FROM '^berqenas template_version=(\\d+)$')::int",
            &[&schema],
        )
        .await
        .map_err(err)?;
    Ok((row.get(0), row.get(1)))
}
