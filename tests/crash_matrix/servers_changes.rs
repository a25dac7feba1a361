//! The changes of a tenant on another server that reach its roles there
//! (`workflows::changes_placed`, docs/servers.md), killed at every step boundary:
//! after the restart the registry and cmpg2 agree (the connection quota the registry
//! holds is the one on the login role there; the password the registry gives out is
//! the one that logs in there; the VPN subnet the registry holds is the one cmpg2's
//! pg_hba.conf lets in): done on both sides, or on neither.

use berqenas::quota::service::QuotaUpdate;
use berqenas::tenant::service::UpdateTenant;
use berqenas::tenant::users::AddUser;
use berqenas::tenant::{Isolation, Slug};
use berqenas::workflows::{self as wf, changes_placed, users_placed};
use reqwest::Method;
use serde_json::Value;

use super::servers::{admin, cluster, create_in, server};
use super::{Env, Fut, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            kind: changes_placed::QUOTAS,
            label: "schema on cmpg2",
            prepare: placed,
            trigger: set_quotas,
            check: limits_agree,
        },
        Scenario {
            kind: changes_placed::UPDATE,
            label: "database on cmpg2",
            prepare: placed_database,
            trigger: change_plan,
            check: limits_agree,
        },
        Scenario {
            kind: changes_placed::UPDATE,
            label: "vpn on, schema on cmpg2",
            prepare: placed,
            trigger: vpn_on,
            check: hba_agrees,
        },
        Scenario {
            kind: changes_placed::ROTATE,
            label: "schema on cmpg2",
            prepare: placed,
            trigger: rotate,
            check: password_works,
        },
        Scenario {
            kind: users_placed::ADD,
            label: "schema on cmpg2",
            prepare: placed,
            trigger: add_user,
            check: users_agree,
        },
        Scenario {
            kind: users_placed::REMOVE,
            label: "database on cmpg2",
            prepare: placed_database_with_user,
            trigger: remove_user,
            check: users_agree,
        },
    ]
}

fn ada() -> AddUser {
    AddUser {
        email: "ada@example.com".into(),
        role: "developer".into(),
        ..Default::default()
    }
}

fn placed_database_with_user<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        place(env, Isolation::Database).await;
        wf::changes::add_user(&env.rt, &env.name, &ada(), "crash-matrix")
            .await
            .expect("a user added on cmpg2");
        Value::Null
    })
}

fn add_user<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        wf::changes::add_user(&env.rt, &env.name, &ada(), "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn remove_user<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        wf::changes::remove_user(&env.rt, &env.name, "ada@example.com", "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

/// The users the registry lists are exactly the user logins on cmpg2.
fn users_agree<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let (status, v) = env
            .app
            .call(
                Method::GET,
                &format!("/api/v1/tenants/{}/users", env.name),
                None,
            )
            .await;
        if !status.is_success() {
            return Err(format!("the users: {status} {v}"));
        }
        let mut listed: Vec<String> = v["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u["db_user"].as_str().map(String::from))
            .collect();
        listed.sort();
        let stem = Slug::parse(&env.name).map_err(err)?.schema();
        let (c, _) = cluster().await;
        let there: Vec<String> = admin(c, "postgres")
            .await
            .query(
                "SELECT rolname::text FROM pg_roles WHERE rolname ~ ('^' || $1 || '_u[0-9a-f]{12}$') ORDER BY 1",
                &[&stem.as_str()],
            )
            .await
            .map_err(err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if listed == there {
            Ok(())
        } else {
            Err(format!(
                "the registry lists users {listed:?}, cmpg2 has logins {there:?}"
            ))
        }
    })
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn place(env: &Env, isolation: Isolation) {
    server(env).await;
    create_in(env, isolation)
        .await
        .expect("a placed create on cmpg2");
}

fn placed<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        place(env, Isolation::Schema).await;
        Value::Null
    })
}

