//! The operators' console in headless Chromium: sign in, create a tenant in each
//! mode, find it, suspend (its login refused), resume, add a key (shown once),
//! delete, restore, purge with the typed name, the audit trail and its chain; and
//! forged posts (no session, a wrong CSRF token) change nothing.
//! Screenshots of every screen land in `<target>/console-screenshots/`.

mod common;
#[path = "console/screens.rs"]
mod screens;
#[path = "console/webdriver.rs"]
mod webdriver;

use std::path::PathBuf;

use common::{superuser, unique, ScratchDir, TestApp, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use webdriver::Browser;

fn screenshots() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp: the pictures go beside it, never in TMPDIR
    // (CI fails on files left there) nor in the repository.
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-screenshots")
}

async fn status_of(app: &TestApp, name: &str) -> String {
    let (s, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    t["status"].as_str().unwrap().to_string()
}

async fn can_log_in(dsn: &str) -> bool {
    match tokio_postgres::connect(dsn, tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client.simple_query("SELECT 1").await.is_ok()
        }
        Err(_) => false,
    }
}

/// Fills and posts the create form; answers the shown-once DSN and API key.
async fn create(b: &Browser, app: &TestApp, name: &str, isolation: &str) -> (String, String) {
    b.goto(&format!("{}/console/tenants/new", app.url)).await;
    b.fill("#name", name).await;
    b.click(&format!("#isolation option[value=\"{isolation}\"]"))
        .await;
    b.click("#public_api").await;
    b.fill("#metadata", r#"{"team": "console"}"#).await;
    b.shot(&format!("create-form-{isolation}")).await;
    b.click("#create-tenant").await;
    b.wait_text("#created-name", name).await;
    b.shot(&format!("created-{isolation}")).await;
    let key = b.text("#api-key").await;
    assert!(key.starts_with("bqk_"), "{key}");
    (b.text("#cred-dsn").await, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_runs_a_tenant_through_its_life_in_the_browser() {
    let app = TestApp::spawn().await;
    let profile = ScratchDir::new("chromium");
    let b = Browser::start(&profile, screenshots()).await;

    // Signed out, the console sends you to sign in; a wrong token is refused.
    b.goto(&format!("{}/console", app.url)).await;
    assert!(
        b.url().await.ends_with("/console/login"),
        "{}",
        b.url().await
    );
    b.shot("sign-in").await;
    b.fill("#token", "not-the-token").await;
    b.click("#sign-in").await;
    b.wait_text("#error-message", "wrong admin token").await;
    b.fill("#token", TOKEN).await;
    b.click("#sign-in").await;
    b.find("#tenants").await;
    let cookies = b.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "berqenas_console")
        .expect("the session cookie");
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    assert!(session["expiry"].is_number(), "an expiry: {session}");
    assert!(!session["value"].as_str().unwrap().contains(TOKEN));

    // One tenant in each isolation mode, through the create form.
    let name = unique("con-s");
    let db_name = unique("con-d");
    let (dsn, _) = create(&b, &app, &name, "schema").await;
    assert!(can_log_in(&dsn).await, "the shown credentials work");
    let (db_dsn, _) = create(&b, &app, &db_name, "database").await;
    assert!(can_log_in(&db_dsn).await);
    let (_, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{db_name}"), None)
        .await;
    assert_eq!(t["isolation"], "database", "{t}");
    assert_eq!(t["metadata"]["team"], "console", "{t}");

    // Search finds it, filters narrow.
    b.goto(&format!("{}/console", app.url)).await;
    b.fill("#search", &name).await;
    b.click("#apply").await;
    b.wait_url(&format!("q={name}")).await;
    b.find(&format!("#tenants a[href=\"/console/tenants/{name}\"]"))
        .await;
    assert!(
        !b.exists(&format!("#tenants a[href=\"/console/tenants/{db_name}\"]"))
            .await
    );
    b.shot("tenant-list-search").await;
    b.goto(&format!(
        "{}/console?isolation=database&q={db_name}",
        app.url
    ))
    .await;
    b.find(&format!("#tenants a[href=\"/console/tenants/{db_name}\"]"))
        .await;
    b.goto(&format!("{}/console?isolation=schema&q={db_name}", app.url))
        .await;
    b.find("#no-tenants").await;

    // The tenant page: status, usage bars, credentials on demand.
    b.goto(&format!("{}/console?q={name}", app.url)).await;
    b.click(&format!("#tenants a[href=\"/console/tenants/{name}\"]"))
        .await;
    b.wait_text("#status", "active").await;
    b.find("#usage-connections meter").await;
    b.find("#usage-storage_bytes meter").await;
    b.shot("tenant-page").await;
    b.click("#show-credentials").await;
    assert_eq!(b.text("#cred-dsn").await, dsn);
    b.shot("credentials").await;

    // Suspend with a reason: shown suspended, and its login is refused.
    b.goto(&format!("{}/console/tenants/{name}", app.url)).await;
    b.fill("#suspend-reason", "payment overdue").await;
    b.click("#suspend-confirm").await;
    b.click("#suspend").await;
    b.wait_text("#status", "suspended").await;
    b.wait_text("#suspension-reason", "payment overdue").await;
    b.shot("suspended").await;
    assert_eq!(status_of(&app, &name).await, "suspended");
    assert!(
        !can_log_in(&dsn).await,
        "a suspended tenant's login is refused"
    );

    b.click("#resume").await;
    b.wait_text("#status", "active").await;
    assert!(can_log_in(&dsn).await, "resumed: the login works again");

    // A key, shown once, that works; the tenant page never shows it again.
    b.fill("#key-name", "ci").await;
    b.click("#add-key").await;
    let key = b.text("#new-key").await;
    assert!(key.starts_with("bqk_"), "{key}");
    b.shot("key-shown-once").await;
    assert_eq!(app.me(&key).await, StatusCode::OK);
    b.click("#back").await;
    b.find("#key-list").await;
    assert!(
        !b.source().await.contains(&key),
        "the key is shown only once"
    );
    let prefix = &key[..20];
    b.click(&format!("#revoke-{prefix}")).await;
    b.find("#key-list .key-revoked").await;
    assert_eq!(app.me(&key).await, StatusCode::UNAUTHORIZED);

    // Delete (restorable), restore.
    b.click("#delete-confirm").await;
    b.click("#delete").await;
    b.wait_text("#status", "deleted").await;
    b.find("#purge-after").await;
    b.shot("deleted").await;
    assert!(!can_log_in(&dsn).await);
    b.click("#restore").await;
    b.wait_text("#status", "active").await;
    assert!(can_log_in(&dsn).await, "restored: the login works again");

    // Purge only with the name typed right.
    b.fill("#purge-name", "not-the-name").await;
    b.click("#purge").await;
    assert!(b.text("#error-message").await.contains("confirm must be"));
    b.shot("purge-refused").await;
    assert_eq!(
        status_of(&app, &name).await,
        "active",
        "a wrong name purges nothing"
    );
    b.goto(&format!("{}/console/tenants/{name}", app.url)).await;
    b.fill("#purge-name", &name).await;
    b.click("#purge").await;
    b.wait_text("#status", "purged").await;
    b.shot("purged").await;
    assert_eq!(status_of(&app, &name).await, "purged");

    // The audit trail names the console session; the chain verifies.
    b.goto(&format!("{}/console/audit?tenant={name}", app.url))
        .await;
    let trail = b.text("#audit").await;
    for action in [
        "tenant_suspended",
        "tenant_resumed",
        "tenant_soft_deleted",
        "tenant_purged",
        "tenant_restored",
    ] {
        assert!(trail.contains(action), "{action} in {trail}");
    }
    assert!(
        trail.contains("console:"),
        "the console session is the actor: {trail}"
    );
    assert!(!trail.contains(" admin "), "{trail}");
    b.shot("audit").await;
    b.click("#verify-chain").await;
    b.find("#chain-ok").await;
    b.shot("audit-verified").await;

    // Signing out ends the session: the console asks to sign in again.
    b.goto(&format!("{}/console", app.url)).await;
    b.click("#sign-out").await;
    // The sign-out answers with the sign-in page: wait for it, or the next navigation
    // may cancel the form's POST before the server saw it.
    b.find("#token").await;
    b.goto(&format!("{}/console", app.url)).await;
    assert!(b.url().await.ends_with("/console/login"));
    b.quit().await;
}

/// Signs in over plain HTTP; answers the cookie pair and the page's CSRF token.
async fn sign_in(http: &reqwest::Client, app: &TestApp) -> (String, String) {
    let res = http
        .post(format!("{}/console/login", app.url))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set = res.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Max-Age=", "Path=/console"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    let page = http
        .get(format!("{}/console/tenants/new", app.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a CSRF field")
        .to_string();
    (cookie, csrf)
}

async fn audit_rows(pg: &tokio_postgres::Client) -> i64 {
    pg.query_one("SELECT count(*) FROM berqenas.audit_log", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_posts_change_nothing() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let name = unique("con-f");
    app.create(&name).await;
    let (cookie, csrf) = sign_in(&http, &app).await;
    let pg = superuser().await;
    let before = audit_rows(&pg).await;

    let suspend = format!("{}/console/tenants/{name}/suspend", app.url);
    let create = format!("{}/console/tenants", app.url);
    let forged = [
        // No session cookie at all, with the right token.
        (None, csrf.as_str(), StatusCode::UNAUTHORIZED),
        // The session, but no or a wrong CSRF token.
        (Some(cookie.as_str()), "", StatusCode::FORBIDDEN),
        (
            Some(cookie.as_str()),
            "0123456789abcdef",
            StatusCode::FORBIDDEN,
        ),
        // A made-up session.
        (
            Some("berqenas_console=deadbeef"),
            csrf.as_str(),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (c, token, want) in forged {
        for (url, form) in [
            (
                &suspend,
                vec![("csrf", token), ("confirm", "yes"), ("reason", "forged")],
            ),
            (&create, vec![("csrf", token), ("name", "con-forged")]),
        ] {
            let mut req = http.post(url).form(&form);
            if let Some(c) = c {
                req = req.header("cookie", c);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), want, "{url} {c:?} {token:?}");
        }
    }
    assert_eq!(status_of(&app, &name).await, "active", "nothing suspended");
    let (s, _) = app
        .call(Method::GET, "/api/v1/tenants/con-forged", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing created");
    assert_eq!(audit_rows(&pg).await, before, "nothing audited");

    // The same post with the session and its token does suspend: the refusals above
    // were the forgery's, not a broken form.
    let res = http
        .post(&suspend)
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("confirm", "yes"),
            ("reason", "real"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(status_of(&app, &name).await, "suspended");
    let (_, page) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}/audit"), None)
        .await;
    let actor = page["entries"][0]["actor"].as_str().unwrap().to_string();
    assert!(actor.starts_with("console:"), "{page}");
}

#[tokio::test]
async fn pages_carry_a_strict_policy_and_no_session_reads_nothing() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = http
        .get(format!("{}/console", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "signed out: to the sign-in"
    );
    assert_eq!(res.headers()["location"], "/console/login");
    let res = http
        .get(format!("{}/console/login", app.url))
        .send()
        .await
        .unwrap();
    let h = res.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    let body: String = res.text().await.unwrap();
    assert!(!body.contains("<script"), "no script needed");
    assert!(!body.contains("style=\""), "no inline style");
    let (s, v): (StatusCode, Value) = app.call(Method::GET, "/api/v1/status", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}
