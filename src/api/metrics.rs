//! `GET /metrics` (Prometheus), and the middleware timing every HTTP request by its
//! route template.
//!
//! The metrics name tenants, so they are not public: the scraper sends the admin token
//! or, better, the metrics token (`--metrics-token`), which opens nothing else.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::metrics::{self, Snapshot};
use crate::store::tenants as store;

/// Filled by the tenant API key extractor once a key has proven which tenant is
/// calling, so [`track`] can count the request for that tenant (and only then: the
/// `tenant` label never comes from the request itself).
#[derive(Clone, Default)]
pub struct TenantSlot(Arc<OnceLock<String>>);

impl TenantSlot {
    /// Records the calling tenant (the first one set wins).
    pub fn set(&self, tenant: &str) {
        let _ = self.0.set(tenant.to_string());
    }
}

/// Times the request under its route template (`/api/v1/tenants/{name}`), never the
/// raw path, so the label stays bounded; a request made with a tenant's API key is
/// also counted for its tenant (`http_requests_total{tenant,status}`).
pub async fn track(mut req: Request, next: Next) -> Response {
    let slot = TenantSlot::default();
    req.extensions_mut().insert(slot.clone());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let res = next.run(req).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = res.status().as_u16();
    metrics::http_request(&method, &route, status, seconds);
    if let Some(tenant) = slot.0.get() {
        metrics::tenants::request(tenant, status, seconds);
    }
    res
}

/// The metrics token or the admin token (what Prometheus may send).
pub(super) fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(presented) = super::bearer::token(headers) else {
        return false;
    };
    let matches = |t: &str| bool::from(presented.as_bytes().ct_eq(t.as_bytes()));
    matches(&state.admin_token) || state.metrics_token.as_deref().is_some_and(matches)
}

async fn snapshot(state: &AppState) -> Result<Snapshot, Box<dyn std::error::Error + Send + Sync>> {
    let client = state.platform.pool.get().await?;
    let tenants = store::count_by_status_plan_isolation(&client).await?;
    let rows = store::resource_rows(&client).await?;
    // Sessions of tenants on other servers are seen there (one look per server).
    let elsewhere: std::collections::HashMap<String, i64> =
        crate::quota::placed::sessions(&state.platform)
            .await?
            .into_iter()
            .collect();
    let mut resources = Vec::with_capacity(rows.len() * 2);
    let mut writes_blocked = 0;
    for r in rows {
        let connections = elsewhere.get(&r.name).copied().unwrap_or(r.connections);
        resources.push((
            r.name.clone(),
            "disk_bytes".to_string(),
            r.disk_bytes,
            r.db_quota_bytes,
        ));
        resources.push((
            r.name,
            "connections".to_string(),
            connections,
            r.max_connections as i64,
        ));
        if r.writes_blocked {
            writes_blocked += 1;
        }
    }
    // Realtime events this minute, as SQL counted them (the one count: every publish
    // path and reported events; database mode as the quota round last mirrored it).
    for (name, used, limit) in crate::store::realtime::per_minute_all(&client).await? {
        resources.push((name, "realtime_events".to_string(), used, limit));
    }
    let (per_endpoint, lag) = crate::store::webhooks::backlog(&client).await?;
    let backups = crate::store::monitoring::last_backups(&client).await?;
    let monitored = crate::store::monitoring::levels(&client)
        .await?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let (open, pools) = state.data.stats();
    crate::metrics::realtime_subscribers(
        state
            .realtime
            .subscriber_counts()
            .iter()
            .map(|(_, n)| n)
            .sum(),
    );
    Ok(Snapshot {
        tenants,
        writes_blocked,
        resources,
        data_api_connections: open as i64,
        data_api_pools: pools as i64,
        webhooks: per_endpoint
            .into_iter()
            .map(|(id, n, age)| (id.to_string(), n, age))
            .collect(),
        outbox_lag_seconds: lag,
        backups,
        monitored: Some(monitored),
    })
}

#[utoipa::path(get, path = "/metrics", tag = "health", security(("admin" = [])),
    responses((status = 200, description = "Prometheus/OpenMetrics text"), (status = 401), (status = 503)))]
pub async fn scrape(State(state): State<AppState>, req: Request) -> Response {
    if !authorized(&state, req.headers()) {
        let mut res = super::error::answer(
            crate::problem::Kind::Unauthorized,
            "unauthorized",
            "send Authorization: Bearer <metrics token or admin token>",
            None,
        );
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return res;
    }
    match snapshot(&state).await {
        Ok(snap) => (
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            metrics::render(&snap),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics scrape could not read the registry");
            super::error::answer(
                crate::problem::Kind::Unavailable,
                "database_unavailable",
                "the database is unavailable; retry later",
                None,
            )
        }
    }
}
