//! `berqenas audit list|verify`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use reqwest::Method;

use super::client::{Client, ClientError};
use super::{output, ClientArgs, Format};
use crate::audit::chain::Verification;
use crate::audit::query::AuditPage;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Show the audit trail, newest first.
    List(ListArgs),
    /// Recompute the hash chain; report the first broken link (exit 1) or OK.
    Verify(ClientArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this tenant's rows (name or id).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this action, e.g. tenant_suspended.
    #[arg(long)]
    pub action: Option<String>,
    /// Only rows at or after: an RFC 3339 time, a date, or a duration back (24h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Page size (1-1000).
    #[arg(long)]
    pub limit: Option<i64>,
    /// Continue with older rows after this cursor (from a previous page).
    #[arg(long)]
    pub cursor: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl Client {
    pub async fn audit(
        &self,
        tenant: Option<&str>,
        action: Option<&str>,
        since: Option<&str>,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<AuditPage, ClientError> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        let limit = limit.map(|l| l.to_string());
        for (k, v) in [
            ("tenant", tenant),
            ("action", action),
            ("since", since),
            ("limit", limit.as_deref()),
            ("cursor", cursor),
        ] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        let q = q.finish();
        let path = if q.is_empty() {
            "/api/v1/audit".to_string()
        } else {
            format!("/api/v1/audit?{q}")
        };
        self.call::<(), _>(Method::GET, &path, None, &[]).await
    }

    pub async fn verify_audit(&self) -> Result<Verification, ClientError> {
        self.call::<(), _>(Method::GET, "/api/v1/audit/verify", None, &[])
            .await
    }
}

fn entries_table(page: &AuditPage) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec!["ID", "AT", "ACTOR", "ACTION", "TENANT", "DETAILS"]);
    for e in &page.entries {
        let mut details = e.details.to_string();
        if details.chars().count() > 80 {
            details = details.chars().take(77).collect::<String>() + "...";
        }
        table.add_row(vec![
            e.id.to_string(),
            e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            e.actor.clone(),
            e.action.clone(),
            e.tenant_name.clone().unwrap_or_default(),
            details,
        ]);
    }
    println!("{table}");
}

pub async fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::List(a) => {
            let res = a
                .client
                .client()
                .audit(
                    a.tenant.as_deref(),
                    a.action.as_deref(),
                    a.since.as_deref(),
                    a.limit,
                    a.cursor.as_deref(),
                )
                .await;
            output::finish(res, a.client.output, |page| {
                entries_table(page);
                output::more(page.next_cursor.as_deref());
            })
        }
        AuditCommand::Verify(a) => {
            let res = a.client().verify_audit().await;
            let broken = matches!(&res, Ok(v) if !v.ok);
            let code = output::finish(res, a.output, |v| match &v.broken {
                None => println!("OK: the audit chain holds ({} rows)", v.rows),
                Some(b) => println!(
                    "BROKEN at row {}: {} ({} rows verified before it)",
                    b.id, b.problem, v.rows
                ),
            })?;
            if broken {
                if a.output == Format::Json {
                    eprintln!("the audit chain is broken");
                }
                return Ok(ExitCode::FAILURE);
            }
            Ok(code)
        }
    }
}
