//! `berqenas tenant move NAME --to SERVER [--to-isolation MODE] [--grace 10m]
//! [--watch]`: a tenant moved online to another server (docs/moves.md).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use reqwest::Method;

use super::client::{Client, ClientError};
use super::{output, ClientArgs, Format};
use crate::workflows::operations::Operation;

#[derive(Debug, Args)]
pub struct MoveArgs {
    /// Tenant name or id.
    pub name: String,
    /// The server to move it to (`berqenas server list`).
    #[arg(long = "to", value_name = "SERVER")]
    pub to: Option<String>,
    /// The isolation mode it ends in: schema and database mode move into each other;
    /// into and out of shared mode too, on its server or onto another [default: its
    /// own mode: with `--to`, a shared-mode tenant moves into that server's pool].
    #[arg(long, value_parser = ["schema", "database", "shared"])]
    pub to_isolation: Option<String>,
    /// How long the source copy is kept after the cutover (`10m`, `1h`; `0`: dropped
    /// at once) [default: 10m]
    #[arg(long = "move-grace", alias = "grace", value_name = "DURATION")]
    pub grace: Option<String>,
    /// Follow the move: copy progress (tables, lag), the cutover, and the new DSN;
    /// exits 1 if it failed.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl Client {
    pub async fn move_tenant(
        &self,
        name: &str,
        body: &serde_json::Value,
    ) -> Result<Operation, ClientError> {
        let n: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
        self.call(
            Method::POST,
            &format!("/api/v1/tenants/{n}/move"),
            Some(body),
            &[],
        )
        .await
    }
}

pub async fn run(a: MoveArgs) -> anyhow::Result<ExitCode> {
    let format = a.client.output;
    let client = a.client.client();
    let mut body = serde_json::Map::new();
    for (k, v) in [
        ("to_server", a.to),
        ("to_isolation", a.to_isolation),
        ("grace", a.grace),
    ] {
        if let Some(v) = v {
            body.insert(k.into(), v.into());
        }
    }
    let started = client.move_tenant(&a.name, &body.into()).await;
    if !a.watch {
        return output::finish(started, format, |op| {
            println!("move of {} started: operation {}", op.tenant.name, op.id);
            println!("follow it: berqenas operation get {} --watch", op.id);
        });
    }
    let op = match started {
        Ok(op) => op,
        Err(e) => return output::finish::<Operation>(Err(e), format, |_| {}),
    };
    watch(&client, op, format).await
}

/// The value of `key=` in a step's summary.
fn field(summary: &str, key: &str) -> Option<String> {
    summary
        .split(", ")
        .find_map(|p| p.strip_prefix(&format!("{key}=")))
        .map(String::from)
}

/// Polls until the cutover is done (the `login` step applied) or the move failed;
/// prints the copy's progress as it changes, then the new DSN.
async fn watch(client: &Client, mut op: Operation, format: Format) -> anyhow::Result<ExitCode> {
    let mut last = String::new();
    if format == Format::Table {
        println!("moving {} (operation {})", op.tenant.name, op.id);
    }
    loop {
        let step = |name: &str| op.steps.iter().find(|s| s.name == name).cloned();
        if format == Format::Table {
            for s in &op.steps {
                let line = format!("{} {}", s.name, s.state);
                let shown = match (&s.summary, s.name.as_str(), s.state.as_str()) {
                    // Into or out of shared mode: the bulk with the writes on, then
                    // what changed since with them blocked.
                    (Some(sum), "precopy", _) => {
                        let ms = field(sum, "ms").unwrap_or_default();
                        match field(sum, "bulk_ms") {
                            Some(bulk) => format!(
                                "precopy: the rows copied in {bulk} ms, then what changed meanwhile: {ms} ms in all (writes still on)"
                            ),
                            None => format!("precopy: the rows copied in {ms} ms (writes still on)"),
                        }
                    }
                    (Some(sum), "copy", _) if field(sum, "ms").is_some() => {
                        let ms = field(sum, "ms").unwrap_or_default();
                        format!("copy: what changed since, copied in {ms} ms (writes blocked)")
                    }
                    (Some(sum), "copy", _) => {
                        let tables = field(sum, "tables").unwrap_or_default();
                        let copied = field(sum, "copied").unwrap_or_default();
                        let lag = field(sum, "lag_bytes").unwrap_or_else(|| "-".into());
                        format!("copy: {copied}/{tables} tables copied, lag {lag} bytes")
                    }
                    _ if s.state == "pending" => continue,
                    _ => line,
                };
                if !last.contains(&format!("|{shown}|")) {
                    println!("  {shown}");
                    last.push_str(&format!("|{shown}|"));
                }
            }
        }
        let cut_over = step("login").is_some_and(|s| s.state == "applied");
        if cut_over || op.state != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        op = match client.operation(&op.id.to_string()).await {
            Ok(op) => op,
            Err(e) => return output::finish::<Operation>(Err(e), format, |_| {}),
        };
    }
    let login = op.steps.iter().find(|s| s.name == "login");
    let moved = login.is_some_and(|s| s.state == "applied");
    match format {
        Format::Json => output::print_json(&op)?,
        Format::Table => {
            if moved {
                // A summary never shows a `dsn` (operations::summary hides the key):
                // the address is put together from its parts.
                let sum = login.and_then(|s| s.summary.as_deref()).unwrap_or_default();
                let part = |k: &str| field(sum, k).unwrap_or_else(|| "?".into());
                println!(
                    "moved: the tenant is now at {}:{}, database {} (same user and password)",
                    part("host"),
                    part("port"),
                    part("database")
                );
                if let Some(r) = op.steps.iter().find(|s| s.name == "retire") {
                    if let Some(at) = r
                        .summary
                        .as_deref()
                        .and_then(|s| field(s, "drop_source_at"))
                    {
                        println!("the source copy is dropped at {at}");
                    }
                }
            } else {
                println!("{}", op.state);
                if let Some(e) = &op.error {
                    println!("error: {e}");
                }
            }
        }
    }
    Ok(if moved {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
