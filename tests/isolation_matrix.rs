//! Every pair of isolation modes: tenant A's login role and A's users of each default
//! role attack tenant B: connect to B's database, read, write, truncate, create,
//! alter policy, spoof the RLS context. Each attempt is denied and B's data unchanged.

mod common;

use common::{connect_as, superuser, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_postgres::error::SqlState;

const MODES: [&str; 3] = ["schema", "database", "shared"];
const ROLES: [&str; 4] = [
    "tenant_admin",
    "application_manager",
    "developer",
    "auditor",
];

async fn tenant(app: &TestApp, mode: &str) -> Value {
    let name = unique(&format!("mx-{}", &mode[..2]));
    let (s, t) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            // starter: room for a user of each default role (free allows one user)
            Some(json!({"name": name, "isolation": mode, "plan": "starter"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    t
}

/// The tenant's login credentials, then one user of each default role.
async fn attackers(app: &TestApp, t: &Value) -> Vec<(String, Value)> {
    let mut all = vec![("login".to_string(), t["credentials"].clone())];
    for role in ROLES {
        let (s, u) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{}/users", t["id"].as_str().unwrap()),
                Some(json!({"email": format!("{role}@{}.example", t["name"].as_str().unwrap()), "role": role})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{u}");
        all.push((role.to_string(), u["credentials"].clone()));
    }
    all
}

/// B's rows as a superuser sees them, to prove nothing changed.
async fn fingerprint(b: &Value) -> String {
    let mut cfg = common::database().await.config.clone();
    cfg.dbname(b["database"].as_str().unwrap());
    let c = berqenas::pg::connect(&cfg).await.unwrap();
    let schema = b["schema"].as_str().unwrap();
    let filter = if b["isolation"] == "shared" {
        format!("WHERE tenant_id = '{}'", b["id"].as_str().unwrap())
    } else {
        String::new()
    };
    let row = c
        .query_one(
            &format!("SELECT count(*)::text || ':' || coalesce(string_agg(name || team, ',' ORDER BY name), '') FROM \"{schema}\".applications {filter}"),
            &[],
        )
        .await
        .unwrap();
    row.get(0)
}

fn denied(result: Result<(), tokio_postgres::Error>, what: &str) {
    let err = result.expect_err(what);
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{what}: {err:?}"
    );
}

#[tokio::test]
async fn no_mode_lets_a_tenant_or_its_users_reach_another_tenant() {
    let app = TestApp::spawn().await;
    for mode_a in MODES {
        for mode_b in MODES {
            let a = tenant(&app, mode_a).await;
            let b = tenant(&app, mode_b).await;
            connect_as(&b["credentials"])
                .await
                .batch_execute(
                    "INSERT INTO applications (name, team, created_by) VALUES ('b-app', 'b', 'b')",
                )
                .await
                .unwrap();
            let before = fingerprint(&b).await;
            let b_db = b["database"].as_str().unwrap();
            let b_schema = b["schema"].as_str().unwrap();
            let b_id = b["id"].as_str().unwrap();
            for (who, creds) in attackers(&app, &a).await {
                let what =
                    |attack: &str| format!("{mode_a} tenant's {who} vs {mode_b} tenant: {attack}");
                // Connecting to B's database, when it is not A's own.
                if b_db != a["database"].as_str().unwrap() {
                    let dsn = creds["dsn"].as_str().unwrap();
                    let to_b = format!("{}/{b_db}", dsn.rsplit_once('/').unwrap().0);
                    denied(
                        tokio_postgres::connect(&to_b, tokio_postgres::NoTls)
                            .await
                            .map(|_| ()),
                        &what("connect"),
                    );
                    continue;
                }
                let c = connect_as(&creds).await;
                let t = format!("\"{b_schema}\".applications");
                if mode_b == "shared" {
                    // The pool's tables are reachable by shared tenants; B's rows are not.
                    for spoof in [
                        format!("SET app.tenant_id = '{b_id}'"),
                        format!("SELECT set_config('app.tenant_id', '{b_id}', false)"),
                        "SET ROLE NONE".to_string(),
                    ] {
                        let _ = c.batch_execute(&spoof).await;
                        let seen: Result<i64, _> = c
                            .query_one(
                                &format!("SELECT count(*) FROM {t} WHERE tenant_id = '{b_id}'"),
                                &[],
                            )
                            .await
                            .map(|r| r.get(0));
                        match seen {
                            Ok(n) => assert_eq!(n, 0, "{}", what(&spoof)),
                            Err(e) => assert_eq!(
                                e.code(),
                                Some(&SqlState::INSUFFICIENT_PRIVILEGE),
                                "{}",
                                what(&spoof)
                            ),
                        }
                    }
                    let _ = c
                        .batch_execute(&format!(
                            "UPDATE {t} SET team = 'x' WHERE tenant_id = '{b_id}'"
                        ))
                        .await;
                    let _ = c
                        .batch_execute(&format!("DELETE FROM {t} WHERE tenant_id = '{b_id}'"))
                        .await;
                    let insert = format!("INSERT INTO {t} (name, team, created_by, tenant_id) VALUES ('evil', 'a', 'a', '{b_id}')");
                    denied(c.batch_execute(&insert).await, &what("insert as B"));
                    denied(
                        c.batch_execute(&format!(
                            "ALTER POLICY tenant_isolation ON {t} USING (true)"
                        ))
                        .await,
                        &what("alter policy"),
                    );
                } else {
                    denied(
                        c.batch_execute(&format!("SELECT * FROM {t}")).await,
                        &what("read"),
                    );
                    denied(
                        c.batch_execute(&format!(
                            "INSERT INTO {t} (name, team, created_by) VALUES ('evil', 'a', 'a')"
                        ))
                        .await,
                        &what("write"),
                    );
                    denied(
                        c.batch_execute(&format!("CREATE TABLE \"{b_schema}\".evil (id int)"))
                            .await,
                        &what("create"),
                    );
                }
                denied(
                    c.batch_execute(&format!("TRUNCATE {t}")).await,
                    &what("truncate"),
                );
            }
            assert_eq!(
                fingerprint(&b).await,
                before,
                "{mode_a} vs {mode_b}: B's data changed"
            );
        }
    }
    // Nothing any tenant did leaked a privilege it should not have.
    let pg = superuser().await;
    let roles: Vec<String> = pg
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'tenant\\_mx\\_%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    berqenas::pg::hardening::check_client(&pg, &roles)
        .await
        .unwrap();
}
