//! Webhooks delivered by real `berqenas serve` processes: two instances on one control
//! database, and `kill -9` between the commit and the delivery.

mod common;
#[path = "support/process.rs"]
mod process;
#[path = "support/receiver.rs"]
mod receiver;

use std::time::{Duration, Instant};

use berqenas::store::outbox::{append, NewEvent};
use receiver::Receiver;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

const KEY: &str = "abababababababababababababababababababababababababababababababab";

/// The test cluster's DSN for a control database of its own (for `serve` processes).
async fn control_dsn(name: &str) -> String {
    common::control_database(name).await;
    common::database()
        .await
        .cluster
        .as_ref()
        .unwrap()
        .superuser_dsn(name)
}

#[tokio::test]
async fn two_server_instances_deliver_each_event_to_each_endpoint_once() {
    let name = common::unique("whtwo").replace('-', "_");
    let dsn = control_dsn(&name).await;
    let env = [
        ("BERQENAS_DATABASE_URL", dsn.as_str()),
        ("BERQENAS_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("BERQENAS_WEBHOOK_RETRY_SCHEDULE", "300ms,300ms,300ms"),
        // One key: each instance opens the secrets the other sealed.
        ("BERQENAS_SECRET_KEY", KEY),
    ];
    let d1 = common::scratch_dir("whtwo-a");
    let d2 = common::scratch_dir("whtwo-b");
    let mut a = process::Server::start(&d1, &env).await;
    let mut b = process::Server::start(&d2, &env).await;
    let rx1 = Receiver::ok().await;
    let rx2 = Receiver::ok().await;
    for rx in [&rx1, &rx2] {
        let (st, body) = a
            .post(
                "/api/v1/webhooks",
                Some(json!({"url": rx.url, "events": ["tenant.*"]})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
    }
    let pool = berqenas::pg::pool(berqenas::pg::parse_config(&dsn).unwrap(), 4).unwrap();
    let tenants: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();
    let mut ids = vec![];
    for i in 0..200 {
        let c = pool.get().await.unwrap();
        let t = tenants[i % tenants.len()];
        let e = append(
            &c,
            &NewEvent {
                event_type: "tenant.updated",
                tenant_id: Some(t),
                tenant_name: Some("t"),
                data: json!({"n": i}),
            },
        )
        .await
        .unwrap();
        ids.push((t, e.id.to_string()));
    }
    for rx in [&rx1, &rx2] {
        let got = rx.wait(60, "all 200", |g| g.len() >= 200).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let got_now = rx.got();
        assert_eq!(got_now.len(), 200, "each event once");
        let mut seen: Vec<String> = got.iter().map(|r| r.id.clone()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 200);
        // In order per tenant.
        for t in &tenants {
            let want: Vec<&str> = ids
                .iter()
                .filter(|(x, _)| x == t)
                .map(|(_, i)| i.as_str())
                .collect();
            let have: Vec<String> = got_now
                .iter()
                .filter(|r| r.json()["tenant"]["id"] == json!(t))
                .map(|r| r.id.clone())
                .collect();
            assert_eq!(have, want);
        }
    }
    let c = pool.get().await.unwrap();
    let attempts: i64 = c
        .query_one("SELECT count(*) FROM berqenas.webhook_attempts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 400);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn kill_9_between_commit_and_delivery_then_restart_delivers_with_the_same_webhook_id() {
    let dir = common::scratch_dir("whcrash");
    let _cleanup = process::Cleanup(dir.clone());
    let base = [
        ("BERQENAS_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("BERQENAS_WEBHOOK_TIMEOUT", "2s"),
        ("BERQENAS_WEBHOOK_RETRY_SCHEDULE", "300ms,300ms"),
    ];
    let with = |fp: &'static str| {
        let mut v = base.to_vec();
        v.push(("BERQENAS_FAILPOINT", fp));
        v
    };
    let rx = Receiver::ok().await;
    let mut server = process::Server::start(&dir, &with("webhooks.deliver.before")).await;
    let (st, body) = server
        .post(
            "/api/v1/webhooks",
            Some(json!({"url": rx.url, "events": ["tenant.*"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let dsn = {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_berqenas"))
            .args(["psql", "--print-dsn", "--data-dir"])
            .arg(&dir)
            .env_remove("BERQENAS_DATABASE_URL")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let pool = berqenas::pg::pool(berqenas::pg::parse_config(&dsn).unwrap(), 2).unwrap();
    let e = {
        let mut c = pool.get().await.unwrap();
        let tx = c.transaction().await.unwrap();
        let e = append(
            &tx,
            &NewEvent {
                event_type: "tenant.created",
                tenant_id: Some(Uuid::new_v4()),
                tenant_name: Some("crash"),
                data: json!({}),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        e
    };
    // The relay claims the delivery and dies before sending it.
    let status = tokio::time::timeout(Duration::from_secs(30), server.child.wait())
        .await
        .expect("the failpoint killed the server")
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(rx.got().is_empty());

    // Restarted, it sends once the dead claim ends, then dies before recording it.
    let server = process::Server::start(&dir, &with("webhooks.deliver.sent")).await;
    let mut child = server.child;
    let got = rx
        .wait(30, "delivered after the restart", |g| !g.is_empty())
        .await;
    assert_eq!(got[0].id, e.id.to_string());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );

    // Restarted again: sent again (at least once), with the same webhook-id, and recorded.
    let mut server = process::Server::start(&dir, &base).await;
    let got = rx.wait(30, "the duplicate", |g| g.len() >= 2).await;
    assert_eq!(got[1].id, e.id.to_string(), "duplicates share webhook-id");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = pool.get().await.unwrap();
        let state: String = c
            .query_one("SELECT state FROM berqenas.webhook_deliveries", &[])
            .await
            .unwrap()
            .get(0);
        if state == "delivered" {
            break;
        }
        assert!(Instant::now() < deadline, "still {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(pool);
    server.stop().await;
}
