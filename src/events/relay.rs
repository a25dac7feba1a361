//! The relay: `serve`'s background worker that fans outbox events out into one
//! delivery per matching enabled endpoint, and delivers them as Standard Webhooks.
//!
//! Work is claimed per item with `FOR UPDATE SKIP LOCKED`, so several instances on one
//! control database share it and each event goes to each endpoint once in the normal
//! case. A delivery is claimed for the attempt's timeout plus a margin; a relay that
//! dies mid-attempt leaves it due again when the claim ends, and the next attempt
//! carries the same `webhook-id` (at least once). Deliveries of one (endpoint, tenant)
//! go out in event order: only the first pending one is due (see
//! [`store::claim_due`]). Failed attempts are retried on the schedule (Svix's by
//! default) with jitter, `Retry-After` honoured; a `410 Gone` disables the endpoint;
//! after the last try the delivery is dead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use rand::Rng;
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{address, matches, signature, Event};
use crate::secrets::SecretKey;
use crate::store::webhooks::{self as store, Claimed, NewDelivery, Outcome};

/// Svix's schedule: the waits after the 1st, 2nd, ... failed attempt.
pub const DEFAULT_SCHEDULE: &[Duration] = &[
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// The channel the outbox's trigger notifies at each commit.
pub const CHANNEL: &str = "berqenas_outbox";

/// How the relay runs (`serve --webhook-*`).
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Deliver to loopback, link-local and private addresses too (tests, development).
    pub allow_private: bool,
    /// The waits between attempts; after the last one fails the delivery is dead.
    pub schedule: Vec<Duration>,
    /// One attempt's time limit.
    pub timeout: Duration,
    /// Deliveries attempted at once by this instance.
    pub concurrency: usize,
    /// Without a notification, how often the relay looks for work.
    pub poll: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            allow_private: false,
            schedule: DEFAULT_SCHEDULE.to_vec(),
            timeout: Duration::from_secs(15),
            concurrency: 128,
            poll: Duration::from_secs(1),
        }
    }
}

/// Parses `5s,5m,30m,2h` (`--webhook-retry-schedule`).
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    s.split(',')
        .map(|part| {
            crate::duration::parse("--webhook-retry-schedule", part.trim()).map_err(|p| p.message)
        })
        .collect()
}

/// The wait before the next attempt after `attempts` failed ones (`None`: no try
/// left), with ±20 % jitter, and at least what `Retry-After` asked for.
pub fn next_wait(
    schedule: &[Duration],
    attempts: i32,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let base = *schedule.get(usize::try_from(attempts - 1).ok()?)?;
    let jittered = base.mul_f64(rand::thread_rng().gen_range(0.8..1.2));
    Some(retry_after.map_or(jittered, |r| r.max(jittered)))
}

/// A `Retry-After` header: seconds, or an HTTP date.
fn retry_after(h: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let v = h?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(86_400)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    Some(Duration::from_secs(secs.clamp(0, 86_400) as u64))
}

/// At most this many events are fanned out in one transaction.
const FAN_OUT_BATCH: i64 = 500;

/// The relay of one server instance.
#[derive(Clone)]
pub struct Relay {
    pool: Pool,
    key: SecretKey,
    opts: Arc<RelayOptions>,
    http: reqwest::Client,
    /// Wakes the relay to fan out and to attempt what is due: finished attempts, and
    /// the API once it has queued deliveries (replays, test events).
    pub wake: Arc<Notify>,
    /// Woken by the outbox's notifications: events to fan out, which may make no
    /// delivery (no endpoint takes them), so nothing is known to be due yet.
    outbox: Arc<Notify>,
}

/// What a round did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Round {
    pub fanned_out: usize,
    pub attempted: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

