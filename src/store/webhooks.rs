//! The webhook tables (migration 0021): `webhook_endpoints` (secrets sealed),
//! `webhook_fanout` (events not yet fanned out, added by the outbox's trigger),
//! `webhook_deliveries` (one event to one endpoint) and `webhook_attempts`. The relay
//! claims work here with `FOR UPDATE SKIP LOCKED`. The caller owns the transaction.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::outbox::EventRow;
use super::{found, Result};

/// An endpoint as the API shows it: never a secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    /// Event types or `prefix.*` patterns (`*`: every event).
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why the endpoint was disabled (by an operator, or by a `410 Gone` answer).
    pub disabled_reason: Option<String>,
    /// While a rotation's overlap lasts, deliveries carry a signature with the
    /// previous secret too, until this time.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An endpoint's sealed secrets (the current one, and the previous one while its
/// overlap lasts).
pub struct SealedSecrets {
    pub current: Vec<u8>,
    pub previous: Option<Vec<u8>>,
}

const ENDPOINT_COLUMNS: &str = "id, url, events, description, enabled, disabled_reason,
    CASE WHEN previous_expires_at > now() THEN previous_expires_at END AS previous_expires_at,
    created_at, updated_at";

fn endpoint(r: &Row) -> Webhook {
    Webhook {
        id: r.get("id"),
        url: r.get("url"),
        events: r.get("events"),
        description: r.get("description"),
        enabled: r.get("enabled"),
        disabled_reason: r.get("disabled_reason"),
        previous_secret_expires_at: r.get("previous_expires_at"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    }
}

/// What an endpoint is made of (or changed to).
pub struct EndpointFields<'a> {
    pub url: &'a str,
    pub events: &'a [String],
    pub description: Option<&'a str>,
    pub enabled: bool,
    pub disabled_reason: Option<&'a str>,
}

/// Records a new endpoint with its sealed secret.
pub async fn insert(
    c: &impl GenericClient,
    id: Uuid,
    f: &EndpointFields<'_>,
    sealed_secret: &[u8],
) -> Result<Webhook> {
    let stmt = c
        .prepare_cached(&format!(
            "INSERT INTO berqenas.webhook_endpoints
                    (id, url, events, description, enabled, disabled_reason, secret)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {ENDPOINT_COLUMNS}"
        ))
        .await?;
    let r = c
        .query_one(
            &stmt,
            &[
                &id,
                &f.url,
                &f.events,
                &f.description,
                &f.enabled,
                &f.disabled_reason,
                &sealed_secret,
            ],
        )
        .await?;
    Ok(endpoint(&r))
}

/// Every endpoint, oldest first.
pub async fn list(c: &impl GenericClient) -> Result<Vec<Webhook>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM berqenas.webhook_endpoints ORDER BY created_at, id"
        ))
        .await?;
    Ok(c.query(&stmt, &[]).await?.iter().map(endpoint).collect())
}

/// One endpoint, or [`super::Error::NotFound`]; `lock`: its row locked until the
/// transaction ends.
pub async fn get(c: &impl GenericClient, id: Uuid, lock: bool) -> Result<Webhook> {
    let lock = if lock { "FOR UPDATE" } else { "" };
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM berqenas.webhook_endpoints WHERE id = $1 {lock}"
        ))
        .await?;
    found(c.query_opt(&stmt, &[&id]).await?.as_ref().map(endpoint))
}

/// Replaces an endpoint's fields.
pub async fn update(c: &impl GenericClient, id: Uuid, f: &EndpointFields<'_>) -> Result<Webhook> {
    let stmt = c
        .prepare_cached(&format!(
            "UPDATE berqenas.webhook_endpoints
                SET url = $2, events = $3, description = $4, enabled = $5,
                    disabled_reason = $6, updated_at = now()
              WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}"
        ))
        .await?;
    found(
        c.query_opt(
            &stmt,
            &[
                &id,
                &f.url,
                &f.events,
                &f.description,
                &f.enabled,
                &f.disabled_reason,
            ],
        )
        .await?
        .as_ref()
        .map(endpoint),
    )
}

