//! `berqenas tenant auth-provider set|get|list|delete|test`: a tenant's sign-in
//! providers (docs/auth-providers.md). The client secret is read from a file, standard
//! input or `BERQENAS_CLIENT_SECRET`, never from the command line, where `ps` and the
//! shell's history would show it; it is never printed back.

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde::Serialize;
use serde_json::{Map, Value};

use super::client::{tenant_path, Client, ClientError};
use super::{output, ClientArgs};
use crate::auth_providers::{AuthProvider, CheckResult};
use crate::secrets::{ExposeSecret, SecretString};

/// The environment variable a script can hand the client secret in.
pub const SECRET_ENV: &str = "BERQENAS_CLIENT_SECRET";

#[derive(Debug, Subcommand)]
pub enum AuthProviderCommand {
    /// Save a provider (replacing one of the same kind). The issuer's discovery
    /// document and keys are fetched and checked before it is saved (Entra ID, OIDC).
    ///
    /// Give the client secret with --client-secret-file PATH (- reads standard input)
    /// or in BERQENAS_CLIENT_SECRET; it must be given again with every change.
    Set(Box<SetArgs>),
    /// Show one provider's settings (never its secret).
    Get(KindArgs),
    /// The tenant's providers.
    List(TenantArgs),
    /// Remove a provider, with its secret.
    Delete(KindArgs),
    /// Check a saved provider again (discovery document, issuer, keys).
    Test(KindArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum ProviderKindArg {
    Github,
    EntraId,
    Oidc,
}

impl ProviderKindArg {
    fn as_str(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::EntraId => "entra_id",
            Self::Oidc => "oidc",
        }
    }
}

#[derive(Debug, Args)]
pub struct TenantArgs {
    /// Tenant name or id.
    pub tenant: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct KindArgs {
    /// Tenant name or id.
    pub tenant: String,
    /// The provider kind.
    pub kind: ProviderKindArg,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// Tenant name or id.
    pub tenant: String,
    /// The provider kind.
    pub kind: ProviderKindArg,
    /// The OAuth client (application) id.
    #[arg(long)]
    pub client_id: String,
    /// A file holding the client secret (- reads it from standard input); without
    /// it, BERQENAS_CLIENT_SECRET.
    #[arg(long, value_name = "PATH")]
    pub client_secret_file: Option<String>,
    /// GitHub: the organization members must belong to.
    #[arg(long)]
    pub organization: Option<String>,
    /// GitHub: teams of the organization allowed in (repeat, or separate with commas).
    #[arg(long = "team", value_delimiter = ',')]
    pub teams: Vec<String>,
    /// Entra ID: the directory (tenant) id, a GUID or a verified domain.
    #[arg(long)]
    pub tenant_id: Option<String>,
    /// Entra ID: groups allowed in (repeat, or separate with commas).
    #[arg(long = "group", value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Entra ID: the login authority [default: https://login.microsoftonline.com]
    #[arg(long)]
    pub authority: Option<String>,
    /// OIDC: the issuer; <issuer>/.well-known/openid-configuration must name it.
    #[arg(long)]
    pub issuer: Option<String>,
    /// OIDC: scopes to request (repeat, or separate with commas) [default: openid,
    /// email, profile]
    #[arg(long = "scope", value_delimiter = ',')]
    pub scopes: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `list`'s answer: each provider as `get` shows it.
#[derive(Debug, Serialize)]
pub struct ProviderList {
    pub tenant: String,
    pub auth_providers: Vec<AuthProvider>,
}

fn provider_path(tenant: &str, kind: ProviderKindArg) -> String {
    tenant_path(tenant, &format!("/auth-providers/{}", kind.as_str()))
}

/// The secret from the file, standard input or the environment: `Err` says where it
/// was looked for.
fn read_secret(file: Option<&str>) -> anyhow::Result<SecretString> {
    let raw = match file {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| anyhow::anyhow!("--client-secret-file -: {e}"))?;
            s
        }
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--client-secret-file {path}: {e}"))?,
        None => std::env::var(SECRET_ENV).map_err(|_| {
            anyhow::anyhow!(
                "no client secret: give it with --client-secret-file PATH (- for standard input) or in {SECRET_ENV} (never on the command line)"
            )
        })?,
    };
    // A file's or a pipe's trailing newline is not part of the secret.
    let secret = raw.trim_end_matches(['\r', '\n']).to_string();
    if secret.is_empty() {
        anyhow::bail!("the client secret is empty");
    }
    Ok(SecretString::from(secret))
}

/// The PUT body: the flags given, and only those, so the server names any field its
/// kind does not take.
fn body_of(a: &SetArgs, secret: &SecretString) -> Value {
    let mut body = Map::new();
    body.insert("client_id".into(), a.client_id.clone().into());
    body.insert(
        "client_secret".into(),
        secret.expose_secret().to_string().into(),
    );
    let optional = [
        ("organization", &a.organization),
        ("tenant_id", &a.tenant_id),
        ("authority", &a.authority),
        ("issuer", &a.issuer),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            body.insert(key.into(), v.clone().into());
        }
    }
    let lists = [
        ("teams", &a.teams),
        ("groups", &a.groups),
        ("scopes", &a.scopes),
    ];
    for (key, values) in lists {
        if !values.is_empty() {
            body.insert(key.into(), values.clone().into());
        }
    }
    Value::Object(body)
}

