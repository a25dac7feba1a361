//! Temporary tables escaped the disk quota in schema and shared modes (they live in
//! the control database, outside any tenant schema). They are charged to their tenant
//! now, and a tenant over its quota loses TEMP (its sessions holding temporary tables
//! end); it gets TEMP back when it is under its quota again. Large objects are covered
//! in `roles` (no tenant can create one).

use reqwest::Method;
use serde_json::json;

use crate::common::{self, connect_as, unique, TestApp};

/// Measures the tenant now. Another attack of this suite holds a shared pool table
/// locked for a few seconds (until the watchdog ends it): measuring a shared tenant
/// then waits it out, as the worker's next round would.
async fn measure(p: &berqenas::platform::Platform, id: uuid::Uuid) -> i64 {
    for _ in 0..20 {
        match berqenas::quota::disk::measure_now(p, id).await {
            Ok(bytes) => return bytes.unwrap(),
            Err(berqenas::tenant::service::Error::Db(e))
                if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the tenant could not be measured")
}

#[tokio::test]
async fn temporary_tables_count_against_the_disk_quota_and_are_stopped_over_it() {
    let _turn = crate::shared().await;
    let app = TestApp::spawn().await;
    let p = common::runtime(common::platform(4).await).await;
    for mode in ["schema", "shared", "database"] {
        let name = unique(&format!("temp-{mode}"));
        let created = app
            .create_with(json!({"name": name, "isolation": mode}))
            .await;
        let id = created["id"].as_str().unwrap().parse().unwrap();
        let before = measure(&p, id).await;
        let holder = connect_as(&created["credentials"]).await;
        holder
            .batch_execute(
                "CREATE TEMP TABLE hoard AS
                 SELECT g, md5(g::text) || md5((g * 7)::text) AS v FROM generate_series(1, 40000) g",
            )
            .await
            .unwrap();
        let with_temp = measure(&p, id).await;
        assert!(
            with_temp >= before + 2_000_000,
            "{mode}: the temporary table is charged ({before} -> {with_temp})"
        );
        let path = format!("/api/v1/tenants/{name}/quotas");
        let (s, b) = app
            .call(
                Method::PUT,
                &path,
                Some(json!({"db_quota_bytes": 1 << 20, "force": true})),
            )
            .await;
        assert!(s.is_success(), "{b}");
        berqenas::workflows::quotas::enforce_disk(&p, id)
            .await
            .unwrap();
        let e = holder
            .simple_query("SELECT count(*) FROM hoard")
            .await
            .expect_err("the session holding temporary tables ended");
        assert!(e.is_closed() || e.code().is_some(), "{mode}: {e}");
        let fresh = connect_as(&created["credentials"]).await;
        let e = fresh
            .batch_execute("CREATE TEMP TABLE more (x int)")
            .await
            .expect_err("no TEMP while over the quota");
        assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{mode}: {e}");
        drop(fresh);

        let (s, b) = app
            .call(Method::PUT, &path, Some(json!({"db_quota_bytes": null})))
            .await;
        assert!(s.is_success(), "{b}");
        measure(&p, id).await;
        berqenas::workflows::quotas::enforce_disk(&p, id)
            .await
            .unwrap();
        connect_as(&created["credentials"])
            .await
            .batch_execute("CREATE TEMP TABLE again (x int)")
            .await
            .unwrap_or_else(|e| panic!("{mode}: TEMP is back: {e}"));
    }
}
