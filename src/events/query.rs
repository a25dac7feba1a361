//! Reading the outbox: `GET /api/v1/events` (and `berqenas events list`), oldest
//! first, after a cursor. How scripts and tests see what was emitted.
//!
//! One tenant's events become visible in `seq` order (each is written under the
//! tenant's name lock, see `store::outbox::append`), so a reader of one tenant that
//! resumes after the last `seq` it saw misses nothing. Events of several tenants can
//! commit out of `seq` order (two tenants' transactions overlap); a feed of all of them
//! is cut at a horizon below which no transaction can still be writing, waiting a
//! moment for the few that are.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Event, TYPES};
use crate::platform::Platform;
use crate::problem::Problem;
use crate::store::outbox::{self, Filter};
use crate::store::tenants;

pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 1000;

/// How long a feed of several tenants waits for transactions still writing events
/// below its horizon.
const HORIZON_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad filter or cursor, naming the parameter.
    #[error("{}", .0.message)]
    Rejected(Problem),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// An event as listed: the delivered form and its place in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListedEvent {
    /// The outbox's order: a tenant's events in the order of its changes.
    pub seq: i64,
    #[serde(flatten)]
    pub event: Event,
}

/// A page of events, oldest first; pass `next_cursor` (or the last event's `seq` or
/// `id`) as `after` for the next.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<ListedEvent>,
    /// Set when more events follow this page now.
    pub next_cursor: Option<String>,
}

/// The query parameters, as given.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventQuery {
    /// A tenant name or id.
    pub tenant: Option<String>,
    /// An event type, `prefix.*` or `*`.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// A `seq` or an event id: only events after it.
    pub after: Option<String>,
    pub limit: Option<i64>,
}

fn bad(field: &str, message: impl Into<String>) -> Error {
    Error::Rejected(Problem::bad_field(field, message))
}

/// `type`: a known type, `<prefix>.*` of known types, or `*`. Returns (exact, prefix).
fn type_filter(pattern: Option<&str>) -> Result<(Option<&str>, Option<String>), Error> {
    let Some(p) = pattern.filter(|p| *p != "*") else {
        return Ok((None, None));
    };
    if let Some(prefix) = p.strip_suffix(".*") {
        let prefix = format!("{prefix}.");
        if TYPES.iter().any(|t| t.starts_with(&prefix)) {
            return Ok((None, Some(prefix)));
        }
    } else if TYPES.contains(&p) {
        return Ok((Some(p), None));
    }
    Err(bad(
        "type",
        format!(
            "type {p:?} is not an event type, a prefix like tenant.* or *; the types are {}",
            TYPES.join(", ")
        ),
    ))
}

/// A page of the outbox, filtered.
pub async fn page(p: &Platform, q: &EventQuery) -> Result<EventPage, Error> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(bad(
            "limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let (exact, prefix) = type_filter(q.event_type.as_deref())?;
    let client = p.pool.get().await?;
    let after = match q.after.as_deref() {
        None => 0,
        Some(a) => match (a.parse::<i64>(), a.parse::<Uuid>()) {
            (Ok(seq), _) if seq >= 0 => seq,
            (_, Ok(id)) => outbox::seq_of(&client, id)
                .await?
                .ok_or_else(|| bad("after", format!("no event has the id {id}")))?,
            _ => {
                return Err(bad(
                    "after",
                    "after must be an event's seq (a whole number) or its id",
                ))
            }
        },
    };
    let (tenant_id, tenant_name) = match q.tenant.as_deref() {
        None => (None, None),
        Some(t) => match t.parse::<Uuid>() {
            Ok(id) => (Some(id), None),
            Err(_) => match tenants::find(&client, t).await? {
                Some(found) => (Some(found.id), None),
                // No longer in the registry (its name was released): by name.
                None => (None, Some(t)),
            },
        },
    };
    let up_to = match (tenant_id, tenant_name) {
        (None, None) => Some(horizon(&client).await?),
        _ => None,
    };
    let filter = Filter {
        tenant_id,
        tenant_name,
        event_type: exact,
        type_prefix: prefix.as_deref(),
        up_to,
    };
    let mut rows = outbox::page(&client, after, &filter, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok(EventPage {
        next_cursor: more
            .then(|| rows.last().map(|r| r.seq.to_string()))
            .flatten(),
        events: rows
            .iter()
            .map(|r| ListedEvent {
                seq: r.seq,
                event: Event::from(r),
            })
            .collect(),
    })
}

/// The highest `seq` up to which every event that will ever exist is visible now: the
/// last one drawn, once the transactions that were writing events then have ended
/// (waited for a moment). If one is still running after the wait, the last event
/// written before it began.
async fn horizon(c: &deadpool_postgres::Client) -> Result<i64, Error> {
    let (drawn, writing) = outbox::in_flight(c).await?;
    if writing.is_empty() {
        return Ok(drawn);
    }
    let until = Instant::now() + HORIZON_WAIT;
    while Instant::now() < until {
        if outbox::still_running(c, &writing).await? == 0 {
            return Ok(drawn);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Still writing after the wait (a long transaction): its events were drawn after
    // it began, so everything written before that is certain.
    Ok(outbox::settled_before(c, &writing).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_patterns_are_known_types_or_their_prefixes() {
        assert_eq!(
            type_filter(Some("tenant.created")).unwrap(),
            (Some("tenant.created"), None)
        );
        assert_eq!(
            type_filter(Some("quota.*")).unwrap(),
            (None, Some("quota.".to_string()))
        );
        assert_eq!(type_filter(Some("*")).unwrap(), (None, None));
        assert_eq!(type_filter(None).unwrap(), (None, None));
        for bad in ["tenant", "tenant.*x", "billing.*", "tenant.creat", "'; --"] {
            assert!(type_filter(Some(bad)).is_err(), "{bad}");
        }
    }
}
