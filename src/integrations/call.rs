//! One call to a step's endpoint: a signed POST (Standard Webhooks headers, the step's
//! own secret), bounded by the step's timeout; what it answered.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;

/// The most of a step's answer that is read (it is stored on the tenant).
const MAX_ANSWER: usize = 64 * 1024;

/// How a call ended.
#[derive(Debug)]
pub enum Answer {
    /// 2xx other than 202, with its JSON body (`{}` when empty).
    Done(Value),
    /// 202: the answer comes later, by callback.
    Accepted,
    /// Anything else: what to tell the client (never the endpoint's body).
    Failed(String),
    TimedOut,
}

/// POSTs `body` to `url`, signed as message `id`.
pub async fn post(
    url: &str,
    secret: &SecretString,
    id: &str,
    body: &Value,
    timeout: Duration,
) -> Answer {
    let bytes = serde_json::to_vec(body).expect("plain data serialises");
    let ts = chrono::Utc::now().timestamp();
    let Ok(signature) = crate::events::signature::header(&[secret], id, ts, &bytes) else {
        return Answer::Failed("its secret is unreadable".into());
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a plain HTTP client builds");
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(bytes)
        .send()
        .await;
    let res = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Answer::TimedOut,
        Err(e) if e.is_connect() => return Answer::Failed("it could not be reached".into()),
        Err(_) => return Answer::Failed("the call failed before an answer".into()),
    };
    let status = res.status();
    if status == reqwest::StatusCode::ACCEPTED {
        return Answer::Accepted;
    }
    if !status.is_success() {
        return Answer::Failed(format!("it answered HTTP {}", status.as_u16()));
    }
    let body = match res.bytes().await {
        Ok(b) => b,
        Err(e) if e.is_timeout() => return Answer::TimedOut,
        Err(_) => return Answer::Failed("its answer could not be read".into()),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Answer::Done(serde_json::json!({}));
    }
    if body.len() > MAX_ANSWER {
        return Answer::Failed(format!("its answer is larger than {MAX_ANSWER} bytes"));
    }
    match serde_json::from_slice(&body) {
        Ok(v) => Answer::Done(v),
        Err(_) => Answer::Failed("its answer is not JSON".into()),
    }
}
