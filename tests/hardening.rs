//! Least privilege, checked loudly: PUBLIC's defaults are gone, tenant roles cannot
//! reach template1, and a tenant role that gained an elevated attribute stops the
//! server from starting. Its own binary (own cluster): it breaks a role on purpose.

mod common;

use berqenas::secrets::SecretKey;
use berqenas::server;
use common::{database, superuser, unique, TestApp};
use tokio_postgres::error::SqlState;

#[tokio::test]
async fn public_defaults_are_gone_and_an_elevated_tenant_role_is_a_loud_error() {
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
    ] {
        pg.batch_execute(&breach).await.unwrap();
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
