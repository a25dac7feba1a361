//! Critical: a tenant becoming superuser through code berqenas runs. A tenant user
//! with the `tenant_admin` role plants every trap it can: functions and operators that
//! shadow `pg_catalog`'s for the types the template uses (`lower(varchar)`,
//! `=(varchar, varchar)`, which beat the catalog's as exact matches), a trigger on
//! every template table, a column default calling its function. Each trap logs who
//! ran it and tries `RESET ROLE; ALTER ROLE <itself> SUPERUSER CREATEROLE BYPASSRLS`.
//! Then every operation kind runs on the tenant (template migration, data API, disk
//! measurement and enforcement, quota change, suspend and resume, backup, verify,
//! restore, soft delete and undelete, purge, restore from the archive): no tenant role
//! may gain anything, and no trap may ever run as anyone but the tenant's own roles
//! (or a throw-away role holding the tenant owner's rights only).

use std::collections::BTreeSet;

use berqenas::migrate::{self, MigrateRequest};
use berqenas::server;
use berqenas::template::Template;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{self, unique, TestApp};

const INIT: &str = include_str!("../../templates/tenant/0001_init.sql");
/// What an operator's next template release typically does: a column, filled in.
const NEXT: &str = "ALTER TABLE applications ADD COLUMN slug varchar(255);\n\
                    UPDATE applications SET slug = lower(name) WHERE name = name;\n";

fn template(next: bool) -> Template {
    let mut files = vec![("0001_init.sql", INIT)];
    if next {
        files.push(("0002_slug.sql", NEXT));
    }
    Template::from_files(&files)
}

/// Every trap a tenant admin can plant in `schema`, naming the role the trap tries
/// to make a superuser.
fn traps_sql(schema: &str, me: &str) -> String {
    format!(
        r#"
CREATE TABLE {schema}.trap_log (session_user_name text, current_user_name text, is_superuser text);
GRANT SELECT, INSERT ON {schema}.trap_log TO PUBLIC;
CREATE FUNCTION {schema}.trap() RETURNS void LANGUAGE plpgsql AS $t$
BEGIN
    BEGIN
        INSERT INTO {schema}.trap_log VALUES (session_user, current_user, current_setting('is_superuser'));
    EXCEPTION WHEN others THEN NULL;
    END;
    BEGIN
        RESET ROLE;
        EXECUTE 'ALTER ROLE "{me}" SUPERUSER CREATEROLE BYPASSRLS';
    EXCEPTION WHEN others THEN NULL;
    END;
    BEGIN
        EXECUTE 'SET SESSION AUTHORIZATION DEFAULT';
        EXECUTE 'ALTER ROLE "{me}" SUPERUSER CREATEROLE BYPASSRLS';
    EXCEPTION WHEN others THEN NULL;
    END;
END $t$;
GRANT EXECUTE ON FUNCTION {schema}.trap() TO PUBLIC;
CREATE FUNCTION {schema}.lower(varchar) RETURNS text LANGUAGE plpgsql AS $t$
BEGIN PERFORM {schema}.trap(); RETURN pg_catalog.lower($1::text); END $t$;
CREATE FUNCTION {schema}.varchar_eq(varchar, varchar) RETURNS boolean LANGUAGE plpgsql AS $t$
BEGIN PERFORM {schema}.trap(); RETURN $1::text OPERATOR(pg_catalog.=) $2::text; END $t$;
CREATE OPERATOR {schema}.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = {schema}.varchar_eq);
CREATE FUNCTION {schema}.trap_trigger() RETURNS trigger LANGUAGE plpgsql AS $t$
BEGIN PERFORM {schema}.trap(); RETURN coalesce(NEW, OLD); END $t$;
CREATE FUNCTION {schema}.trap_default() RETURNS text LANGUAGE plpgsql AS $t$
BEGIN PERFORM {schema}.trap(); RETURN 'trapped'; END $t$;
CREATE TABLE {schema}.gadgets (id int, note text DEFAULT {schema}.trap_default());
GRANT SELECT, INSERT ON {schema}.gadgets TO PUBLIC;
"#
    ) + &[
        "applications",
        "resources",
        "deployments",
        "user_activity",
        "gadgets",
    ]
    .iter()
    .map(|t| {
        format!(
            "CREATE TRIGGER trap BEFORE INSERT OR UPDATE OR DELETE ON {schema}.{t}
                 FOR EACH ROW EXECUTE FUNCTION {schema}.trap_trigger();\n"
        )
    })
    .collect::<String>()
}

