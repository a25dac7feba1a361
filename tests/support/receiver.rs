//! A webhook receiver for tests: an HTTP server on 127.0.0.1 that records every
//! delivery, and the Standard Webhooks signature written from the specification's text.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode as AxStatus};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn tenant(&self) -> String {
        self.json()["tenant"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

pub type Answer = Arc<dyn Fn(&Received) -> (u16, Option<&'static str>) + Send + Sync>;

/// An HTTP server on 127.0.0.1 that records every POST and answers as `answer` says
/// (a status, and a Retry-After).
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start(answer: Answer) -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let g = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let g = g.clone();
                let answer = answer.clone();
                async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default()
                    };
                    let r = Received {
                        id: h("webhook-id"),
                        timestamp: h("webhook-timestamp"),
                        signature: h("webhook-signature"),
                        body: body.to_vec(),
                        at: Instant::now(),
                    };
                    let (status, retry_after) = answer(&r);
                    g.lock().unwrap().push(r);
                    let mut res = axum::response::Response::new(axum::body::Body::empty());
                    *res.status_mut() = AxStatus::from_u16(status).unwrap();
                    if let Some(ra) = retry_after {
                        res.headers_mut().insert("retry-after", ra.parse().unwrap());
                    }
                    res
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, got }
    }

    pub async fn ok() -> Self {
        Self::start(Arc::new(|_| (200, None))).await
    }

    pub fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was received (at most `secs`).
    pub async fn wait(
        &self,
        secs: u64,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: received {:?}",
                got.iter().map(|r| r.json()).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The specification's signature, written here from its text: base64 of
/// HMAC-SHA256(key = base64-decoded secret after `whsec_`, "{id}.{timestamp}.{body}").
pub fn spec_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether one of the header's `v1,` signatures is `secret`'s.
pub fn verifies(r: &Received, secret: &str) -> bool {
    let expected = spec_signature(secret, &r.id, &r.timestamp, &r.body);
    r.signature
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected)
}
