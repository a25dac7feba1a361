//! `/metrics` parses as Prometheus text and shows what the requests made here did.
//! One test in this binary, so no other test moves the process-wide counters.

mod common;
#[path = "support/state.rs"]
mod support;

use std::collections::HashMap;

use berqenas::quota;
use common::{connect_as, superuser, unique, TestApp};
use prometheus_parse::{Sample, Scrape, Value as PValue};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn scrape(app: &TestApp, token: Option<&str>) -> (StatusCode, String) {
    let mut req = app.http.get(format!("{}/metrics", app.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses as Prometheus text")
}

fn labels_match(s: &Sample, want: &[(&str, &str)]) -> bool {
    want.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
}

/// The value of the one sample named `name` with these labels (counters, gauges).
fn value(scrape: &Scrape, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels_match(s, want))
        .map(|s| match &s.value {
            PValue::Counter(v) | PValue::Gauge(v) | PValue::Untyped(v) => *v,
            PValue::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            PValue::Summary(_) => f64::NAN,
        })
}

/// A histogram's observation count.
fn count(scrape: &Scrape, name: &str, want: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| labels_match(s, want))
        .find_map(|s| {
            if s.metric == format!("{name}_count") {
                match s.value {
                    PValue::Counter(v) | PValue::Untyped(v) | PValue::Gauge(v) => Some(v),
                    _ => None,
                }
            } else if s.metric == name {
                match &s.value {
                    PValue::Histogram(h) => h.last().map(|b| b.count),
                    _ => None,
                }
            } else {
                None
            }
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_parse_and_show_what_happened() {
    let (app, state) = support::spawn().await;
    let pg = superuser().await;

    // Without a token: refused; the metrics token opens it, the admin token too.
    assert_eq!(scrape(&app, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        scrape(&app, Some("wrong-token-xxxxxxxx")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, before) = scrape(&app, Some(support::METRICS_TOKEN)).await;
    assert_eq!(s, StatusCode::OK);
    let before = parse(&before);
    let created_before = value(&before, "tenants_created_total", &[]).unwrap_or(0.0);

    // Three tenants; data API calls; one over the rate; a disk breach; usage refused.
    let names: Vec<String> = (0..3).map(|i| unique(&format!("metrics-{i}"))).collect();
    let mut tenants = Vec::new();
    for n in &names {
        tenants.push(app.create(n).await);
    }
    let main = &names[0];
    let (s, _) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{main}/quotas"),
            Some(json!({"api_calls_per_minute": 4, "max_llm_tokens_per_day": 100})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let key = tenants[0]["api_key"].as_str().unwrap();
    let mut statuses = HashMap::new();
    for _ in 0..3 {
        let (s, _) = app
            .call_with(
                Method::POST,
                "/api/v1/query",
                Some(json!({"sql": "SELECT 1"})),
                Some(key),
                &[],
            )
            .await;
        *statuses.entry(s.as_u16()).or_insert(0) += 1;
    }
    // The 4th call spends the rate on a usage increment that the quota refuses...
    let (s, _) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{main}/usage"),
            Some(json!({"metric": "llm_tokens", "amount": 101})),
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    // ...and the 5th is over the rate.
    let (s, _) = app
        .call_with(
            Method::POST,
            "/api/v1/query",
            Some(json!({"sql": "SELECT 1"})),
            Some(key),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(statuses.get(&200), Some(&3));

    let login = connect_as(&tenants[1]["credentials"]).await;
    login
        .batch_execute(
            "INSERT INTO user_activity (user_id, action, user_agent)
             SELECT 'u', 'fill', repeat(md5(g::text), 40) || md5(random()::text) FROM generate_series(1, 1200) g",
        )
        .await
        .unwrap();
    let (s, body) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{}/quotas", names[1]),
            Some(json!({"db_quota_bytes": 1 << 20, "force": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let _other_session = connect_as(&tenants[2]["credentials"]).await;

    let (s, text) = scrape(&app, Some(common::TOKEN)).await;
    assert_eq!(s, StatusCode::OK);
    if std::env::var("SHOW_METRICS").is_ok() {
        eprintln!("{text}");
    }
    let after = parse(&text);

    // Tenants created, and the registry's count by status/plan/isolation.
    assert_eq!(
        value(&after, "tenants_created_total", &[]).unwrap() - created_before,
        3.0
    );
    let registry: i64 = pg
        .query_one(
            "SELECT count(*) FROM berqenas.tenants WHERE status = 'active' AND plan = 'free' AND isolation = 'schema'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        value(
            &after,
            "berqenas_tenants",
            &[
                ("status", "active"),
                ("plan", "free"),
                ("isolation", "schema")
            ]
        ),
        Some(registry as f64)
    );
    assert!(value(&after, "tenants_active", &[]).unwrap() >= 3.0);

    // Per-tenant gauges: the disk bytes the worker recorded, the open sessions.
    let bytes: i64 = pg
        .query_one(
            "SELECT bytes FROM berqenas.disk_usage u JOIN berqenas.tenants t ON t.id = u.tenant_id WHERE t.name = $1",
            &[&names[1]],
        )
        .await
        .unwrap()
        .get(0);
    assert!(bytes > 1 << 20);
    assert_eq!(
        value(
            &after,
            "tenant_resource_usage",
            &[
                ("tenant", names[1].as_str()),
                ("resource_type", "disk_bytes")
            ]
        ),
        Some(bytes as f64)
    );
    assert_eq!(
        value(
            &after,
            "tenant_resource_limit",
            &[
                ("tenant", names[1].as_str()),
                ("resource_type", "disk_bytes")
            ]
        ),
        Some((1 << 20) as f64)
    );
    assert_eq!(
        value(
            &after,
            "tenant_resource_usage",
            &[
                ("tenant", names[2].as_str()),
                ("resource_type", "connections")
            ]
        ),
        Some(1.0)
    );
    assert!(value(&after, "berqenas_tenants_writes_blocked", &[]).unwrap() >= 1.0);

    // Counters: what the requests above did, exactly.
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels).unwrap_or(0.0) - value(&before, name, labels).unwrap_or(0.0)
    };
    for (name, labels, want) in [
        ("berqenas_api_calls_total", ("endpoint", "query"), 3.0),
        ("berqenas_api_calls_total", ("endpoint", "usage"), 1.0),
        ("berqenas_rate_limited_total", ("limit", "api_calls"), 1.0),
        (
            "berqenas_quota_breaches_total",
            ("metric", "llm_tokens"),
            1.0,
        ),
        ("berqenas_quota_breaches_total", ("metric", "disk"), 1.0),
    ] {
        assert_eq!(delta(name, &[labels]), want, "{name} {labels:?}");
    }
    assert_eq!(
        count(
            &after,
            "berqenas_http_request_duration_seconds",
            &[
                ("route", "/api/v1/query"),
                ("method", "POST"),
                ("status", "200")
            ]
        ) - count(
            &before,
            "berqenas_http_request_duration_seconds",
            &[
                ("route", "/api/v1/query"),
                ("method", "POST"),
                ("status", "200")
            ]
        ),
        3.0
    );
    assert_eq!(
        count(
            &after,
            "berqenas_http_request_duration_seconds",
            &[("route", "/api/v1/query"), ("status", "429")]
        ),
        1.0
    );
    assert_eq!(
        count(
            &after,
            "tenant_query_duration_seconds",
            &[("isolation", "schema"), ("outcome", "ok")]
        ),
        3.0
    );
    assert!(
        count(
            &after,
            "berqenas_operation_duration_seconds",
            &[("kind", "tenant.create"), ("outcome", "succeeded")]
        ) >= 3.0
    );
    assert!(
        value(
            &after,
            "berqenas_operations_total",
            &[("kind", "tenant.quotas"), ("outcome", "succeeded")]
        )
        .unwrap()
            >= 2.0
    );
    // Raw paths never become labels: only route templates (and "unmatched").
    assert!(!text.contains(&format!("/api/v1/tenants/{main}/")));
    assert!(text.contains("route=\"/api/v1/tenants/{name}/quotas\""));

    // Restoring writes is counted too.
    let (s, _) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{}/quotas", names[1]),
            Some(json!({"db_quota_bytes": null})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    quota::watchdog::run_once(&state.platform).await.unwrap();
    let last = parse(&scrape(&app, Some(support::METRICS_TOKEN)).await.1);
    assert_eq!(
        value(
            &last,
            "berqenas_quota_restored_total",
            &[("metric", "disk")]
        )
        .unwrap_or(0.0)
            - value(
                &before,
                "berqenas_quota_restored_total",
                &[("metric", "disk")]
            )
            .unwrap_or(0.0),
        1.0
    );

    // An invented HTTP method is counted as "other": it never becomes a label value.
    let res = app
        .http
        .request(
            Method::from_bytes(b"FROBNICATE").unwrap(),
            format!("{}/api/v1/query", app.url),
        )
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let text = scrape(&app, Some(support::METRICS_TOKEN)).await.1;
    assert!(!text.contains("FROBNICATE"), "{text}");
    assert!(
        count(
            &parse(&text),
            "berqenas_http_request_duration_seconds",
            &[("method", "other")]
        ) >= 1.0
    );
}
