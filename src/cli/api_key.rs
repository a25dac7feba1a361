//! `berqenas tenant api-key create|list|revoke|rotate`.

use crate::secrets::ExposeSecret;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use reqwest::Method;

use super::client::{tenant_path, Client, ClientError};
use super::NameArgs;
use super::{output, ClientArgs};
use crate::tenant::api_keys::{
    ApiKey, ApiKeyList, CreateApiKey, NewApiKey, RotateApiKey, RotatedApiKey,
};

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Issue a new key; it is printed this once.
    Create(CreateArgs),
    /// List the tenant's keys (never their secrets), newest first.
    List(NameArgs),
    /// Revoke a key: it stops working at once.
    Revoke(KeyArgs),
    /// Replace a key: the new one is printed this once; the old one keeps working
    /// until --expires-in from now.
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Tenant name or id.
    pub tenant: String,
    /// A label to tell keys apart.
    #[arg(long)]
    pub name: Option<String>,
    /// The key stops working this long from now: 30m, 1h, 7d [default: never]
    #[arg(long)]
    pub expires_in: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Tenant name or id.
    pub tenant: String,
    /// The key's id, or its prefix (bqk_ and 16 hex digits).
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Tenant name or id.
    pub tenant: String,
    /// The key's id, or its prefix (bqk_ and 16 hex digits).
    pub id: String,
    /// How long the old key keeps working [default: 24h]
    #[arg(long)]
    pub expires_in: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn key_path(tenant: &str, id: &str, rest: &str) -> String {
    let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    tenant_path(tenant, &format!("/api-keys/{id}{rest}"))
}

impl Client {
    pub async fn create_api_key(
        &self,
        tenant: &str,
        req: &CreateApiKey,
    ) -> Result<NewApiKey, ClientError> {
        self.call(
            Method::POST,
            &tenant_path(tenant, "/api-keys"),
            Some(req),
            &[],
        )
        .await
    }

    pub async fn api_keys(&self, tenant: &str) -> Result<ApiKeyList, ClientError> {
        self.call::<(), _>(Method::GET, &tenant_path(tenant, "/api-keys"), None, &[])
            .await
    }

    pub async fn revoke_api_key(&self, tenant: &str, id: &str) -> Result<ApiKey, ClientError> {
        self.call::<(), _>(Method::DELETE, &key_path(tenant, id, ""), None, &[])
            .await
    }

    pub async fn rotate_api_key(
        &self,
        tenant: &str,
        id: &str,
        req: &RotateApiKey,
    ) -> Result<RotatedApiKey, ClientError> {
        self.call(
            Method::POST,
            &key_path(tenant, id, "/rotate"),
            Some(req),
            &[],
        )
        .await
    }
}

fn keys_table(keys: &[&ApiKey]) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec!["PREFIX", "NAME", "STATE", "CREATED", "EXPIRES", "ID"]);
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default()
    };
    for k in keys {
        table.add_row(vec![
            k.prefix.clone(),
            k.name.clone().unwrap_or_default(),
            serde_json::to_value(k.state)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            time(Some(k.created_at)),
            time(k.expires_at),
            k.id.to_string(),
        ]);
    }
    println!("{table}");
}

pub async fn run(cmd: ApiKeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ApiKeyCommand::Create(a) => {
            let req = CreateApiKey {
                name: a.name,
                expires_in: a.expires_in,
            };
            let res = a.client.client().create_api_key(&a.tenant, &req).await;
            output::finish(res, a.client.output, |k| {
                keys_table(&[&k.key]);
                println!(
                    "\nShown once; store it now:\n  api_key: {}",
                    k.api_key.expose_secret()
                );
            })
        }
        ApiKeyCommand::List(a) => {
            let res = a.client.client().api_keys(&a.name).await;
            output::finish(res, a.client.output, |l| {
                keys_table(&l.api_keys.iter().collect::<Vec<_>>())
            })
        }
        ApiKeyCommand::Revoke(a) => {
            let res = a.client.client().revoke_api_key(&a.tenant, &a.id).await;
            output::finish(res, a.client.output, |k| {
                println!("revoked API key {} ({})", k.prefix, k.id)
            })
        }
        ApiKeyCommand::Rotate(a) => {
            let req = RotateApiKey {
                expires_in: a.expires_in,
            };
            let res = a
                .client
                .client()
                .rotate_api_key(&a.tenant, &a.id, &req)
                .await;
            output::finish(res, a.client.output, |r| {
                keys_table(&[&r.key, &r.replaced]);
                println!(
                    "\nShown once; store it now:\n  api_key: {}",
                    r.api_key.expose_secret()
                );
            })
        }
    }
}
