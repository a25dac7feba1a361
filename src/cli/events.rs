//! `berqenas events list`: the events berqenas emitted, oldest first.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use reqwest::Method;

use super::client::{Client, ClientError};
use super::{output, ClientArgs, Format};
use crate::events::query::EventPage;

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Show events, oldest first (newest last).
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this tenant's events (name or id).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this type (tenant.suspended), a prefix (tenant.*) or *.
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Only events after this one (its seq or id; a previous page's cursor).
    #[arg(long)]
    pub after: Option<String>,
    /// Page size (1-1000).
    #[arg(long)]
    pub limit: Option<i64>,
    /// JSON output (the same as `-o json`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl Client {
    pub async fn events(
        &self,
        tenant: Option<&str>,
        event_type: Option<&str>,
        after: Option<&str>,
        limit: Option<i64>,
    ) -> Result<EventPage, ClientError> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        let limit = limit.map(|l| l.to_string());
        for (k, v) in [
            ("tenant", tenant),
            ("type", event_type),
            ("after", after),
            ("limit", limit.as_deref()),
        ] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        let q = q.finish();
        let path = if q.is_empty() {
            "/api/v1/events".to_string()
        } else {
            format!("/api/v1/events?{q}")
        };
        self.call::<(), _>(Method::GET, &path, None, &[]).await
    }
}

fn events_table(page: &EventPage) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec!["SEQ", "AT", "TYPE", "TENANT", "DATA"]);
    for e in &page.events {
        let mut data = e.event.data.to_string();
        if data.chars().count() > 80 {
            data = data.chars().take(77).collect::<String>() + "...";
        }
        table.add_row(vec![
            e.seq.to_string(),
            e.event.occurred_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            e.event.event_type.clone(),
            e.event
                .tenant
                .as_ref()
                .map(|t| t.name.clone())
                .unwrap_or_default(),
            data,
        ]);
    }
    println!("{table}");
}

pub async fn run(cmd: EventsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EventsCommand::List(a) => {
            let res = a
                .client
                .client()
                .events(
                    a.tenant.as_deref(),
                    a.event_type.as_deref(),
                    a.after.as_deref(),
                    a.limit,
                )
                .await;
            let format = if a.json {
                Format::Json
            } else {
                a.client.output
            };
            output::finish(res, format, |page| {
                events_table(page);
                if let Some(c) = page.next_cursor.as_deref() {
                    eprintln!("more: --after {c}");
                }
            })
        }
    }
}
