//! Realtime per tenant (issue 15): every tenant's template has a `realtime_events`
//! table (id, channel, payload, created_at); its publishes, from the data API, from SQL
//! (`realtime_publish`) or from a published table's trigger, are all inserts there,
//! admitted against the quotas by the control plane's `berqenas_realtime.admit`.
//!
//! The stream: one reader per tenant per server ([`hub`]) reads the tenant's new rows
//! with the server's own role and fans them out to the tenant's subscribers. It is
//! woken by an empty notification on one channel every tenant shares (it says only
//! that someone published: tenants in the control database can LISTEN to any channel
//! there), and polls as a fallback.

pub mod gate;
pub mod hub;
pub mod place;
pub mod upkeep;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use hub::{Hub, Subscription};
pub use place::Place;

/// Publishes `table`'s changes (`POST /api/v1/tenants/{name}/realtime/tables`) and
/// writes the audit row `realtime_table_published`: in the same transaction when the
/// tenant's table is in the control database; in database mode right after the
/// trigger's transaction in the tenant's database commits (two databases: no one
/// transaction can hold both; the install is idempotent, so a retry after a stop in
/// between writes the row then).
pub async fn publish_table(
    p: &crate::platform::Platform,
    t: &crate::store::tenants::Tenant,
    table: &str,
    actor: &str,
) -> Result<(), place::Error> {
    let place = Place::of(t);
    let details = serde_json::json!({"table": table, "channel": format!("table.{table}")});
    let entry = crate::audit::Entry {
        actor,
        action: "realtime_table_published",
        tenant_id: Some(t.id),
        tenant_name: Some(t.name.as_str()),
        operation_id: None,
        details,
    };
    match gate::elsewhere(t) {
        false => {
            let mut c = p.pool.get().await?;
            let tx = c.transaction().await?;
            place.publish_table(&tx, table).await?;
            crate::audit::record(&tx, &entry).await?;
            tx.commit().await?;
        }
        true => {
            let mut c = gate::connect(p, t).await.map_err(place::Error::from)?;
            let tx = c.transaction().await?;
            place.publish_table(&tx, table).await?;
            tx.commit().await?;
            let control = p.pool.get().await?;
            crate::audit::record(&control, &entry).await?;
        }
    }
    Ok(())
}

/// The channel the template's trigger notifies (with an empty payload).
pub const WAKE_CHANNEL: &str = "berqenas_realtime";
/// The largest payload (its JSON text), as the table's constraint has it.
pub const MAX_PAYLOAD_BYTES: usize = 65536;
/// The longest channel name.
pub const MAX_CHANNEL_LEN: usize = 128;
/// The most channel patterns one subscriber may give.
pub const MAX_PATTERNS: usize = 32;

/// `POST /api/v1/realtime/publish`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// Dot-separated words of letters, digits, `_` and `-`: `orders`, `orders.eu`.
    pub channel: String,
    /// Any JSON value, at most 64 KiB as text.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// A published event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Published {
    /// The event's id: the stream's `id:`, and what `Last-Event-ID` resumes after.
    pub id: i64,
    pub channel: String,
}

/// `POST /api/v1/tenants/{name}/realtime/tables`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TableRequest {
    /// A table of the tenant's (in its schema); its inserts, updates and deletes are
    /// published on channel `table.<name>`.
    pub table: String,
}

/// A table whose changes are published.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublishedTable {
    pub table: String,
    /// The channel its changes go to.
    pub channel: String,
}

/// One event as the stream sends it (the SSE `data:`; `id:` is `id`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub id: i64,
    pub channel: String,
    #[schema(value_type = Object)]
    pub payload: Box<serde_json::value::RawValue>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Bad input, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: String) -> Invalid {
    Invalid { field, message }
}

/// A channel name: 1 to 128 characters, dot-separated words of `[A-Za-z0-9_-]`
/// (the same rule as the table's constraint).
pub fn check_channel(name: &str) -> Result<(), Invalid> {
    let ok_word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if name.is_empty() || name.len() > MAX_CHANNEL_LEN || !name.split('.').all(ok_word) {
        return Err(invalid(
            "channel",
            format!(
                "channel must be 1 to {MAX_CHANNEL_LEN} characters of dot-separated words of letters, digits, _ and - (e.g. orders or orders.eu); got {name:?}"
            ),
        ));
    }
    Ok(())
}