/// Disables an endpoint (a `410 Gone`), unless it is already disabled; returns
/// whether this call disabled it.
pub async fn disable(c: &impl GenericClient, id: Uuid, reason: &str) -> Result<bool> {
    let stmt = c
        .prepare_cached(
            "UPDATE berqenas.webhook_endpoints
                SET enabled = false, disabled_reason = $2, updated_at = now()
              WHERE id = $1 AND enabled",
        )
        .await?;
    Ok(c.execute(&stmt, &[&id, &reason]).await? == 1)
}

/// Removes an endpoint and its deliveries.
pub async fn delete(c: &impl GenericClient, id: Uuid) -> Result<Webhook> {
    let stmt = c
        .prepare_cached(&format!(
            "DELETE FROM berqenas.webhook_endpoints WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}"
        ))
        .await?;
    found(c.query_opt(&stmt, &[&id]).await?.as_ref().map(endpoint))
}

/// A rotation: the current secret becomes the previous one, signed with until
/// `overlap_secs` from now; `sealed` is the new one.
pub async fn rotate(
    c: &impl GenericClient,
    id: Uuid,
    sealed: &[u8],
    overlap_secs: f64,
) -> Result<Webhook> {
    let stmt = c
        .prepare_cached(&format!(
            "UPDATE berqenas.webhook_endpoints
                SET previous_secret = secret, secret = $2,
                    previous_expires_at = now() + make_interval(secs => $3), updated_at = now()
              WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}"
        ))
        .await?;
    found(
        c.query_opt(&stmt, &[&id, &sealed, &overlap_secs])
            .await?
            .as_ref()
            .map(endpoint),
    )
}

