//! A template migration run and a server that stops: the run stops between tenants
//! (it stays `running`, the tenants it did not reach stay at their version), and the
//! next start of the same server finishes it.

mod common;

use std::time::Duration;

use berqenas::migrate::{MigrateRequest, Started};

use berqenas::workflows;
use common::{unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;

const ADD_PRIORITY: &str = "ALTER TABLE applications ADD COLUMN priority integer;\n";

async fn counts(db: &str, run: uuid::Uuid) -> (String, i64, i64) {
    let mut config = common::database().await.config.clone();
    config.dbname(db);
    let c = berqenas::pg::connect(&config).await.unwrap();
    let state: String = c
        .query_one(
            "SELECT state FROM berqenas.migration_runs WHERE id = $1",
            &[&run],
        )
        .await
        .unwrap()
        .get(0);
    let at_two: i64 = c
        .query_one(
            "SELECT count(*) FROM berqenas.tenants WHERE template_version = 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let roles: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, 'berqenas_migrate_' || right(replace($1::text, '-', ''), 12) || '_')",
            &[&run.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    (state, at_two, roles)
}

#[tokio::test]
async fn a_stopping_server_stops_a_run_between_tenants_and_the_next_start_finishes_it() {
    let db = common::control_database("mig_stop").await;
    let identity = format!("mig-stop:{}", uuid::Uuid::new_v4());
    let first = common::runtime_over(&db, common::template_with(&[]), &identity).await;
    let app = TestApp::over(first.clone()).await;
    for _ in 0..16 {
        let (status, body) = app
            .call(
                Method::POST,
                "/api/v1/tenants",
                Some(json!({"name": unique("st"), "isolation": "schema"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    first.engine.shutdown(Duration::from_secs(5)).await;

    let next = common::template_with(&[("0002_priority.sql", ADD_PRIORITY)]);
    let doomed = common::runtime_over(&db, next.clone(), &identity).await;
    let req = MigrateRequest {
        jobs: Some(1),
        ..MigrateRequest::default()
    };
    let Started::Run(run) = workflows::migrate::start(&doomed, req, "test")
        .await
        .unwrap()
    else {
        panic!("not a dry run")
    };
    // Stops once the run has migrated its first tenant.
    for _ in 0..1000 {
        if counts("mig_stop", run.id).await.1 > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    doomed.engine.shutdown(Duration::from_secs(10)).await;
    let (state, at_two, _) = counts("mig_stop", run.id).await;
    assert_eq!(state, "running", "a stopped run is not over");
    assert!(
        (1..16).contains(&at_two),
        "stopped between tenants: {at_two} of 16 migrated"
    );

    // The same server again: it finishes the run at start.
    let again = common::runtime_over(&db, next, &identity).await;
    let (state, at_two, roles) = counts("mig_stop", run.id).await;
    assert_eq!(state, "succeeded");
    assert_eq!(at_two, 16);
    assert_eq!(roles, 0, "no session role of the run is left");
    let finished = berqenas::migrate::get(&again, run.id).await.unwrap();
    assert_eq!(finished.migrated, 16, "{finished:?}");
    again.engine.shutdown(Duration::from_secs(5)).await;
}
