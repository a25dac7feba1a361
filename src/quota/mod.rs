//! Quotas: what each tenant may use (its plan's defaults, overridable per tenant), and
//! how PostgreSQL is made to enforce them: role and database connection limits,
//! per-role timeouts with a watchdog behind them, write privileges taken away over the
//! disk quota, atomic usage counters, and per-tenant rate limits.

pub mod apply;
pub mod disk;
pub mod rate;
pub mod service;
pub mod usage;
pub mod watchdog;
pub mod worker;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::isolation::RoleLimits;

/// The quotas in force for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Quotas {
    /// Disk: tables, indexes and TOAST (in shared mode, the tenant's share).
    pub db_quota_bytes: i64,
    /// Concurrent sessions of each login role (and of the database, in database mode).
    pub max_connections: i32,
    /// Statements longer than this are cancelled; transactions idle twice as long end.
    pub statement_timeout_ms: i32,
    /// Data API and usage calls per minute (GCRA: bursts up to the per-minute amount).
    pub api_calls_per_minute: i32,
    pub realtime_events_per_minute: i32,
    pub max_users: i32,
    pub max_llm_tokens_per_day: i64,
    pub max_agents: i32,
    pub max_concurrent_agents: i32,
    pub max_data_retention_days: i32,
    /// A transaction older than this is ended by the watchdog, however busy it keeps
    /// itself (the statement and idle timeouts do not bound a transaction that runs a
    /// short statement every few seconds).
    pub transaction_timeout_ms: i32,
    /// `db_quota_bytes` in whole GiB (rounded down), as seed 002 names it; read-only:
    /// the quota is set as `db_quota_bytes`.
    pub max_storage_gb: i64,
}

/// `db_quota_bytes` in whole GiB, rounded down.
pub fn storage_gb(db_quota_bytes: i64) -> i64 {
    db_quota_bytes >> 30
}

impl Quotas {
    /// The per-role limits PostgreSQL enforces for this tenant's logins.
    pub fn role_limits(&self, may_set_temp: bool) -> RoleLimits {
        RoleLimits::new(
            self.max_connections,
            self.statement_timeout_ms,
            self.db_quota_bytes,
            may_set_temp,
        )
    }
}

/// Every quota field, with the range a value must be in.
pub const FIELDS: &[(&str, i64, i64)] = &[
    ("db_quota_bytes", 1 << 20, 1 << 50),
    ("max_connections", 1, 10_000),
    ("statement_timeout_ms", 100, 86_400_000),
    ("api_calls_per_minute", 1, 10_000_000),
    ("realtime_events_per_minute", 1, 10_000_000),
    ("max_users", 0, 1_000_000),
    ("max_llm_tokens_per_day", 0, 1_000_000_000_000_000),
    ("max_agents", 0, 10_000_000),
    ("max_concurrent_agents", 0, 1_000_000),
    ("max_data_retention_days", 1, 36_500),
    ("transaction_timeout_ms", 1_000, 86_400_000),
];

/// The range a quota field's value must be in (`None`: no such field).
pub fn range(field: &str) -> Option<(i64, i64)> {
    FIELDS
        .iter()
        .find(|f| f.0 == field)
        .map(|&(_, lo, hi)| (lo, hi))
}