impl Relay {
    pub fn new(pool: Pool, key: SecretKey, opts: RelayOptions) -> Self {
        let http = reqwest::Client::builder()
            .timeout(opts.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(address::Resolver {
                allow_private: opts.allow_private,
            }))
            .user_agent(concat!("berqenas-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client without TLS options builds");
        Self {
            pool,
            key,
            opts: Arc::new(opts),
            http,
            wake: Arc::new(Notify::new()),
            outbox: Arc::new(Notify::new()),
        }
    }

    /// Fans out waiting events, then attempts the due deliveries; returns what it did.
    pub async fn run_once(&self) -> Result<Round, RelayError> {
        let (fanned_out, _) = self.fan_out(FAN_OUT_BATCH).await?;
        let attempted = self.deliver_due().await?;
        Ok(Round {
            fanned_out,
            attempted,
        })
    }

    /// One transaction: takes up to `limit` queued events and adds a delivery for each
    /// enabled endpoint whose patterns take it. Returns how many events and how many
    /// deliveries.
    pub async fn fan_out(&self, limit: i64) -> Result<(usize, usize), RelayError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let events = store::claim_fanout(&tx, limit).await?;
        if events.is_empty() {
            return Ok((0, 0));
        }
        crate::ops::failpoint::kill_if_named("webhooks.fanout.claimed");
        let endpoints = store::enabled(&tx).await?;
        let new: Vec<NewDelivery> = events
            .iter()
            .flat_map(|e| {
                endpoints
                    .iter()
                    .filter(|(_, pats)| pats.iter().any(|p| matches(p, &e.event_type)))
                    .map(move |(id, _)| NewDelivery {
                        endpoint_id: *id,
                        event: e,
                    })
            })
            .collect();
        store::insert_deliveries(&tx, &new, false, None).await?;
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        store::fanned_out(&tx, &seqs).await?;
        tx.commit().await?;
        Ok((events.len(), new.len()))
    }

    /// Claims the due deliveries, attempts them at once and waits for them; returns
    /// how many.
    pub async fn deliver_due(&self) -> Result<usize, RelayError> {
        let claimed = self.claim(self.opts.concurrency).await?;
        let n = claimed.len();
        let mut set = tokio::task::JoinSet::new();
        for (claim, d) in claimed {
            let relay = self.clone();
            set.spawn(async move { relay.attempt_logged(claim, d).await });
        }
        while set.join_next().await.is_some() {}
        Ok(n)
    }

    /// Claims as many due deliveries as there are free permits and starts them without
    /// waiting: a slow endpoint holds a permit, never the others' deliveries. Each
    /// finished attempt wakes the loop to claim the next.
    async fn start_due(&self, permits: &Arc<tokio::sync::Semaphore>) -> Result<usize, RelayError> {
        let free = permits.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let claimed = self.claim(free).await?;
        let n = claimed.len();
        for (claim, d) in claimed {
            let permit = permits.clone().acquire_owned().await.expect("never closed");
            let relay = self.clone();
            tokio::spawn(async move {
                relay.attempt_logged(claim, d).await;
                drop(permit);
                relay.wake.notify_one();
            });
        }
        Ok(n)
    }

    async fn claim(&self, n: usize) -> Result<Vec<(Uuid, Claimed)>, RelayError> {
        let claim = Uuid::new_v4();
        // The claim outlasts the attempt: the timeout, then a margin for recording it.
        let hold = self.opts.timeout + Duration::from_secs(5);
        let c = self.pool.get().await?;
        Ok(store::claim_due(&c, n as i64, claim, hold.as_secs_f64())
            .await?
            .into_iter()
            .map(|d| (claim, d))
            .collect())
    }

    async fn attempt_logged(&self, claim: Uuid, d: Claimed) {
        if let Err(e) = self.attempt(claim, d).await {
            tracing::warn!(error = %e, "recording a webhook attempt failed; it is tried again when its claim ends");
        }
    }