fn placed_database<'a>(env: &'a Env) -> Fut<'a, Value> {
    Box::pin(async move {
        place(env, Isolation::Database).await;
        Value::Null
    })
}

fn set_quotas<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let req = QuotaUpdate {
            max_connections: Some(Some(7)),
            ..Default::default()
        };
        wf::changes::set_quotas(&env.rt, &env.name, &req, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn change_plan<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let t = berqenas::tenant::service::get(&env.rt, &env.name)
            .await
            .map_err(err)?;
        let to = if t.plan == "starter" {
            "free"
        } else {
            "starter"
        };
        let req = UpdateTenant {
            plan: Some(to.into()),
            ..Default::default()
        };
        wf::changes::update(&env.rt, &env.name, &req, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

fn rotate<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        wf::changes::rotate_credentials(&env.rt, &env.name, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

/// The registry's connection quota is the login role's limit on cmpg2.
fn limits_agree<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let (status, v) = env
            .app
            .call(
                Method::GET,
                &format!("/api/v1/tenants/{}/limits", env.name),
                None,
            )
            .await;
        if !status.is_success() {
            return Err(format!("the limits: {status} {v}"));
        }
        let want = v["limits"]["max_connections"].as_i64().unwrap_or(-2) as i32;
        let login = Slug::parse(&env.name).map_err(err)?.login_role();
        let (c, _) = cluster().await;
        let on_server: i32 = admin(c, "postgres")
            .await
            .query_one(
                "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1",
                &[&login.as_str()],
            )
            .await
            .map_err(err)?
            .get(0);
        if on_server == want {
            Ok(())
        } else {
            Err(format!(
                "the registry says max_connections {want}, cmpg2 has {on_server}"
            ))
        }
    })
}

/// The password the registry gives out logs in on cmpg2.
fn password_works<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let (status, v) = env
            .app
            .call(
                Method::GET,
                &format!("/api/v1/tenants/{}/credentials", env.name),
                None,
            )
            .await;
        if !status.is_success() {
            return Err(format!("the credentials: {status} {v}"));
        }
        let dsn = v["dsn"].as_str().unwrap_or_default();
        match tokio_postgres::connect(dsn, tokio_postgres::NoTls).await {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("the registry's password fails on cmpg2: {e:?}")),
        }
    })
}

fn vpn_on<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let req = UpdateTenant {
            vpn_enabled: Some(true),
            ..Default::default()
        };
        wf::changes::update(&env.rt, &env.name, &req, "crash-matrix")
            .await
            .map(drop)
            .map_err(err)
    })
}

/// cmpg2's pg_hba.conf has a section for the tenant with its subnet exactly when the
/// registry gives it one (VPN on), and none otherwise (no rules: not restricted).
fn hba_agrees<'a>(env: &'a Env, _: &'a Value) -> Fut<'a, Result<(), String>> {
    Box::pin(async move {
        let t = berqenas::tenant::service::get(&env.rt, &env.name)
            .await
            .map_err(err)?;
        let (c, _) = cluster().await;
        let file: String = admin(c, "postgres")
            .await
            .query_one(
                "SELECT pg_catalog.pg_read_file(pg_catalog.current_setting('hba_file'))",
                &[],
            )
            .await
            .map_err(err)?
            .get(0);
        let header = format!("# tenant {} (", env.name);
        let section: Vec<&str> = file
            .lines()
            .skip_while(|l| !l.starts_with(&header))
            .enumerate()
            .take_while(|(i, l)| *i == 0 || l.starts_with("host"))
            .map(|(_, l)| l)
            .collect();
        match (t.vpn_enabled, t.vpn_subnet.as_deref()) {
            (true, Some(subnet)) if section.iter().any(|l| l.contains(subnet)) => Ok(()),
            (false, None) if section.is_empty() => Ok(()),
            (on, subnet) => Err(format!(
                "the registry says VPN {on} with subnet {subnet:?}; cmpg2's pg_hba.conf has {section:?}"
            )),
        }
    })
}
