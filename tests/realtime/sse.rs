//! A Server-Sent Events client for the realtime tests and bench: opens a stream,
//! parses `id:`/`data:` events, and skips comments (heartbeats).
#![allow(dead_code)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// One event: its `id:` and its `data:` as JSON.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: i64,
    pub data: Value,
}

pub struct Stream {
    res: reqwest::Response,
    buf: String,
    /// Comment lines seen (heartbeats).
    pub comments: usize,
}

/// How long a test waits for an event before it fails (a bound, not a measurement).
const PATIENCE: Duration = Duration::from_secs(30);

impl Stream {
    /// Opens `url` with `token`, resuming after `last` if given; the status and body
    /// when refused.
    pub async fn open(
        http: &reqwest::Client,
        url: &str,
        token: &str,
        last: Option<i64>,
    ) -> Result<Self, (StatusCode, Value)> {
        let mut req = http.get(url).bearer_auth(token);
        if let Some(l) = last {
            req = req.header("last-event-id", l.to_string());
        }
        let res = req
            .send()
            .await
            .map_err(|e| (StatusCode::BAD_GATEWAY, Value::String(e.to_string())))?;
        if res.status() != StatusCode::OK {
            let s = res.status();
            return Err((s, res.json().await.unwrap_or(Value::Null)));
        }
        Ok(Self {
            res,
            buf: String::new(),
            comments: 0,
        })
    }

    /// The next event; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Received> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut data) = (None, String::new());
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if let Some(id) = id {
                    return Some(Received {
                        id,
                        data: serde_json::from_str(&data).unwrap_or(Value::Null),
                    });
                }
                continue;
            }
            match self.res.chunk().await {
                Ok(Some(bytes)) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    /// The next `n` events; fails the test if they do not come.
    pub async fn take(&mut self, n: usize) -> Vec<Received> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match tokio::time::timeout(PATIENCE, self.next()).await {
                Ok(Some(e)) => out.push(e),
                Ok(None) => panic!(
                    "the stream ended after {} of {n} events: {out:?}",
                    out.len()
                ),
                Err(_) => panic!(
                    "no event within {PATIENCE:?} after {} of {n}: {out:?}",
                    out.len()
                ),
            }
        }
        out
    }

    /// Whether the stream ends (with no further event) within the patience.
    pub async fn ends(&mut self) -> bool {
        matches!(tokio::time::timeout(PATIENCE, self.next()).await, Ok(None))
    }
}