    fn secrets(&self, d: &Claimed) -> Vec<SecretString> {
        let open = |sealed: &[u8]| {
            self.key
                .open(sealed)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .map(SecretString::from)
        };
        let mut out: Vec<SecretString> = open(&d.secrets.current).into_iter().collect();
        out.extend(d.secrets.previous.as_deref().and_then(open));
        out
    }

    async fn attempt(&self, claim: Uuid, d: Claimed) -> Result<(), RelayError> {
        let body = serde_json::to_vec(&Event::from(&d.event)).expect("an event serialises");
        let id = d.event.id.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let secrets = self.secrets(&d);
        let refs: Vec<&SecretString> = secrets.iter().collect();
        let started = Instant::now();
        let sent = match (
            refs.is_empty(),
            signature::header(&refs, &id, timestamp, &body),
        ) {
            (false, Ok(sig)) => self.send(&d.url, &id, timestamp, &sig, body).await,
            _ => Err("the endpoint's secret does not open with this server's key".to_string()),
        };
        crate::ops::failpoint::kill_if_named("webhooks.deliver.sent");
        let latency_ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
        let seconds = started.elapsed().as_secs_f64();
        let event_type = d.event.event_type.as_str();
        let c = self.pool.get().await?;
        let (status, error, delivered, wait, gone) = match &sent {
            Ok((s, _)) if (200..300).contains(s) => (Some(*s), None, true, None, false),
            Ok((410, _)) => (
                Some(410),
                Some(
                    "410 Gone: the endpoint asked for no more deliveries; it is disabled"
                        .to_string(),
                ),
                false,
                None,
                true,
            ),
            Ok((s, after)) => (
                Some(*s),
                Some(format!("HTTP {s}")),
                false,
                next_wait(&self.opts.schedule, d.attempts, *after),
                false,
            ),
            Err(e) => (
                None,
                Some(e.clone()),
                false,
                next_wait(&self.opts.schedule, d.attempts, None),
                false,
            ),
        };
        let outcome = if delivered {
            "delivered"
        } else if gone {
            "gone"
        } else if wait.is_none() {
            "dead"
        } else {
            "failed"
        };
        crate::metrics::webhook_attempt(event_type, outcome, seconds);
        let recorded = store::record(
            &c,
            d.id,
            claim,
            &Outcome {
                status: status.map(i32::from),
                latency_ms,
                error: error.as_deref(),
                delivered,
                retry_in_secs: wait.map(|w| w.as_secs_f64()),
            },
        )
        .await?;
        if gone && recorded {
            let mut c = self.pool.get().await?;
            let tx = c.transaction().await?;
            if store::disable(&tx, d.endpoint_id, "the endpoint answered 410 Gone").await? {
                crate::audit::record(
                    &tx,
                    &crate::audit::Entry {
                        actor: "relay",
                        action: "webhook_disabled",
                        tenant_id: None,
                        tenant_name: None,
                        operation_id: None,
                        details: json!({"webhook_id": d.endpoint_id, "reason": "410 Gone"}),
                    },
                )
                .await?;
            }
            tx.commit().await?;
        }
        tracing::debug!(delivery = %d.id, event.id = %id, outcome, status = ?status, "webhook attempt");
        Ok(())
    }

