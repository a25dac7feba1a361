//! Item 2: sign-in providers, checked against a real discovery document and JWKS
//! served over loopback by this test.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{self, unique};

const ENTRA_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// An issuer at `http://127.0.0.1:<port>`: `/good` is a well-behaved OIDC issuer,
/// `/liar` names another issuer, `/nokeys` has an empty JWKS, and
/// `/<tenant>/v2.0` answers as Entra ID's multi-tenant documents do (`{tenantid}`).
pub async fn issuer() -> String {
    async fn discovery(State(base): State<String>, Path(which): Path<String>) -> Json<Value> {
        let issuer = match which.as_str() {
            "liar" => "https://someone-else.example.com".to_string(),
            _ => format!("{base}/{which}"),
        };
        let jwks = match which.as_str() {
            "nokeys" => format!("{base}/jwks-empty"),
            _ => format!("{base}/jwks"),
        };
        Json(
            json!({"issuer": issuer, "jwks_uri": jwks, "authorization_endpoint": format!("{base}/authorize")}),
        )
    }
    async fn entra(State(base): State<String>) -> Json<Value> {
        Json(
            json!({"issuer": format!("{base}/{{tenantid}}/v2.0"), "jwks_uri": format!("{base}/jwks")}),
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = Router::new()
        .route("/{which}/.well-known/openid-configuration", get(discovery))
        .route(&format!("/{ENTRA_TENANT}/v2.0/.well-known/openid-configuration"), get(entra))
        .route(
            "/jwks",
            get(|| async {
                Json(json!({"keys": [{"kty": "RSA", "kid": "test-key-1", "use": "sig", "alg": "RS256",
                    "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
                    "e": "AQAB"}]}))
            }),
        )
        .route("/jwks-empty", get(|| async { Json(json!({"keys": []})) }))
        .with_state(base.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

#[tokio::test]
async fn an_oidc_provider_is_checked_saved_sealed_and_its_secret_read_only_with_the_integration_token(
) {
    let app = crate::app().await;
    let base = issuer().await;
    let secret = format!("oidc-client-secret-{}", uuid::Uuid::new_v4());
    for mode in ["schema", "shared", "database"] {
        let name = unique(&format!("auth-{mode}"));
        app.create_with(json!({"name": name, "isolation": mode, "plan": "starter"}))
            .await;
        let path = format!("/api/v1/tenants/{name}/auth-providers/oidc");
        let mut seen = String::new();
        let (s, saved) = app
            .call(
                Method::PUT,
                &path,
                Some(
                    json!({"issuer": format!("{base}/good"), "client_id": "berqenas-app",
                    "client_secret": secret, "scopes": ["openid", "email"]}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{mode}: {saved}");
        assert_eq!(saved["client_secret_set"], true);
        assert_eq!(saved["settings"]["issuer"], format!("{base}/good"));
        seen.push_str(&saved.to_string());
        let (s, got) = app.call(Method::GET, &path, None).await;
        assert_eq!(
            (s, got["client_secret_set"].clone()),
            (StatusCode::OK, json!(true))
        );
        seen.push_str(&got.to_string());
        let (_, tenant) = app
            .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
            .await;
        assert_eq!(tenant["auth_providers"], json!(["oidc"]), "{tenant}");
        seen.push_str(&tenant.to_string());
        let (s, checked) = app.call(Method::POST, &format!("{path}/test"), None).await;
        assert_eq!(s, StatusCode::OK, "{checked}");
        assert_eq!(checked["checked"]["keys"], json!(["test-key-1"]));
        seen.push_str(&checked.to_string());

        // The admin token cannot read the secret; the integration token can, audited.
        let integration = format!("/api/v1/integration/tenants/{name}/auth-providers");
        let (s, refused) = app.call(Method::GET, &integration, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{refused}");
        seen.push_str(&refused.to_string());
        let (s, _) = crate::anonymous(&app, &integration).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = app
            .call_with(
                Method::GET,
                &path,
                None,
                Some(crate::INTEGRATION_TOKEN),
                &[],
            )
            .await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "the integration token opens nothing else"
        );
        let pg = common::superuser().await;
        assert_eq!(
            common::audit_count(&pg, &name, "auth_provider_secrets_read").await,
            0
        );
        let (s, full) = app
            .call_with(
                Method::GET,
                &integration,
                None,
                Some(crate::INTEGRATION_TOKEN),
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{full}");
        assert_eq!(full["providers"][0]["client_secret"], secret.as_str());
        assert_eq!(
            full["providers"][0]["settings"]["client_id"],
            "berqenas-app"
        );
        assert_eq!(
            common::audit_count(&pg, &name, "auth_provider_secrets_read").await,
            1
        );

        // Sealed at rest; nowhere else in the clear.
        let stored: Vec<u8> = pg
            .query_one(
                "SELECT a.client_secret FROM berqenas.auth_providers a JOIN berqenas.tenants t ON t.id = a.tenant_id WHERE t.name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()));
        assert!(
            !seen.contains(&secret),
            "{mode}: an admin answer carried the secret"
        );
        assert!(!crate::audit_and_events(&name).await.contains(&secret));

        let (s, _) = app.call(Method::DELETE, &path, None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (_, tenant) = app
            .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
            .await;
        assert_eq!(tenant["auth_providers"], json!([]));
        let (s, _) = app.call(Method::GET, &path, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    assert!(
        !crate::server_log().contains(&secret),
        "the server log holds the secret"
    );
}

#[tokio::test]
async fn bad_settings_and_issuers_that_do_not_check_out_are_refused_naming_the_field_and_change_nothing(
) {
    let app = crate::app().await;
    let base = issuer().await;
    let name = unique("auth-bad");
    app.create_with(json!({"name": name, "isolation": "schema", "plan": "starter"}))
        .await;
    let before = crate::tenant_rows(&name).await;
    let secret = "never-stored-secret-4711";
    let at = |kind: &str| format!("/api/v1/tenants/{name}/auth-providers/{kind}");
    for (kind, body, status, field) in [
        (
            "oidc",
            json!({"issuer": format!("{base}/good"), "client_secret": secret}),
            400,
            "client_id",
        ),
        (
            "oidc",
            json!({"issuer": "not a url", "client_id": "a", "client_secret": secret}),
            400,
            "issuer",
        ),
        (
            "oidc",
            json!({"issuer": format!("{base}/good?x=1"), "client_id": "a", "client_secret": secret}),
            400,
            "issuer",
        ),
        (
            "oidc",
            json!({"issuer": format!("{base}/good"), "client_id": "a", "client_secret": secret, "scopes": ["email"]}),
            400,
            "scopes",
        ),
        (
            "oidc",
            json!({"issuer": format!("{base}/liar"), "client_id": "a", "client_secret": secret}),
            422,
            "issuer",
        ),
        (
            "oidc",
            json!({"issuer": format!("{base}/nokeys"), "client_id": "a", "client_secret": secret}),
            422,
            "issuer",
        ),
        (
            "oidc",
            json!({"issuer": format!("{base}/missing/deeper"), "client_id": "a", "client_secret": secret}),
            422,
            "issuer",
        ),
        (
            "github",
            json!({"client_id": "a", "client_secret": secret, "teams": ["core"]}),
            400,
            "teams",
        ),
        (
            "github",
            json!({"client_id": "a", "client_secret": secret, "organization": "-bad-"}),
            400,
            "organization",
        ),
        (
            "github",
            json!({"client_id": "a", "client_secret": "", "organization": "acme"}),
            400,
            "client_secret",
        ),
        (
            "github",
            json!({"client_id": "a", "client_secret": secret, "issuer": "x"}),
            400,
            "issuer",
        ),
        (
            "entra_id",
            json!({"tenant_id": "not a tenant", "client_id": "a", "client_secret": secret}),
            400,
            "tenant_id",
        ),
    ] {
        let (s, b) = app.call(Method::PUT, &at(kind), Some(body.clone())).await;
        assert_eq!(s.as_u16(), status, "{kind} {body}: {b}");
        assert_eq!(b["error"]["field"], field, "{kind} {body}: {b}");
        assert!(!b.to_string().contains(secret), "{b}");
    }
    let (s, b) = app.call(Method::PUT, &at("saml"), Some(json!({}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, b) = app
        .call(
            Method::PUT,
            "/api/v1/tenants/no-such-tenant/auth-providers/github",
            Some(json!({"client_id": "a", "client_secret": secret})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(
        crate::tenant_rows(&name).await,
        before,
        "a refused provider changed something"
    );
    let (s, _) = app
        .call(Method::POST, &format!("{}/test", at("github")), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn github_and_entra_id_with_its_tenantid_template_are_saved() {
    let app = crate::app().await;
    let base = issuer().await;
    let name = unique("auth-kinds");
    app.create_with(json!({"name": name, "isolation": "shared", "plan": "starter"}))
        .await;
    let (s, g) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/auth-providers/github"),
            Some(json!({"client_id": "Iv1.abc", "client_secret": "gh-secret-123", "organization": "acme-corp",
                "teams": ["data-science", "platform"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{g}");
    assert_eq!(g["settings"]["teams"], json!(["data-science", "platform"]));
    let (s, e) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/auth-providers/entra_id"),
            Some(json!({"tenant_id": ENTRA_TENANT, "client_id": "app-id", "client_secret": "entra-secret-456",
                "groups": ["admins"], "authority": base})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(
        e["settings"]["issuer"],
        format!("{base}/{ENTRA_TENANT}/v2.0")
    );
    let (s, t) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/auth-providers/entra_id/test"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let (_, tenant) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(tenant["auth_providers"], json!(["entra_id", "github"]));
    let (_, full) = app
        .call_with(
            Method::GET,
            &format!("/api/v1/integration/tenants/{name}/auth-providers"),
            None,
            Some(crate::INTEGRATION_TOKEN),
            &[],
        )
        .await;
    let secrets: Vec<&str> = full["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["client_secret"].as_str().unwrap())
        .collect();
    assert_eq!(secrets, ["entra-secret-456", "gh-secret-123"]);
}

#[tokio::test]
async fn without_the_allow_private_switch_a_loopback_issuer_is_refused() {
    let app = crate::spawn(berqenas::platform::DEFAULT_INVITATION_TTL, false).await;
    let base = issuer().await;
    let name = unique("auth-private");
    app.create_with(json!({"name": name, "isolation": "schema", "plan": "starter"}))
        .await;
    let (s, b) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/auth-providers/oidc"),
            Some(json!({"issuer": format!("{base}/good"), "client_id": "a", "client_secret": "s3cret-value"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["field"], "issuer");
    let (s, b) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/auth-providers/oidc"),
            Some(json!({"issuer": "https://127.0.0.1:9/x", "client_id": "a", "client_secret": "s3cret-value"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("private"),
        "{b}"
    );
}
