//! Webhooks end to end: real HTTP receivers on 127.0.0.1, the relay running against a
//! control database of each test's own, in process (tests/webhooks_process.rs runs
//! real `berqenas serve` processes).

mod common;
#[path = "support/receiver.rs"]
mod receiver;

use std::sync::Arc;
use std::time::{Duration, Instant};

use berqenas::events::relay::{Relay, RelayOptions};
use berqenas::events::webhooks::Settings;
use berqenas::store::outbox::{append, NewEvent};
use common::{TestApp, TOKEN};
use receiver::{spec_signature, verifies, Received, Receiver};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

#[test]
fn the_independent_verifier_matches_the_specifications_test_vector() {
    assert_eq!(
        spec_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#
        ),
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

fn fast(allow_private: bool) -> RelayOptions {
    RelayOptions {
        allow_private,
        schedule: vec![Duration::from_millis(300); 4],
        timeout: Duration::from_secs(3),
        poll: Duration::from_millis(100),
        ..Default::default()
    }
}

/// A control plane of the test's own, its API (webhooks to private addresses
/// allowed when `allow_private`) and its relay running.
struct Setup {
    app: TestApp,
    pool: deadpool_postgres::Pool,
    platform: berqenas::platform::Platform,
}

async fn setup(name: &str, allow_private: bool, relay: Option<RelayOptions>) -> Setup {
    let db = common::control_database(&common::unique(name).replace('-', "_")).await;
    let platform = berqenas::server::platform(&db, common::secret_key(), 8)
        .await
        .unwrap();
    let rt = common::runtime(platform.clone()).await;
    let wake = match relay {
        Some(opts) => {
            let r = Relay::new(platform.pool.clone(), platform.key.clone(), opts);
            let wake = r.wake.clone();
            tokio::spawn(r.run_forever(platform.config.clone()));
            wake
        }
        None => Default::default(),
    };
    let state =
        berqenas::api::AppState::new(rt, TOKEN).with_webhooks(Settings { allow_private }, wake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = berqenas::api::router(state);
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    Setup {
        app: TestApp {
            url,
            http: reqwest::Client::new(),
        },
        pool: platform.pool.clone(),
        platform,
    }
}

impl Setup {
    async fn add(&self, url: &str, events: Value) -> Value {
        let (s, b) = self
            .app
            .call(
                Method::POST,
                "/api/v1/webhooks",
                Some(json!({"url": url, "events": events, "description": "test"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b
    }

    /// Appends an event as a change does, in a transaction of its own.
    async fn emit(&self, event_type: &str, tenant: Option<(Uuid, &str)>, data: Value) -> Uuid {
        let mut c = self.pool.get().await.unwrap();
        let tx = c.transaction().await.unwrap();
        let e = append(
            &tx,
            &NewEvent {
                event_type,
                tenant_id: tenant.map(|t| t.0),
                tenant_name: tenant.map(|t| t.1),
                data,
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        e.id
    }

    async fn deliveries(&self, id: &str) -> Vec<Value> {
        let (s, b) = self
            .app
            .call(
                Method::GET,
                &format!("/api/v1/webhooks/{id}/deliveries"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["deliveries"].as_array().unwrap().clone()
    }

    async fn count(&self, sql: &str) -> i64 {
        self.pool
            .get()
            .await
            .unwrap()
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }
}

#[tokio::test]
async fn deliveries_are_signed_as_the_specification_says_and_rotation_signs_with_both() {
    let s = setup("whsig", true, Some(fast(true))).await;
    let rx = Receiver::ok().await;
    let created = s.add(&rx.url, json!(["tenant.*", "webhook.ping"])).await;
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{created}");
    // Shown once: neither the endpoint nor the list shows it again.
    let (_, got) = s
        .app
        .call(Method::GET, &format!("/api/v1/webhooks/{id}"), None)
        .await;
    let (_, list) = s.app.call(Method::GET, "/api/v1/webhooks", None).await;
    assert!(!got.to_string().contains(&secret) && !list.to_string().contains(&secret));
    assert_eq!(got["events"], json!(["tenant.*", "webhook.ping"]));
    let stored: Vec<u8> = s
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT secret FROM berqenas.webhook_endpoints", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        !String::from_utf8_lossy(&stored).contains(&secret[6..]),
        "sealed at rest"
    );

    let tenant = Uuid::new_v4();
    let event = s
        .emit(
            "tenant.created",
            Some((tenant, "acme")),
            json!({"plan": "free"}),
        )
        .await;
    s.emit("quota.exceeded", Some((tenant, "acme")), json!({}))
        .await; // not matched
    let got = rx.wait(10, "the event", |g| !g.is_empty()).await;
    let r = &got[0];
    assert_eq!(r.id, event.to_string(), "webhook-id is the event id");
    let ts: i64 = r.timestamp.parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    assert!(verifies(r, &secret), "{r:?}");
    assert!(!verifies(r, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    let body = r.json();
    assert_eq!(body["id"], json!(event.to_string()));
    assert_eq!(body["type"], "tenant.created");
    assert_eq!(body["tenant"], json!({"id": tenant, "name": "acme"}));
    assert_eq!(body["data"], json!({"plan": "free"}));
    assert!(body["occurred_at"].is_string());

    // Rotation: the next delivery carries a signature with each secret.
    let (st, rotated) = s
        .app
        .call(
            Method::POST,
            &format!("/api/v1/webhooks/{id}/rotate-secret"),
            Some(json!({"overlap": "1h"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert!(
        rotated["previous_secret_expires_at"].is_string(),
        "{rotated}"
    );
    let (st, ping) = s
        .app
        .call(Method::POST, &format!("/api/v1/webhooks/{id}/ping"), None)
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{ping}");
    let got = rx.wait(10, "the ping", |g| g.len() >= 2).await;
    let r = &got[1];
    assert_eq!(r.json()["type"], "webhook.ping");
    assert_eq!(r.signature.split(' ').count(), 2, "{}", r.signature);
    assert!(verifies(r, &secret) && verifies(r, &new_secret));
    // A ping is for its endpoint, not a tenant event: the events API does not show it.
    let ping_id = r.json()["id"].as_str().unwrap().to_string();
    let (st, all) = s
        .app
        .call(Method::GET, "/api/v1/events?limit=1000", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{all}");
    assert!(
        all["events"].as_array().is_some_and(|e| !e.is_empty()),
        "{all}"
    );
    assert!(!all.to_string().contains(&ping_id), "{all}");
    assert!(!all.to_string().contains("webhook.ping"), "{all}");
    // Every change was audited, and the delivery's history shows the 200.
    for action in [
        "webhook_created",
        "webhook_secret_rotated",
        "webhook_pinged",
    ] {
        let n = s
            .count(&format!(
                "SELECT count(*) FROM berqenas.audit_log WHERE action = '{action}'"
            ))
            .await;
        assert_eq!(n, 1, "{action}");
    }
    let d = s.deliveries(&id).await;
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|d| d["state"] == "delivered"));
    assert_eq!(d[1]["attempt_log"][0]["status"], 200, "{d:?}");
}

#[tokio::test]
async fn a_failing_receiver_gets_one_tenants_events_in_order_after_retries_while_another_tenant_flows(
) {
    let s = setup("whorder", true, Some(fast(true))).await;
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let f = failures.clone();
    let rx = Receiver::start(Arc::new(move |r: &Received| {
        if r.tenant() == "slow" && f.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3 {
            (500, None)
        } else {
            (200, None)
        }
    }))
    .await;
    let created = s.add(&rx.url, json!(["*"])).await;
    let id = created["id"].as_str().unwrap();
    let slow = (Uuid::new_v4(), "slow");
    let fast_t = (Uuid::new_v4(), "fast");
    let mut slow_ids = vec![];
    let mut fast_ids = vec![];
    for i in 0..3 {
        slow_ids.push(
            s.emit("tenant.updated", Some(slow), json!({"n": i}))
                .await
                .to_string(),
        );
        fast_ids.push(
            s.emit("tenant.updated", Some(fast_t), json!({"n": i}))
                .await
                .to_string(),
        );
    }
    let got = rx
        .wait(20, "all six delivered", |g| {
            let ok: std::collections::HashSet<_> = g.iter().map(|r| r.id.clone()).collect();
            slow_ids.iter().chain(&fast_ids).all(|i| ok.contains(i))
                && g.iter().filter(|r| r.tenant() == "slow").count() >= 6
        })
        .await;
    let slow_seen: Vec<&str> = got
        .iter()
        .filter(|r| r.tenant() == "slow")
        .map(|r| r.id.as_str())
        .collect();
    // Three failed tries of the first, then the three in order, nothing else between.
    assert_eq!(
        slow_seen,
        vec![
            slow_ids[0].as_str(),
            &slow_ids[0],
            &slow_ids[0],
            &slow_ids[0],
            &slow_ids[1],
            &slow_ids[2]
        ]
    );
    // The other tenant was not held back: all of it arrived before the slow tenant's
    // first event got through.
    let first_slow_success = got
        .iter()
        .filter(|r| r.tenant() == "slow")
        .nth(3)
        .unwrap()
        .at;
    let fast_seen: Vec<&Received> = got.iter().filter(|r| r.tenant() == "fast").collect();
    assert_eq!(
        fast_seen.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        fast_ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(fast_seen.iter().all(|r| r.at < first_slow_success));
    // The history: four attempts of the first slow event, statuses 500, 500, 500, 200.
    let d = s.deliveries(id).await;
    let first = d
        .iter()
        .find(|d| d["event_id"] == json!(slow_ids[0]))
        .unwrap();
    assert_eq!(first["attempts"], 4, "{first}");
    let statuses: Vec<i64> = first["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![500, 500, 500, 200]);
    assert!(first["attempt_log"][0]["latency_ms"].is_i64());
    assert_eq!(first["state"], "delivered");
    let text = s
        .app
        .http
        .get(format!("{}/metrics", s.app.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "berqenas_webhook_deliveries_total{event_type=\"tenant.updated\",outcome=\"failed\"}"
        ),
        "{text}"
    );
    assert!(text.contains("berqenas_outbox_lag_seconds"), "{text}");
    assert!(
        text.contains(&format!(
            "berqenas_webhook_pending_deliveries{{endpoint=\"{id}\"}} 0"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_the_last_try_dead_letters_and_410_disables() {
    let mut opts = fast(true);
    opts.schedule = vec![Duration::from_millis(200); 2];
    let s = setup("whdead", true, Some(opts)).await;
    let rx = Receiver::start(Arc::new(|r: &Received| {
        if r.json()["data"]["n"] == 1 {
            (503, Some("2"))
        } else {
            (500, None)
        }
    }))
    .await;
    let created = s.add(&rx.url, json!(["tenant.*"])).await;
    let id = created["id"].as_str().unwrap().to_string();
    let t = Uuid::new_v4();
    let e = s
        .emit("tenant.updated", Some((t, "one")), json!({"n": 1}))
        .await;
    let got = rx.wait(15, "three attempts", |g| g.len() >= 3).await;
    assert!(got.iter().all(|r| r.id == e.to_string()));
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After: 2 waited {gap:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got().len(), 3, "no try after the last");
    let d = s.deliveries(&id).await;
    assert_eq!(d[0]["state"], "dead", "{d:?}");
    assert_eq!(d[0]["attempts"], 3);
    assert!(d[0]["next_attempt_at"].is_null());

    // 410 Gone disables the endpoint; later events are not sent to it.
    let gone = Receiver::start(Arc::new(|_| (410, None))).await;
    let created = s.add(&gone.url, json!(["tenant.*"])).await;
    let gid = created["id"].as_str().unwrap().to_string();
    s.emit("tenant.updated", Some((t, "one")), json!({"n": 2}))
        .await;
    gone.wait(10, "the 410", |g| !g.is_empty()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let w = loop {
        let (_, w) = s
            .app
            .call(Method::GET, &format!("/api/v1/webhooks/{gid}"), None)
            .await;
        if w["enabled"] == false || Instant::now() > deadline {
            break w;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(w["enabled"], false, "{w}");
    assert!(
        w["disabled_reason"].as_str().unwrap().contains("410"),
        "{w}"
    );
    s.emit("tenant.updated", Some((t, "one")), json!({"n": 3}))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(gone.got().len(), 1, "nothing after the 410");
    assert_eq!(
        s.count("SELECT count(*) FROM berqenas.audit_log WHERE action = 'webhook_disabled'")
            .await,
        1
    );
}

#[tokio::test]
async fn one_delivery_or_a_time_range_is_replayed_with_the_same_webhook_id() {
    let s = setup("whreplay", true, Some(fast(true))).await;
    let rx = Receiver::ok().await;
    let created = s.add(&rx.url, json!(["tenant.*"])).await;
    let id = created["id"].as_str().unwrap().to_string();
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    let t = (Uuid::new_v4(), "rep");
    let a = s.emit("tenant.created", Some(t), json!({})).await;
    let b = s.emit("tenant.suspended", Some(t), json!({})).await;
    s.emit("quota.exceeded", Some(t), json!({})).await; // not the endpoint's
    rx.wait(10, "two events", |g| g.len() >= 2).await;
    let d = s.deliveries(&id).await;
    let first = d.iter().find(|d| d["event_id"] == json!(a)).unwrap();
    let (st, replayed) = s
        .app
        .call(
            Method::POST,
            &format!(
                "/api/v1/webhooks/{id}/deliveries/{}/replay",
                first["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{replayed}");
    assert_eq!(replayed["replay_of"], first["id"]);
    let got = rx.wait(10, "the replay", |g| g.len() >= 3).await;
    assert_eq!(got[2].id, a.to_string(), "same webhook-id");

    let (st, range) = s
        .app
        .call(
            Method::POST,
            &format!("/api/v1/webhooks/{id}/replay"),
            Some(json!({"since": since})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{range}");
    assert_eq!(range["queued"], 2, "the two matching events: {range}");
    let got = rx.wait(10, "the range", |g| g.len() >= 5).await;
    assert_eq!(
        got[3..].iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![a.to_string(), b.to_string()],
        "in order"
    );
    // A delivery of another endpoint, or none at all, is not found.
    let (st, body) = s
        .app
        .call(
            Method::POST,
            &format!("/api/v1/webhooks/{id}/deliveries/{}/replay", Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn private_addresses_and_bad_input_are_refused_naming_the_field_and_change_nothing() {
    let s = setup("whbad", false, None).await;
    let rx = Receiver::ok().await;
    let state = |s: &Setup| {
        let pool = s.pool.clone();
        async move {
            let c = pool.get().await.unwrap();
            let r = c
                .query_one(
                    "SELECT (SELECT count(*) FROM berqenas.webhook_endpoints),
                            (SELECT count(*) FROM berqenas.audit_log),
                            (SELECT count(*) FROM berqenas.outbox)",
                    &[],
                )
                .await
                .unwrap();
            (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2))
        }
    };
    let before = state(&s).await;
    let long = "x".repeat(300);
    for (body, status, field) in [
        (json!({"url": rx.url, "events": ["*"]}), 422, "url"),
        (
            json!({"url": "http://localhost:9/x", "events": ["*"]}),
            422,
            "url",
        ),
        (
            json!({"url": "http://10.1.2.3/x", "events": ["*"]}),
            422,
            "url",
        ),
        (
            json!({"url": "http://169.254.169.254/x", "events": ["*"]}),
            422,
            "url",
        ),
        (
            json!({"url": "ftp://example.com/x", "events": ["*"]}),
            400,
            "url",
        ),
        (json!({"url": "example.com/x", "events": ["*"]}), 400, "url"),
        (
            json!({"url": "https://example.com/x", "events": ["tenant.nope"]}),
            400,
            "events",
        ),
        (
            json!({"url": "https://example.com/x", "events": []}),
            400,
            "events",
        ),
        (
            json!({"url": "https://example.com/x", "events": "tenant.*"}),
            400,
            "events",
        ),
        (
            json!({"url": "https://example.com/x", "events": ["*"], "description": long}),
            400,
            "description",
        ),
        (
            json!({"url": "https://example.com/x", "events": ["*"], "colour": 1}),
            400,
            "colour",
        ),
        (json!({"events": ["*"]}), 400, "url"),
    ] {
        let (st, b) = s
            .app
            .call(Method::POST, "/api/v1/webhooks", Some(body.clone()))
            .await;
        assert_eq!(st.as_u16(), status, "{body}: {b}");
        assert_eq!(b["error"]["field"], field, "{body}: {b}");
    }
    assert_eq!(state(&s).await, before, "nothing changed");
    let (st, b) = s
        .app
        .call(Method::GET, "/api/v1/webhooks/not-a-uuid", None)
        .await;
    assert_eq!(
        (st, b["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("id"))
    );
    let (st, _) = s
        .app
        .call(
            Method::GET,
            &format!("/api/v1/webhooks/{}", Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // An endpoint saved while private addresses were allowed (another instance's
    // setting) is refused again at delivery time by a relay that does not allow them.
    let w = berqenas::events::webhooks::create(
        &s.platform,
        &Settings {
            allow_private: true,
        },
        &berqenas::events::webhooks::CreateWebhook {
            url: rx.url.clone(),
            events: vec!["*".into()],
            description: None,
            enabled: None,
        },
        "test",
    )
    .await
    .unwrap();
    let id = w.webhook.id.to_string();
    // A PATCH with bad events changes nothing.
    let (st, b) = s
        .app
        .call(
            Method::PATCH,
            &format!("/api/v1/webhooks/{id}"),
            Some(json!({"events": ["nope"], "description": "changed"})),
        )
        .await;
    assert_eq!(
        (st, b["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("events"))
    );
    let (_, now) = s
        .app
        .call(Method::GET, &format!("/api/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(now["events"], json!(["*"]));
    assert!(now["description"].is_null());
    s.emit("tenant.created", None, json!({})).await;
    let relay = Relay::new(s.pool.clone(), s.platform.key.clone(), fast(false));
    relay.run_once().await.unwrap();
    let d = s.deliveries(&id).await;
    assert_eq!(d[0]["attempts"], 1, "{d:?}");
    assert!(
        d[0]["last_error"].as_str().unwrap().contains("refused"),
        "{d:?}"
    );
    assert!(d[0]["attempt_log"][0]["status"].is_null());
    assert!(rx.got().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn the_cli_adds_lists_pings_and_shows_deliveries_and_names_bad_fields() {
    let s = setup("whcli", true, Some(fast(true))).await;
    let rx = Receiver::ok().await;
    let out = common::cli(
        &s.app,
        &[
            "webhook",
            "add",
            &rx.url,
            "--events",
            "tenant.*,webhook.ping",
            "-o",
            "json",
        ],
    )
    .await;
    let added = common::stdout_json(&out);
    let id = added["id"].as_str().unwrap().to_string();
    assert!(added["secret"].as_str().unwrap().starts_with("whsec_"));
    let out = common::cli(&s.app, &["webhook", "list"]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.contains(&rx.url) && table.contains(&id),
        "{table}"
    );
    assert!(!table.contains("whsec_"), "{table}");
    let out = common::cli(&s.app, &["webhook", "ping", &id]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rx.wait(10, "the ping", |g| !g.is_empty()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = common::cli(&s.app, &["webhook", "deliveries", &id, "-o", "json"]).await;
        let d = common::stdout_json(&out);
        if d["deliveries"][0]["state"] == "delivered" {
            assert_eq!(d["deliveries"][0]["last_status"], 200);
            break;
        }
        assert!(Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = common::cli(&s.app, &["webhook", "rotate-secret", &id]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("secret: whsec_"),
        "{text}"
    );
    let out = common::cli(
        &s.app,
        &["webhook", "add", "ftp://example.com/", "--events", "*"],
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("(field: url)"),
        "{err}"
    );
    let out = common::cli(&s.app, &["webhook", "remove", &id]).await;
    assert!(out.status.success());
    let (st, _) = s
        .app
        .call(Method::GET, &format!("/api/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}
