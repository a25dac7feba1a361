//! A Grafana dashboard per tenant (the dashboard model Grafana imports and its HTTP API
//! `POST /api/dashboards/db` takes as `dashboard`): requests, errors, latency,
//! connections against the limit, the last backup, and disk use against the quota,
//! over the series in docs/monitoring.md. The data source is a dashboard variable, so
//! the same JSON imports into any Grafana with a Prometheus data source.

use serde_json::{json, Value};

use super::{quoted, Level};

/// The dashboard's `uid`: stable per tenant (Grafana limits uids to 40 characters;
/// slugs are at most 32).
pub fn uid(tenant: &str) -> String {
    format!("bq-{tenant}")
}

struct Panel {
    title: &'static str,
    kind: &'static str,
    unit: &'static str,
    /// (expression, legend)
    targets: Vec<(String, &'static str)>,
    /// A red line (or colour step) at this value.
    threshold: Option<f64>,
}

/// Each panel's PromQL, for the tests that run them against a real Prometheus.
pub fn expressions(dashboard: &Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect()
}

fn panels(tenant: &str) -> Vec<Panel> {
    let t = format!("tenant={}", quoted(tenant));
    vec![
        Panel {
            title: "Requests by status class",
            kind: "timeseries",
            unit: "reqps",
            targets: vec![(
                format!("sum by (status) (rate(http_requests_total{{{t}}}[5m]))"),
                "{{status}}",
            )],
            threshold: None,
        },
        Panel {
            title: "Error rate (5xx share; alert at 5 %)",
            kind: "timeseries",
            unit: "percentunit",
            targets: vec![(
                format!(
                    "sum(rate(http_requests_total{{{t},status=\"5xx\"}}[5m])) / sum(rate(http_requests_total{{{t}}}[5m]))"
                ),
                "5xx share",
            )],
            threshold: Some(0.05),
        },
        Panel {
            title: "Request duration (SLA at 0.5 s mean)",
            kind: "timeseries",
            unit: "s",
            targets: vec![
                (
                    format!(
                        "sum(rate(http_request_duration_seconds_sum{{{t}}}[5m])) / sum(rate(http_request_duration_seconds_count{{{t}}}[5m]))"
                    ),
                    "mean",
                ),
                (
                    format!(
                        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{{t}}}[5m])))"
                    ),
                    "p95",
                ),
            ],
            threshold: Some(0.5),
        },
        Panel {
            title: "Database connections vs limit",
            kind: "timeseries",
            unit: "short",
            targets: vec![
                (
                    format!("max(tenant_resource_usage{{{t},resource_type=\"connections\"}})"),
                    "connections",
                ),
                (
                    format!("max(tenant_resource_limit{{{t},resource_type=\"connections\"}})"),
                    "limit",
                ),
            ],
            threshold: None,
        },
        Panel {
            title: "Last backup",
            kind: "stat",
            unit: "none",
            targets: vec![(format!("min(backup_job_success{{{t}}})"), "last backup")],
            threshold: None,
        },
        Panel {
            title: "Disk use vs quota",
            kind: "timeseries",
            unit: "bytes",
            targets: vec![
                (
                    format!("max(tenant_resource_usage{{{t},resource_type=\"disk_bytes\"}})"),
                    "used",
                ),
                (
                    format!("max(tenant_resource_limit{{{t},resource_type=\"disk_bytes\"}})"),
                    "quota",
                ),
            ],
            threshold: None,
        },
    ]
}

fn panel_json(id: usize, p: Panel) -> Value {
    // Two panels a row, each half the 24-column grid, 8 units high.
    let (x, y) = ((id % 2) * 12, (id / 2) * 8);
    let steps = match p.threshold {
        Some(v) => json!([{"color": "green", "value": null}, {"color": "red", "value": v}]),
        None => json!([{"color": "green", "value": null}]),
    };
    let mut defaults = json!({
        "unit": p.unit,
        "thresholds": {"mode": "absolute", "steps": steps},
    });
    if p.kind == "stat" {
        defaults["mappings"] = json!([{"type": "value", "options": {
            "0": {"text": "failed", "color": "red", "index": 0},
            "1": {"text": "succeeded", "color": "green", "index": 1}}}]);
    } else if p.threshold.is_some() {
        defaults["custom"] = json!({"thresholdsStyle": {"mode": "line"}});
    }
    let targets: Vec<Value> = p
        .targets
        .into_iter()
        .enumerate()
        .map(|(i, (expr, legend))| {
            json!({
                "refId": ((b'A' + i as u8) as char).to_string(),
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "expr": expr,
                "legendFormat": legend,
            })
        })
        .collect();
    json!({
        "id": id + 1,
        "type": p.kind,
        "title": p.title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {},
        "targets": targets,
    })
}

/// The dashboard model for `tenant` at `level` (the level is shown in its tags).
pub fn render(tenant: &str, level: Level) -> Value {
    let panels: Vec<Value> = panels(tenant)
        .into_iter()
        .enumerate()
        .map(|(i, p)| panel_json(i, p))
        .collect();
    json!({
        "uid": uid(tenant),
        "title": format!("berqenas tenant {tenant}"),
        "tags": ["berqenas", "tenant", format!("monitoring:{}", level.as_str())],
        "timezone": "browser",
        "editable": true,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": [{
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        }]},
        "panels": panels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dashboard_model_with_every_panel() {
        let d = render("acme", Level::Standard);
        assert_eq!(d["uid"], "bq-acme");
        let panels = d["panels"].as_array().unwrap();
        let titles: Vec<&str> = panels
            .iter()
            .map(|p| p["title"].as_str().unwrap())
            .collect();
        for want in [
            "Requests",
            "Error",
            "duration",
            "connections",
            "backup",
            "Disk",
        ] {
            assert!(
                titles.iter().any(|t| t.contains(want)),
                "{want}: {titles:?}"
            );
        }
        // Unique ids, no overlapping grid cells, every query on this tenant only.
        let mut cells: Vec<(u64, u64)> = panels
            .iter()
            .map(|p| {
                (
                    p["gridPos"]["x"].as_u64().unwrap(),
                    p["gridPos"]["y"].as_u64().unwrap(),
                )
            })
            .collect();
        cells.sort();
        cells.dedup();
        assert_eq!(cells.len(), panels.len());
        let exprs = expressions(&d);
        assert!(exprs.len() >= panels.len());
        assert!(
            exprs.iter().all(|e| e.contains(r#"tenant="acme""#)),
            "{exprs:?}"
        );
        assert!(uid(&"a".repeat(32)).len() <= 40);
    }
}
