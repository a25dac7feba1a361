//! Quota crossings (disk, connections, rates) and usage reports.

use super::*;
use crate::common::connect_as;

#[tokio::test]
async fn disk_and_connection_quotas_exceeded_and_recovered() {
    let (app, state) = spawn_with_state().await;
    let name = unique("ev-quota");
    let t = app.create(&name).await;
    let base = format!("/api/v1/tenants/{name}");
    // Disk: over a 1 MB quota, then under it again when it is raised.
    ok(
        &app,
        Method::PUT,
        &format!("{base}/quotas"),
        Some(json!({"db_quota_bytes": 1 << 20})),
    )
    .await;
    let login = connect_as(&t["credentials"]).await;
    login
        .batch_execute(
            "INSERT INTO user_activity (user_id, action, user_agent)
             SELECT 'u', 'fill', (SELECT string_agg(md5(random()::text || g::text || x::text), '') FROM generate_series(1, 32) x)
               FROM generate_series(1, 1500) g",
        )
        .await
        .unwrap();
    common::disk_round(&state.platform).await;
    ok(
        &app,
        Method::PUT,
        &format!("{base}/quotas"),
        Some(json!({"db_quota_bytes": 1 << 30})),
    )
    .await;
    let evts = events(&app, &name).await;
    let disk: Vec<&Value> = evts
        .iter()
        .filter(|e| e["data"]["quota"] == "disk")
        .collect();
    assert_eq!(disk.len(), 2, "{:?}", types(&evts));
    assert_eq!(disk[0]["type"], "quota.exceeded");
    assert_eq!(disk[0]["data"]["limit"], 1 << 20);
    assert_eq!(disk[0]["data"]["limit_name"], "db_quota_bytes");
    assert!(disk[0]["data"]["used"].as_i64().unwrap() > 1 << 20);
    assert_eq!(disk[1]["type"], "quota.recovered");
    assert_eq!(disk[1]["data"]["limit"], 1 << 30);

    // Connections: at the limit, then one free again.
    ok(
        &app,
        Method::PUT,
        &format!("{base}/quotas"),
        Some(json!({"max_connections": 2})),
    )
    .await;
    let second = connect_as(&t["credentials"]).await;
    common::disk_round(&state.platform).await;
    common::disk_round(&state.platform).await;
    let conn = |evts: &[Value]| -> Vec<Value> {
        evts.iter()
            .filter(|e| e["data"]["quota"] == "connections")
            .cloned()
            .collect()
    };
    let c = conn(&events(&app, &name).await);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0]["type"], "quota.exceeded");
    assert_eq!(c[0]["data"]["used"], 2);
    assert_eq!(c[0]["data"]["limit"], 2);
    drop(second);
    drop(login);
    tokio::time::sleep(Duration::from_millis(300)).await;
    common::disk_round(&state.platform).await;
    let c = conn(&events(&app, &name).await);
    assert_eq!(types(&c), ["quota.exceeded", "quota.recovered"]);
}

#[tokio::test]
async fn rate_limits_exceeded_and_recovered() {
    let (app, _state) = spawn_with_state().await;
    let name = unique("ev-rate");
    app.create(&name).await;
    let base = format!("/api/v1/tenants/{name}");
    ok(
        &app,
        Method::PUT,
        &format!("{base}/quotas"),
        Some(json!({"api_calls_per_minute": 120, "realtime_events_per_minute": 10})),
    )
    .await;
    let usage = format!("{base}/usage");
    // Realtime: 10 pass, 5 more are refused (one crossing, not one per refusal).
    ok(
        &app,
        Method::POST,
        &usage,
        Some(json!({"metric": "realtime_events", "amount": 10})),
    )
    .await;
    for _ in 0..3 {
        let (s, _) = app
            .call(
                Method::POST,
                &usage,
                Some(json!({"metric": "realtime_events", "amount": 5})),
            )
            .await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    }
    // The API rate: past 120 calls at once.
    let mut refused = 0;
    for _ in 0..130 {
        let (s, _) = app
            .call(
                Method::POST,
                &usage,
                Some(json!({"metric": "llm_tokens", "amount": 1})),
            )
            .await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert!(refused > 0);
    let crossed = |evts: &[Value], quota: &str| -> Vec<String> {
        types(
            &evts
                .iter()
                .filter(|e| e["data"]["quota"] == quota)
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let evts = wait_events(&app, &name, |e| {
        crossed(e, "rate").len() == 1 && crossed(e, "realtime").len() == 1
    })
    .await;
    assert_eq!(crossed(&evts, "rate"), ["quota.exceeded"]);
    let rt = evts
        .iter()
        .find(|e| e["data"]["quota"] == "realtime")
        .unwrap();
    assert_eq!(rt["type"], "quota.exceeded");
    assert_eq!(rt["data"]["limit"], 10);
    assert_eq!(rt["data"]["limit_name"], "realtime_events_per_minute");
    // Half the API budget back (60 of 120 after 30 s): recovered on the next call.
    tokio::time::sleep(Duration::from_secs(31)).await;
    ok(
        &app,
        Method::POST,
        &usage,
        Some(json!({"metric": "llm_tokens", "amount": 1})),
    )
    .await;
    let evts = wait_events(&app, &name, |e| crossed(e, "rate").len() == 2).await;
    assert_eq!(
        crossed(&evts, "rate"),
        ["quota.exceeded", "quota.recovered"]
    );
}

/// The tenant's events once `done` holds (crossings are recorded on a task of their own).
async fn wait_events(app: &TestApp, name: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..100 {
        let evts = events(app, name).await;
        if done(&evts) {
            return evts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    events(app, name).await
}

#[tokio::test]
async fn usage_is_reported_on_the_interval() {
    let (app, state) = spawn_with_state().await;
    let name = unique("ev-usage");
    app.create(&name).await;
    let reporter = tokio::spawn(berqenas::quota::report::run_forever(
        state.platform.platform.clone(),
        state.limits.clone(),
        Duration::from_millis(700),
    ));
    let evts = wait_events_long(&app, &name, 2).await;
    reporter.abort();
    let reports: Vec<&Value> = evts
        .iter()
        .filter(|e| e["type"] == "usage.reported")
        .collect();
    assert!(reports.len() >= 2, "{:?}", types(&evts));
    let first = &reports[0]["data"];
    assert_eq!(first["plan"], "free");
    assert_eq!(first["status"], "active");
    for metric in [
        "storage_bytes",
        "connections",
        "users",
        "api_calls",
        "llm_tokens",
    ] {
        assert!(first["usage"][metric].is_i64(), "{metric}: {first}");
    }
    assert_eq!(first["quotas"]["max_connections"], 5);
    // Periods follow each other: the second starts where the first ended.
    assert_eq!(reports[1]["data"]["period_start"], first["period_end"]);
}

async fn wait_events_long(app: &TestApp, name: &str, reports: usize) -> Vec<Value> {
    for _ in 0..200 {
        let evts = events(app, name).await;
        if evts
            .iter()
            .filter(|e| e["type"] == "usage.reported")
            .count()
            >= reports
        {
            return evts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    events(app, name).await
}
