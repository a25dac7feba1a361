//! The console's screens beyond the tenant's life: backups (take, verify, restore in
//! place and as a new tenant, the policy), users, quotas (a bad value refused and
//! nothing changed), operations and their steps, webhooks (the secret shown once),
//! template migrations watched to the end, the usage charts with samples; and the
//! sign-in: wrong ones limited per address, the console password.

use berqenas::api::{self, AppState};
use berqenas::quota::history::{self, Settings};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::common::{self, unique, ScratchDir, TestApp, TOKEN};
use super::screenshots;
use super::webdriver::Browser;

const ADD_PRIORITY: &str =
    "ALTER TABLE applications ADD COLUMN priority integer NOT NULL DEFAULT 0;\n";

/// The production router over `state`, on a free port.
async fn serve(state: AppState) -> TestApp {
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
    TestApp {
        url,
        http: reqwest::Client::new(),
    }
}

async fn sign_in(b: &Browser, app: &TestApp) {
    b.goto(&format!("{}/console/login", app.url)).await;
    b.fill("#token", TOKEN).await;
    b.click("#sign-in").await;
    b.find("#tenants").await;
}

async fn limits(app: &TestApp, name: &str) -> Value {
    let (s, l) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}/limits"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{l}");
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_uses_every_screen_in_the_browser() {
    // A control plane of its own: its template gains a version mid-test.
    let db = common::control_database("console_screens").await;
    let before =
        berqenas::server::platform_with(&db, common::secret_key(), 16, common::template_with(&[]))
            .await
            .unwrap();
    let name = unique("csb");
    let old = TestApp::serve(before).await;
    let (s, t) = old
        .call(Method::POST, "/api/v1/tenants", Some(json!({"name": name})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let platform = berqenas::server::platform_with(
        &db,
        common::secret_key(),
        16,
        common::template_with(&[("0002_priority.sql", ADD_PRIORITY)]),
    )
    .await
    .unwrap();
    let rt = common::runtime(platform).await;
    let state = AppState::new(rt.clone(), TOKEN);
    let limiter = state.limits.clone();
    let app = serve(state).await;

    let profile = ScratchDir::new("chromium-screens");
    let b = Browser::start(&profile, screenshots()).await;
    sign_in(&b, &app).await;
    b.find("#chart-status").await;
    b.find("#chart-plan").await;
    b.find("#chart-per-day rect.created").await;
    b.shot("tenant-list-pictures").await;

    // Usage over time: two samples by the quota round's sampler, drawn as a line (the
    // second stores what moved: a session of the tenant's opened).
    let every = Settings {
        every: std::time::Duration::ZERO,
        keep: std::time::Duration::from_secs(86_400),
        hold: std::time::Duration::from_secs(3600),
    };
    let n = history::sample_round(&rt, &limiter, every).await.unwrap();
    assert!(n.unwrap_or(0) >= 1, "sampled: {n:?}");
    let _session = common::connect_as(&t["credentials"]).await;
    let n = history::sample_round(&rt, &limiter, every).await.unwrap();
    assert!(n.unwrap_or(0) >= 1, "its connections moved: {n:?}");
    // The next sampling is due an interval after the last one ran, however old the
    // newest stored row (only what moved is stored).
    rt.platform
        .pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE berqenas.usage_samples SET sampled_at = sampled_at - interval '2 hours'",
            &[],
        )
        .await
        .unwrap();
    let hourly = Settings {
        every: std::time::Duration::from_secs(3600),
        ..every
    };
    let n = history::sample_round(&rt, &limiter, hourly).await.unwrap();
    assert_eq!(n, None, "not due yet");
    let page = format!("{}/console/tenants/{name}", app.url);
    b.goto(&page).await;
    b.find("#chart-disk polyline").await;
    b.find("#chart-connections polyline").await;
    b.find("#chart-api-calls polyline").await;
    b.shot("tenant-usage-history").await;

    // Backups: take one, verify it, restore it as a new tenant and in place.
    b.click("#take-backup").await;
    b.find("#backup-list tr.backup-succeeded").await;
    b.shot("backups").await;
    let (_, list) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/backups"),
            None,
        )
        .await;
    let id = list["backups"][0]["id"].as_str().unwrap().to_string();
    let short = &id[..8];
    b.click(&format!("#verify-{short}")).await;
    b.find("#verify-ok").await;
    b.shot("backup-verified").await;
    b.goto(&page).await;
    let copy = unique("csn");
    b.fill(&format!("#restore-as-{short}"), &copy).await;
    b.click(&format!("#restore-new-{short}")).await;
    b.wait_text("#created-name", &copy).await;
    assert!(b.text("#api-key").await.starts_with("bqk_"));
    b.shot("restored-as-new").await;
    let (s, _) = app
        .call(Method::GET, &format!("/api/v1/tenants/{copy}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "the new tenant exists");
    b.goto(&page).await;
    b.click(&format!("#restore-confirm-{short}")).await;
    b.click(&format!("#restore-{short}")).await;
    b.wait_text("#status", "active").await;
    // The policy: a schedule saved, then removed.
    b.fill("#policy-schedule", "0 3 * * *").await;
    b.click("#policy-save").await;
    b.wait_text("#policy-current", "0 3 * * *").await;
    b.shot("backup-policy").await;

    // Users: one added (credentials shown once), then removed.
    b.fill("#user-email", "ada@example.com").await;
    b.click("#add-user").await;
    b.wait_text("#added-user", "ada@example.com").await;
    b.shot("user-added").await;
    b.click("#back").await;
    b.find("#user-list .user-email").await;
    b.click("#remove-ada-example-com").await;
    b.find("#no-users").await;

    // Quotas: a good value is saved; a bad one is refused naming the field, and
    // nothing changed.
    b.fill("#quota-input-max_connections", "7").await;
    b.click("#save-quotas").await;
    b.wait_text("#quota-max_connections .quota-value", "7")
        .await;
    b.shot("quotas").await;
    let before_bad = limits(&app, &name).await;
    assert_eq!(before_bad["limits"]["max_connections"], 7, "{before_bad}");
    for (value, says) in [("lots", "whole number"), ("0", "between")] {
        b.goto(&page).await;
        b.fill("#quota-input-max_connections", value).await;
        b.fill("#quota-input-max_users", "3").await;
        b.click("#save-quotas").await;
        let msg = b.text("#error-message").await;
        assert!(
            msg.contains("max_connections") && msg.contains(says),
            "{msg}"
        );
    }
    b.shot("quota-refused").await;
    assert_eq!(
        limits(&app, &name).await,
        before_bad,
        "a refused quota changes nothing"
    );

    // Network rules: a range allowed, then removed.
    b.goto(&page).await;
    b.fill("#rule-cidr", "203.0.113.0/24").await;
    b.fill("#rule-description", "office").await;
    b.click("#add-rule").await;
    b.wait_text("#rule-list .rule-cidr", "203.0.113.0/24").await;
    b.shot("network-rules").await;
    let (_, fw) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/firewall"),
            None,
        )
        .await;
    assert_eq!(fw["rules"][0]["cidr"], "203.0.113.0/24", "{fw}");
    let rule = fw["rules"][0]["id"].as_str().unwrap().to_string();
    b.click(&format!("#remove-rule-{}", &rule[..8])).await;
    b.find("#no-rules").await;

    // Operations: the tenant's, and one's steps.
    b.goto(&format!("{}/console/operations?tenant={name}", app.url))
        .await;
    b.click("#operations .op-link").await;
    b.find("#op-steps tbody tr").await;
    assert!(!b.text("#op-kind").await.is_empty());
    b.shot("operation-steps").await;

    // Webhooks: an endpoint added, its secret shown once.
    b.goto(&format!("{}/console/webhooks", app.url)).await;
    b.fill("#webhook-url", "https://203.0.113.10/hooks").await;
    b.fill("#webhook-events", "tenant.*").await;
    b.click("#add-webhook").await;
    let secret = b.text("#webhook-secret").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    b.shot("webhook-secret").await;
    b.click("#back").await;
    b.find("#deliveries").await;
    assert!(!b.source().await.contains(&secret), "shown once");
    b.goto(&format!("{}/console/webhooks", app.url)).await;
    b.find("#webhooks .webhook-link").await;
    b.shot("webhooks").await;
    b.goto(&format!("{}/console/plans", app.url)).await;
    b.find("#plans").await;
    b.shot("plans").await;

    // A template migration, dry run first, then watched to its end.
    b.goto(&format!("{}/console/migrations", app.url)).await;
    b.wait_text("#latest-version", "v2").await;
    b.shot("migrations").await;
    b.fill("#migrate-tenant", &name).await;
    b.click("#dry-run").await;
    assert!(b
        .text("#plan-summary")
        .await
        .contains("1 tenants would be migrated"));
    b.shot("migration-dry-run").await;
    assert_eq!(
        template_version(&app, &name).await,
        1,
        "a dry run changes nothing"
    );
    b.goto(&format!("{}/console/migrations", app.url)).await;
    b.fill("#migrate-tenant", &name).await;
    b.click("#run-migration").await;
    b.find("#run-progress").await;
    // The page reloads itself while the run goes on; wait for the end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while b.text("#run-state").await != "succeeded" {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            b.text("#run-state").await
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    b.shot("migration-finished").await;
    assert_eq!(template_version(&app, &name).await, 2);

    // Every action above is audited with the console session as the actor.
    let (_, trail) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/audit?limit=100"),
            None,
        )
        .await;
    let console_rows = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"].as_str().unwrap_or("").starts_with("console:"))
        .count();
    assert!(console_rows >= 5, "{trail}");
    b.quit().await;
}

