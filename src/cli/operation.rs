//! `berqenas operation get|list`: what an operation did, step by step; `--watch`
//! follows a running one until it closes.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use reqwest::Method;

use super::client::{Client, ClientError};
use super::{output, ClientArgs, Format};
use crate::workflows::operations::{Operation, OperationPage, OperationStep};

#[derive(Debug, Subcommand)]
pub enum OperationCommand {
    /// Show an operation and its steps.
    Get(GetArgs),
    /// List operations, newest first.
    List(ListArgs),
    /// Abort a running operation before its point of no return (a move during its
    /// copy, a create waiting on an onboarding step): it is undone at its next step,
    /// within seconds. Follow it with `operation get ID --watch`.
    Abort(AbortArgs),
}

#[derive(Debug, Args)]
pub struct AbortArgs {
    /// The operation's id.
    pub id: String,
    /// Print the API's JSON (as `-o json`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The operation's id.
    pub id: String,
    /// Poll until the operation has finished, printing each step as it changes; exits 1
    /// if it failed.
    #[arg(long)]
    pub watch: bool,
    /// Print the API's JSON (as `-o json`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this tenant's operations (name or id).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only operations in this state.
    #[arg(long, value_parser = crate::workflows::operations::STATES)]
    pub state: Option<String>,
    /// Page size (1-1000).
    #[arg(long)]
    pub limit: Option<i64>,
    /// Continue with older operations after this cursor (from a previous page).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Print the API's JSON (as `-o json`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl Client {
    pub async fn operation(&self, id: &str) -> Result<Operation, ClientError> {
        let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        self.call::<(), _>(Method::GET, &format!("/api/v1/operations/{id}"), None, &[])
            .await
    }

    pub async fn abort_operation(&self, id: &str) -> Result<Operation, ClientError> {
        let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        self.call::<(), _>(
            Method::POST,
            &format!("/api/v1/operations/{id}/abort"),
            None,
            &[],
        )
        .await
    }

    pub async fn operations(
        &self,
        tenant: Option<&str>,
        state: Option<&str>,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<OperationPage, ClientError> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        let limit = limit.map(|l| l.to_string());
        for (k, v) in [
            ("tenant", tenant),
            ("state", state),
            ("limit", limit.as_deref()),
            ("cursor", cursor),
        ] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        let q = q.finish();
        let path = if q.is_empty() {
            "/api/v1/operations".to_string()
        } else {
            format!("/api/v1/operations?{q}")
        };
        self.call::<(), _>(Method::GET, &path, None, &[]).await
    }
}

fn format_of(json: bool, client: &ClientArgs) -> Format {
    if json {
        Format::Json
    } else {
        client.output
    }
}

pub async fn run(cmd: OperationCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OperationCommand::Get(a) => {
            let format = format_of(a.json, &a.client);
            let client = a.client.client();
            if a.watch {
                return watch(&client, &a.id, format).await;
            }
            output::finish(client.operation(&a.id).await, format, operation_table)
        }
        OperationCommand::Abort(a) => {
            let format = format_of(a.json, &a.client);
            let res = a.client.client().abort_operation(&a.id).await;
            output::finish(res, format, |op| {
                println!(
                    "abort requested: operation {} ({}) on tenant {} is undone at its next step",
                    op.id, op.kind, op.tenant.name
                );
            })
        }
        OperationCommand::List(a) => {
            let format = format_of(a.json, &a.client);
            let res = a
                .client
                .client()
                .operations(
                    a.tenant.as_deref(),
                    a.state.as_deref(),
                    a.limit,
                    a.cursor.as_deref(),
                )
                .await;
            output::finish(res, format, |page| {
                operations_table(&page.operations);
                output::more(page.next_cursor.as_deref());
            })
        }
    }
}

/// Polls until the operation is no longer running; in a table, each step is printed
/// when its state changes (with `-o json`, only the finished operation).
async fn watch(client: &Client, id: &str, format: Format) -> anyhow::Result<ExitCode> {
    let mut seen: Vec<(String, String)> = Vec::new();
    let op = loop {
        let op = match client.operation(id).await {
            Ok(op) => op,
            Err(e) => return output::finish::<Operation>(Err(e), format, |_| {}),
        };
        if format == Format::Table {
            if seen.is_empty() {
                println!(
                    "operation {} ({}) on tenant {}",
                    op.id, op.kind, op.tenant.name
                );
            }
            for s in &op.steps {
                let now = (s.name.clone(), s.state.clone());
                if s.state != "pending" && !seen.contains(&now) {
                    println!("  {}", step_line(s));
                    seen.push(now);
                }
            }
        }
        if op.state != "running" {
            break op;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    match format {
        Format::Json => output::print_json(&op)?,
        Format::Table => {
            println!("{}", op.state);
            if let Some(e) = &op.error {
                println!("error: {e}");
            }
        }
    }
    Ok(if op.state == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn step_line(s: &OperationStep) -> String {
    let at =
        s.at.map(|t| t.format("%H:%M:%S").to_string())
            .unwrap_or_default();
    match &s.summary {
        Some(sum) => format!("{at} {} {} ({sum})", s.name, s.state),
        None => format!("{at} {} {}", s.name, s.state),
    }
}

fn operation_table(op: &Operation) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    let mut rows = vec![
        ("id", op.id.to_string()),
        ("kind", op.kind.clone()),
        ("state", op.state.clone()),
        ("phase", op.phase.clone()),
        ("tenant", op.tenant.name.clone()),
        ("created_at", op.created_at.to_rfc3339()),
        ("updated_at", op.updated_at.to_rfc3339()),
    ];
    if let Some(f) = op.finished_at {
        rows.push(("finished_at", f.to_rfc3339()));
    }
    if let Some(e) = &op.error {
        rows.push(("error", e.clone()));
    }
    for (k, v) in rows {
        table.add_row(vec![k.to_string(), v]);
    }
    println!("{table}");
    let mut steps = Table::new();
    steps.load_preset(UTF8_BORDERS_ONLY);
    steps.set_header(vec!["STEP", "STATE", "AT", "SUMMARY"]);
    for s in &op.steps {
        steps.add_row(vec![
            s.name.clone(),
            s.state.clone(),
            s.at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            s.summary.clone().unwrap_or_default(),
        ]);
    }
    println!("{steps}");
}

fn operations_table(ops: &[Operation]) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec!["ID", "KIND", "TENANT", "STATE", "CREATED", "ERROR"]);
    for op in ops {
        table.add_row(vec![
            op.id.to_string(),
            op.kind.clone(),
            op.tenant.name.clone(),
            op.state.clone(),
            op.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            op.error.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
}
