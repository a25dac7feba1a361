//! A template migration trusts where a tenant's objects are, not only the registry:
//! a schema-mode tenant whose schema is marked at the target (its DDL committed, its
//! registry behind, as a restore or an older release can leave it) only moves its
//! registry, with its audit entry and event; the DDL does not run twice.

mod common;

use berqenas::migrate::{MigrateRequest, Started};

use berqenas::workflows;
use common::{unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Fails if it runs twice in one schema ("column already exists").
const ADD_PRIORITY: &str = "ALTER TABLE applications ADD COLUMN priority integer;\n";

#[tokio::test]
async fn a_schema_marked_at_the_target_only_moves_its_registry() {
    let db = common::control_database("mig_marker").await;
    let identity = format!("mig-marker:{}", uuid::Uuid::new_v4());
    let first = common::runtime_over(&db, common::template_with(&[]), &identity).await;
    let app = TestApp::over(first.clone()).await;
    let names = [unique("mk"), unique("mk")];
    for name in &names {
        let (status, body) = app
            .call(
                Method::POST,
                "/api/v1/tenants",
                Some(json!({"name": name, "isolation": "schema"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    first
        .engine
        .shutdown(std::time::Duration::from_secs(5))
        .await;

    let mut config = common::database().await.config.clone();
    config.dbname("mig_marker");
    let control = berqenas::pg::connect(&config).await.unwrap();
    let schema_of = |name: &str| {
        let (control, name) = (&control, name.to_string());
        async move {
            control
                .query_one(
                    "SELECT schema_name FROM berqenas.tenants WHERE name = $1",
                    &[&name],
                )
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    // The first tenant's DDL committed with its marker; its registry did not move.
    let marked = schema_of(&names[0]).await;
    control
        .batch_execute(&format!(
            "ALTER TABLE \"{marked}\".applications ADD COLUMN priority integer;
             COMMENT ON SCHEMA \"{marked}\" IS 'berqenas template_version=2';"
        ))
        .await
        .unwrap();

    let next = common::template_with(&[("0002_priority.sql", ADD_PRIORITY)]);
    let rt = common::runtime_over(&db, next, &identity).await;
    let req = MigrateRequest {
        jobs: Some(1),
        ..MigrateRequest::default()
    };
    let Started::Run(run) = workflows::migrate::run(&rt, req, "test").await.unwrap() else {
        panic!("not a dry run")
    };
    assert_eq!(run.state, "succeeded", "{run:?}");
    assert_eq!(run.migrated, 2, "{run:?}");
    assert_eq!(run.failed, 0, "{run:?}");

    for name in &names {
        let schema = schema_of(name).await;
        let row = control
            .query_one(
                "SELECT t.template_version,
                        (SELECT count(*) FROM berqenas.audit_log a
                          WHERE a.tenant_id = t.id AND a.action = 'tenant_migrated'
                            AND a.details->>'run_id' = $2),
                        (SELECT count(*) FROM berqenas.outbox o
                          WHERE o.tenant_id = t.id AND o.type = 'migration.completed'
                            AND o.data->>'run_id' = $2),
                        (SELECT count(*) FROM information_schema.columns c
                          WHERE c.table_schema = t.schema_name AND c.table_name = 'applications'
                            AND c.column_name = 'priority'),
                        obj_description(to_regnamespace(t.schema_name)::oid, 'pg_namespace')
                   FROM berqenas.tenants t WHERE t.name = $1",
                &[name, &run.id.to_string()],
            )
            .await
            .unwrap();
        let (version, audit, events, columns, marker): (i32, i64, i64, i64, Option<String>) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        assert_eq!(version, 2, "{name}: the registry moved");
        assert_eq!(audit, 1, "{name}: one audit entry");
        assert_eq!(events, 1, "{name}: one migration.completed event");
        assert_eq!(columns, 1, "{name} ({schema}): the column, once");
        assert_eq!(
            marker.as_deref(),
            Some("berqenas template_version=2"),
            "{name}"
        );
    }
    rt.engine.shutdown(std::time::Duration::from_secs(5)).await;
}
