//! The per-tenant series the tenant alert rules and dashboards read
//! (docs/monitoring.md): `http_requests_total{tenant, status}`,
//! `http_request_duration_seconds{tenant}` for requests made with a tenant's API key,
//! and `backup_job_success{tenant}` set at scrape time.
//!
//! The `tenant` label is bounded by the registry: it is set only once an API key has
//! proven which tenant is calling (never from the request), `status` is the class
//! (`2xx`, `4xx`, `5xx`, ...), and a tenant's series go at the first scrape after it
//! is purged. Per tenant at most 5 + 8 + 1 series (typically 3 + 8 + 1).

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantStatus {
    tenant: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantOnly {
    tenant: String,
}

/// Few buckets, on purpose: 6 boundaries (+Inf, sum, count: 9 series a tenant).
/// 0.5 s is one of them, the SLA line of `sla-breach`.
pub const BUCKETS: [f64; 6] = [0.025, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The status classes `http_requests_total` uses.
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

fn lean() -> Histogram {
    Histogram::new(BUCKETS)
}

pub(super) struct TenantMetrics {
    pub(super) registry: Registry,
    requests: Family<TenantStatus, Counter>,
    seconds: Family<TenantOnly, Histogram, fn() -> Histogram>,
    backup_success: Family<TenantOnly, Gauge>,
    /// Tenants that have request series, so a purged one's can be removed.
    seen: Mutex<HashSet<String>>,
}

pub(super) static TENANT_METRICS: LazyLock<TenantMetrics> = LazyLock::new(|| {
    let mut registry = Registry::default();
    let m = TenantMetrics {
        registry: Registry::default(),
        requests: Family::default(),
        seconds: Family::new_with_constructor(lean),
        backup_success: Family::default(),
        seen: Mutex::default(),
    };
    // Seed 001's names, unprefixed (its alert rules use them).
    registry.register(
        "http_requests",
        "Requests made with a tenant's API key, by tenant and status class (2xx, 4xx, 5xx)",
        m.requests.clone(),
    );
    registry.register(
        "http_request_duration_seconds",
        "Durations of requests made with a tenant's API key, by tenant",
        m.seconds.clone(),
    );
    registry.register(
        "backup_job_success",
        "1 if the tenant's last finished backup succeeded, 0 if it failed (no series: no backup yet)",
        m.backup_success.clone(),
    );
    TenantMetrics { registry, ..m }
});

/// The class label of an HTTP status.
pub fn class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    }
}

/// A request made with `tenant`'s API key ended with `status` after `seconds`.
pub fn request(tenant: &str, status: u16, seconds: f64) {
    let m = &*TENANT_METRICS;
    {
        let mut seen = m.seen.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.contains(tenant) {
            seen.insert(tenant.to_string());
        }
    }
    m.requests
        .get_or_create(&TenantStatus {
            tenant: tenant.to_string(),
            status: class(status),
        })
        .inc();
    m.seconds
        .get_or_create(&TenantOnly {
            tenant: tenant.to_string(),
        })
        .observe(seconds.max(0.0));
}

/// Sets the scrape-time gauges, and drops the request series of tenants that are not
/// in `monitored` (purged ones) when it is given.
pub(super) fn set(backups: &[(String, bool)], monitored: Option<&HashSet<&str>>) {
    let m = &*TENANT_METRICS;
    m.backup_success.clear();
    for (tenant, ok) in backups {
        m.backup_success
            .get_or_create(&TenantOnly {
                tenant: tenant.clone(),
            })
            .set(i64::from(*ok));
    }
    let Some(keep) = monitored else { return };
    let mut seen = m.seen.lock().unwrap_or_else(|e| e.into_inner());
    seen.retain(|tenant| {
        if keep.contains(tenant.as_str()) {
            return true;
        }
        for status in CLASSES {
            m.requests.remove(&TenantStatus {
                tenant: tenant.clone(),
                status,
            });
        }
        m.seconds.remove(&TenantOnly {
            tenant: tenant.clone(),
        });
        false
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(class(200), "2xx");
        assert_eq!(class(404), "4xx");
        assert_eq!(class(504), "5xx");
        assert_eq!(class(99), "other");
    }
}
