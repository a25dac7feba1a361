//! The crash matrix. For every operation kind this binary registers
//! (`workflows::registry()`) and every step boundary of it (`<kind>/<step>/before` and
//! `/after`; a one-transaction kind has one step, its commit), the operation is
//! started and stopped dead at that boundary: the engine running it is killed there as
//! `kill -9` would (nothing more of it runs, its connections close, nothing is
//! written), and a new engine of the same server starts, which settles it at once.
//! Then, for every case:
//!
//! - the operation is closed (completed or compensated), none left running;
//! - no tenant role, schema or database exists without its registry row, and none of
//!   a live tenant is missing;
//! - nothing the operation declared as scratch is left;
//! - a trial or active tenant logs in with the credentials the API hands out; a
//!   suspended, deleted or purged one does not;
//! - the scenario's own check of what the kind promises.
//!
//! The cases come from the registry, so a new kind or step is covered without a new
//! test; a kind without a scenario fails the matrix, naming it.

#[path = "../common/mod.rs"]
mod common;
#[path = "../support/invariants.rs"]
mod invariants;
#[path = "../support/receiver.rs"]
mod receiver;

mod backups;
mod backups_placed;
mod migrate;
mod moves;
mod moves_shared;
mod network;
mod offboarding;
mod onboarding;
mod quotas;
mod servers;
mod servers_changes;
mod servers_lifecycle;
mod settings;
mod tenants;
mod warm_pool;
mod warm_pool_placed;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use berqenas::ops::failpoint::{boundary, At};
use berqenas::workflows::{self, Runtime};
use common::TestApp;
use reqwest::Method;
use serde_json::Value;
use tokio::sync::Semaphore;

pub type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a scenario works with: a server (its router and engine) and the cluster.
pub struct Env {
    pub app: TestApp,
    pub rt: Arc<Runtime>,
    pub pg: tokio_postgres::Client,
    /// The case's tenant name; every tenant the case makes starts with it.
    pub name: String,
}

impl Env {
    /// An admin API call that must succeed; returns its JSON body.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.app.call(method, path, body).await;
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }
}

/// How one operation kind is driven through the matrix.
pub struct Scenario {
    pub kind: &'static str,
    /// Tells several scenarios of one kind apart (isolation modes).
    pub label: &'static str,
    /// Makes what the operation needs (on the server that will be killed, before the
    /// failpoint is armed); its value is handed to `trigger` and `check`.
    pub prepare: for<'a> fn(&'a Env) -> Fut<'a, Value>,
    /// Runs the operation, by calling the workflow (not over HTTP: the call is dropped
    /// with the killed server, open transaction included).
    pub trigger: for<'a> fn(&'a Env, &'a Value) -> Fut<'a, Result<(), String>>,
    /// After the restart settled it: what the kind promises, completed or undone.
    pub check: for<'a> fn(&'a Env, &'a Value) -> Fut<'a, Result<(), String>>,
}

fn scenarios() -> Vec<Scenario> {
    let mut all = tenants::scenarios();
    all.extend(offboarding::scenarios());
    all.extend(onboarding::scenarios());
    all.extend(backups::scenarios());
    all.extend(backups_placed::scenarios());
    all.extend(quotas::scenarios());
    all.extend(migrate::scenarios());
    all.extend(network::scenarios());
    all.extend(settings::scenarios());
    all.extend(servers::scenarios());
    all.extend(servers_lifecycle::scenarios());
    all.extend(servers_changes::scenarios());
    all.extend(moves::scenarios());
    all.extend(moves_shared::scenarios());
    all.extend(warm_pool::scenarios());
    all.extend(warm_pool_placed::scenarios());
    all
}

