//! Least privilege, checked loudly: PUBLIC's defaults are gone, tenant roles cannot
//! reach template1, and a tenant role that gained an elevated attribute stops the
//! server from starting. Its own binary (own cluster): it breaks a role on purpose.

mod common;

use berqenas::pg::hardening;
use berqenas::secrets::SecretKey;
use berqenas::server;
use common::{database, superuser, unique, TestApp};
use tokio_postgres::error::SqlState;

/// Held by the test that gives template1 back to PUBLIC for a moment, and by the one
/// that checks tenants cannot reach it.
static TEMPLATE1: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn public_defaults_are_gone_and_an_elevated_tenant_role_is_a_loud_error() {
    let _template1 = TEMPLATE1.lock().await;
    let app = TestApp::spawn().await;
    let created = app.create(&unique("hard")).await;
    let creds = &created["credentials"];
    let pg = superuser().await;

    // The tenant's own database works; template1 refuses it.
    common::connect_as(creds).await;
    let dsn = creds["dsn"].as_str().unwrap();
    let template1 = dsn.rsplit_once('/').unwrap().0.to_string() + "/template1";
    let err = tokio_postgres::connect(&template1, tokio_postgres::NoTls)
        .await
        .err()
        .expect("template1 refused");
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{err:?}"
    );

    // A login role that is no tenant's cannot connect to the tenants' database.
    pg.batch_execute("CREATE ROLE outsider LOGIN PASSWORD 'outsider-pw'")
        .await
        .unwrap();
    let outsider = format!(
        "postgresql://outsider:outsider-pw@127.0.0.1:{}/berqenas",
        database().await.endpoint.port
    );
    let err = tokio_postgres::connect(&outsider, tokio_postgres::NoTls)
        .await
        .err()
        .expect("outsider refused");
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{err:?}"
    );
    let public_create: bool = pg
        .query_one(
            "SELECT has_schema_privilege('public', 'public', 'CREATE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!public_create);

    // A tenant role that gained CREATEDB (or a pg_* membership) stops the next start.
    let role = created["role"].as_str().unwrap();
    for (breach, repair, says) in [
        (
            format!("ALTER ROLE \"{role}\" CREATEDB"),
            format!("ALTER ROLE \"{role}\" NOCREATEDB"),
            "CREATEDB",
        ),
        (
            format!("GRANT pg_read_all_data TO \"{role}\""),
            format!("REVOKE pg_read_all_data FROM \"{role}\""),
            "member of pg_read_all_data",
        ),
        // Through a role in between: pg_monitor is itself a member of pg_read_all_stats.
        (
            format!(
                "CREATE ROLE \"{role}_via\" NOLOGIN; GRANT pg_monitor TO \"{role}_via\";
                 GRANT \"{role}_via\" TO \"{role}\""
            ),
            format!("DROP ROLE \"{role}_via\""),
            "member of pg_read_all_stats",
        ),
        (
            format!("GRANT CONNECT ON DATABASE template1 TO \"{role}\""),
            format!("REVOKE CONNECT ON DATABASE template1 FROM \"{role}\""),
            "CONNECT on template1",
        ),
        // Through a role in between, which holds the grant.
        (
            format!(
                "CREATE ROLE \"{role}_t1\" NOLOGIN; GRANT CONNECT ON DATABASE template1 TO \"{role}_t1\";
                 GRANT \"{role}_t1\" TO \"{role}\""
            ),
            format!(
                "REVOKE CONNECT ON DATABASE template1 FROM \"{role}_t1\"; DROP ROLE \"{role}_t1\""
            ),
            "CONNECT on template1",
        ),
    ] {
        pg.batch_execute(&breach).await.unwrap();
        // Both ways the check reads memberships: walking up from a create's few roles,
        // and reading every pg_* membership down for many (at start, every tenant's).
        let many: Vec<String> = std::iter::once(role.to_string())
            .chain((0..70).map(|i| format!("no_such_role_{i}")))
            .collect();
        for roles in [vec![role.to_string()], many] {
            let err = hardening::check_client(&pg, &roles)
                .await
                .expect_err("the check finds it");
            let message = err.to_string();
            assert!(
                message.contains(role) && message.contains(says),
                "{} roles: {message}",
                roles.len()
            );
        }
        let err = server::platform(database().await, SecretKey::from_bytes([1; 32]), 2)
            .await
            .err()
            .expect("the server refuses to start");
        let message = format!("{err:#}");
        assert!(
            message.contains(role) && message.contains(says),
            "{message}"
        );
        pg.batch_execute(&repair).await.unwrap();
    }
    server::platform(database().await, SecretKey::from_bytes([1; 32]), 2)
        .await
        .expect("starts again once repaired");
}

