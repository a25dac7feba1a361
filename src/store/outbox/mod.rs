//! The outbox table (`outbox`, migration 0020): events written in the transaction of
//! the change they describe, read by the relay and the events API. The caller owns the
//! transaction. [`data`] holds what each type's `data` is.

pub mod data;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Result;

/// One event to append. `event_type` is one of the names in docs/events.md; `data`
/// is a JSON object and never holds a secret.
pub struct NewEvent<'a> {
    pub event_type: &'a str,
    pub tenant_id: Option<Uuid>,
    pub tenant_name: Option<&'a str>,
    pub data: Value,
}

/// An event as stored.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub seq: i64,
    pub id: Uuid,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub tenant_id: Option<Uuid>,
    pub tenant_name: Option<String>,
    pub data: Value,
}

const COLUMNS: &str = "seq, id, type, occurred_at, tenant_id, tenant_name, data";

fn row(r: &Row) -> EventRow {
    EventRow {
        seq: r.get(0),
        id: r.get(1),
        event_type: r.get(2),
        occurred_at: r.get(3),
        tenant_id: r.get(4),
        tenant_name: r.get(5),
        data: r.get(6),
    }
}

/// Appends an event inside the caller's transaction; returns it as stored. Its id is
/// a UUIDv7 (time-ordered), the `webhook-id` every delivery of it carries.
///
/// The statement takes the tenant's name lock (`ops::fence::lock_name`'s key) before
/// its `seq` is drawn: the caller holds it already (a change of a tenant does), and
/// then it costs nothing; a caller that does not waits for it. Either way the tenant's
/// events commit in `seq` order, which is what a reader of one tenant's events relies
/// on. One statement, prepared once per connection: no round trip is added.
pub async fn append(c: &impl GenericClient, e: &NewEvent<'_>) -> Result<EventRow> {
    let stmt = c
        .prepare_cached(&format!(
            "INSERT INTO berqenas.outbox (id, type, tenant_id, tenant_name, data)
             SELECT $1, $2, $3, $4, $5
               FROM (SELECT pg_catalog.pg_advisory_xact_lock(
                                pg_catalog.hashtextextended('berqenas.tenant:' || $4::text, 0))
                     OFFSET 0) l
             RETURNING {COLUMNS}"
        ))
        .await?;
    let r = c
        .query_one(
            &stmt,
            &[
                &Uuid::now_v7(),
                &e.event_type,
                &e.tenant_id,
                &e.tenant_name,
                &e.data,
            ],
        )
        .await?;
    Ok(row(&r))
}

/// Appends the event `data` is (its type is the struct's) about tenant `t`.
pub async fn emit<D: data::EventData>(
    c: &impl GenericClient,
    tenant_id: Uuid,
    tenant_name: &str,
    d: &D,
) -> Result<()> {
    append(
        c,
        &NewEvent {
            event_type: D::TYPE,
            tenant_id: Some(tenant_id),
            tenant_name: Some(tenant_name),
            data: serde_json::to_value(d).expect("event data serialises"),
        },
    )
    .await?;
    Ok(())
}

/// What a page of events is filtered by.
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    pub tenant_id: Option<Uuid>,
    /// A tenant no longer in the registry: its events by name.
    pub tenant_name: Option<&'a str>,
    /// An exact type.
    pub event_type: Option<&'a str>,
    /// Types starting with this (`tenant.`).
    pub type_prefix: Option<&'a str>,
    /// At most this `seq` (the horizon of a feed of several tenants).
    pub up_to: Option<i64>,
}

/// Events after `after_seq`, oldest first, at most `limit`, filtered.
pub async fn page(
    c: &impl GenericClient,
    after_seq: i64,
    f: &Filter<'_>,
    limit: i64,
) -> Result<Vec<EventRow>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM berqenas.outbox
              WHERE seq > $1
                -- Tenant events only: a webhook ping (no tenant) is for its endpoint.
                AND tenant_id IS NOT NULL
                AND ($2::uuid IS NULL OR tenant_id = $2)
                AND ($3::text IS NULL OR tenant_name = $3)
                AND ($4::text IS NULL OR type = $4)
                AND ($5::text IS NULL OR starts_with(type, $5))
                AND ($6::bigint IS NULL OR seq <= $6)
              ORDER BY seq LIMIT $7"
        ))
        .await?;
    Ok(c.query(
        &stmt,
        &[
            &after_seq,
            &f.tenant_id,
            &f.tenant_name,
            &f.event_type,
            &f.type_prefix,
            &f.up_to,
            &limit,
        ],
    )
    .await?
    .iter()
    .map(row)
    .collect())
}

/// The `seq` of the event with this id.
pub async fn seq_of(c: &impl GenericClient, id: Uuid) -> Result<Option<i64>> {
    Ok(
        c.query_opt("SELECT seq FROM berqenas.outbox WHERE id = $1", &[&id])
            .await?
            .map(|r| r.get(0)),
    )
}

/// The highest `seq` drawn so far, and the transactions that may still be writing
/// events (they hold the outbox's `RowExclusiveLock` from their first event to their
/// end). Read before the events: any `seq` up to it whose transaction is not among
/// them has committed (or rolled back) already.
pub async fn in_flight(c: &impl GenericClient) -> Result<(i64, Vec<String>)> {
    let r = c
        .query_one(
            "SELECT (SELECT last_value FROM berqenas.outbox_seq_seq),
                    array(SELECT virtualtransaction FROM pg_catalog.pg_locks
                           WHERE relation = 'berqenas.outbox'::regclass
                             AND mode = 'RowExclusiveLock' AND pid <> pg_catalog.pg_backend_pid())",
            &[],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

/// Which of these transactions are still running.
pub async fn still_running(c: &impl GenericClient, vxids: &[String]) -> Result<usize> {
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_locks
              WHERE locktype = 'virtualxid' AND virtualxid = ANY($1) AND granted",
            &[&vxids],
        )
        .await?
        .get(0);
    Ok(n as usize)
}

/// The last `seq` written before the oldest of these transactions began (0 if that
/// cannot be seen).
pub async fn settled_before(c: &impl GenericClient, vxids: &[String]) -> Result<i64> {
    Ok(c.query_one(
        "SELECT coalesce(max(o.seq), 0) FROM berqenas.outbox o
          WHERE o.occurred_at < (SELECT min(a.xact_start)
                                   FROM pg_catalog.pg_locks l
                                   JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
                                  WHERE l.locktype = 'virtualxid' AND l.virtualxid = ANY($1))",
        &[&vxids],
    )
    .await?
    .get(0))
}

/// Events after `after_seq` in order, at most `limit`, of one tenant if given.
pub async fn after(
    c: &impl GenericClient,
    after_seq: i64,
    tenant_id: Option<Uuid>,
    limit: i64,
) -> Result<Vec<EventRow>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM berqenas.outbox
              WHERE seq > $1 AND ($2::uuid IS NULL OR tenant_id = $2)
              ORDER BY seq LIMIT $3"
        ))
        .await?;
    Ok(c.query(&stmt, &[&after_seq, &tenant_id, &limit])
        .await?
        .iter()
        .map(row)
        .collect())
}
