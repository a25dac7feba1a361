//! What PostgreSQL itself cannot keep apart between tenants sharing one database, as
//! the README's known limits state it, and no wider:
//! - NOTIFY reaches any session of the same database listening on the channel, so
//!   schema- and shared-mode tenants (the control database) can signal each other; a
//!   database-mode tenant cannot reach them;
//! - in shared mode a primary key is one index over all tenants' rows, so inserting
//!   another tenant's row id tells that it exists (unique constraints of the template
//!   are per tenant: a name tells nothing);
//! - in shared mode foreign-key checks bypass row security, so a tenant that knows
//!   another's row id can reference it, and still cannot read it.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::common::{connect_as, unique, TestApp};

/// A session that hands over the notifications it receives.
async fn listener(
    credentials: &Value,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (client, mut conn) =
        tokio_postgres::connect(credentials["dsn"].as_str().unwrap(), tokio_postgres::NoTls)
            .await
            .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    (client, rx)
}

async fn received(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn notify_crosses_tenants_of_one_database_only() {
    let _turn = crate::shared().await;
    let app = TestApp::spawn().await;
    let a = app.create_in(&unique("notify-a"), "schema").await;
    let b = app.create_in(&unique("notify-b"), "shared").await;
    let c = app.create_in(&unique("notify-c"), "database").await;
    let (listening, mut rx) = listener(&a["credentials"]).await;
    listening
        .batch_execute("LISTEN tenant_signal")
        .await
        .unwrap();
    connect_as(&b["credentials"])
        .await
        .batch_execute("NOTIFY tenant_signal, 'from a shared tenant'")
        .await
        .unwrap();
    assert_eq!(
        received(&mut rx).await.as_deref(),
        Some("from a shared tenant"),
        "the documented limit"
    );
    connect_as(&c["credentials"])
        .await
        .batch_execute("NOTIFY tenant_signal, 'from a database tenant'")
        .await
        .unwrap();
    assert_eq!(received(&mut rx).await, None, "and no wider");
}

#[tokio::test]
async fn shared_mode_keys_reveal_existence_and_foreign_keys_bypass_row_security() {
    let _turn = crate::shared().await;
    let app = TestApp::spawn().await;
    let a = app.create_in(&unique("keys-a"), "shared").await;
    let b = app.create_in(&unique("keys-b"), "shared").await;
    let (a, b) = (
        connect_as(&a["credentials"]).await,
        connect_as(&b["credentials"]).await,
    );
    let id: uuid::Uuid = a
        .query_one(
            "INSERT INTO applications (name, team, created_by) VALUES ('secret-app', 'core', 'a') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // A name is unique per tenant: B may use it, learning nothing.
    b.batch_execute(
        "INSERT INTO applications (name, team, created_by) VALUES ('secret-app', 'core', 'b')",
    )
    .await
    .unwrap();
    // The row id is unique over all tenants: its existence shows.
    let e = b
        .execute(
            "INSERT INTO applications (id, name, team, created_by) VALUES ($1, 'probe', 't', 'b')",
            &[&id],
        )
        .await
        .expect_err("the documented limit");
    assert_eq!(e.code().map(|c| c.code()), Some("23505"), "{e}");
    // A foreign key check does not apply row security: B can reference A's row...
    b.execute(
        "INSERT INTO deployments (application_id, version, status, triggered_by) VALUES ($1, 'v1', 'ok', 'b')",
        &[&id],
    )
    .await
    .expect("the documented limit");
    // ...and still sees none of it.
    let seen: i64 = b
        .query_one("SELECT count(*) FROM applications WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 0, "no wider: the row stays unreadable");
    let joined: i64 = b
        .query_one(
            "SELECT count(*) FROM deployments d JOIN applications a ON a.id = d.application_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(joined, 0, "no wider: not even through the reference");
}
