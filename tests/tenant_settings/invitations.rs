//! Item 3: invitations.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{self, unique};

fn token_path(url: &str) -> String {
    let i = url
        .find("/api/v1/invitations/")
        .expect("an invitation link");
    url[i..].to_string()
}

async fn invite(app: &common::TestApp, tenant: &str, email: &str) -> Value {
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/users"),
            Some(
                json!({"email": email, "role": "developer", "teams": ["data-science", "ml"],
                "invited_by": "owner@example.com"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b
}

#[tokio::test]
async fn an_invitation_hands_over_working_credentials_once_in_every_mode() {
    let app = crate::app().await;
    for mode in ["schema", "shared", "database"] {
        let name = unique(&format!("inv-{mode}"));
        app.create_with(json!({"name": name, "isolation": mode, "plan": "starter"}))
            .await;
        let email = format!("ada-{mode}@example.com");
        let invited = invite(&app, &name, &email).await;
        assert_eq!(invited["status"], "invited", "{invited}");
        assert_eq!(invited["teams"], json!(["data-science", "ml"]));
        assert_eq!(invited["invited_by"], "owner@example.com");
        assert!(
            invited.get("credentials").is_none(),
            "no password in the answer: {invited}"
        );
        let url = invited["invitation_url"].as_str().unwrap();
        assert!(url.starts_with(&app.url), "{url}");
        assert!(invited["invitation_expires_at"].is_string());

        // The event carries the link (for the mail service); the audit row does not.
        let events = crate::events(&name, "user.invited").await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["invitation_url"], url);
        assert_eq!(events[0]["invited_by"], "owner@example.com");
        let pg = common::superuser().await;
        let token = url.rsplit('/').next().unwrap();
        let audit: Vec<String> = pg
            .query(
                "SELECT details::text FROM berqenas.audit_log WHERE tenant_name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(!audit.iter().any(|d| d.contains(token)), "{audit:?}");
        // Only the token's hash is stored.
        let stored: i64 = pg
            .query_one(
                "SELECT count(*) FROM berqenas.invitations WHERE encode(token_hash, 'escape') LIKE '%' || $1 || '%'",
                &[&token],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(stored, 0);

        let (s, opened) = crate::anonymous(&app, &token_path(url)).await;
        assert_eq!(s, StatusCode::OK, "{mode}: {opened}");
        assert_eq!(opened["status"], "active");
        assert_eq!(opened["email"], email);
        let password = opened["credentials"]["password"]
            .as_str()
            .unwrap()
            .to_string();
        let client = common::connect_as(&opened["credentials"]).await;
        let who: String = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, invited["db_user"].as_str().unwrap());
        // The password appears in no event, audit row or log line.
        assert!(!crate::audit_and_events(&name).await.contains(&password));
        assert!(!crate::server_log().contains(&password));

        let (s, again) = crate::anonymous(&app, &token_path(url)).await;
        assert_eq!(s, StatusCode::GONE, "{again}");
        assert_eq!(again["error"]["code"], "invitation_used");
        assert!(again.get("credentials").is_none());
        let (_, users) = app
            .call(Method::GET, &format!("/api/v1/tenants/{name}/users"), None)
            .await;
        assert_eq!(users["users"][0]["status"], "active", "{users}");
        assert_eq!(
            common::audit_count(&pg, &name, "invitation_accepted").await,
            1
        );
    }
    let (s, b) = crate::anonymous(
        &app,
        "/api/v1/invitations/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, _) = crate::anonymous(&app, "/api/v1/invitations/short").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_expired_link_is_gone_and_the_user_stays_invited() {
    let app = crate::spawn(Duration::from_secs(1), true).await;
    let name = unique("inv-ttl");
    app.create_with(json!({"name": name, "isolation": "schema", "plan": "starter"}))
        .await;
    let invited = invite(&app, &name, "late@example.com").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (s, b) = crate::anonymous(
        &app,
        &token_path(invited["invitation_url"].as_str().unwrap()),
    )
    .await;
    assert_eq!(s, StatusCode::GONE, "{b}");
    assert_eq!(b["error"]["code"], "invitation_expired");
    let (_, users) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}/users"), None)
        .await;
    assert_eq!(users["users"][0]["status"], "invited");
}

#[tokio::test]
async fn a_direct_add_still_answers_credentials_and_bad_input_changes_nothing() {
    let app = crate::app().await;
    let name = unique("inv-direct");
    app.create_with(json!({"name": name, "isolation": "schema", "plan": "starter"}))
        .await;
    let path = format!("/api/v1/tenants/{name}/users");
    let (s, added) = app
        .call(
            Method::POST,
            &path,
            Some(json!({"email": "bob@example.com", "role": "auditor", "teams": ["ops"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{added}");
    assert_eq!(added["status"], "active");
    assert!(added["invitation_url"].is_null());
    assert!(added["invited_by"].is_null());
    common::connect_as(&added["credentials"]).await;
    let events = crate::events(&name, "user.invited").await;
    assert!(events[0]["invitation_url"].is_null(), "{events:?}");
    // `invite: true` without invited_by invites too.
    let (s, b) = app
        .call(
            Method::POST,
            &path,
            Some(json!({"email": "cy@example.com", "role": "developer", "invite": true})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(
        b["invitation_url"].is_string() && b.get("credentials").is_none(),
        "{b}"
    );

    let before = crate::tenant_rows(&name).await;
    for (body, field) in [
        (
            json!({"email": "d@example.com", "role": "developer", "teams": [""]}),
            "teams",
        ),
        (
            json!({"email": "d@example.com", "role": "developer", "invited_by": " "}),
            "invited_by",
        ),
        (
            json!({"email": "d@example.com", "role": "developer", "invite": false, "invited_by": "x@example.com"}),
            "invite",
        ),
        (
            json!({"email": "d@example.com", "role": "developer", "teams": "ops"}),
            "teams",
        ),
        (
            json!({"email": "d@example.com", "role": "wizard", "invite": true}),
            "role",
        ),
    ] {
        let (s, b) = app.call(Method::POST, &path, Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
        assert_eq!(b["error"]["field"], field, "{body}: {b}");
    }
    assert_eq!(crate::tenant_rows(&name).await, before);

    // `tenant user list` shows status, teams and who invited.
    let out = common::cli(&app, &["tenant", "user", "list", &name]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for s in ["STATUS", "TEAMS", "INVITED BY", "invited", "active", "ops"] {
        assert!(text.contains(s), "{s} not in\n{text}");
    }
    let out = common::cli(
        &app,
        &[
            "tenant",
            "user",
            "add",
            &name,
            "--email",
            "eve@example.com",
            "--role",
            "developer",
            "--team",
            "a,b",
            "--invited-by",
            "boss@example.com",
            "-o",
            "json",
        ],
    )
    .await;
    let added = common::stdout_json(&out);
    assert_eq!(added["teams"], json!(["a", "b"]));
    assert!(added["invitation_url"].is_string(), "{added}");
}
