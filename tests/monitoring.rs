//! Per-tenant monitoring (docs/monitoring.md) against the real Prometheus tools:
//! `promtool check rules` and `promtool test rules` on the rule file berqenas renders,
//! the rule file on disk following creates, plan and level changes and purges, and a
//! real `prometheus` discovering berqenas over HTTP SD, scraping it and seeing the
//! tenant-labelled series the data API's traffic made.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berqenas::api::{self, AppState};
use berqenas::monitoring::files::RulesFile;
use common::{platform, runtime, superuser, unique, ScratchDir, TestApp, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const METRICS_TOKEN: &str = "monitoring-test-metrics-token-0123";

const PROMTOOL: &str = "/usr/bin/promtool";
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// The production router with the metrics token and a rule file under `dir`, kept
/// written as `serve` keeps it (rendered at start, then on each change's wake; the
/// periodic round is an hour here, so only a wake can move the file in a test).
async fn spawn(dir: &Path) -> (TestApp, Arc<RulesFile>) {
    let rt = runtime(platform(16).await).await;
    let file = RulesFile::new(dir.join("monitoring"));
    file.refresh(&rt.platform).await.unwrap();
    tokio::spawn(
        file.clone()
            .run_forever(rt.platform.clone(), Duration::from_secs(3600)),
    );
    let state = AppState::new(rt, TOKEN)
        .with_metrics_token(Some(METRICS_TOKEN))
        .with_monitoring(api::monitoring::Settings {
            targets: Vec::new(),
            rules_file: Some(file.clone()),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = api::router(state);
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    (
        TestApp {
            url,
            http: reqwest::Client::new(),
        },
        file,
    )
}

async fn get_text(app: &TestApp, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = app.http.get(format!("{}{path}", app.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

async fn create(app: &TestApp, name: &str, plan: &str) -> Value {
    app.create_with(json!({"name": name, "plan": plan, "isolation": "schema", "public_api": true}))
        .await
}

async fn set_level(app: &TestApp, name: &str, body: Value) -> (StatusCode, Value) {
    app.call(
        Method::PUT,
        &format!("/api/v1/tenants/{name}/monitoring"),
        Some(body),
    )
    .await
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = std::process::Command::new(PROMTOOL)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian's prometheus package) is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// An alert promtool must see firing: its labels (besides alertname) and annotations.
fn fired(labels: Value, summary: &str, description: &str) -> Value {
    json!({"exp_labels": labels,
        "exp_annotations": {"summary": summary, "description": description}})
}

#[tokio::test]
async fn rules_pass_promtool_and_each_alert_fires_and_stays_quiet() {
    let dir = ScratchDir::new("monitoring-promtool");
    let (app, _) = spawn(&dir).await;
    let basic = unique("mon-b");
    let standard = unique("mon-s");
    let enterprise = unique("mon-e");
    create(&app, &basic, "free").await;
    create(&app, &standard, "starter").await;
    create(&app, &enterprise, "starter").await;
    let (s, body) = set_level(&app, &enterprise, json!({"level": "enterprise"})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (body["level"].as_str(), body["source"].as_str()),
        (Some("enterprise"), Some("tenant"))
    );

    // The metrics token (what Prometheus holds) reads the rules; nothing else does.
    assert_eq!(
        get_text(&app, "/api/v1/monitoring/rules", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, rules) = get_text(&app, "/api/v1/monitoring/rules", Some(METRICS_TOKEN)).await;
    assert_eq!(s, StatusCode::OK);
    std::fs::write(dir.join("rules.yml"), &rules).unwrap();
    let checked = promtool(&["check", "rules", "rules.yml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");

    // Each tenant's input series; one tenant makes each alert fire, the others (lower
    // level, or under the threshold) stay quiet.
    let series = |name: &str, labels: &str, values: &str| json!({"series": format!("{name}{{{labels}}}"), "values": values});
    let b = format!("tenant=\"{basic}\"");
    let s_ = format!("tenant=\"{standard}\"");
    let e = format!("tenant=\"{enterprise}\"");
    let input = vec![
        // high-error-rate: half of basic's requests fail; standard's never do.
        series(
            "http_requests_total",
            &format!("{b},status=\"5xx\""),
            "0+10x20",
        ),
        series(
            "http_requests_total",
            &format!("{b},status=\"2xx\""),
            "0+10x20",
        ),
        series(
            "http_requests_total",
            &format!("{s_},status=\"5xx\""),
            "0x20",
        ),
        series(
            "http_requests_total",
            &format!("{s_},status=\"2xx\""),
            "0+10x20",
        ),
        // db-connection-limit: 9 of 10 is over 80 %; 8 of 10 is not.
        series(
            "tenant_resource_usage",
            &format!("{b},resource_type=\"connections\""),
            "9x20",
        ),
        series(
            "tenant_resource_limit",
            &format!("{b},resource_type=\"connections\""),
            "10x20",
        ),
        series(
            "tenant_resource_usage",
            &format!("{s_},resource_type=\"connections\""),
            "8x20",
        ),
        series(
            "tenant_resource_limit",
            &format!("{s_},resource_type=\"connections\""),
            "10x20",
        ),
        // backup-failed: standard's last backup failed; basic's too, but basic has no
        // such rule; enterprise's succeeded.
        series("backup_job_success", &s_, "0x20"),
        series("backup_job_success", &b, "0x20"),
        series("backup_job_success", &e, "1x20"),
        // sla-breach: a 1 s mean for enterprise and for standard (which has no SLA).
        series("http_request_duration_seconds_sum", &e, "0+60x20"),
        series("http_request_duration_seconds_count", &e, "0+60x20"),
        series("http_request_duration_seconds_sum", &s_, "0+60x20"),
        series("http_request_duration_seconds_count", &s_, "0+60x20"),
    ];
    let cases = vec![
        // Pending, not firing yet: each alert's `for` has not passed.
        json!({"eval_time": "3m", "alertname": "high-error-rate", "exp_alerts": []}),
        json!({"eval_time": "1m", "alertname": "db-connection-limit", "exp_alerts": []}),
        json!({"eval_time": "10m", "alertname": "high-error-rate", "exp_alerts": [fired(
            json!({"severity": "warning", "tenant": basic, "monitoring_level": "basic"}),
            "High error rate detected for tenant", "Error rate is above 5% for 5 minutes")]}),
        json!({"eval_time": "5m", "alertname": "db-connection-limit", "exp_alerts": [fired(
            json!({"severity": "critical", "tenant": basic, "monitoring_level": "basic",
                "resource_type": "connections"}),
            "Database connection limit approaching", "Database connections are at 80% of limit")]}),
        json!({"eval_time": "5m", "alertname": "backup-failed", "exp_alerts": [fired(
            json!({"severity": "critical", "tenant": standard, "monitoring_level": "standard",
                "service": "backup"}),
            "The tenant's last backup failed", "The most recent backup of this tenant did not succeed")]}),
        json!({"eval_time": "5m", "alertname": "sla-breach", "exp_alerts": [fired(
            json!({"severity": "critical", "tenant": enterprise, "monitoring_level": "enterprise",
                "sla": "true"}),
            "SLA breach: mean request duration over 0.5 s",
            "The tenant's mean request duration was above 0.5 s for a minute")]}),
    ];
    // JSON is YAML: the test file is written as JSON.
    let test = json!({
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": input, "alert_rule_test": cases}],
    });
    std::fs::write(dir.join("rules_test.yml"), test.to_string()).unwrap();
    let tested = promtool(&["test", "rules", "rules_test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // The test can fail: the same cases against rules where standard has no backup
    // alert must not pass.
    let weakened = rules.replace("\"backup-failed\"", "\"backup-failed-renamed\"");
    std::fs::write(dir.join("rules.yml"), weakened).unwrap();
    let out = std::process::Command::new(PROMTOOL)
        .args(["test", "rules", "rules_test.yml"])
        .current_dir(&*dir)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "promtool passed rules without backup-failed"
    );
}

/// Waits until the file at `path` satisfies `ok` (it is written by a background task).
async fn file_until(path: &Path, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if ok(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}; the file:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The alert names in `tenant`'s group of a rule file.
fn alerts_of(rules: &str, tenant: &str) -> Vec<String> {
    let Some((_, rest)) = rules.split_once(&format!("\"berqenas-tenant-{tenant}\"")) else {
        return Vec::new();
    };
    let group = rest.split("  - name:").next().unwrap_or("");
    group
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|a| a.trim_matches('"').to_string())
        .collect()
}

async fn audit_rows(tenant: &str) -> i64 {
    superuser()
        .await
        .query_one(
            "SELECT count(*) FROM berqenas.audit_log WHERE tenant_name = $1 AND action = 'monitoring_level_updated'",
            &[&tenant],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn rule_file_follows_creates_plan_and_level_changes_and_purges() {
    let dir = ScratchDir::new("monitoring-file");
    let (app, file) = spawn(&dir).await;
    let path: PathBuf = file.path();
    assert!(
        path.starts_with(dir.join("monitoring")),
        "{}",
        path.display()
    );
    let name = unique("mon-f");

    // Created on the starter plan: standard.
    let t = create(&app, &name, "starter").await;
    let rules = file_until(&path, "the new tenant's group", |r| {
        !alerts_of(r, &name).is_empty()
    })
    .await;
    assert_eq!(
        alerts_of(&rules, &name),
        ["high-error-rate", "db-connection-limit", "backup-failed"]
    );
    let (s, m) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/monitoring"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["level"], "standard");
    assert_eq!(m["source"], "plan");

    // Plan changed to enterprise: the enterprise plan's level, with sla-breach.
    let (s, b) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/tenants/{name}"),
            Some(json!({"plan": "enterprise"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    file_until(&path, "sla-breach after the plan change", |r| {
        alerts_of(r, &name).contains(&"sla-breach".to_string())
    })
    .await;

    // Bad input: named in the answer, and nothing changed (the level, the audit trail,
    // the file).
    let before_file = std::fs::read_to_string(&path).unwrap();
    let before_audit = audit_rows(&name).await;
    for (body, field, says) in [
        (json!({"level": "gold"}), "level", "\"gold\""),
        (json!({}), "level", "level is required"),
        (json!({"level": 3}), "level", ""),
        (json!({"level": "basic", "extra": 1}), "extra", "extra"),
    ] {
        let (s, e) = set_level(&app, &name, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {e}");
        let message = e["error"]["message"].as_str().unwrap_or_default();
        assert!(
            e["error"]["field"] == field || message.contains(field),
            "{body}: {e}"
        );
        assert!(message.contains(says), "{body}: {e}");
    }
    let ghost = unique("mon-ghost");
    let (s, e) = set_level(&app, &ghost, json!({"level": "basic"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains(&ghost),
        "{e}"
    );
    let (s, e) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{ghost}/monitoring/dashboard"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (_, m) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/monitoring"),
            None,
        )
        .await;
    assert_eq!(
        (m["level"].as_str(), m["source"].as_str()),
        (Some("enterprise"), Some("plan"))
    );
    assert_eq!(audit_rows(&name).await, before_audit);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before_file);

    // The tenant's own level overrides its plan's; null goes back to the plan's.
    let (s, m) = set_level(&app, &name, json!({"level": "basic"})).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(
        m["alerts"],
        json!(["high-error-rate", "db-connection-limit"])
    );
    file_until(&path, "basic's two alerts", |r| {
        alerts_of(r, &name).len() == 2
    })
    .await;
    assert_eq!(audit_rows(&name).await, before_audit + 1);
    let (s, m) = set_level(&app, &name, json!({"level": null})).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(
        (m["level"].as_str(), m["source"].as_str()),
        (Some("enterprise"), Some("plan"))
    );
    file_until(&path, "back to the plan's four", |r| {
        alerts_of(r, &name).len() == 4
    })
    .await;

    // The dashboard: a Grafana model over this tenant's series.
    let (s, d) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/monitoring/dashboard"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["uid"], format!("bq-{name}"));
    assert!(d["panels"].as_array().unwrap().len() >= 6);

    // Its traffic shows under its name in /metrics, until it is purged.
    let key = t["api_key"].as_str().unwrap();
    assert_eq!(app.me(key).await, StatusCode::OK);
    let series = format!("http_requests_total{{tenant=\"{name}\",status=\"2xx\"}} 1");
    let (_, text) = get_text(&app, "/metrics", Some(METRICS_TOKEN)).await;
    assert!(text.contains(&series), "{series} not in /metrics");

    // Purged: its group leaves the file, its series leave /metrics, its dashboard goes.
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}?purge=now"),
            Some(json!({"confirm": name})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    file_until(&path, "the purged tenant's group gone", |r| {
        r.contains("groups:") && alerts_of(r, &name).is_empty()
    })
    .await;
    let (_, text) = get_text(&app, "/metrics", Some(METRICS_TOKEN)).await;
    let tenant_label = format!("tenant=\"{name}\"");
    assert!(
        !text.lines().any(|l| l.contains(&tenant_label)),
        "a purged tenant's series remain"
    );
    let (s, _) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/monitoring/dashboard"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// A real Prometheus in a directory of its own, killed when dropped.
struct Prometheus {
    child: std::process::Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    fn start(dir: &Path, config: &str) -> Self {
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = std::process::Command::new(PROMETHEUS)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian's prometheus package) is installed");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Prometheus's HTTP API answer's `data`, once it is up.
    async fn api(&self, path: &str) -> Option<Value> {
        let res = reqwest::get(format!("{}{path}", self.url)).await.ok()?;
        let body: Value = res.json().await.ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }
}

async fn until<T>(what: &str, log: &Path, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what}: not seen in time; Prometheus's log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn query(app: &TestApp, key: &str, sql: &str) -> StatusCode {
    app.http
        .post(format!("{}/api/v1/query", app.url))
        .bearer_auth(key)
        .json(&json!({"sql": sql, "params": []}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_real_prometheus_discovers_scrapes_and_loads_the_rules() {
    let dir = ScratchDir::new("monitoring-prometheus");
    let (app, _) = spawn(&dir).await;
    let name = unique("mon-p");
    let t = create(&app, &name, "starter").await;
    let key = t["api_key"].as_str().unwrap();

    // Tenant traffic through the data API: a success, a 4xx (bad SQL) and a 5xx (a
    // statement cancelled at the tenant's timeout: 504).
    let (s, b) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/quotas"),
            Some(json!({"statement_timeout_ms": 200})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(query(&app, key, "SELECT 1").await, StatusCode::OK);
    assert_eq!(query(&app, key, "SELEC 1").await, StatusCode::BAD_REQUEST);
    assert_eq!(
        query(&app, key, "SELECT pg_sleep(2)").await,
        StatusCode::GATEWAY_TIMEOUT
    );
    // A backup, so its tenant's backup_job_success is 1.
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/backups"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let (_, text) = get_text(&app, "/metrics", Some(METRICS_TOKEN)).await;
    for want in [
        format!("http_requests_total{{tenant=\"{name}\",status=\"2xx\"}} 1"),
        format!("http_requests_total{{tenant=\"{name}\",status=\"4xx\"}} 1"),
        format!("http_requests_total{{tenant=\"{name}\",status=\"5xx\"}} 1"),
        format!("http_request_duration_seconds_count{{tenant=\"{name}\"}} 3"),
        format!("http_request_duration_seconds_bucket{{le=\"0.5\",tenant=\"{name}\"}}"),
        format!("backup_job_success{{tenant=\"{name}\"}} 1"),
    ] {
        assert!(text.contains(&want), "{want} not in /metrics");
    }

    // HTTP SD answers with this server's own address, given the metrics token.
    let (s, _) = get_text(&app, "/api/v1/monitoring/targets", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, sd) = get_text(&app, "/api/v1/monitoring/targets", Some(METRICS_TOKEN)).await;
    assert_eq!(s, StatusCode::OK);
    let address = app.url.trim_start_matches("http://").to_string();
    let sd: Value = serde_json::from_str(&sd).unwrap();
    assert_eq!(sd[0]["targets"], json!([address]), "{sd}");

    // Prometheus: targets from berqenas's HTTP SD, scraped with the metrics token, and
    // the tenant rule file berqenas renders.
    let (_, rules) = get_text(&app, "/api/v1/monitoring/rules", Some(METRICS_TOKEN)).await;
    std::fs::write(dir.join("tenants.yml"), rules).unwrap();
    let config = format!(
        r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {rules}
scrape_configs:
  - job_name: berqenas
    authorization:
      type: Bearer
      credentials: {METRICS_TOKEN}
    http_sd_configs:
      - url: {url}/api/v1/monitoring/targets
        refresh_interval: 1s
        authorization:
          type: Bearer
          credentials: {METRICS_TOKEN}
"#,
        rules = dir.join("tenants.yml").display(),
        url = app.url,
    );
    let prom = Prometheus::start(&dir, &config);
    let log = dir.join("prometheus.log");

    let target = until("berqenas discovered and up", &log, async || {
        let data = prom.api("/api/v1/targets").await?;
        data["activeTargets"]
            .as_array()?
            .iter()
            .find(|t| t["labels"]["instance"] == address.as_str() && t["health"] == "up")
            .cloned()
    })
    .await;
    assert_eq!(target["labels"]["service"], "berqenas", "{target}");
    assert_eq!(target["labels"]["job"], "berqenas", "{target}");
    assert_eq!(
        target["discoveredLabels"]["__metrics_path__"], "/metrics",
        "{target}"
    );

    let q = format!("http_requests_total{{tenant=\"{name}\",status=\"5xx\"}}");
    let sample = until("the tenant's 5xx series in Prometheus", &log, async || {
        let data = prom
            .api(&format!("/api/v1/query?query={}", urlencode(&q)))
            .await?;
        data["result"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(sample["metric"]["tenant"], name.as_str(), "{sample}");
    assert_eq!(sample["metric"]["job"], "berqenas", "{sample}");
    assert_eq!(sample["value"][1], "1", "{sample}");

    // Prometheus loaded the tenant's rule group.
    let groups = until("the tenant's rule group loaded", &log, async || {
        let data = prom.api("/api/v1/rules").await?;
        let groups = data["groups"].as_array()?.clone();
        groups
            .iter()
            .any(|g| g["name"] == format!("berqenas-tenant-{name}"))
            .then_some(groups)
    })
    .await;
    let mine = groups
        .iter()
        .find(|g| g["name"] == format!("berqenas-tenant-{name}"))
        .unwrap();
    assert_eq!(mine["rules"].as_array().unwrap().len(), 3, "{mine}");

    // Every dashboard query is PromQL Prometheus runs.
    let (_, dashboard) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/monitoring/dashboard"),
            None,
        )
        .await;
    for expr in berqenas::monitoring::dashboard::expressions(&dashboard) {
        let res: Value = reqwest::get(format!(
            "{}/api/v1/query?query={}",
            prom.url,
            urlencode(&expr)
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(res["status"], "success", "{expr}: {res}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
