//! Creates with an external onboarding step that really calls out (a receiver on
//! 127.0.0.1 answering 200), in schema, shared and database mode (and database mode
//! claiming a warm pool member, in steps because of the step): killed at every
//! boundary, then either the tenant is whole, with the step's answer on it, or there is
//! nothing (the matrix checks roles, schemas and databases against the registry), and
//! a step that answered was told to undo (its `compensate_url`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use berqenas::integrations::{self, NewStep, When};
use berqenas::workflows::{create, create_staged};
use reqwest::Method;
use serde_json::{json, Value};

use super::receiver::Receiver;
use super::{Env, Fut, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            kind: create_staged::CREATE_STAGED,
            label: "schema, onboarding step",
            prepare: step,
            trigger: create_schema,
            check: whole_or_nothing,
        },
        Scenario {
            kind: create_staged::CREATE_STAGED,
            label: "shared, onboarding step",
            prepare: step,
            trigger: create_shared,
            check: whole_or_nothing,
        },
        Scenario {
            kind: create::CREATE_DATABASE,
            label: "database, onboarding step",
            prepare: step,
            trigger: create_database,
            check: whole_or_nothing,
        },
        // A claim that must run in steps: its `register` takes the member.
        Scenario {
            kind: create::CREATE_DATABASE,
            label: "database, onboarding step, from the warm pool",
            prepare: step_and_member,
            trigger: create_database,
            check: whole_and_no_half_member,
        },
    ]
}

fn step_and_member<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let mut state = step(env).await;
        state["key"] = super::warm_pool::database_member(env).await["key"].clone();
        state
    })
}

fn whole_and_no_half_member<'a>(env: &'a Env, state: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        whole_or_nothing(env, state).await?;
        super::warm_pool::claimed_or_unclaimed(env, state).await
    })
}

/// Each case's receiver, by the case's tenant name (a scenario's state is JSON).
fn receivers() -> &'static Mutex<HashMap<String, Receiver>> {
    static R: OnceLock<Mutex<HashMap<String, Receiver>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// A plan of the case's own, a receiver, and a step on that plan that calls it (and
/// calls it again, `compensate: true`, to undo).
fn step<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let plan = format!("{}_plan", env.name);
        crate::common::plan_like_free(&env.pg, &plan, "").await;
        let rx = Receiver::start(Arc::new(|_| (200, None))).await;
        // The receiver is on 127.0.0.1: registered as a server that allows it would.
        let mut p = env.rt.platform.clone();
        p.onboarding_allow_private = true;
        let name = format!("{}_git", env.name);
        integrations::register(
            &p,
            &NewStep {
                name: name.clone(),
                url: rx.url.clone(),
                when: When {
                    plan: Some(plan.clone()),
                    isolation: None,
                },
                timeout: Some("10s".into()),
                compensate_url: Some(rx.url.clone()),
            },
        )
        .await
        .unwrap();
        receivers().lock().unwrap().insert(env.name.clone(), rx);
        json!({"plan": plan, "step": name})
    })
}

fn create_in<'a>(
    env: &'a Env,
    state: &'a Value,
    isolation: &'a str,
) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let req = serde_json::from_value(json!({"name": env.name, "isolation": isolation,
                                                "plan": state["plan"], "public_api": true}))
        .map_err(|e| e.to_string())?;
        create::create(&env.rt, &req, None, "crash-matrix")
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

fn create_schema<'a>(env: &'a Env, state: &'a Value) -> Fut<'a, Result<(), String>> {
    create_in(env, state, "schema")
}

fn create_shared<'a>(env: &'a Env, state: &'a Value) -> Fut<'a, Result<(), String>> {
    create_in(env, state, "shared")
}

fn create_database<'a>(env: &'a Env, state: &'a Value) -> Fut<'a, Result<(), String>> {
    create_in(env, state, "database")
}

/// Whole, with the step's answer and never told to undo; or absent, and a step that
/// was called was told to undo.
fn whole_or_nothing<'a>(env: &'a Env, state: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let rx = receivers()
            .lock()
            .unwrap()
            .get(&env.name)
            .cloned()
            .ok_or("no receiver")?;
        let got: Vec<Value> = rx.got().iter().map(|r| r.json()).collect();
        let called = got.iter().filter(|b| b["compensate"].is_null()).count();
        let undone = got.iter().filter(|b| b["compensate"] == true).count();
        let step = state["step"].as_str().unwrap_or_default();
        let (status, v) = env
            .app
            .call(Method::GET, &format!("/api/v1/tenants/{}", env.name), None)
            .await;
        match status.as_u16() {
            200 if v["status"] == "active" => {
                if v["integrations"][step] != json!({}) {
                    return Err(format!("created without the step's answer: {v}"));
                }
                if called == 0 || undone > 0 {
                    return Err(format!("created, yet the step got {got:?}"));
                }
                Ok(())
            }
            404 if called > 0 && undone == 0 => Err(format!(
                "undone, but the step that answered was not told to undo: {got:?}"
            )),
            404 => Ok(()),
            _ => Err(format!("after a crashed create: {status} {v}")),
        }
    })
}
