//! `berqenas realtime tail TENANT --channel C` (the tenant's events as they are
//! published, one JSON line each) and `berqenas realtime publish TENANT --channel C
//! PAYLOAD`. Both use the admin endpoints `/api/v1/tenants/{name}/realtime/...`,
//! acting for the tenant: a publish is the tenant's (its quotas apply).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;

use super::client::{tenant_path, Client, ClientError};
use super::{output, ClientArgs, Format};
use crate::realtime::{PublishRequest, Published, PublishedTable, TableRequest};

#[derive(Debug, Subcommand)]
pub enum RealtimeCommand {
    /// Print a tenant's events as they are published (one JSON object a line) until
    /// interrupted or the stream ends (the tenant was suspended).
    Tail(TailArgs),
    /// Publish one event as the tenant.
    Publish(PublishArgs),
    /// Publish a table's inserts, updates and deletes on channel table.<name>.
    Table(TableArgs),
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Tenant name or id.
    pub tenant: String,
    /// A channel, a prefix (orders.*) or * (all); repeat for several.
    #[arg(long = "channel", required = true)]
    pub channels: Vec<String>,
    /// Start after this event id (also replays the kept history after it).
    #[arg(long)]
    pub after: Option<i64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Tenant name or id.
    pub tenant: String,
    /// The channel: dot-separated words of letters, digits, _ and - (orders.eu).
    #[arg(long)]
    pub channel: String,
    /// The payload: any JSON value, e.g. '{"id":1}'.
    pub payload: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct TableArgs {
    /// Tenant name or id.
    pub tenant: String,
    /// The tenant's table.
    pub table: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Prints each `data:` line of the stream as it arrives.
async fn tail(client: &Client, a: &TailArgs) -> Result<(), ClientError> {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for c in &a.channels {
        q.append_pair("channel", c);
    }
    let path = tenant_path(&a.tenant, &format!("/realtime/stream?{}", q.finish()));
    let after = a.after.map(|n| n.to_string());
    let headers: Vec<(&str, &str)> = after
        .as_deref()
        .map(|v| ("last-event-id", v))
        .into_iter()
        .collect();
    let mut res = client.open(&path, &headers).await?;
    let mut buf = String::new();
    while let Some(bytes) = res.chunk().await.map_err(ClientError::Decode)? {
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buf.find('\n') {
            let line: String = buf.drain(..=end).collect();
            if let Some(data) = line.trim_end().strip_prefix("data:") {
                println!("{}", data.trim_start());
            }
        }
    }
    Ok(())
}

pub async fn run(cmd: RealtimeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RealtimeCommand::Tail(a) => {
            let res = tail(&a.client.client(), &a).await;
            output::finish(res, a.client.output, |_| {})
        }
        RealtimeCommand::Publish(a) => {
            let payload: serde_json::Value = match serde_json::from_str(&a.payload) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("error: payload is not JSON ({e}); e.g. '{{\"id\":1}}'");
                    return Ok(ExitCode::from(2));
                }
            };
            let body = PublishRequest {
                channel: a.channel.clone(),
                payload,
            };
            let res: Result<Published, _> = a
                .client
                .client()
                .call(
                    Method::POST,
                    &tenant_path(&a.tenant, "/realtime/publish"),
                    Some(&body),
                    &[],
                )
                .await;
            output::finish(res, a.client.output, |p| {
                println!("published event {} on {}", p.id, p.channel)
            })
        }
        RealtimeCommand::Table(a) => {
            let body = TableRequest {
                table: a.table.clone(),
            };
            let res: Result<PublishedTable, _> = a
                .client
                .client()
                .call(
                    Method::POST,
                    &tenant_path(&a.tenant, "/realtime/tables"),
                    Some(&body),
                    &[],
                )
                .await;
            let format: Format = a.client.output;
            output::finish(res, format, |t| {
                println!("{}'s changes are published on {}", t.table, t.channel)
            })
        }
    }
}
