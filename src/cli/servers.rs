//! `berqenas server add|list|get|drain|undrain|label|pgbouncer|remove`: the PostgreSQL
//! servers tenants are placed on (docs/servers.md).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use reqwest::Method;

use super::client::{Client, ClientError};
use super::{output, ClientArgs};
use crate::workflows::servers::{ServerInfo, ServerList, UpdateServer};

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Register a server: it is checked (reachable, PostgreSQL 15+, a role that may
    /// create roles and databases), hardened, and given its template database.
    Add(AddArgs),
    /// Every server: health (and why one is down), version, tenants, disk, connections.
    List(ListArgs),
    /// One server.
    Get(NameArgs),
    /// No new tenants are placed on it (the ones there stay).
    Drain(NameArgs),
    /// It takes new tenants again.
    Undrain(NameArgs),
    /// Replace its labels.
    Label(LabelArgs),
    /// Set (or forget) the admin console of the PgBouncer in front of it: a
    /// suspension of a tenant there drops the clients PgBouncer pools for it.
    Pgbouncer(PgbouncerArgs),
    /// Remove a server that has no tenants.
    Remove(NameArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// 2 to 32 characters of a-z, 0-9 and '-'.
    #[arg(long)]
    pub name: String,
    /// postgresql://user:password@host:port/database (sealed at rest, never shown
    /// again). Prefer the environment variable: a command line is visible to others.
    #[arg(long, env = "BERQENAS_SERVER_URL", hide_env_values = true)]
    pub url: String,
    /// Labels placement selectors match: region=eu,tier=gold
    #[arg(long)]
    pub labels: Option<String>,
    /// The admin console of the PgBouncer in front of it:
    /// postgresql://admin:password@host:port/pgbouncer (sealed, never shown again).
    #[arg(
        long,
        env = "BERQENAS_SERVER_PGBOUNCER_ADMIN_URL",
        hide_env_values = true
    )]
    pub pgbouncer_admin_url: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct PgbouncerArgs {
    /// The server's name.
    pub name: String,
    /// postgresql://admin:password@host:port/pgbouncer. Prefer the environment
    /// variable: a command line is visible to others.
    #[arg(
        long,
        env = "BERQENAS_SERVER_PGBOUNCER_ADMIN_URL",
        hide_env_values = true,
        required_unless_present = "forget"
    )]
    pub admin_url: Option<String>,
    /// Forget the console (suspensions end sessions through PostgreSQL alone).
    #[arg(long, conflicts_with = "admin_url")]
    pub forget: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The server's name.
    pub name: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct LabelArgs {
    /// The server's name.
    pub name: String,
    /// The new labels: region=eu,tier=gold ("" removes them all).
    #[arg(long)]
    pub labels: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn path(name: &str) -> String {
    let n: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
    format!("/api/v1/servers/{n}")
}

impl Client {
    pub async fn add_server(&self, req: &serde_json::Value) -> Result<ServerInfo, ClientError> {
        self.call(Method::POST, "/api/v1/servers", Some(req), &[])
            .await
    }

    pub async fn servers(&self) -> Result<ServerList, ClientError> {
        self.call::<(), _>(Method::GET, "/api/v1/servers", None, &[])
            .await
    }

    pub async fn server(&self, name: &str) -> Result<ServerInfo, ClientError> {
        self.call::<(), _>(Method::GET, &path(name), None, &[])
            .await
    }

    pub async fn update_server(
        &self,
        name: &str,
        req: &UpdateServer,
    ) -> Result<ServerInfo, ClientError> {
        self.call(Method::PATCH, &path(name), Some(req), &[]).await
    }

    /// A `PATCH` with a field [`UpdateServer`] does not send (a secret).
    pub async fn patch_server(
        &self,
        name: &str,
        req: &serde_json::Value,
    ) -> Result<ServerInfo, ClientError> {
        self.call(Method::PATCH, &path(name), Some(req), &[]).await
    }

    pub async fn remove_server(&self, name: &str) -> Result<ServerInfo, ClientError> {
        self.call::<(), _>(Method::DELETE, &path(name), None, &[])
            .await
    }
}

fn labels(v: &serde_json::Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn servers_table(servers: &[&ServerInfo]) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec![
        "NAME",
        "ADDRESS",
        "HEALTH",
        "VERSION",
        "TENANTS",
        "DISK",
        "CONNECTIONS",
        "LABELS",
    ]);
    for s in servers {
        table.add_row(vec![
            s.name.clone(),
            format!("{}:{}/{}", s.host, s.port, s.database),
            match &s.down_reason {
                Some(r) => format!("down: {r}"),
                None => s.status.clone(),
            },
            s.version.clone().unwrap_or_default(),
            s.tenants.to_string(),
            s.disk_bytes.map(output::human_size).unwrap_or_default(),
            match (s.connections, s.max_connections) {
                (Some(c), Some(m)) => format!("{c}/{m}"),
                _ => String::new(),
            },
            labels(&s.labels),
        ]);
    }
    println!("{table}");
}

