//! The operation engine on its own, with a kind of this test's: steps that create a
//! role (undone by dropping it) and a scratch schema (dropped however the operation
//! ends), forward, failing before and after the point of no return, and killed at
//! step boundaries then settled by the next process of the same server.

mod common;

use std::time::Duration;

use berqenas::ops::{
    self, Context, Done, Engine, Kind, NewOp, Object, OpError, Registry, Run, Step, StepError,
    StepFuture,
};
use berqenas::problem::{Kind as ProblemKind, Problem};
use serde_json::{json, Value};

#[derive(Clone)]
struct Cx {
    pool: deadpool_postgres::Pool,
}

impl Context for Cx {
    fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        plaintext.to_vec()
    }
}

fn name(run: &Run) -> String {
    run.params["name"].as_str().unwrap().to_string()
}

fn make_role<'a>(cx: &'a Cx, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let role = format!("engine_{}", name(run));
        run.intend(
            vec![Object {
                kind: "role".into(),
                name: role.clone(),
                database: None,
                scratch: false,
            }],
            json!({"role": role}),
        )
        .await?;
        let c = cx.pool.get().await.map_err(StepError::failed)?;
        c.batch_execute(&format!("CREATE ROLE {role} NOLOGIN"))
            .await
            .map_err(StepError::failed)?;
        Ok(json!({"role": role}))
    })
}

fn drop_role<'a>(cx: &'a Cx, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        // Only what this operation declared: the intent names it.
        let Some(intent) = run.intent::<Value>("make_role") else {
            return Ok(Value::Null);
        };
        let role = intent["role"].as_str().unwrap();
        let c = cx.pool.get().await.map_err(StepError::failed)?;
        c.batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
            .await
            .map_err(StepError::failed)?;
        Ok(Value::Null)
    })
}

fn scratch<'a>(cx: &'a Cx, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let schema = format!("engine_scratch_{}", name(run));
        run.intend(vec![Object::scratch("schema", &schema, None)], Value::Null)
            .await?;
        let c = cx.pool.get().await.map_err(StepError::failed)?;
        c.batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .map_err(StepError::failed)?;
        // An operation an operator aborts: it goes on only once the request has reached it.
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while run.params["wait_for_abort"] == true && !run.abort_requested() {
            if std::time::Instant::now() > until {
                return Err(StepError::Failed("no abort came".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(json!({"schema": schema}))
    })
}

fn maybe_fail<'a>(_: &'a Cx, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        if run.params["fail"] == "check" {
            return Err(StepError::Rejected(Problem::new(
                ProblemKind::Conflict,
                "refused",
                "the check refused it",
            )));
        }
        Ok(json!({"checked": true}))
    })
}

/// `check` has nothing to do when the params waive it.
fn check_waived(run: &Run) -> bool {
    run.params["waive_check"] == true
}

fn finish<'a>(cx: &'a Cx, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        if run.params["fail"] == "finish" && run.params["attempt"] == 1 {
            return Err(StepError::Failed("transient".into()));
        }
        let c = cx.pool.get().await.map_err(StepError::failed)?;
        c.batch_execute(&format!(
            "COMMENT ON ROLE engine_{} IS 'finished'",
            name(run)
        ))
        .await
        .map_err(StepError::failed)?;
        Ok(json!({"done": name(run)}))
    })
}

fn clean_schema<'a>(cx: &'a Cx, o: &'a Object) -> StepFuture<'a> {
    Box::pin(async move {
        let c = cx.pool.get().await.map_err(StepError::failed)?;
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", o.name))
            .await
            .map_err(StepError::failed)?;
        Ok(Value::Null)
    })
}

fn registry() -> Registry<Cx> {
    Registry::default()
        .kind(Kind {
            name: "test.demo",
            steps: vec![
                Step {
                    name: "make_role",
                    reaches_out: true,
                    apply: make_role,
                    compensate: Some(drop_role),
                    skip: None,
                },
                Step {
                    name: "scratch",
                    reaches_out: true,
                    apply: scratch,
                    compensate: None,
                    skip: None,
                },
                Step {
                    name: "check",
                    reaches_out: false,
                    apply: maybe_fail,
                    compensate: None,
                    skip: Some(check_waived),
                },
                Step {
                    name: "finish",
                    reaches_out: true,
                    apply: finish,
                    compensate: None,
                    skip: None,
                },
            ],
            point_of_no_return: 3,
        })
        .cleaner("schema", clean_schema)
}

