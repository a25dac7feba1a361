//! The watchdog, usage counters, rate limits, the CLI and one name per quota.

use super::*;

/// The tests that run watchdog passes, one at a time: a pass acts on every tenant's
/// sessions, so another test's pass could be the one that cancels this test's
/// statement, and this test's own pass would report nothing.
static WATCHDOG_PASSES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn the_watchdog_cancels_at_the_hard_limit_even_with_statement_timeout_zero() {
    let _one_at_a_time = WATCHDOG_PASSES.lock().await;
    let (app, state) = support::spawn().await;
    let name = unique("watchdog");
    let t = app.create(&name).await;
    set_quotas(&app, &name, json!({"statement_timeout_ms": 1000})).await;
    let c = connect_as(&t["credentials"]).await;
    c.batch_execute("SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0")
        .await
        .unwrap();
    let started = Instant::now();
    let sleeper = tokio::spawn(async move {
        let r = c.batch_execute("SELECT pg_sleep(30)").await;
        (r, c)
    });
    let mut acted = Vec::new();
    while !sleeper.is_finished() && started.elapsed() < Duration::from_secs(15) {
        acted.extend(quota::watchdog::run_once(&state.platform).await.unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (result, c) = sleeper.await.unwrap();
    let e = result.expect_err("the statement was cancelled");
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(acted
        .iter()
        .any(|a| a.action == "cancel" && a.reason == "statement"));

    // A transaction left idle past twice the limit ends, whatever the session set.
    c.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let idle_from = Instant::now();
    while !c.is_closed() && idle_from.elapsed() < Duration::from_secs(10) {
        quota::watchdog::run_once(&state.platform).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(c.simple_query("SELECT 1").await.is_err(), "session ended");
    assert!(idle_from.elapsed() >= Duration::from_secs(2));

    // Another tenant's long statement within its own limit is left alone.
    let other = app.create(&unique("watchdog-other")).await;
    let o = connect_as(&other["credentials"]).await;
    let sleeping = tokio::spawn(async move { o.batch_execute("SELECT pg_sleep(1.5)").await });
    for _ in 0..5 {
        let acted = quota::watchdog::run_once(&state.platform).await.unwrap();
        assert!(acted.iter().all(|a| !a.role.contains("watchdog_other")));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sleeping.await.unwrap().unwrap();
}

/// A tenant user's session is its tenant's too: the watchdog finds it by the user's
/// login (the registry's users, not only the tenants' own logins) and holds it to the
/// tenant's limit.
#[tokio::test]
async fn the_watchdog_holds_a_tenant_users_session_to_the_tenants_limit() {
    let _one_at_a_time = WATCHDOG_PASSES.lock().await;
    let (app, state) = support::spawn().await;
    let name = unique("watchdog-user");
    app.create(&name).await;
    set_quotas(&app, &name, json!({"statement_timeout_ms": 1000})).await;
    let (s, user) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/users"),
            Some(json!({"email": "ada@example.com", "role": "developer"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let c = connect_as(&user["credentials"]).await;
    c.batch_execute("SET statement_timeout = 0").await.unwrap();
    let started = Instant::now();
    let sleeper = tokio::spawn(async move { c.batch_execute("SELECT pg_sleep(30)").await });
    // Only the watchdog cancels it: the session turned its timeout off.
    let mut acted = Vec::new();
    while !sleeper.is_finished() && started.elapsed() < Duration::from_secs(15) {
        acted.extend(quota::watchdog::run_once(&state.platform).await.unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let e = sleeper
        .await
        .unwrap()
        .expect_err("the statement was cancelled");
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e:?}");
    let db_user = user["db_user"].as_str().unwrap();
    assert!(
        acted
            .iter()
            .any(|a| a.role == db_user && a.action == "cancel"),
        "{:?}",
        acted.iter().map(|a| &a.role).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_thousand_concurrent_increments_add_up_exactly() {
    let (app, _) = support::spawn().await;
    let name = unique("usage");
    app.create(&name).await;
    set_quotas(
        &app,
        &name,
        json!({"api_calls_per_minute": 100000, "max_llm_tokens_per_day": 1000000}),
    )
    .await;
    let path = format!("/api/v1/tenants/{name}/usage");
    let calls = (0..1000).map(|_| {
        app.call(
            Method::POST,
            &path,
            Some(json!({"metric": "llm_tokens", "amount": 7})),
        )
    });
    let results = futures::future::join_all(calls).await;
    for (s, body) in &results {
        assert_eq!(*s, StatusCode::OK, "{body}");
    }
    let mut used: Vec<i64> = results
        .iter()
        .map(|(_, b)| b["used"].as_i64().unwrap())
        .collect();
    used.sort();
    used.dedup();
    assert_eq!(used.len(), 1000, "every increment saw its own total");
    assert_eq!(*used.last().unwrap(), 7000);
    assert_eq!(summary(&app, &name).await["usage"]["llm_tokens"], 7000);

    // Once the quota is spent: 429, Retry-After until the day resets, nothing counted.
    set_quotas(&app, &name, json!({"max_llm_tokens_per_day": 7500})).await;
    let ok = app
        .call(
            Method::POST,
            &path,
            Some(json!({"metric": "llm_tokens", "amount": 400})),
        )
        .await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
    assert_eq!(ok.1["remaining"], 100);
    let res = app
        .http
        .post(format!("{}{path}", app.url))
        .bearer_auth(common::TOKEN)
        .json(&json!({"metric": "llm_tokens", "amount": 200}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86400).contains(&retry));
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "quota_exceeded");
    let sum = summary(&app, &name).await;
    assert_eq!(sum["usage"]["llm_tokens"], 7400);
    assert_eq!(sum["at_risk"], true, "98.7% of the daily tokens");

    // Running totals go down as well as up, never below zero.
    for (amount, want) in [
        (3, StatusCode::OK),
        (-1, StatusCode::OK),
        (-5, StatusCode::BAD_REQUEST),
    ] {
        let (s, body) = app
            .call(
                Method::POST,
                &path,
                Some(json!({"metric": "agents", "amount": amount})),
            )
            .await;
        assert_eq!(s, want, "{amount}: {body}");
    }
    let (s, res) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/resources"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let agents = res["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource_type"] == "agents")
        .unwrap()
        .clone();
    assert_eq!(agents["used"], 2);
    assert_eq!(agents["limit_value"], 10);
}

#[tokio::test]
async fn realtime_events_and_usage_calls_are_rate_limited() {
    let (app, _) = support::spawn().await;
    let name = unique("realtime");
    app.create(&name).await;
    set_quotas(
        &app,
        &name,
        json!({"realtime_events_per_minute": 10, "api_calls_per_minute": 4}),
    )
    .await;
    let path = format!("/api/v1/tenants/{name}/usage");
    let post = |body: Value| {
        app.http
            .post(format!("{}{path}", app.url))
            .bearer_auth(common::TOKEN)
            .json(&body)
            .send()
    };
    let r = post(json!({"metric": "realtime_events", "amount": 8}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["ratelimit-limit"], "4");
    assert_eq!(r.headers()["ratelimit-remaining"], "3");
    let r = post(json!({"metric": "realtime_events", "amount": 5}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let r = post(json!({"metric": "realtime_events", "amount": 2}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["used"], 10);
    // The fourth call is the last the API rate allows; the fifth is refused whatever it asks.
    let r = post(json!({"metric": "agents", "amount": 1}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = post(json!({"metric": "agents", "amount": 1}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=15).contains(&retry), "{retry}");
    let sum = summary(&app, &name).await;
    assert_eq!(sum["usage"]["realtime_events"], 10);
    assert_eq!(
        sum["usage"]["agents"], 1,
        "the refused call counted nothing"
    );
}

#[tokio::test]
async fn the_quota_cli_shows_sets_and_reports_usage() {
    let (app, _) = support::spawn().await;
    let name = unique("quota-cli");
    app.create(&name).await;
    let out = cli(
        &app,
        &[
            "quota",
            "set",
            &name,
            "max_connections=3",
            "max_agents=plan",
            "-o",
            "json",
        ],
    )
    .await;
    let limits = stdout_json(&out);
    assert_eq!(limits["limits"]["max_connections"], 3);
    let out = cli(&app, &["quota", "show", &name]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("max_connections") && table.contains("tenant"),
        "{table}"
    );
    let usage = stdout_json(&cli(&app, &["quota", "usage", &name, "-o", "json"]).await);
    assert_eq!(usage["tenant_slug"], name.as_str());
    // A field the API does not know is refused before anything is sent.
    let out = cli(&app, &["quota", "set", &name, "colour=1"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
    // Below usage without --force: the server's 409, on stderr, exit 1.
    let _c = connect_as(&app.create(&unique("quota-cli-x")).await["credentials"]).await;
    let t = connect_as(
        &app.call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/credentials"),
            None,
        )
        .await
        .1,
    )
    .await;
    let _t2 = connect_as(
        &app.call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/credentials"),
            None,
        )
        .await
        .1,
    )
    .await;
    let out = cli(&app, &["quota", "set", &name, "max_connections=1"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("open sessions"));
    drop(t);
}

/// One name per quota: a plan's quotas, a tenant's limits and the quotas of its usage
/// summary have the same fields, and agree with each other for a tenant on its plan.
#[tokio::test]
async fn plans_limits_and_usage_name_the_quotas_alike() {
    let (app, _) = support::spawn().await;
    let name = unique("quota-names");
    app.create(&name).await;
    let (s, plans) = app.call(Method::GET, "/api/v1/plans", None).await;
    assert_eq!(s, StatusCode::OK, "{plans}");
    let free = plans
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "free")
        .unwrap()
        .clone();
    let (s, limits) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}/limits"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{limits}");
    let usage = summary(&app, &name).await;

    let fields = |v: &Value| -> Vec<String> {
        let mut f: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        f.sort();
        f
    };
    let quota_fields = fields(&limits["limits"]);
    assert_eq!(fields(&usage["quotas"]), quota_fields);
    for field in &quota_fields {
        assert_eq!(
            free[field], limits["limits"][field],
            "{field}: the plan says {} and the tenant's limits {}",
            free[field], limits["limits"][field]
        );
    }
    let mut plan_fields = fields(&free);
    // What a plan gives that is not a quota: its trial, default isolation and
    // whether its tenants get a vector store.
    plan_fields.retain(|f| {
        !["name", "trial_days", "default_isolation", "vector_store"].contains(&f.as_str())
    });
    assert_eq!(plan_fields, quota_fields);
    // Seed 002's names, and none of the plan table's old ones.
    for seed in [
        "max_users",
        "max_agents",
        "max_concurrent_agents",
        "max_llm_tokens_per_day",
        "max_data_retention_days",
        "max_storage_gb",
        "db_quota_bytes",
    ] {
        assert!(quota_fields.iter().any(|f| f == seed), "{seed}");
    }
    for old in [
        "storage_bytes",
        "llm_tokens_per_day",
        "concurrent_agents",
        "retention_days",
    ] {
        assert!(free.get(old).is_none(), "plans still say {old}");
    }
    assert_eq!(free["max_storage_gb"], 1);
    assert_eq!(free["db_quota_bytes"], 1_i64 << 30);
    assert_eq!(limits["max_storage_gb"], 1);
}

#[tokio::test]
async fn a_usage_sample_counts_the_sessions_of_a_tenants_login_role_and_its_users() {
    let (app, state) = support::spawn().await;
    let t = app.create(&unique("sampled")).await;
    let quiet = app.create(&unique("sampled-quiet")).await;
    let name = t["name"].as_str().unwrap();
    let (s, user) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/users"),
            Some(json!({"email": "sampled@example.com", "role": "developer"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let _sessions = [
        connect_as(&t["credentials"]).await,
        connect_as(&t["credentials"]).await,
        connect_as(&user["credentials"]).await,
    ];

    let pg = state.platform.pool.get().await.unwrap();
    // No hold: every live tenant's figures stored, moved or not.
    let written = berqenas::store::usage_samples::sample(&pg, &[], 0.0)
        .await
        .unwrap();
    assert!(written >= 2, "{written}");
    let connections = |id: &Value| {
        let id: uuid::Uuid = id.as_str().unwrap().parse().unwrap();
        let pg = &pg;
        async move {
            pg.query_one(
                "SELECT connections FROM berqenas.usage_samples WHERE tenant_id = $1
                  ORDER BY sampled_at DESC LIMIT 1",
                &[&id],
            )
            .await
            .unwrap()
            .get::<_, i32>(0)
        }
    };
    // Two sessions of its login role and one of its user's; none of the other's.
    assert_eq!(connections(&t["id"]).await, 3);
    assert_eq!(connections(&quiet["id"]).await, 0);
}

#[tokio::test]
async fn a_usage_sample_stores_a_tenants_figures_when_they_moved_or_once_its_last_is_old() {
    let (app, state) = support::spawn().await;
    let t = app.create(&unique("held")).await;
    let id: uuid::Uuid = t["id"].as_str().unwrap().parse().unwrap();
    let pg = state.platform.pool.get().await.unwrap();
    let hold = 3600.0;
    let sample = || berqenas::store::usage_samples::sample(&pg, &[], hold);
    // (connections, rows) of the tenant's stored samples, oldest first.
    let stored = || async {
        pg.query(
            "SELECT connections FROM berqenas.usage_samples WHERE tenant_id = $1
              ORDER BY sampled_at",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i32>(0))
        .collect::<Vec<_>>()
    };
    sample().await.unwrap();
    assert_eq!(stored().await, [0], "its first sample is stored");
    sample().await.unwrap();
    assert_eq!(stored().await, [0], "nothing moved: nothing stored");
    let _session = connect_as(&t["credentials"]).await;
    sample().await.unwrap();
    assert_eq!(stored().await, [0, 1], "its connections moved");
    sample().await.unwrap();
    assert_eq!(stored().await, [0, 1]);
    // Its last row older than the hold: stored again, unchanged.
    pg.execute(
        "UPDATE berqenas.usage_samples SET sampled_at = sampled_at - make_interval(secs => $2::float8 + 1)
          WHERE tenant_id = $1",
        &[&id, &hold],
    )
    .await
    .unwrap();
    sample().await.unwrap();
    assert_eq!(
        stored().await,
        [0, 1, 1],
        "stored again once its last is old"
    );
}