/// Checks a publish request before anything runs.
pub fn check_publish(req: &PublishRequest) -> Result<(), Invalid> {
    check_channel(&req.channel)?;
    let size = req.payload.to_string().len();
    if size > MAX_PAYLOAD_BYTES {
        return Err(invalid(
            "payload",
            format!(
                "payload is {size} bytes as JSON text; at most {MAX_PAYLOAD_BYTES} are allowed"
            ),
        ));
    }
    Ok(())
}

/// A table name the trigger may be installed on: the channel `table.<name>` must be
/// a valid channel, and the realtime tables themselves are not eligible.
pub fn check_table(name: &str) -> Result<(), Invalid> {
    let bad = |why: &str| invalid("table", format!("table {name:?} {why}"));
    if name.is_empty()
        || name.len() > 63
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        || name.as_bytes()[0].is_ascii_digit()
    {
        return Err(bad(
            "must be a lower-case table name of letters, digits and _",
        ));
    }
    if name.starts_with("realtime_") || name == "members" {
        return Err(bad("is part of realtime itself and cannot be published"));
    }
    Ok(())
}

/// What a subscriber asked for: exact channels and prefixes (`orders.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl Filter {
    /// `channel` values: `orders`, `orders.*` (every channel under `orders.`), `*` (all).
    pub fn parse(channels: &[String]) -> Result<Self, Invalid> {
        if channels.is_empty() {
            return Err(invalid(
                "channel",
                "give at least one channel: ?channel=orders (several: &channel=..., a prefix: orders.*, all: *)".into(),
            ));
        }
        if channels.len() > MAX_PATTERNS {
            return Err(invalid(
                "channel",
                format!(
                    "at most {MAX_PATTERNS} channel parameters; got {}",
                    channels.len()
                ),
            ));
        }
        let mut f = Filter {
            exact: vec![],
            prefixes: vec![],
        };
        for c in channels {
            if c == "*" {
                f.prefixes.push(String::new());
            } else if let Some(head) = c.strip_suffix(".*") {
                check_channel(head)?;
                f.prefixes.push(format!("{head}."));
            } else {
                check_channel(c)?;
                f.exact.push(c.clone());
            }
        }
        Ok(f)
    }

    pub fn matches(&self, channel: &str) -> bool {
        self.exact.iter().any(|e| e == channel)
            || self
                .prefixes
                .iter()
                .any(|p| channel.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        for ok in ["orders", "orders.eu", "a-b_c.D9"] {
            assert!(check_channel(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a..b", ".a", "a.", "a b", "ä", &"x".repeat(129)] {
            let e = check_channel(bad).unwrap_err();
            assert_eq!(e.field, "channel");
        }
    }

    #[test]
    fn filters_match_exact_and_prefix() {
        let f = Filter::parse(&["orders".into(), "users.*".into()]).unwrap();
        assert!(f.matches("orders"));
        assert!(!f.matches("orders.eu"));
        assert!(f.matches("users.eu"));
        assert!(!f.matches("users"));
        assert!(Filter::parse(&["*".into()]).unwrap().matches("x.y"));
        assert!(Filter::parse(&[]).is_err());
        assert!(Filter::parse(&["bad name".into()]).is_err());
    }

    #[test]
    fn payload_size_names_the_field() {
        let big = serde_json::json!({"x": "y".repeat(MAX_PAYLOAD_BYTES)});
        let e = check_publish(&PublishRequest {
            channel: "a".into(),
            payload: big,
        })
        .unwrap_err();
        assert_eq!(e.field, "payload");
    }

    #[test]
    fn tables() {
        assert!(check_table("orders").is_ok());
        for bad in ["", "Orders", "realtime_events", "1x", "a;b"] {
            assert_eq!(check_table(bad).unwrap_err().field, "table");
        }
    }
}