async fn engine(identity: &str) -> (Engine<Cx>, Cx) {
    let db = common::database().await;
    // The control schema (operations, instances) comes with a platform.
    common::platform(2).await;
    let pool = berqenas::pg::pool(db.config.clone(), 4).unwrap();
    let cx = Cx { pool: pool.clone() };
    (Engine::start(pool, identity, registry()).await.unwrap(), cx)
}

async fn run(e: &Engine<Cx>, cx: &Cx, n: &str, params: Value) -> Result<Done, OpError> {
    e.run(
        cx,
        NewOp {
            kind: "test.demo",
            tenant_id: None,
            tenant_name: n,
            params,
            idempotency: None,
        },
    )
    .await
}

async fn exists(kind: &str, name: &str) -> bool {
    let sql = match kind {
        "role" => "SELECT count(*) FROM pg_roles WHERE rolname = $1",
        _ => "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
    };
    common::superuser()
        .await
        .query_one(sql, &[&name])
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 1
}

async fn op_state(n: &str) -> (String, Vec<String>) {
    let pg = common::superuser().await;
    let state: String = pg
        .query_one(
            "SELECT state FROM berqenas.operations WHERE tenant_name = $1 ORDER BY created_at DESC LIMIT 1",
            &[&n],
        )
        .await
        .unwrap()
        .get(0);
    let steps = pg
        .query(
            "SELECT s.name || ':' || s.state FROM berqenas.operation_steps s
               JOIN berqenas.operations o ON o.id = s.operation_id
              WHERE o.tenant_name = $1 ORDER BY o.created_at DESC, s.seq",
            &[&n],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (state, steps)
}

/// Runs an operation with `params` until it reaches the failpoint `point`, then kills
/// the process there (its lease and journal left as a crash leaves them).
async fn killed_at(e: &Engine<Cx>, cx: &Cx, point: &str, params: Value) {
    let stopped = e.failpoints().arm(point);
    let n = params["name"].as_str().unwrap().to_string();
    let running = tokio::spawn({
        let (e, cx) = (e.clone(), cx.clone());
        async move { run(&e, &cx, &n, params).await }
    });
    stopped.notified().await;
    e.kill();
    let _ = running.await;
}

fn unique(p: &str) -> String {
    common::unique(p).replace('-', "_")
}

#[tokio::test]
async fn steps_run_forward_and_scratch_objects_are_dropped() {
    let (e, cx) = engine(&unique("id-forward")).await;
    let n = unique("fwd");
    let done = run(&e, &cx, &n, json!({"name": n})).await.unwrap();
    let Done::Finished(answer) = done else {
        panic!("not a replay")
    };
    assert_eq!(answer["done"], n.as_str());
    assert!(exists("role", &format!("engine_{n}")).await);
    assert!(!exists("schema", &format!("engine_scratch_{n}")).await);
    let (state, steps) = op_state(&n).await;
    assert_eq!(state, "succeeded");
    assert_eq!(
        steps,
        [
            "make_role:applied",
            "scratch:applied",
            "check:applied",
            "finish:applied"
        ]
    );
}

#[tokio::test]
async fn a_refusal_before_the_point_of_no_return_undoes_every_step_in_reverse() {
    let (e, cx) = engine(&unique("id-undo")).await;
    let n = unique("undo");
    let err = run(&e, &cx, &n, json!({"name": n, "fail": "check"}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OpError::Rejected(ref p) if p.code == "refused"),
        "{err}"
    );
    assert!(!exists("role", &format!("engine_{n}")).await, "compensated");
    assert!(
        !exists("schema", &format!("engine_scratch_{n}")).await,
        "cleaned"
    );
    let (state, steps) = op_state(&n).await;
    assert_eq!(state, "failed");
    assert_eq!(steps, ["make_role:compensated", "scratch:compensated"]);
}

/// An abort requested in the operation's row reaches the process that runs it (its
/// lease renewal reads it back) and the engine undoes the operation at the next step
/// boundary, as if that step had been refused.
#[tokio::test]
async fn an_abort_requested_undoes_the_operation_at_its_next_step_boundary() {
    let (e, cx) = engine(&unique("id-abort")).await;
    let n = unique("abort");
    let running = tokio::spawn({
        let (e, cx, n) = (e.clone(), cx.clone(), n.clone());
        async move { run(&e, &cx, &n, json!({"name": n, "wait_for_abort": true})).await }
    });
    let schema = format!("engine_scratch_{n}");
    while !exists("schema", &schema).await {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = common::superuser()
        .await
        .execute(
            "UPDATE berqenas.operations SET abort_requested_at = now() WHERE tenant_name = $1",
            &[&n],
        )
        .await
        .unwrap();
    assert_eq!(asked, 1);
    let err = running.await.unwrap().unwrap_err();
    assert!(
        matches!(err, OpError::Rejected(ref p) if p.code == "aborted"),
        "{err}"
    );
    assert!(!exists("role", &format!("engine_{n}")).await, "compensated");
    assert!(!exists("schema", &schema).await, "cleaned");
    let (state, steps) = op_state(&n).await;
    assert_eq!(state, "failed");
    assert_eq!(steps, ["make_role:compensated", "scratch:compensated"]);
}

#[tokio::test]
async fn killed_before_the_point_of_no_return_the_next_process_undoes_it() {
    let identity = unique("id-kill-undo");
    let (e, cx) = engine(&identity).await;
    let n = unique("killundo");
    killed_at(&e, &cx, "test.demo/scratch/after", json!({"name": &n})).await;
    assert!(
        exists("role", &format!("engine_{n}")).await,
        "left half way"
    );
    // The same server starts again: the old process is gone for certain.
    let (again, cx) = engine(&identity).await;
    let settled = again.reconcile(&cx).await.unwrap();
    assert!(settled >= 1);
    assert!(!exists("role", &format!("engine_{n}")).await, "undone");
    assert!(
        !exists("schema", &format!("engine_scratch_{n}")).await,
        "cleaned"
    );
    assert_eq!(op_state(&n).await.0, "failed");
}

#[tokio::test]
async fn killed_past_the_point_of_no_return_the_next_process_finishes_it() {
    let identity = unique("id-kill-fwd");
    let (e, cx) = engine(&identity).await;
    let n = unique("killfwd");
    killed_at(&e, &cx, "test.demo/finish/before", json!({"name": &n})).await;
    let (again, cx) = engine(&identity).await;
    again.reconcile(&cx).await.unwrap();
    assert!(exists("role", &format!("engine_{n}")).await, "kept");
    assert!(
        !exists("schema", &format!("engine_scratch_{n}")).await,
        "cleaned"
    );
    let (state, steps) = op_state(&n).await;
    assert_eq!(state, "succeeded");
    assert_eq!(steps.last().unwrap(), "finish:applied");
}

#[tokio::test]
async fn a_live_process_keeps_its_operations_from_other_reconcilers() {
    let (e, cx) = engine(&unique("id-live")).await;
    let n = unique("live");
    let stopped = e.failpoints().arm("test.demo/check/before");
    let _running = tokio::spawn({
        let (e, cx, n) = (e.clone(), cx.clone(), n.clone());
        async move { run(&e, &cx, &n, json!({"name": n})).await }
    });
    stopped.notified().await;
    // Another server: the first one's lease is renewed, its instance alive.
    let (other, cx2) = engine(&unique("id-other")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    other.reconcile(&cx2).await.unwrap();
    assert_eq!(
        op_state(&n).await.0,
        "running",
        "not taken from a live process"
    );
    assert!(exists("role", &format!("engine_{n}")).await);
    e.kill();
}

#[tokio::test]
async fn a_failure_past_the_point_of_no_return_is_retried_forward() {
    let (e, cx) = engine(&unique("id-retry")).await;
    let n = unique("retry");
    let err = run(
        &e,
        &cx,
        &n,
        json!({"name": n, "fail": "finish", "attempt": 1}),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OpError::Unfinished { .. }), "{err}");
    assert_eq!(op_state(&n).await.0, "running");
    // The next attempt (the reconciler, once the lease lapsed) succeeds.
    let pg = common::superuser().await;
    pg.execute(
        "UPDATE berqenas.operations SET lease_until = now() - interval '1 second',
                params = jsonb_set(params, '{attempt}', '2') WHERE tenant_name = $1",
        &[&n],
    )
    .await
    .unwrap();
    e.reconcile(&cx).await.unwrap();
    assert_eq!(op_state(&n).await.0, "succeeded");
    assert!(exists("role", &format!("engine_{n}")).await);
    let _ = ops::lease_secs();
}

#[tokio::test]
async fn a_skipped_step_is_not_run_nor_journaled_and_a_resume_counts_it_done() {
    let (e, cx) = engine(&unique("id-skip")).await;
    // Waived, the check that would refuse is not run at all.
    let n = unique("skip");
    run(
        &e,
        &cx,
        &n,
        json!({"name": n, "fail": "check", "waive_check": true}),
    )
    .await
    .unwrap();
    let (state, steps) = op_state(&n).await;
    assert_eq!(state, "succeeded");
    assert_eq!(
        steps,
        ["make_role:applied", "scratch:applied", "finish:applied"],
        "the skipped step has a journal row"
    );

    // Killed before `finish` (the point of no return) with `check` skipped before it:
    // the next process finishes it, as it would after an applied check (counting the
    // skipped step as open would undo it).
    let identity = unique("id-skip-kill");
    let (e, cx) = engine(&identity).await;
    let n = unique("skipkill");
    killed_at(
        &e,
        &cx,
        "test.demo/finish/before",
        json!({"name": &n, "waive_check": true}),
    )
    .await;
    let (again, cx) = engine(&identity).await;
    again.reconcile(&cx).await.unwrap();
    let (state, steps) = op_state(&n).await;
    assert_eq!(state, "succeeded", "{steps:?}");
    assert!(exists("role", &format!("engine_{n}")).await, "kept");
    assert_eq!(steps.last().unwrap(), "finish:applied");
}

#[tokio::test]
async fn a_journal_from_a_build_with_other_steps_is_left_as_it_is() {
    let identity = unique("id-foreign");
    let (e, cx) = engine(&identity).await;
    let n = unique("foreign");
    killed_at(&e, &cx, "test.demo/finish/before", json!({"name": &n})).await;
    // As an older build would have journaled it, had its kind a step of another name
    // in that place.
    let pg = common::superuser().await;
    let rename = |to: &'static str| {
        let (pg, n) = (&pg, n.clone());
        async move {
            pg.execute(
                "UPDATE berqenas.operation_steps s SET name = $2 FROM berqenas.operations o
                  WHERE o.id = s.operation_id AND o.tenant_name = $1 AND s.seq = 1",
                &[&n, &to],
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(rename("older_step").await, 1);
    let (again, cx) = engine(&identity).await;
    again.reconcile(&cx).await.unwrap();
    let (state, steps) = op_state(&n).await;
    assert_eq!(state, "running", "{steps:?}");
    assert!(
        exists("role", &format!("engine_{n}")).await,
        "neither undone"
    );
    assert!(
        !steps.contains(&"finish:applied".to_string()),
        "nor finished"
    );
    // Its journal as this build reads it: the next process takes it up and finishes it.
    assert_eq!(rename("scratch").await, 1);
    again.kill();
    let (third, cx) = engine(&identity).await;
    third.reconcile(&cx).await.unwrap();
    assert_eq!(op_state(&n).await.0, "succeeded");
}

/// An operation an older build began, whose kind had no `check` step then (so its
/// point of no return, `finish`, was at index 2), killed before `finish` with
/// `make_role` and `scratch` applied: this build, whose kind has `check` before
/// `finish`, takes it up by the older build's list and finishes it. Read by position,
/// the open `check` would sit before this build's point of no return, and an
/// operation its own build had made forward-only would be undone. A list naming a
/// step this build has not is left as it is, for an operator.
#[tokio::test]
async fn an_operation_an_older_build_began_runs_by_that_builds_steps() {
    let identity = unique("id-listed");
    let (e, cx) = engine(&identity).await;
    let n = unique("listed");
    killed_at(&e, &cx, "test.demo/finish/before", json!({"name": &n})).await;
    let pg = common::superuser().await;
    let (state, steps) = op_state(&n).await;
    assert_eq!(state, "running");
    assert_eq!(
        steps,
        ["make_role:applied", "scratch:applied", "check:applied"]
    );
    // As the older build would have left it: no `check` in its journal, its own list.
    pg.execute(
        "DELETE FROM berqenas.operation_steps s USING berqenas.operations o
          WHERE o.id = s.operation_id AND o.tenant_name = $1 AND s.name = 'check'",
        &[&n],
    )
    .await
    .unwrap();
    let listed = |steps: [&'static str; 3]| {
        let (pg, n) = (&pg, n.clone());
        async move {
            let steps = steps.to_vec();
            pg.execute(
                "UPDATE berqenas.operations SET steps = $2, point_of_no_return = 2 WHERE tenant_name = $1",
                &[&n, &steps],
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(listed(["make_role", "scratch", "retired_step"]).await, 1);
    let (again, cx) = engine(&identity).await;
    again.reconcile(&cx).await.unwrap();
    assert_eq!(op_state(&n).await.0, "running", "left for an operator");
    assert!(exists("role", &format!("engine_{n}")).await, "not undone");

    assert_eq!(listed(["make_role", "scratch", "finish"]).await, 1);
    again.kill();
    let (third, cx) = engine(&identity).await;
    third.reconcile(&cx).await.unwrap();
    let (state, steps) = op_state(&n).await;
    assert_eq!(state, "succeeded", "{steps:?}");
    assert_eq!(
        steps,
        ["make_role:applied", "scratch:applied", "finish:applied"]
    );
    assert!(exists("role", &format!("engine_{n}")).await, "kept");
    assert!(
        !exists("schema", &format!("engine_scratch_{n}")).await,
        "cleaned"
    );
}