impl Client {
    pub async fn put_auth_provider(
        &self,
        tenant: &str,
        kind: ProviderKindArg,
        body: &Value,
    ) -> Result<AuthProvider, ClientError> {
        self.call(Method::PUT, &provider_path(tenant, kind), Some(body), &[])
            .await
    }

    pub async fn auth_provider(
        &self,
        tenant: &str,
        kind: ProviderKindArg,
    ) -> Result<AuthProvider, ClientError> {
        self.call::<(), _>(Method::GET, &provider_path(tenant, kind), None, &[])
            .await
    }

    pub async fn delete_auth_provider(
        &self,
        tenant: &str,
        kind: ProviderKindArg,
    ) -> Result<(), ClientError> {
        self.call::<(), ()>(Method::DELETE, &provider_path(tenant, kind), None, &[])
            .await
    }

    pub async fn test_auth_provider(
        &self,
        tenant: &str,
        kind: ProviderKindArg,
    ) -> Result<CheckResult, ClientError> {
        let path = format!("{}/test", provider_path(tenant, kind));
        self.call::<(), _>(Method::POST, &path, None, &[]).await
    }

    /// The providers the tenant JSON lists, each read in full.
    pub async fn auth_providers(&self, tenant: &str) -> Result<ProviderList, ClientError> {
        let t = self.get_tenant(tenant).await?;
        let mut auth_providers = Vec::new();
        for kind in &t.auth_providers {
            let Some(kind) = ProviderKindArg::from_str(kind, false).ok() else {
                continue;
            };
            auth_providers.push(self.auth_provider(tenant, kind).await?);
        }
        Ok(ProviderList {
            tenant: t.name.to_string(),
            auth_providers,
        })
    }
}

fn show(p: &AuthProvider) {
    println!("{} (client secret set; never shown)", p.kind);
    if let Some(settings) = p.settings.as_object() {
        for (key, value) in settings {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("  {key}: {value}");
        }
    }
    println!(
        "  checked: {}  updated: {}",
        p.checked_at.format("%Y-%m-%d %H:%M:%S"),
        p.updated_at.format("%Y-%m-%d %H:%M:%S")
    );
}

pub async fn run(cmd: AuthProviderCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuthProviderCommand::Set(a) => {
            let secret = read_secret(a.client_secret_file.as_deref())?;
            let body = body_of(&a, &secret);
            let res = a
                .client
                .client()
                .put_auth_provider(&a.tenant, a.kind, &body)
                .await;
            output::finish(res, a.client.output, show)
        }
        AuthProviderCommand::Get(a) => {
            let res = a.client.client().auth_provider(&a.tenant, a.kind).await;
            output::finish(res, a.client.output, show)
        }
        AuthProviderCommand::List(a) => {
            let res = a.client.client().auth_providers(&a.tenant).await;
            output::finish(res, a.client.output, |l| {
                if l.auth_providers.is_empty() {
                    println!("tenant {} has no sign-in providers", l.tenant);
                }
                for p in &l.auth_providers {
                    show(p);
                }
            })
        }
        AuthProviderCommand::Delete(a) => {
            let res = a
                .client
                .client()
                .delete_auth_provider(&a.tenant, a.kind)
                .await
                .map(|()| serde_json::json!({"tenant": a.tenant, "kind": a.kind.as_str(), "deleted": true}));
            output::finish(res, a.client.output, |_| {
                println!("removed the {} provider of {}", a.kind.as_str(), a.tenant)
            })
        }
        AuthProviderCommand::Test(a) => {
            let res = a
                .client
                .client()
                .test_auth_provider(&a.tenant, a.kind)
                .await;
            output::finish(res, a.client.output, |c| {
                println!(
                    "{}: {}",
                    c.kind,
                    if c.ok { "checks out" } else { "check failed" }
                );
                println!(
                    "{}",
                    serde_json::to_string_pretty(&c.checked).unwrap_or_default()
                );
            })
        }
    }
}