#[tokio::test]
async fn tenants_cannot_take_advisory_locks_in_the_control_database() {
    let app = TestApp::spawn().await;
    for isolation in ["schema", "shared"] {
        let name = common::unique(&format!("adv{isolation}"));
        let (status, t) = app
            .call(
                reqwest::Method::POST,
                "/api/v1/tenants",
                Some(serde_json::json!({"name": name, "isolation": isolation})),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{t}");
        let tenant = common::connect_as(&t["credentials"]).await;
        for call in [
            "SELECT pg_advisory_lock(1)",
            "SELECT pg_try_advisory_xact_lock(1)",
            "SELECT pg_advisory_lock_shared(1, 2)",
        ] {
            let err = tenant.simple_query(call).await.unwrap_err();
            assert_eq!(
                err.code(),
                Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
                "{isolation}: {call}: {err:?}"
            );
        }
        // Releasing stays possible (the data API's reset calls it).
        tenant
            .simple_query("SELECT pg_advisory_unlock_all()")
            .await
            .unwrap();
    }
}

/// Advisory locks belong to one database while template1's catalog row belongs to the
/// cluster: control planes of different control databases starting together once
/// collided there ("tuple concurrently updated"). And a restart rewrites no row.
#[tokio::test]
async fn control_planes_of_several_databases_start_together() {
    let _template1 = TEMPLATE1.lock().await;
    let base = database().await;
    let pg = superuser().await;
    // Every start below then has template1's row to rewrite, all at once.
    pg.batch_execute("GRANT CONNECT ON DATABASE template1 TO PUBLIC")
        .await
        .unwrap();
    let names: Vec<String> = (0..6).map(|_| unique("ctl").replace('-', "_")).collect();
    for name in &names {
        pg.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    }
    let dbs: Vec<server::Database> = names
        .iter()
        .map(|name| {
            let mut config = base.config.clone();
            config.dbname(name);
            server::Database {
                config,
                endpoint: berqenas::platform::Endpoint {
                    database: name.clone(),
                    ..base.endpoint.clone()
                },
                cluster: None,
                backup_dir: Some(common::scratch_dir(&format!("backups-{name}"))),
            }
        })
        .collect();
    let starts = dbs
        .iter()
        .map(|db| server::platform(db, common::secret_key(), 2));
    for (name, started) in names.iter().zip(futures::future::join_all(starts).await) {
        started.unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    for name in &names {
        let public: bool = pg
            .query_one(
                "SELECT has_database_privilege('public', $1, 'CONNECT')",
                &[name],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!public, "PUBLIC can still connect to {name}");
    }
    let public: bool = pg
        .query_one(
            "SELECT has_database_privilege('public', 'template1', 'CONNECT')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!public, "PUBLIC can still connect to template1");

    let rows = "SELECT string_agg(datname || ':' || xmin::text, ',' ORDER BY datname)
                  FROM pg_database WHERE datname = ANY($1) OR datname = 'template1'";
    let before: String = pg.query_one(rows, &[&names]).await.unwrap().get(0);
    server::platform(&dbs[0], common::secret_key(), 2)
        .await
        .unwrap();
    let after: String = pg.query_one(rows, &[&names]).await.unwrap().get(0);
    assert_eq!(before, after, "a restart rewrote a database's catalog row");

    // Deterministically: another control plane has revoked on template1 and not yet
    // committed when this one starts. Its REVOKE waits, then finds the row changed.
    pg.batch_execute("GRANT CONNECT ON DATABASE template1 TO PUBLIC")
        .await
        .unwrap();
    let mut other = common::superuser_in(&names[2]).await;
    let tx = other.transaction().await.unwrap();
    tx.batch_execute("REVOKE CONNECT ON DATABASE template1 FROM PUBLIC")
        .await
        .unwrap();
    let (started, ()) = tokio::join!(server::platform(&dbs[1], common::secret_key(), 2), async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        tx.commit().await.unwrap();
    });
    started.expect("starts once the other commits");
}