/// How many cases run at once (each on its own engines and tenants).
const PARALLEL: usize = 4;
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kind_killed_at_every_step_boundary_completes_or_is_undone() {
    let registry = workflows::registry();
    let scenarios: Vec<Arc<Scenario>> = scenarios().into_iter().map(Arc::new).collect();
    let mut failures = Vec::new();
    for kind in registry.names() {
        if !scenarios.iter().any(|s| s.kind == kind) {
            failures.push(format!(
                "{kind}: no crash scenario (add one in tests/crash_matrix/)"
            ));
        }
    }
    for s in &scenarios {
        if registry.get(s.kind).is_none() {
            failures.push(format!(
                "{}: a scenario of a kind that is not registered",
                s.kind
            ));
        }
    }
    let only = std::env::var("CRASH_MATRIX_ONLY").ok();
    let mut cases = Vec::new();
    for s in &scenarios {
        let Some(kind) = registry.get(s.kind) else {
            continue;
        };
        for step in kind.step_names() {
            for at in [At::Before, At::After] {
                let point = boundary(s.kind, step, at);
                if only.as_deref().is_some_and(|o| !point.starts_with(o)) {
                    continue;
                }
                cases.push((s.clone(), point));
            }
        }
    }
    let checker = Arc::new(common::runtime(common::platform(24).await).await);
    let permits = Arc::new(Semaphore::new(PARALLEL));
    let mut set = tokio::task::JoinSet::new();
    let total = cases.len();
    for (i, (s, point)) in cases.into_iter().enumerate() {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let checker = checker.clone();
        set.spawn(async move {
            let name = format!("cm{i}x");
            let label = format!("{point} [{}] ({name})", s.label);
            let result = tokio::time::timeout(CASE_TIMEOUT, case(&s, &point, &name, &checker))
                .await
                .unwrap_or_else(|_| Err(format!("did not settle within {CASE_TIMEOUT:?}")));
            drop(permit);
            (label, result)
        });
    }
    let mut settled = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (label, result) = joined.expect("a case panicked");
        match result {
            Ok(how) => settled.push(format!("{label}: {how}")),
            Err(e) => failures.push(format!("{label}: {e}")),
        }
    }
    settled.sort();
    for line in &settled {
        eprintln!("ok   {line}");
    }
    eprintln!(
        "crash matrix: {} of {total} cases held, {} kinds",
        settled.len(),
        registry.names().len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One case: returns how the operation ended (`succeeded` or `failed`: undone).
async fn case(
    s: &Scenario,
    point: &str,
    name: &str,
    checker: &Arc<Runtime>,
) -> Result<String, String> {
    let identity = format!("crash-matrix:{name}:{}", uuid::Uuid::new_v4());
    let platform = common::platform(6).await;
    let pool = platform.pool.clone();
    let rt = Runtime::start(platform, &identity)
        .await
        .map_err(|e| format!("engine start: {e}"))?;
    let doomed = Env {
        app: TestApp::over(rt.clone()).await,
        rt: rt.clone(),
        pg: common::superuser().await,
        name: name.to_string(),
    };
    let state = (s.prepare)(&doomed).await;
    let reached = rt.engine.failpoints().arm(point);
    let doomed = Arc::new(doomed);
    let mut trigger = {
        let (doomed, state, trigger) = (doomed.clone(), state.clone(), s.trigger);
        tokio::spawn(async move { trigger(&doomed, &state).await })
    };
    let stopped = tokio::select! {
        _ = reached.notified() => Ok(()),
        ended = &mut trigger => Err(match ended {
            Ok(Ok(())) => "the failpoint was never reached (the operation ended first)".to_string(),
            Ok(Err(e)) => format!("the failpoint was never reached: {e}"),
            Err(e) => format!("the trigger panicked: {e}"),
        }),
    };
    // kill -9: every operation of the engine stops where it is, its connections close.
    rt.engine.kill();
    if stopped.is_ok() {
        // (A trigger that ended in the select was awaited there: not again.)
        trigger.abort();
        let _ = trigger.await;
    }
    pool.close();
    close_other_pools(&rt);
    stopped?;

    // The restart: the same server (identity) settles the dead engine's operations.
    let after = common::platform(6).await;
    let pool = after.pool.clone();
    let restarted = Runtime::start(after, &identity)
        .await
        .map_err(|e| format!("restart: {e}"))?;
    let env = Env {
        app: TestApp::over(checker.clone()).await,
        rt: restarted.clone(),
        pg: common::superuser().await,
        name: name.to_string(),
    };
    // A warm-pool member's operations are named after the member, not the case.
    let member = state["key"].as_str().map(|key| format!("wp--{key}"));
    let how = settle(&env, member.as_deref().unwrap_or_default()).await?;
    let mut problems = invariants::violations(&env.pg, name).await;
    problems.extend(scratch_left(&env.pg, name).await);
    problems.extend(logins(&env).await);
    if let Err(e) = (s.check)(&env, &state).await {
        problems.push(e);
    }
    restarted.engine.shutdown(Duration::from_secs(5)).await;
    pool.close();
    close_other_pools(&restarted);
    if problems.is_empty() {
        Ok(how)
    } else {
        Err(format!("after `{how}`: {}", problems.join("; ")))
    }
}

/// Closes a case's runtime's pool on cmpg2, as `pool.close()` closes its control pool:
/// the case's HTTP server keeps the runtime (and its idle connections there) alive,
/// and hundreds of cases' idle connections would fill cmpg2's `max_connections`.
fn close_other_pools(rt: &Runtime) {
    rt.platform.fleet.forget(servers::SERVER);
}

/// Waits until no operation of the case (or of its warm-pool `member`, or a recycle of
/// members, which is named `wp--recycle`) runs: the restart settles them in the
/// background, and one whose undoing failed once is retried by the reconciler rounds
/// run here. Returns how the last one ended.
async fn settle(env: &Env, member: &str) -> Result<String, String> {
    for _ in 0..100 {
        let running: i64 = env
            .pg
            .query_one(
                "SELECT count(*) FROM berqenas.operations
                  WHERE state = 'running' AND (tenant_name LIKE $1 || '%' OR tenant_name = $2
                                               OR ($2 <> '' AND tenant_name = 'wp--recycle'))",
                &[&env.name, &member],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        if running == 0 {
            let last = env
                .pg
                .query_opt(
                    "SELECT kind || ' ' || state FROM berqenas.operations
                      WHERE tenant_name LIKE $1 || '%' OR tenant_name = $2
                         OR ($2 <> '' AND tenant_name = 'wp--recycle')
                      ORDER BY created_at DESC LIMIT 1",
                    &[&env.name, &member],
                )
                .await
                .map_err(|e| e.to_string())?;
            return Ok(last.map(|r| r.get(0)).unwrap_or_else(|| "nothing".into()));
        }
        env.rt
            .engine
            .reconcile(&env.rt)
            .await
            .map_err(|e| format!("reconcile: {e}"))?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("an operation is still running after the restart".into())
}

/// Scratch objects the case's operations declared that still exist.
async fn scratch_left(pg: &tokio_postgres::Client, name: &str) -> Vec<String> {
    let rows = pg
        .query(
            "SELECT o.kind, obj FROM berqenas.operations o
               JOIN berqenas.operation_steps s ON s.operation_id = o.id,
                    jsonb_array_elements(coalesce(s.intent -> 'objects', '[]')) obj
              WHERE o.tenant_name LIKE $1 || '%' AND (obj ->> 'scratch')::boolean",
            &[&name],
        )
        .await
        .unwrap();
    let mut left = Vec::new();
    for r in rows {
        let (kind, obj): (String, Value) = (r.get(0), r.get(1));
        let (what, object) = (
            obj["kind"].as_str().unwrap_or_default().to_string(),
            obj["name"].as_str().unwrap_or_default().to_string(),
        );
        let exists = match what.as_str() {
            "role" => exists(pg, "SELECT 1 FROM pg_roles WHERE rolname = $1", &object).await,
            "roles" => {
                exists(
                    pg,
                    "SELECT 1 FROM pg_roles WHERE starts_with(rolname, $1)",
                    &object,
                )
                .await
            }
            "database" => exists(pg, "SELECT 1 FROM pg_database WHERE datname = $1", &object).await,
            "schema" if obj["database"].is_null() || obj["database"] == "berqenas" => {
                exists(pg, "SELECT 1 FROM pg_namespace WHERE nspname = $1", &object).await
            }
            "archive_schema" => {
                exists(pg, "SELECT 1 FROM pg_namespace WHERE nspname = $1", &object).await
            }
            "file" => std::path::Path::new(&object).exists(),
            _ => false,
        };
        if exists {
            left.push(format!("{kind} left its scratch {what} {object}"));
        }
    }
    left
}

async fn exists(pg: &tokio_postgres::Client, sql: &str, name: &str) -> bool {
    pg.query_opt(sql, &[&name]).await.unwrap().is_some()
}

/// Every tenant of the case that is trial or active logs in with the credentials the
/// API hands out; a suspended, deleted or purged one does not.
async fn logins(env: &Env) -> Vec<String> {
    let mut out = Vec::new();
    for t in invariants::registry(&env.pg).await {
        if !t.name.starts_with(&env.name) {
            continue;
        }
        let should = match t.status.as_str() {
            "trial" | "active" => true,
            "suspended" | "deleted" | "purged" => false,
            _ => continue,
        };
        let (status, creds) = env
            .app
            .call(
                Method::GET,
                &format!("/api/v1/tenants/{}/credentials", t.name),
                None,
            )
            .await;
        if !status.is_success() {
            if should {
                out.push(format!("{} ({}): credentials {status}", t.name, t.status));
            }
            continue;
        }
        let mut result = invariants::logs_in(&creds).await;
        if result
            .as_ref()
            .is_err_and(|e| e.contains("pg_hba.conf rejects"))
        {
            // Refused by the tenant's network rules (from 127.0.0.1): whether the role
            // may log in is the catalog's to say.
            let can: bool = env
                .pg
                .query_one(
                    "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
                    &[&creds["user"].as_str().unwrap_or_default()],
                )
                .await
                .map(|r| r.get(0))
                .unwrap_or(false);
            result = if can { Ok(()) } else { Err("NOLOGIN".into()) };
        }
        match (result, should) {
            (Err(e), true) => out.push(format!("{} ({}) cannot log in: {e}", t.name, t.status)),
            (Ok(()), false) => out.push(format!("{} ({}) still logs in", t.name, t.status)),
            _ => {}
        }
    }
    out
}
