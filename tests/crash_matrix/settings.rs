//! Scenarios of a tenant's settings (issue 16): a configuration patch, a sign-in
//! provider saved and deleted, an invitation accepted. Each is one transaction of the
//! control database, so a kill at its commit leaves the change whole or absent, and
//! everything that records it (the version history, the provider list on the tenant,
//! the user's status and the link's use) agrees with itself.

use berqenas::workflows::settings as wf;
use reqwest::Method;
use serde_json::{json, Value};

use super::tenants::make;
use super::{Env, Fut, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            kind: wf::CONFIG,
            label: "patch",
            prepare: tenant,
            trigger: patch,
            check: config_whole,
        },
        Scenario {
            kind: wf::PROVIDER_PUT,
            label: "github",
            prepare: tenant,
            trigger: put_github,
            check: provider_whole,
        },
        Scenario {
            kind: wf::PROVIDER_DELETE,
            label: "github",
            prepare: tenant_with_github,
            trigger: delete_github,
            check: provider_whole,
        },
        Scenario {
            kind: wf::INVITATION_ACCEPT,
            label: "accept",
            prepare: tenant_with_invitee,
            trigger: accept,
            check: invitation_whole,
        },
    ]
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn tenant<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(make(env, "schema", json!({})))
}

fn github() -> Value {
    json!({"client_id": "Iv1.crash", "client_secret": "crash-secret-1", "organization": "acme-corp"})
}

fn tenant_with_github<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        let t = make(env, "schema", json!({})).await;
        env.ok(
            Method::PUT,
            &format!("/api/v1/tenants/{}/auth-providers/github", env.name),
            Some(github()),
        )
        .await;
        t
    })
}

fn tenant_with_invitee<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        make(env, "schema", json!({})).await;
        let invited = env
            .ok(
                Method::POST,
                &format!("/api/v1/tenants/{}/users", env.name),
                Some(json!({"email": "ada@example.com", "role": "developer", "invite": true})),
            )
            .await;
        let url = invited["invitation_url"].as_str().unwrap_or_default();
        let token = url.rsplit('/').next().unwrap_or_default().to_string();
        json!({"token": token})
    })
}

fn patch<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        wf::patch_config(
            &env.rt,
            &env.name,
            &json!({"max_tokens": 2000}),
            "crash-matrix",
        )
        .await
        .map(drop)
        .map_err(err)
    })
}

fn put_github<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        wf::put_provider(&env.rt, &env.name, "github", &github(), "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn delete_github<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        wf::delete_provider(&env.rt, &env.name, "github", "crash-matrix")
            .await
            .map_err(err)
    })
}

fn accept<'a>(env: &'a Env, state: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let token = state["token"].as_str().unwrap_or_default();
        wf::accept_invitation(&env.rt, token)
            .await
            .map(drop)
            .map_err(err)
    })
}

/// Version 1 with the plan's `max_tokens`, or version 2 with the patch; one history
/// row per version either way.
fn config_whole<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let c = env
            .ok(
                Method::GET,
                &format!("/api/v1/tenants/{}/config", env.name),
                None,
            )
            .await;
        let h = env
            .ok(
                Method::GET,
                &format!("/api/v1/tenants/{}/config/history", env.name),
                None,
            )
            .await;
        let versions = h["versions"].as_array().map_or(0, Vec::len) as i64;
        let version = c["version"].as_i64().unwrap_or(-1);
        let tokens = &c["config"]["max_tokens"];
        match (version, tokens.as_i64()) {
            (1, Some(t)) if t != 2000 && versions == 1 => Ok(()),
            (2, Some(2000)) if versions == 2 => Ok(()),
            _ => Err(format!(
                "config version {version}, max_tokens {tokens}, {versions} history rows"
            )),
        }
    })
}

/// The provider's row and the tenant's `auth_providers` list agree.
fn provider_whole<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let (s, p) = env
            .app
            .call(
                Method::GET,
                &format!("/api/v1/tenants/{}/auth-providers/github", env.name),
                None,
            )
            .await;
        let t = env
            .ok(Method::GET, &format!("/api/v1/tenants/{}", env.name), None)
            .await;
        let listed = t["auth_providers"]
            .as_array()
            .is_some_and(|l| l.iter().any(|k| k == "github"));
        match (s.as_u16(), listed) {
            (200, true) if p["client_secret_set"] == true => Ok(()),
            (404, false) => Ok(()),
            _ => Err(format!(
                "provider answered {s} {p}; listed on the tenant: {listed}"
            )),
        }
    })
}

/// The user is `active` exactly when the link was used.
fn invitation_whole<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let row = env
            .pg
            .query_one(
                "SELECT u.status, i.used_at IS NOT NULL FROM berqenas.tenant_users u
                   JOIN berqenas.tenants t ON t.id = u.tenant_id
                   JOIN berqenas.invitations i ON i.user_id = u.id
                  WHERE t.name = $1",
                &[&env.name],
            )
            .await
            .map_err(err)?;
        let (status, used): (String, bool) = (row.get(0), row.get(1));
        match (status.as_str(), used) {
            ("active", true) | ("invited", false) => Ok(()),
            _ => Err(format!("user {status}, link used: {used}")),
        }
    })
}