/// The enabled endpoints and their patterns (what the fan-out matches events to).
pub async fn enabled(c: &impl GenericClient) -> Result<Vec<(Uuid, Vec<String>)>> {
    let stmt = c
        .prepare_cached("SELECT id, events FROM berqenas.webhook_endpoints WHERE enabled")
        .await?;
    Ok(c.query(&stmt, &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

fn event(r: &Row, at: usize) -> EventRow {
    EventRow {
        seq: r.get(at),
        id: r.get(at + 1),
        event_type: r.get(at + 2),
        occurred_at: r.get(at + 3),
        tenant_id: r.get(at + 4),
        tenant_name: r.get(at + 5),
        data: r.get(at + 6),
    }
}

/// Takes up to `limit` events not yet fanned out, oldest first, skipping those another
/// relay holds; their queue rows stay locked until the transaction ends.
///
/// The queue's rows first, then their events by key: as a join, the plan kept for the
/// statement merged the queue with the whole outbox in `seq` order, walking every
/// event ever recorded to reach the few queued at its end (20,000 events: up to 270 ms
/// a call, 6.2 s of a template migration's server time at 10,000 tenants; docs/scale.md).
pub async fn claim_fanout(c: &impl GenericClient, limit: i64) -> Result<Vec<EventRow>> {
    let stmt = c
        .prepare_cached(
            "WITH f AS MATERIALIZED (
                 SELECT seq FROM berqenas.webhook_fanout
                  ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED)
             SELECT o.seq, o.id, o.type, o.occurred_at, o.tenant_id, o.tenant_name, o.data
               FROM berqenas.outbox o WHERE o.seq = ANY (ARRAY(SELECT seq FROM f))
              ORDER BY o.seq",
        )
        .await?;
    Ok(c.query(&stmt, &[&limit])
        .await?
        .iter()
        .map(|r| event(r, 0))
        .collect())
}

/// Removes fanned-out events from the queue.
pub async fn fanned_out(c: &impl GenericClient, seqs: &[i64]) -> Result<()> {
    let stmt = c
        .prepare_cached("DELETE FROM berqenas.webhook_fanout WHERE seq = ANY($1)")
        .await?;
    c.execute(&stmt, &[&seqs]).await?;
    Ok(())
}

/// One delivery to add: an event for an endpoint.
pub struct NewDelivery<'a> {
    pub endpoint_id: Uuid,
    pub event: &'a EventRow,
}

fn tenant_key(e: &EventRow) -> Uuid {
    e.tenant_id.unwrap_or(Uuid::nil())
}

/// Adds deliveries (one statement); an (event, endpoint) already fanned out is kept
/// as it is. `replay_of`: these are replays (of that delivery, if one is named).
pub async fn insert_deliveries(
    c: &impl GenericClient,
    new: &[NewDelivery<'_>],
    replay: bool,
    replay_of: Option<Uuid>,
) -> Result<Vec<Uuid>> {
    if new.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<Uuid> = new.iter().map(|_| Uuid::now_v7()).collect();
    let endpoints: Vec<Uuid> = new.iter().map(|d| d.endpoint_id).collect();
    let events: Vec<Uuid> = new.iter().map(|d| d.event.id).collect();
    let seqs: Vec<i64> = new.iter().map(|d| d.event.seq).collect();
    let tenants: Vec<Uuid> = new.iter().map(|d| tenant_key(d.event)).collect();
    let types: Vec<&str> = new.iter().map(|d| d.event.event_type.as_str()).collect();
    let stmt = c
        .prepare_cached(
            "INSERT INTO berqenas.webhook_deliveries
                    (id, endpoint_id, event_id, seq, tenant_key, event_type, replay, replay_of)
             SELECT *, $7::boolean, $8::uuid
               FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::uuid[], $6::text[])
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .await?;
    Ok(c.query(
        &stmt,
        &[
            &ids, &endpoints, &events, &seqs, &tenants, &types, &replay, &replay_of,
        ],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// A delivery claimed for an attempt, with what the attempt needs.
pub struct Claimed {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    /// Attempts so far, this one included.
    pub attempts: i32,
    pub url: String,
    pub secrets: SealedSecrets,
    pub event: EventRow,
}

/// Claims up to `limit` due deliveries for `hold_secs` (this relay's attempt, after
/// which they are due again if it never reports). Only the first pending delivery of
/// each (endpoint, tenant) is due: one whose event is earlier, or still waits to be
/// fanned out, holds it back; other tenants' deliveries are never held back by it.
pub async fn claim_due(
    c: &impl GenericClient,
    limit: i64,
    claim: Uuid,
    hold_secs: f64,
) -> Result<Vec<Claimed>> {
    let stmt = c
        .prepare_cached(
            // The head of each (endpoint, tenant) queue, found by a skip scan of the
            // pending index: one index probe per queue, where a DISTINCT ON sorted every
            // pending delivery at each claim (EXPLAIN ANALYZE with the bench's 10,000
            // pending over 500 queues: ~110 ms to ~50 ms). Then the due heads are
            // locked; the conditions on `d` are checked again on the locked row, so a
            // head another relay claimed meanwhile is passed over.
            "WITH RECURSIVE heads AS (
                (SELECT endpoint_id, tenant_key, id FROM berqenas.webhook_deliveries
                  WHERE state = 'pending' ORDER BY endpoint_id, tenant_key, seq LIMIT 1)
                UNION ALL
                SELECT n.endpoint_id, n.tenant_key, n.id FROM heads h, LATERAL (
                    SELECT endpoint_id, tenant_key, id FROM berqenas.webhook_deliveries
                     WHERE state = 'pending'
                       AND (endpoint_id, tenant_key) > (h.endpoint_id, h.tenant_key)
                     ORDER BY endpoint_id, tenant_key, seq LIMIT 1) n),
             due AS (
                SELECT d.id FROM heads h
                  JOIN berqenas.webhook_deliveries d ON d.id = h.id
                  JOIN berqenas.webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled
                 WHERE d.state = 'pending' AND d.next_attempt_at <= now()
                   AND NOT EXISTS (SELECT 1 FROM berqenas.webhook_fanout f
                                    WHERE f.tenant_key = d.tenant_key AND f.seq < d.seq)
                 ORDER BY d.next_attempt_at, d.seq
                 LIMIT $1
                 FOR UPDATE OF d SKIP LOCKED)
             UPDATE berqenas.webhook_deliveries d
                SET claim = $2, attempts = d.attempts + 1,
                    next_attempt_at = now() + make_interval(secs => $3)
               FROM due, berqenas.webhook_endpoints e, berqenas.outbox o
              WHERE d.id = due.id AND e.id = d.endpoint_id AND o.id = d.event_id
          RETURNING d.id, d.endpoint_id, d.attempts, e.url, e.secret,
                    CASE WHEN e.previous_expires_at > now() THEN e.previous_secret END,
                    o.seq, o.id, o.type, o.occurred_at, o.tenant_id, o.tenant_name, o.data",
        )
        .await?;
    Ok(c.query(&stmt, &[&limit, &claim, &hold_secs])
        .await?
        .iter()
        .map(|r| Claimed {
            id: r.get(0),
            endpoint_id: r.get(1),
            attempts: r.get(2),
            url: r.get(3),
            secrets: SealedSecrets {
                current: r.get(4),
                previous: r.get(5),
            },
            event: event(r, 6),
        })
        .collect())
}

/// How an attempt ended.
pub struct Outcome<'a> {
    pub status: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<&'a str>,
    /// Delivered (a 2xx).
    pub delivered: bool,
    /// When to try again; `None` for a failure that is final (dead-lettered).
    pub retry_in_secs: Option<f64>,
}

/// Records an attempt's outcome, if `claim` still holds the delivery (a relay whose
/// claim ran out reports nothing); returns whether it did.
pub async fn record(
    c: &impl GenericClient,
    id: Uuid,
    claim: Uuid,
    o: &Outcome<'_>,
) -> Result<bool> {
    let stmt = c
        .prepare_cached(
            "WITH d AS (
                UPDATE berqenas.webhook_deliveries
                   SET claim = NULL, last_status = $3, last_latency_ms = $4, last_error = $5,
                       state = CASE WHEN $6 THEN 'delivered'
                                    WHEN $7::float8 IS NULL THEN 'dead' ELSE 'pending' END,
                       delivered_at = CASE WHEN $6 THEN now() END,
                       next_attempt_at = CASE WHEN $7::float8 IS NULL THEN next_attempt_at
                                              ELSE now() + make_interval(secs => $7) END
                 WHERE id = $1 AND claim = $2 RETURNING id)
             INSERT INTO berqenas.webhook_attempts (delivery_id, status, latency_ms, error)
             SELECT id, $3, $4, $5 FROM d",
        )
        .await?;
    Ok(c.execute(
        &stmt,
        &[
            &id,
            &claim,
            &o.status,
            &o.latency_ms,
            &o.error,
            &o.delivered,
            &o.retry_in_secs,
        ],
    )
    .await?
        == 1)
}

/// One attempt of a delivery.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    /// The HTTP status answered; `null` when none was (timeout, refused connection).
    pub status: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
}

/// A delivery as `GET /api/v1/webhooks/{id}/deliveries` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    /// The event's id: the `webhook-id` header of every attempt.
    pub event_id: Uuid,
    pub event_type: String,
    pub tenant_id: Option<Uuid>,
    /// `pending`, `delivered` or `dead` (no try left).
    pub state: String,
    pub attempts: i32,
    /// When the next try is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_latency_ms: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// A replay (of the delivery named, when one was replayed).
    pub replay: bool,
    pub replay_of: Option<Uuid>,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<Attempt>,
}

