//! L3: events to other services (docs/events.md). Every change to a tenant appends its
//! event to the outbox (`store::outbox`) in the transaction of the change; this module
//! holds what an event is on the wire and how a delivery is signed (Standard Webhooks).

pub mod address;
pub mod query;
pub mod relay;
pub mod signature;
pub mod webhooks;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use crate::store::outbox::data;
pub use crate::store::outbox::{EventRow, NewEvent};

/// Every event type berqenas emits; docs/events.md documents each one's `data`.
pub const TYPES: &[&str] = &[
    "tenant.created",
    "tenant.updated",
    "tenant.activated",
    "tenant.suspended",
    "tenant.resumed",
    "tenant.deleted",
    "tenant.restored",
    "tenant.purged",
    "tenant.plan_changed",
    "quota.updated",
    "quota.exceeded",
    "quota.recovered",
    "api_key.created",
    "api_key.revoked",
    "api_key.rotated",
    "user.invited",
    "user.removed",
    "backup.completed",
    "backup.failed",
    "restore.completed",
    "migration.completed",
    "migration.failed",
    "network.changed",
    "usage.reported",
    "tenant.config_changed",
];

/// The tenant an event is about.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantRef {
    pub id: Uuid,
    pub name: String,
}

/// An event as delivered and listed: `{id, type, occurred_at, tenant: {id, name}, data}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub tenant: Option<TenantRef>,
    pub data: Value,
}

impl From<&EventRow> for Event {
    fn from(r: &EventRow) -> Self {
        Self {
            id: r.id,
            event_type: r.event_type.clone(),
            occurred_at: r.occurred_at,
            tenant: match (r.tenant_id, &r.tenant_name) {
                (Some(id), Some(name)) => Some(TenantRef {
                    id,
                    name: name.clone(),
                }),
                _ => None,
            },
            data: r.data.clone(),
        }
    }
}

/// Whether `pattern` (an endpoint's filter: an exact type, `prefix.*`, or `*`) takes
/// events of `event_type`.
pub fn matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => prefix.ends_with('.') && event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exact_types_prefixes_and_everything() {
        assert!(matches("tenant.created", "tenant.created"));
        assert!(!matches("tenant.created", "tenant.creat"));
        assert!(matches("tenant.*", "tenant.suspended"));
        assert!(!matches("tenant.*", "tenants.x"));
        assert!(!matches("tenant*", "tenant.created"));
        assert!(matches("*", "usage.reported"));
    }
}
