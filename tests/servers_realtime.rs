//! Issue 18 item 1: realtime of tenants on a second server (docs/servers.md): an
//! event published with the tenant's key (inserted on its server) and one published
//! by the admin reach the tenant's stream, read from its server, in schema and
//! database mode; the quota round's upkeep (pruning, the database-mode gate) runs for
//! them without failing. Before, the stream read `default` and answered 503.

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;
#[path = "realtime/sse.rs"]
mod sse;
#[path = "support/state.rs"]
mod support;

use common::unique;
use extra_cluster::register_pg2;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sse::Stream;

fn key(t: &Value) -> &str {
    t["api_key"].as_str().unwrap()
}

async fn publish(
    app: &common::TestApp,
    t: &Value,
    channel: &str,
    payload: Value,
) -> (StatusCode, Value) {
    app.call_with(
        Method::POST,
        "/api/v1/realtime/publish",
        Some(json!({"channel": channel, "payload": payload})),
        Some(key(t)),
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_of_tenants_on_another_server() {
    let (app, state) = support::spawn().await;
    let pg2 = register_pg2(&app, "rt-pg2").await;
    for isolation in ["schema", "database", "shared"] {
        let name = unique(&format!("rt{}", &isolation[..1]));
        let t = app
            .create_with(
                json!({"name": name, "server": "pg2", "isolation": isolation, "public_api": true}),
            )
            .await;
        let mut s = Stream::open(
            &app.http,
            &format!("{}/api/v1/realtime/stream?channel=orders", app.url),
            key(&t),
            None,
        )
        .await
        .unwrap_or_else(|(s, b)| panic!("stream refused: {s} {b}"));
        let (st, b) = publish(&app, &t, "orders", json!({"n": 1})).await;
        assert_eq!(st, StatusCode::CREATED, "{isolation}: {b}");
        let (st, b) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/realtime/publish"),
                Some(json!({"channel": "orders", "payload": {"n": 2}})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{isolation}: {b}");
        let got = s.take(2).await;
        assert_eq!(got.len(), 2, "{isolation}: both events reached the stream");
        if isolation == "shared" {
            // In pg2's pool, not in default's.
            let id: uuid::Uuid = t["id"].as_str().unwrap().parse().unwrap();
            let events =
                "SELECT count(*) FROM berqenas_shared.realtime_events WHERE tenant_id = $1";
            let on_pg2: i64 = extra_cluster::on(&pg2, "postgres")
                .await
                .query_one(events, &[&id])
                .await
                .unwrap()
                .get(0);
            assert_eq!(on_pg2, 2, "the events are in pg2's pool");
            let on_default: i64 = common::superuser()
                .await
                .query_one(events, &[&id])
                .await
                .unwrap()
                .get(0);
            assert_eq!(on_default, 0);
        }
        berqenas::realtime::upkeep::tenant(
            &state.platform,
            t["id"].as_str().unwrap().parse().unwrap(),
        )
        .await
        .expect("the upkeep of a tenant on pg2");
    }
}