const DELIVERY_COLUMNS: &str = "d.id, d.event_id, d.event_type,
    NULLIF(d.tenant_key, '00000000-0000-0000-0000-000000000000'::uuid) AS tenant_id, d.state,
    d.attempts, CASE WHEN d.state = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
    d.last_status, d.last_latency_ms, d.last_error, d.created_at, d.delivered_at, d.replay,
    d.replay_of,
    coalesce((SELECT jsonb_agg(jsonb_build_object('at', a.at, 'status', a.status,
                     'latency_ms', a.latency_ms, 'error', a.error) ORDER BY a.id)
                FROM berqenas.webhook_attempts a WHERE a.delivery_id = d.id), '[]') AS log";

fn delivery(r: &Row) -> Result<Delivery> {
    Ok(Delivery {
        id: r.get("id"),
        event_id: r.get("event_id"),
        event_type: r.get("event_type"),
        tenant_id: r.get("tenant_id"),
        state: r.get("state"),
        attempts: r.get("attempts"),
        next_attempt_at: r.get("next_attempt_at"),
        last_status: r.get("last_status"),
        last_latency_ms: r.get("last_latency_ms"),
        last_error: r.get("last_error"),
        created_at: r.get("created_at"),
        delivered_at: r.get("delivered_at"),
        replay: r.get("replay"),
        replay_of: r.get("replay_of"),
        attempt_log: serde_json::from_value(r.get("log")).map_err(|source| {
            super::Error::Decode {
                what: "webhook_attempts",
                source,
            }
        })?,
    })
}

