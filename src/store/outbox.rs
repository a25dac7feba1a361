//! The outbox table (`outbox`, migration 0020): events written in the transaction of
//! the change they describe, read by the relay and the events API. The caller owns the
//! transaction.

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
pub async fn append(c: &impl GenericClient, e: &NewEvent<'_>) -> Result<EventRow> {
    let stmt = c
        .prepare_cached(&format!(
            "INSERT INTO berqenas.outbox (id, type, tenant_id, tenant_name, data)
             VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
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