async fn template_version(app: &TestApp, name: &str) -> i64 {
    let (_, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    t["template_version"].as_i64().unwrap()
}

async fn post_sign_in(http: &reqwest::Client, app: &TestApp, token: &str) -> reqwest::Response {
    http.post(format!("{}/console/login", app.url))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn wrong_sign_ins_are_limited_and_the_console_password_works() {
    let rt = common::runtime(common::platform(4).await).await;
    let password = "a console password, long enough";
    let state = AppState::new(rt, TOKEN)
        .with_console_password(berqenas::console::Password::new(password).unwrap());
    let app = serve(state).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The password opens a session, as the admin token does.
    for right in [password, TOKEN] {
        let res = post_sign_in(&http, &app, right).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{right}");
        let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
        let page = http
            .get(format!("{}/console", app.url))
            .header("cookie", cookie.split(';').next().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
    }

    // Five wrong ones a minute, then 429 with Retry-After, even for the right one.
    for _ in 0..5 {
        let res = post_sign_in(&http, &app, "guess").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.headers().get("set-cookie").is_none());
    }
    let res = post_sign_in(&http, &app, "guess").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("too many wrong sign-ins"));
    let res = post_sign_in(&http, &app, password).await;
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "no session while held"
    );
    assert!(res.headers().get("set-cookie").is_none());

    // A server without a password: the password is just a wrong token.
    let plain = serve(AppState::new(
        common::runtime(common::platform(4).await).await,
        TOKEN,
    ))
    .await;
    let res = post_sign_in(&http, &plain, password).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}