/// An endpoint's deliveries, newest first, at most `limit`, of one state if given.
pub async fn deliveries(
    c: &impl GenericClient,
    endpoint_id: Uuid,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<Delivery>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM berqenas.webhook_deliveries d
              WHERE d.endpoint_id = $1 AND ($2::text IS NULL OR d.state = $2)
              ORDER BY d.created_at DESC, d.id DESC LIMIT $3"
        ))
        .await?;
    c.query(&stmt, &[&endpoint_id, &state, &limit])
        .await?
        .iter()
        .map(delivery)
        .collect()
}

/// Deliveries by id (in no particular order).
pub async fn deliveries_by_id(c: &impl GenericClient, ids: &[Uuid]) -> Result<Vec<Delivery>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM berqenas.webhook_deliveries d WHERE d.id = ANY($1)
              ORDER BY d.seq"
        ))
        .await?;
    c.query(&stmt, &[&ids])
        .await?
        .iter()
        .map(delivery)
        .collect()
}

/// The event a delivery of this endpoint carries (for a replay), or NotFound.
pub async fn delivery_event(
    c: &impl GenericClient,
    endpoint_id: Uuid,
    delivery_id: Uuid,
) -> Result<EventRow> {
    let stmt = c
        .prepare_cached(
            "SELECT o.seq, o.id, o.type, o.occurred_at, o.tenant_id, o.tenant_name, o.data
               FROM berqenas.webhook_deliveries d JOIN berqenas.outbox o ON o.id = d.event_id
              WHERE d.id = $1 AND d.endpoint_id = $2",
        )
        .await?;
    found(
        c.query_opt(&stmt, &[&delivery_id, &endpoint_id])
            .await?
            .map(|r| event(&r, 0)),
    )
}

/// Events that occurred in `[since, until)`, oldest first, at most `limit`.
pub async fn events_between(
    c: &impl GenericClient,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<EventRow>> {
    let stmt = c
        .prepare_cached(
            "SELECT seq, id, type, occurred_at, tenant_id, tenant_name, data
               FROM berqenas.outbox WHERE occurred_at >= $1 AND occurred_at < $2
              ORDER BY seq LIMIT $3",
        )
        .await?;
    Ok(c.query(&stmt, &[&since, &until, &limit])
        .await?
        .iter()
        .map(|r| event(r, 0))
        .collect())
}

/// Per endpoint: (endpoint id, pending deliveries, age in seconds of the oldest
/// pending one's event); and the age of the oldest event not yet delivered anywhere
/// or not yet fanned out (the outbox's lag), 0 when there is none.
pub async fn backlog(c: &impl GenericClient) -> Result<(Vec<(Uuid, i64, f64)>, f64)> {
    let per = c
        .query(
            "SELECT e.id, count(d.id),
                    coalesce(extract(epoch FROM now() - min(o.occurred_at))::float8, 0)
               FROM berqenas.webhook_endpoints e
               LEFT JOIN berqenas.webhook_deliveries d
                      ON d.endpoint_id = e.id AND d.state = 'pending'
               LEFT JOIN berqenas.outbox o ON o.id = d.event_id
              GROUP BY e.id",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let lag: f64 = c
        .query_one(
            "SELECT coalesce(extract(epoch FROM now() - least(
                    (SELECT min(o.occurred_at) FROM berqenas.webhook_fanout f
                       JOIN berqenas.outbox o ON o.seq = f.seq),
                    (SELECT min(o.occurred_at) FROM berqenas.webhook_deliveries d
                       JOIN berqenas.webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled
                       JOIN berqenas.outbox o ON o.id = d.event_id
                      WHERE d.state = 'pending')))::float8, 0)",
            &[],
        )
        .await?
        .get(0);
    Ok((per, lag))
}
