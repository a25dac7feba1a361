//! Issue 18 item 1, template migrations: a migration run reaches the schema- and
//! database-mode tenants on a second server (the column is really there, in that
//! server's catalog, and the tenants' own logins use it), the report names each
//! tenant's server, a re-run changes nothing, and that server's template database is
//! brought to the new template so a database-mode create there has the column (also
//! one made after a restart with a newer template, before any run).

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;

use berqenas::server::{self, Database};
use berqenas::template::Template;
use common::{connect_as, unique, TestApp};
use extra_cluster::{on, register_pg2};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ADD_PRIORITY: &str =
    "ALTER TABLE applications ADD COLUMN priority integer NOT NULL DEFAULT 0;\n";

async fn app(db: &Database, template: Template) -> TestApp {
    let platform = server::platform_with(db, common::secret_key(), 16, template)
        .await
        .unwrap();
    TestApp::serve(platform).await
}

/// Whether `schema.applications` has `column` in the catalog `c` looks at.
async fn has_column(c: &tokio_postgres::Client, schema: &str, column: &str) -> bool {
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = 'applications' AND a.attname = $2
                AND NOT a.attisdropped",
            &[&schema, &column],
        )
        .await
        .unwrap()
        .get(0);
    n == 1
}

/// The catalog a tenant's objects are in on pg2: its database, or pg2's own.
async fn catalog_on(pg2: &berqenas::pg::cluster::Cluster, t: &Value) -> tokio_postgres::Client {
    match t["isolation"].as_str().unwrap() {
        "database" => on(pg2, t["credentials"]["database"].as_str().unwrap()).await,
        _ => on(pg2, "postgres").await,
    }
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// The template database on pg2, as its catalog identifies it (a rebuild changes it).
async fn template_oid(pg2_admin: &tokio_postgres::Client) -> Option<u32> {
    pg2_admin
        .query_opt(
            "SELECT oid FROM pg_database WHERE datname = 'postgres_tenant_template'",
            &[],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_reaches_the_tenants_and_the_template_of_another_server() {
    let db = common::control_database("smig_all").await;
    let before = app(&db, common::template_with(&[])).await;
    let pg2 = register_pg2(&before, "smig-pg2").await;
    let pg2_admin = on(&pg2, "postgres").await;

    let mut tenants = Vec::new();
    for isolation in ["schema", "database", "shared"] {
        let name = unique(&format!("smig{}", &isolation[..1]));
        tenants.push(
            before
                .create_with(json!({"name": name, "server": "pg2", "isolation": isolation}))
                .await,
        );
    }
    let home = before
        .create_with(json!({"name": unique("smigh"), "server": "default", "isolation": "schema"}))
        .await;
    let template_before = template_oid(&pg2_admin).await;
    assert!(template_before.is_some(), "pg2 got its template database");
    drop(before);

    // A new release of the tenant schema: berqenas restarts with it.
    let app = app(
        &db,
        common::template_with(&[("0002_priority.sql", ADD_PRIORITY)]),
    )
    .await;
    let (status, plan) = app
        .call(
            Method::POST,
            "/api/v1/migrations",
            Some(json!({"dry_run": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    let planned: Vec<(String, String)> = plan["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["tenant"].as_str().unwrap().to_string(),
                p["server"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for t in &tenants {
        let name = t["name"].as_str().unwrap().to_string();
        assert!(planned.contains(&(name, "pg2".into())), "{plan}");
    }
    assert!(
        planned.contains(&(home["name"].as_str().unwrap().to_string(), "default".into())),
        "{plan}"
    );
    for t in &tenants {
        let c = catalog_on(&pg2, t).await;
        assert!(!has_column(&c, t["schema"].as_str().unwrap(), "priority").await);
    }

    let run = app.migrate(json!({"jobs": 2})).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["migrated"], 4, "{run}");
    assert_eq!(run["failed"], 0, "{run}");
    for t in &tenants {
        let name = t["name"].as_str().unwrap();
        assert_eq!(run["tenant_servers"][name], "pg2", "{run}");
        // On pg2's own catalog, in the tenant's schema (or database).
        let c = catalog_on(&pg2, t).await;
        assert!(
            has_column(&c, t["schema"].as_str().unwrap(), "priority").await,
            "{name}: no column on pg2"
        );
        let (_, got) = app
            .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
            .await;
        assert_eq!(got["template_version"], 2, "{got}");
        // The tenant's own login, on pg2, uses the new column.
        let tenant = connect_as(&t["credentials"]).await;
        let row = tenant
            .query_one(
                "INSERT INTO applications (name, team, created_by, priority)
                 VALUES ('billing', 'core', 'me', 7) RETURNING priority",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), 7, "{name}");
    }
    assert_eq!(
        run["tenant_servers"][home["name"].as_str().unwrap()],
        "default",
        "{run}"
    );
    let default_pg = common::superuser().await;
    let mut default_db = db.config.clone();
    default_db.dbname("smig_all");
    let control = berqenas::pg::connect(&default_db).await.unwrap();
    assert!(has_column(&control, home["schema"].as_str().unwrap(), "priority").await);
    // The throw-away session roles are gone from both servers.
    for c in [&pg2_admin, &default_pg] {
        assert_eq!(
            count(
                c,
                "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'berqenas\\_migrate\\_%'"
            )
            .await,
            0
        );
    }
    // pg2's template database was rebuilt at the new template.
    let template_after = template_oid(&pg2_admin).await;
    assert!(template_after.is_some());
    assert_ne!(
        template_after, template_before,
        "pg2's template was not rebuilt"
    );
    {
        // (Closed again: a clone waits for no one connected to the template.)
        let template = on(&pg2, "postgres_tenant_template").await;
        assert!(has_column(&template, "tenant", "priority").await);
    }

    // A re-run has nothing to do and changes nothing.
    let audited = "SELECT count(*) FROM berqenas.audit_log WHERE action = 'tenant_migrated'";
    let audit_before = count(&control, audited).await;
    assert_eq!(audit_before, 4);
    let again = app.migrate(json!({})).await;
    assert_eq!(again["state"], "succeeded", "{again}");
    assert_eq!(again["migrated"], 0, "{again}");
    assert_eq!(again["total"], 0, "{again}");
    assert_eq!(again["already_current"], 4, "{again}");
    assert_eq!(count(&control, audited).await, audit_before);
    assert_eq!(template_oid(&pg2_admin).await, template_after);

    // A new database-mode tenant on pg2 is cloned from the new template.
    let fresh = app
        .create_with(json!({"name": unique("smign"), "server": "pg2", "isolation": "database"}))
        .await;
    assert_eq!(fresh["template_version"], 2, "{fresh}");
    let c = catalog_on(&pg2, &fresh).await;
    assert!(has_column(&c, fresh["schema"].as_str().unwrap(), "priority").await);
    // A new shared-mode tenant there is at its pool's version, and writes the column.
    let fresh = app
        .create_with(json!({"name": unique("smigp"), "server": "pg2", "isolation": "shared"}))
        .await;
    assert_eq!(fresh["template_version"], 2, "{fresh}");
    connect_as(&fresh["credentials"])
        .await
        .batch_execute(
            "INSERT INTO applications (name, team, created_by, priority) VALUES ('x', 'y', 'z', 1)",
        )
        .await
        .unwrap();
    drop(app);

    // The next release, and a database-mode create on pg2 before any run: the create
    // itself brings pg2's template database to the template it registers.
    let app = crate::app(
        &db,
        common::template_with(&[
            ("0002_priority.sql", ADD_PRIORITY),
            (
                "0003_label.sql",
                "ALTER TABLE applications ADD COLUMN label text;\n",
            ),
        ]),
    )
    .await;
    let next = app
        .create_with(json!({"name": unique("smigx"), "server": "pg2", "isolation": "database"}))
        .await;
    assert_eq!(next["template_version"], 3, "{next}");
    let c = catalog_on(&pg2, &next).await;
    assert!(has_column(&c, next["schema"].as_str().unwrap(), "label").await);
}

/// Five database-mode creates on pg2, one after another: the tenants made.
async fn create_five(app: &TestApp, prefix: &str) -> Vec<Value> {
    let mut made = Vec::new();
    for _ in 0..5 {
        let name = unique(prefix);
        let (status, body) = app
            .call(
                Method::POST,
                "/api/v1/tenants",
                Some(json!({"name": name, "server": "pg2", "isolation": "database"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        made.push(body);
    }
    made
}

/// Two releases of the tenant template creating database-mode tenants on pg2 at once
/// (a rolling upgrade): each create's clone must come from a template database at the
/// version its registry row says. Each release rebuilds pg2's template to its own
/// version when it finds it at the other's, so the template flips back and forth; a
/// check made before the clone, outside the template lock, let the other release's
/// rebuild slip in between (the crash matrix's `migrate.run` case on `cmpg2` met it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_database_tenant_on_another_server_is_cloned_at_its_registered_version() {
    let db = common::control_database("smig_two").await;
    let old = app(&db, common::template_with(&[])).await;
    let pg2 = register_pg2(&old, "smig2-pg2").await;
    let new = app(
        &db,
        common::template_with(&[("0002_priority.sql", ADD_PRIORITY)]),
    )
    .await;

    let (a, b) = tokio::join!(create_five(&old, "smig2o"), create_five(&new, "smig2n"));
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both releases created tenants"
    );

    let mut control_config = db.config.clone();
    control_config.dbname("smig_two");
    let control = berqenas::pg::connect(&control_config).await.unwrap();
    for t in a.iter().chain(&b) {
        let name = t["name"].as_str().unwrap();
        let version: i32 = control
            .query_one(
                "SELECT template_version FROM tenants WHERE name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        let c = catalog_on(&pg2, t).await;
        let cloned_new = has_column(&c, t["schema"].as_str().unwrap(), "priority").await;
        assert_eq!(
            cloned_new,
            version == 2,
            "{name} is registered at version {version} but was cloned with priority={cloned_new}"
        );
    }
}
