//! Issue 18 item 1: backups and restores of a tenant on a second server
//! (docs/servers.md, docs/backups.md). A schema- and a database-mode tenant on pg2 are
//! backed up from pg2 (manual and scheduled), their rows changed, restored in place on
//! pg2 (and into a new tenant, also on pg2), and verified. The manifest's per-table
//! checksums are taken again on pg2 and must match. A decoy on `default` (a role and a
//! schema of the tenant's names) stays untouched and nothing of the tenant appears
//! there.

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;

use berqenas::backup::manifest::{table_stats, STABLE_TEXT};
use berqenas::backup::TableStat;
use common::{unique, TestApp};
use extra_cluster::{count, footprint, on, register_pg2};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn login(credentials: &Value) -> tokio_postgres::Client {
    let dsn = credentials["dsn"].as_str().unwrap();
    let (client, conn) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{dsn}: {e:?}"));
    tokio::spawn(conn);
    client
}

/// The tenant's application names, sorted, as its own login sees them.
async fn apps(credentials: &Value) -> Vec<String> {
    login(credentials)
        .await
        .query("SELECT name FROM applications ORDER BY name", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The manifest's tables, taken again now on `c` (the tenant's database on pg2) with
/// the manifest's own methods.
async fn live_stats(
    c: &tokio_postgres::Client,
    schema: &str,
    manifest: &[TableStat],
) -> Vec<TableStat> {
    c.batch_execute(STABLE_TEXT).await.unwrap();
    table_stats(c, schema, Some(manifest)).await.unwrap()
}

fn tables_of(backup: &Value) -> Vec<TableStat> {
    serde_json::from_value(backup["tables"].clone()).unwrap()
}

/// The one row of `applications` in a backup's manifest.
fn apps_rows(backup: &Value) -> i64 {
    tables_of(backup)
        .iter()
        .find(|t| t.table == "applications")
        .map(|t| t.rows)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_and_restores_of_a_tenant_on_another_server_run_there() {
    let app = TestApp::spawn().await;
    let default_pg = common::superuser().await;
    let pg2 = register_pg2(&app, "sbk-pg2").await;
    let pg2_admin = on(&pg2, "postgres").await;
    let worker = common::runtime(common::platform(4).await).await;

    // The engine's cleaner of a restore's throw-away objects on another server drops
    // them there, not on default (where a role of the same name stays).
    let role = format!("berqenas_restore_{}", unique("cl").replace('-', "_"));
    for c in [&default_pg, &pg2_admin] {
        c.batch_execute(&format!("CREATE ROLE \"{role}\" LOGIN"))
            .await
            .unwrap();
    }
    let object = berqenas::ops::Object::scratch(
        berqenas::workflows::restores_placed::ROLE_THERE,
        &format!("pg2/{role}"),
        Some("postgres"),
    );
    berqenas::workflows::restores_placed::clean_there(&worker, &object)
        .await
        .unwrap();
    let roles = "SELECT count(*) FROM pg_roles WHERE rolname = $1";
    assert_eq!(count(&pg2_admin, roles, &role).await, 0, "dropped on pg2");
    assert_eq!(count(&default_pg, roles, &role).await, 1, "kept on default");
    default_pg
        .batch_execute(&format!("DROP ROLE \"{role}\""))
        .await
        .unwrap();

    for isolation in ["schema", "database", "shared"] {
        let name = unique(&format!("sbk{}", &isolation[..1]));
        let created = app
            .create_with(json!({
                "name": name, "server": "pg2", "isolation": isolation,
                "backup_schedule": "0 3 * * *",
            }))
            .await;
        let creds = created["credentials"].clone();
        let stem = format!("tenant_{}", name.replace('-', "_"));
        let schema = stem.clone();
        let login_role = creds["user"].as_str().unwrap().to_string();
        let pg2_db = on(&pg2, creds["database"].as_str().unwrap()).await;

        // The decoy on default: the tenant's login role and schema, made by hand.
        default_pg
            .batch_execute(&format!(
                "CREATE ROLE \"{login_role}\" LOGIN PASSWORD 'decoy';
                 CREATE SCHEMA \"{schema}\"; CREATE TABLE \"{schema}\".decoy (x int);
                 INSERT INTO \"{schema}\".decoy VALUES (1);"
            ))
            .await
            .unwrap();
        let on_default = footprint(&default_pg, &stem).await;
        assert_eq!(on_default, (1, 1, 0), "only the decoy on default");

        login(&creds)
            .await
            .batch_execute(
                "INSERT INTO applications (name, team, created_by)
                 VALUES ('one', 'a', 'sbk'), ('two', 'a', 'sbk')",
            )
            .await
            .unwrap();

        // --- a manual backup, dumped from pg2 ---
        let (s, backup) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/backups"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{backup}");
        assert_eq!(backup["status"], "succeeded", "{backup}");
        assert_eq!(backup["isolation"], isolation, "{backup}");
        assert_eq!(backup["encrypted"], true, "{backup}");
        assert_eq!(apps_rows(&backup), 2, "{backup}");
        let manifest = tables_of(&backup);
        assert!(manifest.len() >= 3, "{backup}");
        // A shared-mode tenant's rows are in pg2's pool among others': its manifest is
        // of their copy (the restore below checks they come back).
        let pooled = isolation == "shared";
        if !pooled {
            assert_eq!(
                live_stats(&pg2_db, &schema, &manifest).await,
                manifest,
                "the manifest's checksums are pg2's tables'"
            );
        }
        let bid = backup["id"].as_str().unwrap().to_string();

        // --- its rows changed, then restored in place on pg2 ---
        let session = login(&creds).await;
        session
            .batch_execute(
                "DELETE FROM applications WHERE name = 'one';
                 INSERT INTO applications (name, team, created_by) VALUES ('three', 'a', 'sbk');",
            )
            .await
            .unwrap();
        assert_eq!(apps(&creds).await, ["three", "two"]);
        if !pooled {
            assert_ne!(live_stats(&pg2_db, &schema, &manifest).await, manifest);
        }

        // Bad input first: refused, naming the field, nothing changed.
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/backups/{bid}/restore"),
                Some(json!({"as": "Not A Name"})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(b["error"]["field"], "as", "{b}");
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/backups/{bid}/restore"),
                Some(json!({"into": "elsewhere"})),
            )
            .await;
        assert!(s.is_client_error(), "{s} {b}");
        let (s, b) = app
            .call(
                Method::POST,
                &format!(
                    "/api/v1/tenants/{name}/backups/{}/restore",
                    uuid::Uuid::nil()
                ),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
        assert_eq!(apps(&creds).await, ["three", "two"], "nothing changed");

        // A later release's migration marked the database on pg2 (database mode):
        // the restore must put the mark back at the backup's version, there.
        let db = creds["database"].as_str().unwrap().to_string();
        if isolation == "database" {
            pg2_admin
                .batch_execute(&format!(
                    "COMMENT ON DATABASE \"{db}\" IS 'berqenas template_version=999'"
                ))
                .await
                .unwrap();
        }
        let (s, restored) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/backups/{bid}/restore"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{restored}");
        assert_eq!(restored["server"], "pg2", "{restored}");
        if isolation == "database" {
            let mark: Option<String> = pg2_admin
                .query_one(
                    "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
                    &[&db],
                )
                .await
                .unwrap()
                .get(0);
            let want = format!("berqenas template_version={}", backup["template_version"]);
            assert_eq!(
                mark.as_deref(),
                Some(want.as_str()),
                "the database's mark on pg2"
            );
        }
        assert_eq!(restored["status"], "active", "{restored}");
        assert!(
            session.simple_query("SELECT 1").await.is_err(),
            "the tenant's sessions on pg2 end during a restore"
        );
        assert_eq!(
            apps(&creds).await,
            ["one", "two"],
            "the rows are back on pg2"
        );
        if !pooled {
            assert_eq!(
                live_stats(&pg2_db, &schema, &manifest).await,
                manifest,
                "after the restore pg2's tables match the manifest"
            );
        }
        // Nothing set aside is left on pg2, and nothing appeared on default.
        let aside: i64 = count(
            &pg2_db,
            "SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, $1 || '_')",
            &schema,
        )
        .await;
        assert_eq!(aside, 0, "schemas set aside are left on pg2");
        assert_eq!(footprint(&default_pg, &stem).await, on_default);
        let decoy: i64 = default_pg
            .query_one(&format!("SELECT count(*) FROM \"{schema}\".decoy"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(decoy, 1, "the decoy schema on default was touched");
        let scratch_on_pg2: i64 = pg2_admin
            .query_one(
                "SELECT (SELECT count(*) FROM pg_roles WHERE rolname LIKE 'berqenas\\_%restore%')
                      + (SELECT count(*) FROM pg_database WHERE datname LIKE 'berqenas\\_restore%')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(scratch_on_pg2, 0, "throw-away roles left on pg2");

        // --- verify: restored into a scratch database on default, compared ---
        let (s, report) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/backups/{bid}/verify"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{report}");
        assert_eq!(report["ok"], true, "{report}");

        // --- restore into a new tenant: on pg2 too, with the backup's rows ---
        let copy = unique(&format!("sbc{}", &isolation[..1]));
        let (s, copied) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/backups/{bid}/restore"),
                Some(json!({"as": copy})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{copied}");
        assert_eq!(copied["server"], "pg2", "{copied}");
        assert_eq!(copied["isolation"], isolation, "{copied}");
        assert_eq!(
            copied["credentials"]["port"].as_u64(),
            Some(u64::from(pg2.port())),
            "{copied}"
        );
        assert_eq!(apps(&copied["credentials"]).await, ["one", "two"]);
        let copy_stem = format!("tenant_{}", copy.replace('-', "_"));
        assert_eq!(
            footprint(&default_pg, &copy_stem).await,
            (0, 0, 0),
            "the copy has nothing on default"
        );
        assert_eq!(
            footprint(&pg2_admin, &copy_stem).await.0,
            6,
            "the copy's roles are on pg2"
        );

        // --- a scheduled backup, taken by the worker's round from pg2 ---
        login(&creds)
            .await
            .batch_execute(
                "INSERT INTO applications (name, team, created_by) VALUES ('four', 'a', 'sbk')",
            )
            .await
            .unwrap();
        default_pg
            .execute(
                "UPDATE berqenas.backup_policies SET next_run_at = now() - interval '1 second'
                  WHERE tenant_id = (SELECT id FROM berqenas.tenants WHERE name = $1)",
                &[&name],
            )
            .await
            .unwrap();
        let mut scheduled = None;
        for _ in 0..30 {
            berqenas::workflows::backups::worker_round(&worker, 1)
                .await
                .unwrap();
            let (_, listed) = app
                .call(
                    Method::GET,
                    &format!("/api/v1/tenants/{name}/backups"),
                    None,
                )
                .await;
            scheduled = listed["backups"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["kind"] == "scheduled")
                .cloned();
            if scheduled.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let scheduled = scheduled.expect("the worker took a scheduled backup of the pg2 tenant");
        assert_eq!(scheduled["status"], "succeeded", "{scheduled}");
        let (s, full) = app
            .call(
                Method::GET,
                &format!("/api/v1/backups/{}", scheduled["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{full}");
        assert_eq!(apps_rows(&full), 3, "{full}");
        let sched_manifest = tables_of(&full);
        if !pooled {
            assert_eq!(
                live_stats(&pg2_db, &schema, &sched_manifest).await,
                sched_manifest,
                "the scheduled backup's checksums are pg2's tables'"
            );
        }

        assert_eq!(footprint(&default_pg, &stem).await, on_default);
        default_pg
            .batch_execute(&format!(
                "DROP SCHEMA \"{schema}\" CASCADE; DROP ROLE \"{login_role}\";"
            ))
            .await
            .unwrap();
    }
}