/// A user of the tenant with the tenant_admin role; returns its credentials.
async fn tenant_admin(app: &TestApp, tenant: &str) -> Value {
    let (s, b) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{tenant}/quotas"),
            Some(json!({"max_users": 5})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/users"),
            Some(json!({"email": format!("mallory@{tenant}.example"), "role": "tenant_admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["credentials"].clone()
}

/// Roles of the tenant (and throw-away roles) with an attribute no tenant role may
/// have. (Other tests of this binary elevate roles of their own tenants on purpose.)
async fn elevated(pg: &tokio_postgres::Client, tenant: &str) -> Vec<String> {
    let prefix = format!("tenant_{}_%", tenant.replace('-', "_"));
    pg.query(
        "SELECT rolname::text FROM pg_roles WHERE (rolname LIKE $1 OR rolname LIKE 'berqenas\\_migrate\\_%'
                OR rolname LIKE 'berqenas\\_restore\\_%')
            AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication)",
        &[&prefix],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Who ran the traps so far: (session user, current user, is_superuser).
async fn trap_runs(db: &tokio_postgres::Client, schema: &str) -> Vec<(String, String, String)> {
    let Ok(rows) = db
        .query(
            &format!(
                "SELECT session_user_name, current_user_name, is_superuser FROM {schema}.trap_log"
            ),
            &[],
        )
        .await
    else {
        return vec![];
    };
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

struct Target {
    name: String,
    schema: String,
    database: String,
    api_key: String,
}

async fn superuser_in(db: &str) -> tokio_postgres::Client {
    common::superuser_in(db).await
}

/// Runs `step`, then collects who ran the traps and checks nothing was gained.
async fn after(
    step: &str,
    t: &Target,
    control: &tokio_postgres::Client,
    seen: &mut BTreeSet<(String, String, String)>,
) {
    let db = superuser_in(&t.database).await;
    for run in trap_runs(&db, &t.schema).await {
        seen.insert(run);
    }
    let gained = elevated(control, &t.name).await;
    assert!(
        gained.is_empty(),
        "after {step}: {gained:?} gained privileges"
    );
}

async fn ok(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let (s, b) = app.call(method, path, body).await;
    assert!(s.is_success(), "{path}: {s} {b}");
    b
}

async fn every_operation(mode: &str) {
    let name_db = format!("traps_{mode}");
    let db = common::control_database(&name_db).await;
    let first = server::platform_with(&db, common::secret_key(), 16, template(false))
        .await
        .unwrap();
    let app = TestApp::serve(first).await;
    let name = unique(&format!("trap-{mode}"));
    let created = app
        .create_with(json!({"name": name, "isolation": mode, "public_api": true}))
        .await;
    let schema = match mode {
        "shared" => "berqenas_shared".to_string(),
        _ => created["schema"].as_str().unwrap().to_string(),
    };
    let t = Target {
        name: name.clone(),
        schema: schema.clone(),
        database: created["database"].as_str().unwrap().to_string(),
        api_key: created["api_key"].as_str().unwrap().to_string(),
    };
    let creds = tenant_admin(&app, &name).await;
    let me = creds["user"].as_str().unwrap().to_string();
    let mallory = common::connect_as(&creds).await;
    mallory
        .batch_execute(&format!(
            "INSERT INTO {schema}.applications (name, team, created_by) VALUES ('Web', 'core', 'm')"
        ))
        .await
        .unwrap();
    let planted = mallory.batch_execute(&traps_sql(&schema, &me)).await;
    if mode == "shared" {
        // No schema of its own: nowhere to plant anything.
        let e = planted.expect_err("a shared-mode tenant cannot create objects");
        assert_eq!(
            e.as_db_error().map(|d| d.code().code()),
            Some("42501"),
            "{e}"
        );
    } else {
        planted.unwrap();
    }
    drop(mallory);

    // The operator releases the next template version.
    let next = server::platform_with(&db, common::secret_key(), 16, template(true))
        .await
        .unwrap();
    let platform = common::runtime(next).await;
    let app = TestApp::over(platform.clone()).await;
    let rt = platform.clone();
    let control = superuser_in(&name_db).await;
    let mut seen = BTreeSet::new();

    let run = berqenas::workflows::migrate::run(
        &platform,
        MigrateRequest {
            tenant: Some(name.clone()),
            ..Default::default()
        },
        "test",
    )
    .await
    .unwrap();
    let migrate::Started::Run(run) = run else {
        panic!("not a dry run")
    };
    assert_eq!(run.migrated, 1, "{:?}", run.failures);
    after("migrate", &t, &control, &mut seen).await;

    let (s, b) = app
        .call_with(
            Method::POST,
            "/api/v1/query",
            Some(json!({"sql": "UPDATE applications SET team = lower(team) WHERE team = team"})),
            Some(&t.api_key),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    after("data API", &t, &control, &mut seen).await;

    let path = format!("/api/v1/tenants/{name}");
    ok(
        &app,
        Method::PUT,
        &format!("{path}/quotas"),
        Some(json!({"db_quota_bytes": 1 << 20, "force": true})),
    )
    .await;
    let id = created["id"].as_str().unwrap().parse().unwrap();
    berqenas::quota::disk::measure_now(&platform, id)
        .await
        .unwrap();
    berqenas::workflows::quotas::enforce_disk(&rt, id)
        .await
        .unwrap();
    ok(
        &app,
        Method::PUT,
        &format!("{path}/quotas"),
        Some(json!({"db_quota_bytes": null, "max_connections": 7})),
    )
    .await;
    berqenas::quota::disk::measure_now(&platform, id)
        .await
        .unwrap();
    berqenas::workflows::quotas::enforce_disk(&rt, id)
        .await
        .unwrap();
    after("disk quota and quota changes", &t, &control, &mut seen).await;

    ok(&app, Method::POST, &format!("{path}/suspend"), None).await;
    ok(&app, Method::POST, &format!("{path}/resume"), None).await;
    after("suspend and resume", &t, &control, &mut seen).await;

    let backup = ok(&app, Method::POST, &format!("{path}/backups"), None).await;
    let backup_id = backup["id"].as_str().unwrap();
    let report = ok(
        &app,
        Method::POST,
        &format!("{path}/backups/{backup_id}/verify"),
        None,
    )
    .await;
    assert_eq!(report["ok"], true, "{report}");
    ok(
        &app,
        Method::POST,
        &format!("{path}/backups/{backup_id}/restore"),
        Some(json!({})),
    )
    .await;
    after("backup, verify, restore", &t, &control, &mut seen).await;

    ok(&app, Method::DELETE, &path, None).await;
    ok(&app, Method::POST, &format!("{path}/restore"), None).await;
    ok(
        &app,
        Method::DELETE,
        &format!("{path}?purge=now"),
        Some(json!({"confirm": name})),
    )
    .await;
    let gained = elevated(&control, &name).await;
    assert!(gained.is_empty(), "after purge: {gained:?}");
    ok(&app, Method::POST, &format!("{path}/restore"), None).await;
    after(
        "delete, undelete, purge, restore from archive",
        &t,
        &control,
        &mut seen,
    )
    .await;

    let (s, b) = app
        .call_with(
            Method::POST,
            "/api/v1/query",
            Some(json!({"sql": "SELECT count(*)::int AS n FROM applications"})),
            Some(&t.api_key),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "the tenant still works: {b}");

    if mode != "shared" {
        assert!(
            !seen.is_empty(),
            "the traps must have fired (else this test proves nothing)"
        );
    }
    let tenant_role = |r: &str| {
        r.starts_with(&format!("tenant_{}_", name.replace('-', "_")))
            || r.starts_with("berqenas_migrate_")
            || r.starts_with("berqenas_restore_")
    };
    for (session, current, superuser) in &seen {
        assert_eq!(superuser, "off", "a trap ran as a superuser: {seen:?}");
        assert!(
            tenant_role(session) && tenant_role(current),
            "a trap ran as {session}/{current}, not the tenant's own roles: {seen:?}"
        );
    }
}

#[tokio::test]
async fn planted_traps_gain_nothing_in_schema_mode() {
    let _turn = crate::shared().await;
    every_operation("schema").await;
}

#[tokio::test]
async fn planted_traps_gain_nothing_in_database_mode() {
    let _turn = crate::shared().await;
    every_operation("database").await;
}

#[tokio::test]
async fn a_shared_mode_tenant_has_nowhere_to_plant_a_trap() {
    let _turn = crate::shared().await;
    every_operation("shared").await;
}