    /// POSTs the event; returns the status and `Retry-After`, or why none came (never
    /// the URL: it may carry a token in its query).
    async fn send(
        &self,
        url: &str,
        id: &str,
        timestamp: i64,
        signature: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Option<Duration>), String> {
        let parsed =
            url::Url::parse(url).map_err(|_| "the stored URL does not parse".to_string())?;
        if let Some(ip) = parsed
            .host()
            .and_then(|h| address::literal_refused(&h, self.opts.allow_private))
        {
            return Err(format!(
                "refused: {ip} is a loopback, link-local, private or unspecified address"
            ));
        }
        crate::ops::failpoint::kill_if_named("webhooks.deliver.before");
        let res = self
            .http
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| describe(&e, self.opts.timeout))?;
        let status = res.status().as_u16();
        let after = retry_after(res.headers().get(reqwest::header::RETRY_AFTER));
        Ok((status, after))
    }

    /// Runs until the process ends: a round whenever the outbox notifies, work is
    /// left, or the poll interval passes. Due deliveries are looked for only when some
    /// may be: after a fan-out that made deliveries, a wake, an attempt, or a poll.
    /// An event no endpoint takes costs no look (at 200 creates a second, the look
    /// was planned anew after every create's DDL: 0.7 ms of the server each time).
    pub async fn run_forever(self, config: tokio_postgres::Config) {
        tokio::spawn(listen(config, self.outbox.clone()));
        let permits = Arc::new(tokio::sync::Semaphore::new(self.opts.concurrency));
        let mut due = true;
        loop {
            let round = async {
                let (events, deliveries) = self.fan_out(FAN_OUT_BATCH).await?;
                let attempted = if due || deliveries > 0 {
                    self.start_due(&permits).await?
                } else {
                    0
                };
                Ok::<_, RelayError>((events, attempted))
            };
            let failed = match round.await {
                Ok((events, attempted)) => {
                    if events + attempted > 0 {
                        // Lets a few attempts finish before the next claim, and events
                        // queued meanwhile gather (a migration's, one per tenant), so
                        // both come in batches.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    // More may be due (the next of an (endpoint, tenant) in order), or
                    // queued beyond a full batch. A batch short of full took every
                    // event queued when it looked, and each one queued since has
                    // notified: no look that would find nothing (planned again after
                    // every create's DDL, 0.2 ms).
                    if attempted > 0 || events == FAN_OUT_BATCH as usize {
                        due = attempted > 0;
                        continue;
                    }
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhook relay round failed; retrying");
                    true
                }
            };
            let woken_for_due = tokio::select! {
                _ = self.wake.notified() => true,
                _ = self.outbox.notified() => false,
                _ = tokio::time::sleep(self.opts.poll) => true,
            };
            due = failed || woken_for_due;
        }
    }
}

/// An attempt's failure in words, without the URL.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}", humantime::format_duration(timeout));
    }
    let mut msg = if e.is_connect() {
        "could not connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    if let Some(l) = last {
        msg.push_str(": ");
        msg.push_str(&l);
    }
    msg
}

/// Listens on the outbox's channel and wakes the relay at each notification;
/// reconnects after a failure (the poll covers the gap).
async fn listen(config: tokio_postgres::Config, wake: Arc<Notify>) {
    loop {
        match config.connect(tokio_postgres::NoTls).await {
            Ok((client, mut conn)) => {
                let w = wake.clone();
                let messages = tokio::spawn(async move {
                    while let Some(m) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                        match m {
                            Ok(tokio_postgres::AsyncMessage::Notification(_)) => w.notify_one(),
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                });
                if client
                    .batch_execute(&format!("LISTEN {CHANNEL}"))
                    .await
                    .is_ok()
                {
                    let _ = messages.await;
                } else {
                    messages.abort();
                }
                drop(client);
            }
            Err(e) => tracing::debug!(error = %e, "webhook relay cannot listen; polling"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_end() {
        let s = parse_schedule("1s, 2m,3h").unwrap();
        assert_eq!(
            s,
            vec![
                Duration::from_secs(1),
                Duration::from_secs(120),
                Duration::from_secs(10800)
            ]
        );
        assert!(parse_schedule("1s,soon").is_err());
        let w = next_wait(&s, 1, None).unwrap();
        assert!(
            w >= Duration::from_millis(800) && w <= Duration::from_millis(1200),
            "{w:?}"
        );
        assert!(next_wait(&s, 4, None).is_none(), "three retries, then dead");
        let w = next_wait(&s, 1, Some(Duration::from_secs(30))).unwrap();
        assert_eq!(w, Duration::from_secs(30), "Retry-After is honoured");
    }
}
