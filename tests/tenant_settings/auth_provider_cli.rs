//! `berqenas tenant auth-provider ...` as a user's script runs it: the secret goes in
//! through standard input or the environment and never comes out.

use std::process::{Output, Stdio};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::common::{unique, TestApp, TOKEN};

async fn berqenas(
    app: &TestApp,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_berqenas"));
    cmd.args(args)
        .env("BERQENAS_URL", &app.url)
        .env("BERQENAS_ADMIN_TOKEN", TOKEN)
        .env_remove("BERQENAS_CLIENT_SECRET")
        .env_remove("BERQENAS_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    child.wait_with_output().await.unwrap()
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn the_cli_sets_lists_tests_and_deletes_providers_and_never_shows_the_secret() {
    let app = crate::app().await;
    let base = super::auth_providers::issuer().await;
    let name = unique("auth-cli");
    app.create_with(json!({"name": name, "isolation": "schema", "plan": "starter"}))
        .await;
    let secret = format!("cli-client-secret-{}", uuid::Uuid::new_v4());
    let issuer = format!("{base}/good");
    let mut seen = String::new();

    let set = berqenas(
        &app,
        &[
            "tenant",
            "auth-provider",
            "set",
            &name,
            "oidc",
            "--client-id",
            "app-1",
            "--issuer",
            &issuer,
            "--scope",
            "openid,email",
            "--client-secret-file",
            "-",
            "-o",
            "json",
        ],
        Some(&format!("{secret}\n")),
        &[],
    )
    .await;
    seen.push_str(&text(&set));
    let saved = json_of(&set);
    assert_eq!(saved["kind"], "oidc");
    assert_eq!(saved["client_secret_set"], true);
    assert_eq!(saved["settings"]["scopes"], json!(["openid", "email"]));

    // From the environment, a GitHub provider; the trailing newline of stdin above was
    // not part of the secret: the integration view has it exactly.
    let github = berqenas(
        &app,
        &[
            "tenant",
            "auth-provider",
            "set",
            &name,
            "github",
            "--client-id",
            "gh-1",
            "--organization",
            "acme-corp",
            "--team",
            "core",
            "--team",
            "ops",
        ],
        None,
        &[("BERQENAS_CLIENT_SECRET", &secret)],
    )
    .await;
    seen.push_str(&text(&github));
    assert!(github.status.success(), "{}", text(&github));
    let (_, view) = app
        .call_with(
            reqwest::Method::GET,
            &format!("/api/v1/integration/tenants/{name}/auth-providers"),
            None,
            Some(crate::INTEGRATION_TOKEN),
            &[],
        )
        .await;
    assert!(
        view.to_string().contains(&format!("\"{secret}\"")),
        "{view}"
    );

    let list = berqenas(
        &app,
        &["tenant", "auth-provider", "list", &name, "-o", "json"],
        None,
        &[],
    )
    .await;
    seen.push_str(&text(&list));
    let kinds: Vec<Value> = json_of(&list)["auth_providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].clone())
        .collect();
    assert_eq!(kinds, vec![json!("github"), json!("oidc")]);
    let table = berqenas(&app, &["tenant", "auth-provider", "list", &name], None, &[]).await;
    seen.push_str(&text(&table));
    assert!(
        text(&table).contains("organization: acme-corp"),
        "{}",
        text(&table)
    );

    let tested = berqenas(
        &app,
        &[
            "tenant",
            "auth-provider",
            "test",
            &name,
            "oidc",
            "-o",
            "json",
        ],
        None,
        &[],
    )
    .await;
    seen.push_str(&text(&tested));
    assert_eq!(json_of(&tested)["checked"]["keys"], json!(["test-key-1"]));

    let deleted = berqenas(
        &app,
        &["tenant", "auth-provider", "delete", &name, "github"],
        None,
        &[],
    )
    .await;
    seen.push_str(&text(&deleted));
    assert!(deleted.status.success(), "{}", text(&deleted));
    let gone = berqenas(
        &app,
        &["tenant", "auth-provider", "get", &name, "github"],
        None,
        &[],
    )
    .await;
    assert_eq!(gone.status.code(), Some(1), "{}", text(&gone));
    assert!(
        text(&gone).contains("no github provider"),
        "{}",
        text(&gone)
    );

    assert!(
        !seen.contains(&secret),
        "the CLI printed the secret: {seen}"
    );
}

#[tokio::test]
async fn the_cli_refuses_a_missing_secret_and_a_bad_issuer_and_changes_nothing() {
    let app = crate::app().await;
    let base = super::auth_providers::issuer().await;
    let name = unique("auth-cli-bad");
    app.create_with(json!({"name": name, "isolation": "schema", "plan": "starter"}))
        .await;
    let before = crate::tenant_rows(&name).await;
    let good = format!("{base}/good");

    let no_secret = berqenas(
        &app,
        &[
            "tenant",
            "auth-provider",
            "set",
            &name,
            "oidc",
            "--client-id",
            "a",
            "--issuer",
            &good,
        ],
        None,
        &[],
    )
    .await;
    assert!(!no_secret.status.success());
    assert!(
        text(&no_secret).contains("BERQENAS_CLIENT_SECRET"),
        "{}",
        text(&no_secret)
    );

    let liar = format!("{base}/liar");
    let refused = berqenas(
        &app,
        &[
            "tenant",
            "auth-provider",
            "set",
            &name,
            "oidc",
            "--client-id",
            "a",
            "--issuer",
            &liar,
            "--client-secret-file",
            "-",
        ],
        Some("s3cret-never-stored"),
        &[],
    )
    .await;
    assert!(!refused.status.success());
    assert!(text(&refused).contains("issuer"), "{}", text(&refused));
    assert!(!text(&refused).contains("s3cret-never-stored"));

    let bad_kind = berqenas(
        &app,
        &["tenant", "auth-provider", "get", &name, "saml"],
        None,
        &[],
    )
    .await;
    assert_eq!(bad_kind.status.code(), Some(2), "{}", text(&bad_kind));
    assert!(
        text(&bad_kind).contains("github, entra_id, oidc"),
        "{}",
        text(&bad_kind)
    );

    assert_eq!(crate::tenant_rows(&name).await, before);
}
