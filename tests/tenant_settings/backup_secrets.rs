//! A backup of a tenant with a sign-in provider and an invited user carries neither
//! the provider's client secret nor the invitation's token or password in its
//! manifest (the one part of a backup that is not encrypted), and the server log of
//! the whole exchange has none of them either.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{self, unique};

#[tokio::test]
async fn no_secret_reaches_a_backup_manifest() {
    let app = crate::app().await;
    let base = super::auth_providers::issuer().await;
    for mode in ["schema", "shared", "database"] {
        let name = unique(&format!("bk-secret-{mode}"));
        let t = app
            .create_with(json!({"name": name, "isolation": mode, "plan": "starter"}))
            .await;
        let secret = format!("manifest-secret-{}", uuid::Uuid::new_v4());
        let (s, b) = app
            .call(
                Method::PUT,
                &format!("/api/v1/tenants/{name}/auth-providers/oidc"),
                Some(json!({"issuer": format!("{base}/good"), "client_id": "app", "client_secret": secret})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, invited) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/users"),
                Some(json!({"email": "new@example.com", "role": "developer", "invited_by": "owner@example.com"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{invited}");
        let link = invited["invitation_url"].as_str().unwrap().to_string();
        let token = link.rsplit('/').next().unwrap().to_string();

        let (s, backup) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/backups"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{backup}");
        assert_eq!(backup["status"], "succeeded", "{backup}");
        // The test platform keeps backups beside the shared cluster.
        let cluster = common::database().await.cluster.clone().unwrap();
        let root = cluster.socket_dir().parent().unwrap().join("backups");
        let dir = root.join(t["id"].as_str().unwrap());
        let manifests: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".manifest.json"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        assert_eq!(manifests.len(), 1, "{mode}: one backup, one manifest");
        for m in &manifests {
            assert!(
                m.contains(t["id"].as_str().unwrap()),
                "a real manifest: {m}"
            );
            assert!(
                !m.contains(&secret),
                "{mode}: the client secret is in the manifest"
            );
            assert!(
                !m.contains(&token),
                "{mode}: the invitation token is in the manifest"
            );
        }
        // The invitee takes the password now: it is not in the manifest either.
        let (s, taken) = crate::anonymous(&app, &format!("/api/v1/invitations/{token}")).await;
        assert_eq!(s, StatusCode::OK, "{taken}");
        let password = taken["credentials"]["password"].as_str().unwrap();
        assert!(manifests.iter().all(|m| !m.contains(password)));
        let log = crate::server_log();
        for (what, value) in [
            ("client secret", secret.as_str()),
            ("invitation token", token.as_str()),
            ("password", password),
        ] {
            assert!(
                !log.contains(value),
                "{mode}: the {what} is in the server log"
            );
        }
    }
}