/// `region=eu,tier=gold` as the API takes it; a bad pair is refused here, naming it.
fn parse_labels(s: &str) -> anyhow::Result<serde_json::Value> {
    let labels = crate::fleet::placement::parse_labels(s).map_err(anyhow::Error::msg)?;
    Ok(serde_json::to_value(labels)?)
}

pub async fn run(cmd: ServerCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ServerCommand::Add(a) => {
            let mut req = serde_json::json!({"name": a.name, "url": a.url});
            if let Some(l) = &a.labels {
                req["labels"] = parse_labels(l)?;
            }
            if let Some(u) = &a.pgbouncer_admin_url {
                req["pgbouncer_admin_url"] = u.as_str().into();
            }
            let res = a.client.client().add_server(&req).await;
            output::finish(res, a.client.output, |s| servers_table(&[s]))
        }
        ServerCommand::List(a) => {
            let res = a.client.client().servers().await;
            output::finish(res, a.client.output, |l| {
                servers_table(&l.servers.iter().collect::<Vec<_>>())
            })
        }
        ServerCommand::Get(a) => {
            let res = a.client.client().server(&a.name).await;
            output::finish(res, a.client.output, |s| servers_table(&[s]))
        }
        ServerCommand::Drain(a) => set_draining(a, true).await,
        ServerCommand::Undrain(a) => set_draining(a, false).await,
        ServerCommand::Label(a) => {
            let labels = serde_json::from_value(parse_labels(&a.labels)?)?;
            let req = UpdateServer {
                labels: Some(labels),
                ..Default::default()
            };
            let res = a.client.client().update_server(&a.name, &req).await;
            output::finish(res, a.client.output, |s| servers_table(&[s]))
        }
        ServerCommand::Pgbouncer(a) => {
            let url = if a.forget { None } else { a.admin_url };
            let req = serde_json::json!({ "pgbouncer_admin_url": url });
            let res = a.client.client().patch_server(&a.name, &req).await;
            output::finish(res, a.client.output, |s| {
                if s.pgbouncer_admin {
                    println!("server {}: PgBouncer's admin console set", s.name)
                } else {
                    println!("server {}: no PgBouncer admin console", s.name)
                }
            })
        }
        ServerCommand::Remove(a) => {
            let res = a.client.client().remove_server(&a.name).await;
            output::finish(res, a.client.output, |s| {
                println!("removed server {}", s.name)
            })
        }
    }
}

async fn set_draining(a: NameArgs, draining: bool) -> anyhow::Result<ExitCode> {
    let req = UpdateServer {
        draining: Some(draining),
        ..Default::default()
    };
    let res = a.client.client().update_server(&a.name, &req).await;
    output::finish(res, a.client.output, |s| {
        if draining {
            println!(
                "server {} is draining: no new tenants are placed on it",
                s.name
            )
        } else {
            println!("server {} takes new tenants again", s.name)
        }
    })
}
