//! Shared tables with forced row-level security: each tenant sees and writes only its
//! own rows, whatever it sets, and however an application pools its connections.

mod common;

use common::{connect_as, footprint, superuser, unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_postgres::error::SqlState;

async fn create_shared(app: &TestApp, name: &str) -> Value {
    let (s, body) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": name, "isolation": "shared"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    body
}

async fn count(c: &tokio_postgres::Client, table: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

async fn code_of(c: &tokio_postgres::Client, sql: &str) -> Option<SqlState> {
    c.batch_execute(sql)
        .await
        .err()
        .and_then(|e| e.code().cloned())
}

#[tokio::test]
async fn rows_stay_with_their_tenant_whatever_the_tenant_sets() {
    let app = TestApp::spawn().await;
    let a = create_shared(&app, &unique("rls-a")).await;
    let b = create_shared(&app, &unique("rls-b")).await;
    assert_eq!(a["isolation"], "shared");
    assert_eq!(a["schema"], "berqenas_shared");
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let ca = connect_as(&a["credentials"]).await;
    let cb = connect_as(&b["credentials"]).await;

    // tenant_id fills itself in; the same application name is fine in two tenants.
    let filled: uuid::Uuid = ca
        .query_one("INSERT INTO applications (name, team, created_by) VALUES ('web', 'a', 'a') RETURNING tenant_id", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(filled.to_string(), a_id);
    cb.batch_execute("INSERT INTO applications (name, team, created_by) VALUES ('web', 'b', 'b'), ('api', 'b', 'b')")
        .await
        .unwrap();
    assert_eq!(
        (
            count(&ca, "applications").await,
            count(&cb, "applications").await
        ),
        (1, 2)
    );
    // Still unique within one tenant.
    assert_eq!(
        code_of(
            &ca,
            "INSERT INTO applications (name, team, created_by) VALUES ('web', 'a', 'a')"
        )
        .await,
        Some(SqlState::UNIQUE_VIOLATION)
    );

    // Spoofing the context does nothing: the tenant comes from the connected role.
    ca.batch_execute(&format!("SET app.tenant_id = '{b_id}'"))
        .await
        .unwrap();
    ca.query_one("SELECT set_config('app.tenant_id', $1, false)", &[&b_id])
        .await
        .unwrap();
    assert_eq!(count(&ca, "applications").await, 1);
    let b_role = b["role"].as_str().unwrap();
    assert_eq!(
        code_of(&ca, &format!("SET ROLE \"{b_role}\"")).await,
        Some(SqlState::INSUFFICIENT_PRIVILEGE)
    );
    // A role A may switch to but that maps to no tenant sees nothing and writes nothing.
    ca.batch_execute("SET ROLE berqenas_shared_login")
        .await
        .unwrap();
    assert_eq!(count(&ca, "applications").await, 0);
    assert_eq!(
        code_of(
            &ca,
            "INSERT INTO applications (name, team, created_by) VALUES ('x', 'a', 'a')"
        )
        .await,
        Some(SqlState::INSUFFICIENT_PRIVILEGE)
    );
    ca.batch_execute("RESET ROLE").await.unwrap();
    assert_eq!(count(&ca, "applications").await, 1);

    // Writing another tenant's id is refused, on insert and on update.
    assert_eq!(
        code_of(&ca, &format!("INSERT INTO applications (name, team, created_by, tenant_id) VALUES ('x', 'a', 'a', '{b_id}')")).await,
        Some(SqlState::INSUFFICIENT_PRIVILEGE)
    );
    assert_eq!(
        code_of(
            &ca,
            &format!("UPDATE applications SET tenant_id = '{b_id}'")
        )
        .await,
        Some(SqlState::INSUFFICIENT_PRIVILEGE)
    );
    // B's rows cannot be touched by A's updates and deletes.
    ca.batch_execute(
        "UPDATE applications SET team = 'hijacked'; DELETE FROM applications WHERE name = 'api'",
    )
    .await
    .unwrap();
    let b_teams: Vec<String> = cb
        .query("SELECT team FROM applications", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(b_teams, vec!["b".to_string(), "b".to_string()]);

    // No TRUNCATE (it ignores row security), no REFERENCES, no policy or RLS changes.
    for sql in [
        "TRUNCATE applications",
        "ALTER TABLE applications DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE applications NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON applications",
        "ALTER POLICY tenant_isolation ON applications USING (true)",
        "CREATE TABLE berqenas_shared.mine (id int)",
        "SELECT * FROM berqenas_shared.members WHERE tenant_id <> berqenas_shared.current_tenant()",
    ] {
        let code = code_of(&ca, sql).await;
        assert!(
            code == Some(SqlState::INSUFFICIENT_PRIVILEGE)
                || (sql.starts_with("SELECT") && code.is_none()),
            "{sql}: {code:?}"
        );
    }
    let seen_members: i64 = ca
        .query_one("SELECT count(*) FROM berqenas_shared.members", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen_members, 1, "a role sees only its own member row");
    let pg = superuser().await;
    let leaks: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_tables t, pg_roles r
              WHERE t.schemaname = 'berqenas_shared' AND r.rolname LIKE 'tenant\\_%'
                AND (has_table_privilege(r.oid, format('%I.%I', t.schemaname, t.tablename), 'TRUNCATE')
                  OR has_table_privilege(r.oid, format('%I.%I', t.schemaname, t.tablename), 'REFERENCES'))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        leaks, 0,
        "no tenant role has TRUNCATE or REFERENCES on a shared table"
    );

    // A developer of A sees A's rows and cannot write applications.
    let (s, dev) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{}/users", a["name"].as_str().unwrap()),
            Some(json!({"email": "dev@a.example", "role": "developer"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dev}");
    let cdev = connect_as(&dev["credentials"]).await;
    assert_eq!(count(&cdev, "applications").await, 1);
    assert_eq!(
        code_of(
            &cdev,
            "INSERT INTO applications (name, team, created_by) VALUES ('d', 'd', 'd')"
        )
        .await,
        Some(SqlState::INSUFFICIENT_PRIVILEGE)
    );
    cdev.batch_execute("INSERT INTO user_activity (user_id, action) VALUES ('dev', 'looked')")
        .await
        .unwrap();
    assert_eq!(count(&ca, "user_activity").await, 1);
    assert_eq!(count(&cb, "user_activity").await, 0);

    // Delete and purge A: its rows and roles go; B's rows stay.
    let (s, body) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{a_id}?purge=now"),
            Some(serde_json::json!({"confirm": a["name"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let a_rows: i64 = pg
        .query_one(
            "SELECT count(*) FROM berqenas_shared.applications WHERE tenant_id = $1::text::uuid",
            &[&a_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(a_rows, 0);
    assert_eq!(count(&cb, "applications").await, 2);
    let a_name = a["name"].as_str().unwrap();
    assert_eq!(
        footprint(&pg, a_name).await,
        vec![format!("tenant:{a_name}")]
    );
}

/// How an application that connects with one pooled role serves many tenants: it is
/// granted each tenant's login role and switches per transaction with SET LOCAL ROLE,
/// which ends with the transaction. Outside one it sees nothing at all.
#[tokio::test]
async fn a_pooled_application_role_switches_tenant_per_transaction() {
    let app = TestApp::spawn().await;
    let a = create_shared(&app, &unique("pool-a")).await;
    let b = create_shared(&app, &unique("pool-b")).await;
    connect_as(&a["credentials"])
        .await
        .batch_execute("INSERT INTO resources (type, name) VALUES ('db', 'a1')")
        .await
        .unwrap();
    connect_as(&b["credentials"])
        .await
        .batch_execute("INSERT INTO resources (type, name) VALUES ('db', 'b1'), ('db', 'b2')")
        .await
        .unwrap();
    let pg = superuser().await;
    let app_role = unique("app_pool").replace('-', "_");
    let (ra, rb) = (a["role"].as_str().unwrap(), b["role"].as_str().unwrap());
    pg.batch_execute(&format!(
        "CREATE ROLE {app_role} LOGIN NOINHERIT PASSWORD 'pool-pw';
         GRANT CONNECT ON DATABASE berqenas TO {app_role};
         GRANT \"{ra}\", \"{rb}\" TO {app_role};"
    ))
    .await
    .unwrap();
    let port = common::database().await.endpoint.port;
    let (c, conn) = tokio_postgres::connect(
        &format!("postgresql://{app_role}:pool-pw@127.0.0.1:{port}/berqenas?options=-csearch_path%3Dberqenas_shared"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for (role, want) in [(ra, 1i64), (rb, 2), (ra, 1)] {
        c.batch_execute(&format!("BEGIN; SET LOCAL ROLE \"{role}\""))
            .await
            .unwrap();
        assert_eq!(count(&c, "resources").await, want, "{role}");
        c.batch_execute("COMMIT").await.unwrap();
    }
    // After COMMIT the role is the pool's own again: no tenant, no table access.
    assert_eq!(
        code_of(&c, "SELECT count(*) FROM berqenas_shared.resources").await,
        Some(SqlState::INSUFFICIENT_PRIVILEGE)
    );
}
