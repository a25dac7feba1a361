//! Prometheus metrics: one process-wide registry, small functions the rest of the code
//! calls when something worth counting happens, and the scrape-time gauges read from
//! the registry and the catalog when `/metrics` is fetched.
//!
//! Labels stay bounded: a tenant label appears only on the per-tenant gauges
//! (`tenant_resource_usage`, `tenant_resource_limit`) and on the few per-tenant series
//! the tenant alert rules need ([`tenants`]: requests made with a tenant's API key,
//! its last backup), which are dropped when the tenant is purged.

mod resources;
pub mod tenants;

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindOutcome {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScratchKind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Http {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Endpoint {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Limit {
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Metric {
    metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Watchdog {
    action: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Query {
    isolation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Webhook {
    event_type: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookEndpoint {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantSet {
    status: String,
    plan: String,
    isolation: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    // 0.5 ms to ~65 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

struct Metrics {
    registry: Registry,
    tenants_created: Counter,
    operations: Family<KindOutcome, Counter>,
    operation_seconds: Histograms<KindOutcome>,
    backups: Family<Outcome, Counter>,
    migrations: Family<Outcome, Counter>,
    http_seconds: Histograms<Http>,
    api_calls: Family<Endpoint, Counter>,
    rate_limited: Family<Limit, Counter>,
    quota_breaches: Family<Metric, Counter>,
    quota_restored: Family<Metric, Counter>,
    watchdog: Family<Watchdog, Counter>,
    query_seconds: Histograms<Query>,
    realtime_delivered: Counter,
    realtime_subscribers: Gauge,
    scratch_swept: Family<ScratchKind, Counter>,
    security_violations: Family<ScratchKind, Counter>,
    role_drift: Family<ScratchKind, Counter>,
    webhook_attempts: Family<Webhook, Counter>,
    webhook_seconds: Histograms<Webhook>,
    // Set at scrape time.
    webhook_pending: Family<WebhookEndpoint, Gauge>,
    webhook_oldest: Family<WebhookEndpoint, Gauge<f64, std::sync::atomic::AtomicU64>>,
    outbox_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    tenants_active: Gauge,
    tenants: Family<TenantSet, Gauge>,
    writes_blocked: Gauge,
    data_api_connections: Gauge,
    data_api_pools: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut r = Registry::default();
    let m = Metrics {
        registry: Registry::default(),
        tenants_created: Counter::default(),
        operations: Family::default(),
        operation_seconds: Family::new_with_constructor(latency),
        backups: Family::default(),
        migrations: Family::default(),
        http_seconds: Family::new_with_constructor(latency),
        api_calls: Family::default(),
        rate_limited: Family::default(),
        quota_breaches: Family::default(),
        quota_restored: Family::default(),
        watchdog: Family::default(),
        query_seconds: Family::new_with_constructor(latency),
        realtime_delivered: Counter::default(),
        realtime_subscribers: Gauge::default(),
        scratch_swept: Family::default(),
        security_violations: Family::default(),
        role_drift: Family::default(),
        webhook_attempts: Family::default(),
        webhook_seconds: Family::new_with_constructor(latency),
        webhook_pending: Family::default(),
        webhook_oldest: Family::default(),
        outbox_lag: Gauge::default(),
        tenants_active: Gauge::default(),
        tenants: Family::default(),
        writes_blocked: Gauge::default(),
        data_api_connections: Gauge::default(),
        data_api_pools: Gauge::default(),
    };
    // Seed 003's names, unprefixed.
    r.register(
        "tenants_created",
        "Tenants created by this process",
        m.tenants_created.clone(),
    );
    r.register(
        "tenants_active",
        "Tenants in the active state",
        m.tenants_active.clone(),
    );
    // tenant_resource_usage and tenant_resource_limit: written at scrape time
    // (`resources`).
    r.register(
        "tenant_query_duration_seconds",
        "Data API statements by isolation mode and outcome",
        m.query_seconds.clone(),
    );
    let b = r.sub_registry_with_prefix("berqenas");
    b.register(
        "tenants",
        "Tenants by status, plan and isolation mode",
        m.tenants.clone(),
    );
    b.register(
        "operations",
        "Operations closed, by kind and outcome",
        m.operations.clone(),
    );
    b.register(
        "operation_duration_seconds",
        "Operation durations by kind and outcome",
        m.operation_seconds.clone(),
    );
    b.register("backups", "Backups by outcome", m.backups.clone());
    b.register(
        "migrations",
        "Tenant template migrations by outcome",
        m.migrations.clone(),
    );
    b.register(
        "http_request_duration_seconds",
        "HTTP requests by method, route template and status",
        m.http_seconds.clone(),
    );
    b.register(
        "api_calls",
        "Tenant API calls accepted past the rate limit, by endpoint",
        m.api_calls.clone(),
    );
    b.register(
        "rate_limited",
        "Requests refused by a per-tenant rate limit",
        m.rate_limited.clone(),
    );
    b.register(
        "quota_breaches",
        "Quota breaches: disk (writes cut off) and refused usage increments, by metric",
        m.quota_breaches.clone(),
    );
    b.register(
        "quota_restored",
        "Tenants whose writes came back after being under quota again",
        m.quota_restored.clone(),
    );
    b.register(
        "watchdog_actions",
        "Statements cancelled and sessions ended by the watchdog",
        m.watchdog.clone(),
    );
    b.register(
        "realtime_delivered",
        "Realtime events handed to stream subscribers (one per subscriber)",
        m.realtime_delivered.clone(),
    );
    b.register(
        "realtime_subscribers",
        "Open realtime streams on this server (all tenants)",
        m.realtime_subscribers.clone(),
    );
    b.register(
        "tenants_writes_blocked",
        "Tenants whose writes are cut off for being over their disk quota",
        m.writes_blocked.clone(),
    );
    b.register(
        "data_api_connections",
        "Open data API connections (all tenants)",
        m.data_api_connections.clone(),
    );
    b.register(
        "data_api_pools",
        "Per-tenant data API pools held",
        m.data_api_pools.clone(),
    );
    b.register(
        "scratch_swept",
        "Scratch objects (role, database, schema, file) a stopped process left behind, removed by the sweeper",
        m.scratch_swept.clone(),
    );
    b.register(
        "security_violations",
        "Tenant roles found with more than berqenas gave them (kind: attribute, membership); each suspends its tenant. Alert on any increase",
        m.security_violations.clone(),
    );
    b.register(
        "role_drift_corrected",
        "Tenant login roles whose password or settings the tenant changed, put back (kind: password, settings)",
        m.role_drift.clone(),
    );
    b.register(
        "webhook_deliveries",
        "Webhook delivery attempts by event type and outcome (delivered, failed: to be retried, dead: no try left, gone: a 410 disabled the endpoint)",
        m.webhook_attempts.clone(),
    );
    b.register(
        "webhook_attempt_duration_seconds",
        "Webhook delivery attempts' durations by event type and outcome",
        m.webhook_seconds.clone(),
    );
    b.register(
        "webhook_pending_deliveries",
        "Deliveries waiting (or being retried), per endpoint id",
        m.webhook_pending.clone(),
    );
    b.register(
        "webhook_oldest_pending_seconds",
        "Age of the oldest event an endpoint has not received yet, per endpoint id",
        m.webhook_oldest.clone(),
    );
    b.register(
        "outbox_lag_seconds",
        "Age of the oldest event not yet fanned out or not yet delivered to an enabled endpoint (0: none)",
        m.outbox_lag.clone(),
    );
    Metrics { registry: r, ..m }
});

fn label(s: &str) -> String {
    s.to_string()
}

/// A tenant was created.
pub fn tenant_created() {
    METRICS.tenants_created.inc();
}

/// An operation closed: `kind` like `tenant.create`, `outcome` `succeeded` or `failed`.
pub fn operation_finished(kind: &str, outcome: &str, seconds: f64) {
    let l = KindOutcome {
        kind: label(kind),
        outcome: label(outcome),
    };
    METRICS.operations.get_or_create(&l).inc();
    METRICS
        .operation_seconds
        .get_or_create(&l)
        .observe(seconds.max(0.0));
}

/// A backup finished with this outcome (`succeeded`, `failed`).
pub fn backup_finished(outcome: &str) {
    METRICS
        .backups
        .get_or_create(&Outcome {
            outcome: label(outcome),
        })
        .inc();
}

/// The sweeper removed a scratch object of this kind (`role`, `database`, ...).
pub fn scratch_swept(kind: &str) {
    METRICS
        .scratch_swept
        .get_or_create(&ScratchKind { kind: label(kind) })
        .inc();
}

/// A tenant role was found with an attribute or membership berqenas never gives.
pub fn security_violation(kind: &str) {
    METRICS
        .security_violations
        .get_or_create(&ScratchKind { kind: label(kind) })
        .inc();
}

/// A tenant login role's password or settings were put back.
pub fn role_drift_corrected(kind: &str) {
    METRICS
        .role_drift
        .get_or_create(&ScratchKind { kind: label(kind) })
        .inc();
}

/// `n` tenants finished a template migration with this outcome.
pub fn migration_finished(outcome: &str, n: u64) {
    METRICS
        .migrations
        .get_or_create(&Outcome {
            outcome: label(outcome),
        })
        .inc_by(n);
}

/// The `method` label: the standard methods the API serves, any other `other`, so a
/// client cannot create series by inventing methods.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// An HTTP request finished; `route` is the route template, never the raw path.
pub fn http_request(method: &str, route: &str, status: u16, seconds: f64) {
    METRICS
        .http_seconds
        .get_or_create(&Http {
            method: label(method_label(method)),
            route: label(route),
            status: status.to_string(),
        })
        .observe(seconds);
}

/// A tenant API call was let through its rate limit (`query`, `usage`).
pub fn api_call(endpoint: &str) {
    METRICS
        .api_calls
        .get_or_create(&Endpoint {
            endpoint: label(endpoint),
        })
        .inc();
}

/// A request was refused by the named per-tenant limit (`api_calls`, `realtime_events`).
pub fn rate_limited(limit: &str) {
    METRICS
        .rate_limited
        .get_or_create(&Limit {
            limit: label(limit),
        })
        .inc();
}

/// A quota was breached: `disk` when writes were cut off, else the refused metric.
pub fn quota_breach(metric: &str) {
    METRICS
        .quota_breaches
        .get_or_create(&Metric {
            metric: label(metric),
        })
        .inc();
}

/// Writes came back to a tenant that was over its quota.
pub fn quota_restored(metric: &str) {
    METRICS
        .quota_restored
        .get_or_create(&Metric {
            metric: label(metric),
        })
        .inc();
}

/// The watchdog cancelled a statement or ended a session.
pub fn watchdog_action(action: &str, reason: &str) {
    METRICS
        .watchdog
        .get_or_create(&Watchdog {
            action: label(action),
            reason: label(reason),
        })
        .inc();
}

/// A data API statement finished.
pub fn query_finished(isolation: &str, outcome: &str, seconds: f64) {
    METRICS
        .query_seconds
        .get_or_create(&Query {
            isolation: label(isolation),
            outcome: label(outcome),
        })
        .observe(seconds);
}

/// Realtime events handed to `n` subscribers.
pub fn realtime_delivered(n: u64) {
    METRICS.realtime_delivered.inc_by(n);
}

/// Open realtime streams on this server now (set at scrape time).
pub fn realtime_subscribers(n: usize) {
    METRICS.realtime_subscribers.set(n as i64);
}

/// A webhook delivery attempt ended (`delivered`, `failed`, `dead`, `gone`).
pub fn webhook_attempt(event_type: &str, outcome: &str, seconds: f64) {
    let l = Webhook {
        event_type: label(event_type),
        outcome: label(outcome),
    };
    METRICS.webhook_attempts.get_or_create(&l).inc();
    METRICS
        .webhook_seconds
        .get_or_create(&l)
        .observe(seconds.max(0.0));
}

/// The scrape-time figures, read by the caller from the registry and the catalog.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// (status, plan, isolation, count)
    pub tenants: Vec<(String, String, String, i64)>,
    pub writes_blocked: i64,
    /// (tenant, resource_type, usage, limit)
    pub resources: Vec<(String, String, i64, i64)>,
    pub data_api_connections: i64,
    pub data_api_pools: i64,
    /// (endpoint id, pending deliveries, age of the oldest one's event in seconds)
    pub webhooks: Vec<(String, i64, f64)>,
    /// Age of the oldest event not yet delivered (seconds).
    pub outbox_lag_seconds: f64,
    /// (tenant, whether its last finished backup succeeded)
    pub backups: Vec<(String, bool)>,
    /// The tenants that keep their per-tenant request series (the unpurged ones);
    /// `None` keeps them all.
    pub monitored: Option<Vec<String>>,
}

/// Encodes every metric, after setting the scrape-time gauges from `snap`.
/// Concurrent scrapes are serialised so neither sees the other's half-set gauges.
pub fn render(snap: &Snapshot) -> String {
    static SCRAPE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = SCRAPE.lock().unwrap_or_else(|e| e.into_inner());
    let m = &*METRICS;
    m.tenants.clear();
    let mut active = 0;
    for (status, plan, isolation, n) in &snap.tenants {
        if status == "active" {
            active += n;
        }
        m.tenants
            .get_or_create(&TenantSet {
                status: status.clone(),
                plan: plan.clone(),
                isolation: isolation.clone(),
            })
            .set(*n);
    }
    m.tenants_active.set(active);
    m.writes_blocked.set(snap.writes_blocked);
    m.data_api_connections.set(snap.data_api_connections);
    m.data_api_pools.set(snap.data_api_pools);
    m.webhook_pending.clear();
    m.webhook_oldest.clear();
    for (endpoint, pending, oldest) in &snap.webhooks {
        let l = WebhookEndpoint {
            endpoint: endpoint.clone(),
        };
        m.webhook_pending.get_or_create(&l).set(*pending);
        m.webhook_oldest.get_or_create(&l).set(*oldest);
    }
    m.outbox_lag.set(snap.outbox_lag_seconds);
    let keep: Option<std::collections::HashSet<&str>> = snap
        .monitored
        .as_ref()
        .map(|names| names.iter().map(String::as_str).collect());
    tenants::set(&snap.backups, keep.as_ref());
    let mut out = String::new();
    use prometheus_client::encoding::text::{encode_eof, encode_registry};
    encode_registry(&mut out, &m.registry)
        .map(|()| resources::encode(&mut out, &snap.resources))
        .and_then(|()| encode_registry(&mut out, &tenants::TENANT_METRICS.registry))
        .and_then(|()| encode_eof(&mut out))
        .expect("writing to a String does not fail");
    out
}

/// The content type of [`render`]'s output (OpenMetrics text; Prometheus reads it).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_counted() {
        operation_finished("tenant.test", "succeeded", 0.25);
        backup_finished("failed");
        migration_finished("succeeded", 3);
        let text = render(&Snapshot {
            tenants: vec![("active".into(), "free".into(), "schema".into(), 2)],
            resources: vec![("acme".into(), "disk_bytes".into(), 10, 20)],
            ..Default::default()
        });
        assert!(text
            .contains("berqenas_operations_total{kind=\"tenant.test\",outcome=\"succeeded\"} 1"));
        assert!(text.contains("berqenas_backups_total{outcome=\"failed\"} 1"));
        assert!(text.contains("berqenas_migrations_total{outcome=\"succeeded\"} 3"));
        assert!(text.contains("tenants_active 2"));
        assert!(
            text.contains("tenant_resource_usage{tenant=\"acme\",resource_type=\"disk_bytes\"} 10")
        );
    }
}
