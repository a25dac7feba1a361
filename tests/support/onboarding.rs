//! Onboarding-step test helpers: a real HTTP receiver that answers as told and keeps
//! every request, a plan of a test's own (so a step it registers matches no other
//! test's creates), the Standard Webhooks signature written from the specification,
//! and what PostgreSQL holds of a tenant name.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::Mac;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::{unique, TestApp};

/// What a receiver saw: path, headers, body.
pub type Seen = Arc<Mutex<Vec<(String, axum::http::HeaderMap, Vec<u8>)>>>;

/// A real HTTP receiver on 127.0.0.1: answers `status` and `body` after `delay`, and
/// keeps every request.
pub async fn receiver(status: u16, body: &'static str, delay: Duration) -> (String, Seen) {
    let seen: Seen = Default::default();
    let kept = seen.clone();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, bytes: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock()
                    .unwrap()
                    .push((uri.path().to_string(), headers, bytes.to_vec()));
                tokio::time::sleep(delay).await;
                (axum::http::StatusCode::from_u16(status).unwrap(), body)
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// A plan of this test's own (steps that match it run for no other test's creates).
pub async fn plan(pg: &tokio_postgres::Client) -> String {
    let name = unique("obplan").replace('-', "_");
    crate::common::plan_like_free(pg, &name, "").await;
    name
}

/// Registers a step; returns its secret.
pub async fn register(app: &TestApp, body: Value) -> String {
    let (s, reg) = app
        .call(Method::POST, "/api/v1/onboarding-steps", Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{reg}");
    reg["secret"].as_str().unwrap().to_string()
}

fn key(secret: &str) -> Vec<u8> {
    STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap()
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, from the specification's text.
pub fn sign(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key(secret)).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Whether a call's signature verifies with `secret`.
pub fn verifies(secret: &str, headers: &axum::http::HeaderMap, body: &[u8]) -> bool {
    let h = |k: &str| headers.get(k).unwrap().to_str().unwrap().to_string();
    let expected = sign(secret, &h("webhook-id"), &h("webhook-timestamp"), body);
    h("webhook-signature").split(' ').any(|s| s == expected)
}

/// What PostgreSQL holds of a tenant name: roles, schema, database, shared-pool member
/// rows, registry row.
pub async fn traces(pg: &tokio_postgres::Client, name: &str) -> Vec<String> {
    let stem = format!("tenant_{}", name.replace('-', "_"));
    let shared = pg
        .query_one(
            "SELECT to_regclass('berqenas_shared.members') IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get::<_, bool>(0);
    let members = if shared {
        "UNION ALL SELECT 'member:' || role FROM berqenas_shared.members
                    WHERE role = $1 OR role LIKE $1 || '\\_%'"
    } else {
        ""
    };
    pg.query(
        &format!(
            "SELECT 'role:' || rolname FROM pg_roles WHERE rolname = $1 OR rolname LIKE $1 || '\\_%'
             UNION ALL SELECT 'schema:' || nspname FROM pg_namespace WHERE nspname = $1
             UNION ALL SELECT 'database:' || datname FROM pg_database WHERE datname = $1
             UNION ALL SELECT 'tenant:' || name FROM berqenas.tenants WHERE name = $2
             {members}"
        ),
        &[&stem, &name],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}
