//! Issue 18 item 1 (hardening per server): the worker's role check reads the roles of
//! tenants on a second server there. What berqenas never gives (attributes, LOGIN on
//! an owner role, a membership in a role outside the tenant's) is taken away on that
//! server, audited with the server's name, and the tenant is suspended there (its
//! session ends, its event says `security_violation`); a login that changed its own
//! defaults or password gets berqenas's back there; a clean tenant on that server is
//! left alone.

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;
#[path = "support/state.rs"]
mod support;

use common::{superuser, unique};
use extra_cluster::{on, register_pg2};
use reqwest::Method;
use serde_json::{json, Value};

async fn login(dsn: &str) -> Result<tokio_postgres::Client, String> {
    match tokio_postgres::connect(dsn, tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            Ok(client)
        }
        Err(e) => Err(format!("{e:?}")),
    }
}

/// (rolcreatedb, rolbypassrls, rolcanlogin) of a role on a cluster.
async fn attributes(c: &tokio_postgres::Client, role: &str) -> (bool, bool, bool) {
    let r = c
        .query_one(
            "SELECT rolcreatedb, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

async fn member_of(c: &tokio_postgres::Client, role: &str, group: &str) -> bool {
    c.query_one(
        "SELECT count(*) > 0 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
           JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1 AND g.rolname = $2",
        &[&role, &group],
    )
    .await
    .unwrap()
    .get(0)
}

/// A role's defaults, sorted.
async fn settings(c: &tokio_postgres::Client, role: &str) -> Vec<String> {
    let mut s: Vec<String> = c
        .query_opt(
            "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
          WHERE r.rolname = $1 AND s.setdatabase = 0",
            &[&role],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
        .unwrap_or_default();
    s.sort();
    s
}

async fn status(app: &common::TestApp, name: &str) -> String {
    let (_, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    t["status"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_check_takes_away_and_puts_back_on_another_server() {
    let (app, state) = support::spawn().await;
    let pg2 = register_pg2(&app, "roles-pg2").await;
    let pg2_admin = on(&pg2, "postgres").await;
    let control = superuser().await;

    let bad = unique("rolx");
    let drifted = unique("rold");
    let clean = unique("rolc");
    let created_bad = app
        .create_with(json!({"name": bad, "server": "pg2", "isolation": "schema"}))
        .await;
    let created_drifted = app
        .create_with(json!({"name": drifted, "server": "pg2", "isolation": "database"}))
        .await;
    app.create_with(json!({"name": clean, "server": "pg2", "isolation": "schema"}))
        .await;
    // In pg2's shared pool, its roles members of that server's pool roles.
    let (pooled, pooled_bad) = (unique("rolp"), unique("rolq"));
    for name in [&pooled, &pooled_bad] {
        app.create_with(json!({"name": name, "server": "pg2", "isolation": "shared"}))
            .await;
    }
    let role = |name: &str, suffix: &str| format!("tenant_{}_{suffix}", name.replace('-', "_"));
    let (bad_login, bad_owner, bad_dev) = (
        role(&bad, "user"),
        role(&bad, "owner"),
        role(&bad, "developer"),
    );
    let drifted_login = role(&drifted, "user");
    let pooled_bad_dev = role(&pooled_bad, "developer");
    let clean_login = role(&clean, "user");
    let clean_settings = settings(&pg2_admin, &clean_login).await;
    let drifted_settings = settings(&pg2_admin, &drifted_login).await;
    assert!(
        drifted_settings
            .iter()
            .any(|s| s.starts_with("statement_timeout=")),
        "{drifted_settings:?}"
    );

    // A session of the tenant that will be suspended, open before the round.
    let session = login(created_bad["credentials"]["dsn"].as_str().unwrap())
        .await
        .expect("the tenant logs in on pg2");
    pg2_admin
        .batch_execute(&format!(
            "ALTER ROLE {bad_login} CREATEDB BYPASSRLS;
             GRANT pg_read_all_data TO {bad_dev};
             GRANT pg_read_all_data TO {pooled_bad_dev};
             ALTER ROLE {bad_owner} LOGIN;
             ALTER ROLE {drifted_login} SET statement_timeout = 0;
             ALTER ROLE {drifted_login} PASSWORD 'changed-by-the-tenant';"
        ))
        .await
        .unwrap();

    // Pages of two: the five tenants there span three, and the last one made (the
    // shared one with a foreign membership) is on the third.
    berqenas::tenant::integrity::set_page_size(2);
    let report = berqenas::workflows::role_check::round(&state.platform)
        .await
        .unwrap();

    // --- taken away on pg2, audited with the server, the tenant suspended there ---
    assert!(!attributes(&pg2_admin, &bad_login).await.0, "CREATEDB");
    assert!(!attributes(&pg2_admin, &bad_login).await.1, "BYPASSRLS");
    assert!(!attributes(&pg2_admin, &bad_owner).await.2, "owner LOGIN");
    assert!(!member_of(&pg2_admin, &bad_dev, "pg_read_all_data").await);
    for (r, what) in [
        (&bad_login, "CREATEDB"),
        (&bad_login, "BYPASSRLS"),
        (&bad_owner, "LOGIN"),
        (&bad_dev, "membership in pg_read_all_data"),
    ] {
        assert!(
            report
                .violations
                .iter()
                .any(|(role, w)| role == r && w == what),
            "{r} {what}: {:?}",
            report.violations
        );
    }
    assert!(report.suspended.contains(&bad), "{report:?}");
    assert!(report.suspended.contains(&pooled_bad), "{report:?}");
    assert!(!member_of(&pg2_admin, &pooled_bad_dev, "pg_read_all_data").await);
    assert!(!report
        .suspended
        .iter()
        .any(|n| n == &drifted || n == &clean || n == &pooled));
    assert_eq!(status(&app, &bad).await, "suspended");
    assert!(
        session.query_one("SELECT 1", &[]).await.is_err(),
        "the suspended tenant's session on pg2 was ended"
    );
    assert!(login(created_bad["credentials"]["dsn"].as_str().unwrap())
        .await
        .is_err());
    let audited: Vec<Value> = control
        .query(
            "SELECT details FROM berqenas.audit_log WHERE tenant_name = $1 AND action = 'tenant_security_violation'",
            &[&bad],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["server"], "pg2");
    let cause: Vec<Value> = control
        .query(
            "SELECT data FROM berqenas.outbox WHERE tenant_name = $1 AND type = 'tenant.suspended'",
            &[&bad],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cause.len(), 1);
    assert_eq!(cause[0]["cause"], "security_violation", "{cause:?}");

    // --- drift put back on pg2: defaults and password; not suspended ---
    assert_eq!(settings(&pg2_admin, &drifted_login).await, drifted_settings);
    assert!(report
        .drift
        .iter()
        .any(|(r, w)| r == &drifted_login && w == "settings"));
    assert!(report
        .drift
        .iter()
        .any(|(r, w)| r == &drifted_login && w == "password"));
    login(created_drifted["credentials"]["dsn"].as_str().unwrap())
        .await
        .expect("berqenas's password works again on pg2");
    let dsn = created_drifted["credentials"]["dsn"].as_str().unwrap();
    let theirs = dsn.replacen(
        created_drifted["credentials"]["password"].as_str().unwrap(),
        "changed-by-the-tenant",
        1,
    );
    assert!(
        login(&theirs).await.is_err(),
        "the tenant's own password is gone"
    );
    assert_eq!(status(&app, &drifted).await, "active");

    // --- the clean tenants on pg2 are left alone ---
    assert_eq!(settings(&pg2_admin, &clean_login).await, clean_settings);
    for name in [&clean, &pooled] {
        assert_eq!(status(&app, name).await, "active");
        let stem = name.replace('-', "_");
        assert!(
            !report.violations.iter().any(|(r, _)| r.contains(&stem)),
            "{report:?}"
        );
        assert!(
            !report.drift.iter().any(|(r, _)| r.contains(&stem)),
            "{report:?}"
        );
    }

    // --- a second round finds nothing left to take ---
    let again = berqenas::workflows::role_check::round(&state.platform)
        .await
        .unwrap();
    let mine = |r: &str| {
        [&bad, &drifted, &clean]
            .iter()
            .any(|n| r.starts_with(&format!("tenant_{}_", n.replace('-', "_"))))
    };
    assert!(
        !again
            .violations
            .iter()
            .chain(again.drift.iter())
            .any(|(r, _)| mine(r)),
        "{again:?}"
    );

    // --- once nothing there moves, pg2's roles are not read again ---
    let pg2 = state.platform.view_of("pg2").await.unwrap();
    let mut read = Vec::new();
    for _ in 0..4 {
        let (r, _) = berqenas::tenant::integrity::check_server(&state.platform, &pg2, "pg2")
            .await
            .unwrap();
        read.push(r.roles_read);
    }
    assert!(
        read.contains(&false),
        "every round read pg2's roles: {read:?}"
    );
}
