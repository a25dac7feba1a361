//! `berqenas webhook add|list|get|remove|ping|deliveries|replay|rotate-secret`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use reqwest::Method;

use super::client::{Client, ClientError};
use super::{output, ClientArgs};
use crate::events::webhooks::{
    CreateWebhook, Delivery, DeliveryList, NewWebhook, ReplayRange, Replayed, RotateSecret,
    UpdateWebhook, Webhook, WebhookList,
};
use crate::secrets::ExposeSecret;

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register an endpoint; its signing secret (whsec_...) is printed this once.
    Add(AddArgs),
    /// List the endpoints (never their secrets).
    List(ListArgs),
    /// Show one endpoint.
    Get(IdArgs),
    /// Enable or disable an endpoint, or change its URL, events or description.
    Update(UpdateArgs),
    /// Remove an endpoint and its deliveries.
    Remove(IdArgs),
    /// Send a webhook.ping event to this endpoint only.
    Ping(IdArgs),
    /// An endpoint's deliveries, newest first: attempts, status codes, latency, next retry.
    Deliveries(DeliveriesArgs),
    /// Send one delivery again (--delivery), or every matching event since a time.
    Replay(ReplayArgs),
    /// A new secret, printed this once; the old one keeps signing until --overlap ends.
    RotateSecret(RotateArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The endpoint's absolute http(s) URL.
    pub url: String,
    /// Event types or patterns, comma-separated: tenant.created,quota.*  (* for all)
    #[arg(long, value_delimiter = ',', required = true)]
    pub events: Vec<String>,
    /// What the endpoint is for.
    #[arg(long)]
    pub description: Option<String>,
    /// Register it disabled (nothing is sent until it is enabled).
    #[arg(long)]
    pub disabled: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The endpoint's id.
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The endpoint's id.
    pub id: String,
    #[arg(long)]
    pub url: Option<String>,
    /// Event types or patterns, comma-separated (replaces the list).
    #[arg(long, value_delimiter = ',')]
    pub events: Option<Vec<String>>,
    /// A new description ("" removes it).
    #[arg(long)]
    pub description: Option<String>,
    /// Enable it (also after a 410 disabled it).
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    /// Disable it: nothing is sent until it is enabled again.
    #[arg(long)]
    pub disable: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    /// The endpoint's id.
    pub id: String,
    /// Only deliveries in this state: pending, delivered or dead.
    #[arg(long)]
    pub state: Option<String>,
    /// At most this many (1 to 500).
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The endpoint's id.
    pub id: String,
    /// Send this delivery again.
    #[arg(long, conflicts_with_all = ["since", "until"], required_unless_present = "since")]
    pub delivery: Option<String>,
    /// Send every matching event from this time (RFC 3339, e.g. 2026-01-31T12:00:00Z).
    #[arg(long)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// ... up to this time [default: now].
    #[arg(long)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The endpoint's id.
    pub id: String,
    /// How long deliveries are signed with the old secret too [default: 24h].
    #[arg(long)]
    pub overlap: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn path(id: &str, rest: &str) -> String {
    let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    format!("/api/v1/webhooks/{id}{rest}")
}

impl Client {
    pub async fn add_webhook(&self, req: &CreateWebhook) -> Result<NewWebhook, ClientError> {
        self.call(Method::POST, "/api/v1/webhooks", Some(req), &[])
            .await
    }

    pub async fn webhooks(&self) -> Result<WebhookList, ClientError> {
        self.call::<(), _>(Method::GET, "/api/v1/webhooks", None, &[])
            .await
    }

    pub async fn webhook(&self, id: &str) -> Result<Webhook, ClientError> {
        self.call::<(), _>(Method::GET, &path(id, ""), None, &[])
            .await
    }

    pub async fn update_webhook(
        &self,
        id: &str,
        req: &UpdateWebhook,
    ) -> Result<Webhook, ClientError> {
        self.call(Method::PATCH, &path(id, ""), Some(req), &[])
            .await
    }

    pub async fn remove_webhook(&self, id: &str) -> Result<Webhook, ClientError> {
        self.call::<(), _>(Method::DELETE, &path(id, ""), None, &[])
            .await
    }

    pub async fn ping_webhook(&self, id: &str) -> Result<Delivery, ClientError> {
        self.call::<(), _>(Method::POST, &path(id, "/ping"), None, &[])
            .await
    }

    pub async fn webhook_deliveries(
        &self,
        id: &str,
        state: Option<&str>,
        limit: i64,
    ) -> Result<DeliveryList, ClientError> {
        let mut q = format!("?limit={limit}");
        if let Some(s) = state {
            q.push_str("&state=");
            q.extend(url::form_urlencoded::byte_serialize(s.as_bytes()));
        }
        self.call::<(), _>(
            Method::GET,
            &path(id, &format!("/deliveries{q}")),
            None,
            &[],
        )
        .await
    }

    pub async fn replay_delivery(&self, id: &str, delivery: &str) -> Result<Delivery, ClientError> {
        let d: String = url::form_urlencoded::byte_serialize(delivery.as_bytes()).collect();
        self.call::<(), _>(
            Method::POST,
            &path(id, &format!("/deliveries/{d}/replay")),
            None,
            &[],
        )
        .await
    }

    pub async fn replay_range(&self, id: &str, req: &ReplayRange) -> Result<Replayed, ClientError> {
        self.call(Method::POST, &path(id, "/replay"), Some(req), &[])
            .await
    }

    pub async fn rotate_webhook_secret(
        &self,
        id: &str,
        req: &RotateSecret,
    ) -> Result<NewWebhook, ClientError> {
        self.call(Method::POST, &path(id, "/rotate-secret"), Some(req), &[])
            .await
    }
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn webhooks_table(hooks: &[&Webhook]) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec!["ID", "URL", "EVENTS", "ENABLED", "DESCRIPTION"]);
    for w in hooks {
        table.add_row(vec![
            w.id.to_string(),
            w.url.clone(),
            w.events.join(","),
            match (&w.enabled, &w.disabled_reason) {
                (true, _) => "yes".to_string(),
                (false, Some(r)) => format!("no: {r}"),
                (false, None) => "no".to_string(),
            },
            w.description.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
}

fn deliveries_table(ds: &[Delivery]) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec![
        "ID", "EVENT", "TYPE", "STATE", "ATTEMPTS", "STATUS", "LATENCY", "NEXT TRY", "ERROR",
    ]);
    for d in ds {
        table.add_row(vec![
            d.id.to_string(),
            d.event_id.to_string(),
            d.event_type.clone(),
            d.state.clone(),
            d.attempts.to_string(),
            d.last_status.map(|s| s.to_string()).unwrap_or_default(),
            d.last_latency_ms
                .map(|l| format!("{l} ms"))
                .unwrap_or_default(),
            time(d.next_attempt_at),
            d.last_error.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
}

fn secret_shown_once(w: &NewWebhook) {
    webhooks_table(&[&w.webhook]);
    println!(
        "\nShown once; store it now:\n  secret: {}",
        w.secret.expose_secret()
    );
    if let Some(until) = w.webhook.previous_secret_expires_at {
        println!(
            "The previous secret signs deliveries too until {}.",
            time(Some(until))
        );
    }
}

pub async fn run(cmd: WebhookCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WebhookCommand::Add(a) => {
            let req = CreateWebhook {
                url: a.url,
                events: a.events,
                description: a.description,
                enabled: Some(!a.disabled),
            };
            let res = a.client.client().add_webhook(&req).await;
            output::finish(res, a.client.output, secret_shown_once)
        }
        WebhookCommand::List(a) => {
            let res = a.client.client().webhooks().await;
            output::finish(res, a.client.output, |l| {
                webhooks_table(&l.webhooks.iter().collect::<Vec<_>>())
            })
        }
        WebhookCommand::Get(a) => {
            let res = a.client.client().webhook(&a.id).await;
            output::finish(res, a.client.output, |w| webhooks_table(&[w]))
        }
        WebhookCommand::Update(a) => {
            let req = UpdateWebhook {
                url: a.url,
                events: a.events,
                description: a.description,
                enabled: match (a.enable, a.disable) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
            };
            let res = a.client.client().update_webhook(&a.id, &req).await;
            output::finish(res, a.client.output, |w| webhooks_table(&[w]))
        }
        WebhookCommand::Remove(a) => {
            let res = a.client.client().remove_webhook(&a.id).await;
            output::finish(res, a.client.output, |w| {
                println!("removed webhook {} ({})", w.id, w.url)
            })
        }
        WebhookCommand::Ping(a) => {
            let res = a.client.client().ping_webhook(&a.id).await;
            output::finish(res, a.client.output, |d| {
                println!(
                    "ping queued: delivery {} (event {}); see `berqenas webhook deliveries {}`",
                    d.id, d.event_id, a.id
                )
            })
        }
        WebhookCommand::Deliveries(a) => {
            let res = a
                .client
                .client()
                .webhook_deliveries(&a.id, a.state.as_deref(), a.limit)
                .await;
            output::finish(res, a.client.output, |l| deliveries_table(&l.deliveries))
        }
        WebhookCommand::Replay(a) => {
            let client = a.client.client();
            match (a.delivery, a.since) {
                (Some(d), _) => {
                    let res = client.replay_delivery(&a.id, &d).await;
                    output::finish(res, a.client.output, |d| {
                        println!("replay queued: delivery {} (event {})", d.id, d.event_id)
                    })
                }
                (None, Some(since)) => {
                    let req = ReplayRange {
                        since,
                        until: a.until,
                    };
                    let res = client.replay_range(&a.id, &req).await;
                    output::finish(res, a.client.output, |r| {
                        println!("{} queued again", output::count(r.queued as i64, "event"))
                    })
                }
                (None, None) => unreachable!("clap requires --delivery or --since"),
            }
        }
        WebhookCommand::RotateSecret(a) => {
            let req = RotateSecret { overlap: a.overlap };
            let res = a.client.client().rotate_webhook_secret(&a.id, &req).await;
            output::finish(res, a.client.output, secret_shown_once)
        }
    }
}
