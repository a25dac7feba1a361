//! Scenarios of network changes: a firewall rule added, a VPN peer added and revoked,
//! and the render a resume of a restricted tenant begins. Whatever the kill, after the
//! restart the tenant's lines in pg_hba.conf are what the registry says.

use berqenas::workflows::{self, network as wf};
use reqwest::Method;
use serde_json::{json, Value};

use super::tenants::make;
use super::{Env, Fut, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            kind: wf::FIREWALL,
            label: "allow a range",
            prepare: public_tenant,
            trigger: allow,
            check: file_matches_registry,
        },
        Scenario {
            kind: wf::PEER_ADD,
            label: "add a peer",
            prepare: vpn_tenant,
            trigger: add_peer,
            check: file_matches_registry,
        },
        Scenario {
            kind: wf::PEER_REMOVE,
            label: "revoke a peer",
            prepare: vpn_tenant_with_peer,
            trigger: remove_peer,
            check: file_matches_registry,
        },
        Scenario {
            kind: wf::ENFORCE,
            label: "render after a resume",
            prepare: suspended_vpn_tenant,
            trigger: resume,
            check: file_matches_registry,
        },
    ]
}

fn public_tenant<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(make(env, "schema", json!({})))
}

fn vpn_tenant<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(make(env, "schema", json!({"vpn_enabled": true})))
}

fn vpn_tenant_with_peer<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let t = make(env, "schema", json!({"vpn_enabled": true})).await;
        env.ok(
            Method::POST,
            &format!("/api/v1/tenants/{}/vpn/peers", env.name),
            Some(json!({"name": "laptop"})),
        )
        .await;
        t
    })
}

fn suspended_vpn_tenant<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let t = make(env, "schema", json!({"vpn_enabled": true})).await;
        env.ok(
            Method::POST,
            &format!("/api/v1/tenants/{}/suspend", env.name),
            None,
        )
        .await;
        t
    })
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn allow<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let rule = berqenas::network::rules::validate(
            "",
            &berqenas::network::rules::NewRule {
                cidr: "127.64.0.0/16".into(),
                service: Some("postgres".into()),
                description: None,
            },
        )
        .map_err(|p| p.message)?;
        wf::allow(&env.rt, &env.name, rule, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn add_peer<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        wf::add_peer(&env.rt, &env.name, "laptop", None, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn remove_peer<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        wf::remove_peer(&env.rt, &env.name, "laptop", "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn resume<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        workflows::lifecycle::resume(&env.rt, &env.name, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

/// This tenant's section of a rendered block: its header and its lines.
fn section(text: &str, name: &str) -> Vec<String> {
    let header = format!("# tenant {name} (");
    text.lines()
        .skip_while(|l| !l.starts_with(&header))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with("host"))
        .map(|(_, l)| l.to_string())
        .collect()
}

fn file_matches_registry<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let snapshot = berqenas::store::network::snapshot(&env.rt.pool().get().await.map_err(err)?)
            .await
            .map_err(err)?;
        let mine: Vec<_> = snapshot
            .into_iter()
            .filter(|t| t.name == env.name)
            .collect();
        let expected = section(&berqenas::network::hba::render(&mine, &[]), &env.name);
        let path = env
            .rt
            .network
            .hba_file
            .clone()
            .ok_or("no pg_hba.conf to check")?;
        let file = std::fs::read_to_string(&path).map_err(err)?;
        let actual = section(&file, &env.name);
        if actual != expected {
            return Err(format!(
                "pg_hba.conf says {actual:?}, the registry {expected:?}"
            ));
        }
        Ok(())
    })
}
