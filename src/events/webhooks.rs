//! Webhook endpoints (docs/webhooks.md): create (the `whsec_` secret is shown once),
//! list, change, remove, rotate the secret with an overlap, ping, list deliveries and
//! replay them. Every change is one transaction with its audit row; bad input is
//! refused, naming the field, before anything is written.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{address, matches, signature, NewEvent, TYPES};
use crate::audit;
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
pub use crate::store::webhooks::{Attempt, Delivery, Webhook};
use crate::store::{self, outbox, webhooks as store_wh};

/// The event a ping sends (to the pinged endpoint only).
pub const PING: &str = "webhook.ping";
/// The overlap a rotation gives the previous secret when the request names none.
pub const DEFAULT_OVERLAP: &str = "24h";
pub const MAX_URL: usize = 2048;
pub const MAX_DESCRIPTION: usize = 256;
pub const MAX_PATTERNS: usize = 64;
/// The most events one range replay re-sends.
pub const MAX_REPLAY: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's mistake (the field named), or a missing endpoint; nothing changed.
    #[error("{}", .0.message)]
    Rejected(Problem),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
}

type Result<T, E = Error> = std::result::Result<T, E>;

fn bad(field: &str, message: impl Into<String>) -> Error {
    Error::Rejected(Problem::bad_field(field, message))
}

/// What the server allows (`serve --webhook-allow-private`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    pub allow_private: bool,
}

/// `POST /api/v1/webhooks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Absolute `http` or `https` URL.
    pub url: String,
    /// Event types (`tenant.created`), prefixes (`tenant.*`) or `*`.
    pub events: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// [default: true]
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `PATCH /api/v1/webhooks/{id}`: the fields given change; `enabled: true` clears a
/// `disabled_reason`. An empty description removes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A new endpoint and, this once, its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_...`: shown only here. Verify signatures with it (docs/webhooks.md).
    #[serde(serialize_with = "crate::secrets::serialize_exposed")]
    #[schema(value_type = String)]
    pub secret: SecretString,
}

/// `POST /api/v1/webhooks/{id}/rotate-secret`; the body may be omitted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long deliveries are signed with the previous secret too [default: 24h].
    #[serde(default)]
    pub overlap: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

/// `POST /api/v1/webhooks/{id}/replay`: every event in `[since, until)` that the
/// endpoint's patterns take is sent again, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRange {
    pub since: DateTime<Utc>,
    /// [default: now]
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
}

/// The deliveries a replay queued.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Replayed {
    pub queued: usize,
    pub deliveries: Vec<Uuid>,
}

/// Checks a URL: absolute, http or https, no user or password in it (it would be
/// shown back), and not to a refused address.
async fn valid_url(url: &str, settings: &Settings) -> Result<String> {
    let u = url.trim();
    if u.len() > MAX_URL {
        return Err(bad("url", format!("url is longer than {MAX_URL} bytes")));
    }
    let parsed = url::Url::parse(u)
        .map_err(|e| bad("url", format!("url {u:?} is not an absolute URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(
            "url",
            format!("url must be http or https, not {}", parsed.scheme()),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "url",
            "url must not carry a user or password (deliveries are signed instead)",
        ));
    }
    let Some(host) = parsed.host_str() else {
        return Err(bad("url", "url has no host"));
    };
    let port = parsed.port_or_known_default().unwrap_or(80);
    if let Err(e) = address::check(host, port, settings.allow_private).await {
        return Err(Error::Rejected(Problem {
            kind: Kind::Unprocessable,
            code: "url_not_allowed".into(),
            message: format!("url refused: {e}"),
            field: Some("url".into()),
        }));
    }
    Ok(parsed.to_string())
}

/// Checks the patterns: each a known type, `prefix.*` or `*`; duplicates dropped.
fn valid_events(events: &[String]) -> Result<Vec<String>> {
    if events.is_empty() {
        return Err(bad(
            "events",
            "events must name at least one event type or pattern (\"*\" for all)",
        ));
    }
    if events.len() > MAX_PATTERNS {
        return Err(bad(
            "events",
            format!("events takes at most {MAX_PATTERNS} patterns"),
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for p in events {
        let p = p.trim();
        let ok = p == "*"
            || TYPES.contains(&p)
            || p == PING
            || p.strip_suffix(".*").is_some_and(|prefix| {
                !prefix.is_empty()
                    && prefix.split('.').all(|part| {
                        part.starts_with(|c: char| c.is_ascii_lowercase())
                            && part.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    })
            });
        if !ok {
            return Err(bad(
                "events",
                format!("events: {p:?} is neither a known event type (docs/events.md) nor a pattern like \"tenant.*\" or \"*\""),
            ));
        }
        if !out.iter().any(|o| o == p) {
            out.push(p.to_string());
        }
    }
    Ok(out)
}

fn valid_description(d: Option<&str>) -> Result<Option<String>> {
    let Some(d) = d.map(str::trim) else {
        return Ok(None);
    };
    if d.chars().count() > MAX_DESCRIPTION || d.chars().any(char::is_control) {
        return Err(bad(
            "description",
            format!("description must be at most {MAX_DESCRIPTION} characters without control characters"),
        ));
    }
    Ok((!d.is_empty()).then(|| d.to_string()))
}

/// A path's endpoint id.
pub fn parse_id(field: &str, s: &str) -> Result<Uuid> {
    s.parse()
        .map_err(|_| bad(field, format!("{field} {s:?} is not a webhook id (a UUID)")))
}

fn not_found(id: Uuid) -> Error {
    Error::Rejected(Problem::new(
        Kind::NotFound,
        "webhook_not_found",
        format!("no webhook endpoint {id}"),
    ))
}

async fn endpoint(c: &impl GenericClient, id: Uuid, lock: bool) -> Result<Webhook> {
    match store_wh::get(c, id, lock).await {
        Err(store::Error::NotFound) => Err(not_found(id)),
        other => Ok(other?),
    }
}

fn audited(w: &Webhook) -> serde_json::Value {
    json!({"webhook_id": w.id, "url": w.url, "events": w.events, "enabled": w.enabled})
}

async fn record(
    c: &impl GenericClient,
    actor: &str,
    action: &str,
    details: serde_json::Value,
) -> Result<()> {
    audit::record(
        c,
        &audit::Entry {
            actor,
            action,
            tenant_id: None,
            tenant_name: None,
            operation_id: None,
            details,
        },
    )
    .await?;
    Ok(())
}

/// Creates an endpoint; its secret is returned this once and stored sealed.
pub async fn create(
    p: &Platform,
    s: &Settings,
    req: &CreateWebhook,
    actor: &str,
) -> Result<NewWebhook> {
    let events = valid_events(&req.events)?;
    let description = valid_description(req.description.as_deref())?;
    let url = valid_url(&req.url, s).await?;
    let secret = signature::generate();
    let mut c = p.pool.get().await?;
    let tx = c.transaction().await?;
    let webhook = store_wh::insert(
        &tx,
        Uuid::now_v7(),
        &store_wh::EndpointFields {
            url: &url,
            events: &events,
            description: description.as_deref(),
            enabled: req.enabled.unwrap_or(true),
            disabled_reason: None,
        },
        &p.key.seal(secret.expose_secret().as_bytes()),
    )
    .await?;
    record(&tx, actor, "webhook_created", audited(&webhook)).await?;
    tx.commit().await?;
    Ok(NewWebhook { webhook, secret })
}

pub async fn list(p: &Platform) -> Result<WebhookList> {
    let c = p.pool.get().await?;
    Ok(WebhookList {
        webhooks: store_wh::list(&c).await?,
    })
}

pub async fn get(p: &Platform, id: &str) -> Result<Webhook> {
    let id = parse_id("id", id)?;
    endpoint(&p.pool.get().await?, id, false).await
}

/// Changes the fields given.
pub async fn update(
    p: &Platform,
    s: &Settings,
    id: &str,
    req: &UpdateWebhook,
    actor: &str,
) -> Result<Webhook> {
    let id = parse_id("id", id)?;
    let events = req.events.as_deref().map(valid_events).transpose()?;
    let description = req
        .description
        .as_deref()
        .map(|d| valid_description(Some(d)))
        .transpose()?;
    let url = match &req.url {
        Some(u) => Some(valid_url(u, s).await?),
        None => None,
    };
    let mut c = p.pool.get().await?;
    let tx = c.transaction().await?;
    let old = endpoint(&tx, id, true).await?;
    let enabled = req.enabled.unwrap_or(old.enabled);
    let reason = match (enabled, req.enabled) {
        (true, _) => None,
        (false, Some(false)) => Some("disabled by an operator".to_string()),
        (false, _) => old.disabled_reason.clone(),
    };
    let new = store_wh::update(
        &tx,
        id,
        &store_wh::EndpointFields {
            url: url.as_deref().unwrap_or(&old.url),
            events: events.as_deref().unwrap_or(&old.events),
            description: match &description {
                Some(d) => d.as_deref(),
                None => old.description.as_deref(),
            },
            enabled,
            disabled_reason: reason.as_deref(),
        },
    )
    .await?;
    record(&tx, actor, "webhook_updated", audited(&new)).await?;
    tx.commit().await?;
    Ok(new)
}

/// Removes an endpoint with its deliveries (nothing more is sent to it).
pub async fn delete(p: &Platform, id: &str, actor: &str) -> Result<Webhook> {
    let id = parse_id("id", id)?;
    let mut c = p.pool.get().await?;
    let tx = c.transaction().await?;
    let gone = match store_wh::delete(&tx, id).await {
        Err(store::Error::NotFound) => return Err(not_found(id)),
        other => other?,
    };
    record(&tx, actor, "webhook_deleted", audited(&gone)).await?;
    tx.commit().await?;
    Ok(gone)
}

/// A new secret, shown this once; deliveries carry a signature with each secret until
/// the overlap ends.
pub async fn rotate(p: &Platform, id: &str, req: &RotateSecret, actor: &str) -> Result<NewWebhook> {
    let id = parse_id("id", id)?;
    let overlap =
        crate::duration::parse("overlap", req.overlap.as_deref().unwrap_or(DEFAULT_OVERLAP))
            .map_err(Error::Rejected)?;
    let secret = signature::generate();
    let mut c = p.pool.get().await?;
    let tx = c.transaction().await?;
    endpoint(&tx, id, true).await?;
    let webhook = store_wh::rotate(
        &tx,
        id,
        &p.key.seal(secret.expose_secret().as_bytes()),
        overlap.as_secs_f64(),
    )
    .await?;
    let mut details = audited(&webhook);
    details["previous_secret_expires_at"] = json!(webhook.previous_secret_expires_at);
    record(&tx, actor, "webhook_secret_rotated", details).await?;
    tx.commit().await?;
    Ok(NewWebhook { webhook, secret })
}

/// Queues a `webhook.ping` event for this endpoint alone; returns its delivery.
pub async fn ping(p: &Platform, id: &str, actor: &str) -> Result<Delivery> {
    let id = parse_id("id", id)?;
    let mut c = p.pool.get().await?;
    let tx = c.transaction().await?;
    let w = endpoint(&tx, id, false).await?;
    let event = outbox::append(
        &tx,
        &NewEvent {
            event_type: PING,
            tenant_id: None,
            tenant_name: None,
            data: json!({"webhook_id": w.id}),
        },
    )
    .await?;
    // Not fanned out: it is for this endpoint only.
    store_wh::fanned_out(&tx, &[event.seq]).await?;
    let ids = store_wh::insert_deliveries(
        &tx,
        &[store_wh::NewDelivery {
            endpoint_id: id,
            event: &event,
        }],
        false,
        None,
    )
    .await?;
    record(
        &tx,
        actor,
        "webhook_pinged",
        json!({"webhook_id": id, "event_id": event.id}),
    )
    .await?;
    tx.commit().await?;
    one_delivery(p, &ids).await
}

async fn one_delivery(p: &Platform, ids: &[Uuid]) -> Result<Delivery> {
    let c = p.pool.get().await?;
    store_wh::deliveries_by_id(&c, ids)
        .await?
        .into_iter()
        .next()
        .ok_or(Error::Store(store::Error::NotFound))
}

/// `GET /api/v1/webhooks/{id}/deliveries?state=&limit=`.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    /// `pending`, `delivered` or `dead`.
    pub state: Option<String>,
    /// At most this many, newest first [default: 50, at most 500].
    pub limit: Option<i64>,
}

pub async fn deliveries(p: &Platform, id: &str, q: &DeliveryQuery) -> Result<DeliveryList> {
    let id = parse_id("id", id)?;
    if let Some(s) = q.state.as_deref() {
        if !matches!(s, "pending" | "delivered" | "dead") {
            return Err(bad("state", "state must be pending, delivered or dead"));
        }
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(bad("limit", "limit must be 1 to 500"));
    }
    let c = p.pool.get().await?;
    endpoint(&c, id, false).await?;
    Ok(DeliveryList {
        deliveries: store_wh::deliveries(&c, id, q.state.as_deref(), limit).await?,
    })
}

/// Sends one delivery's event again (a new delivery, same `webhook-id`).
pub async fn replay_one(p: &Platform, id: &str, delivery: &str, actor: &str) -> Result<Delivery> {
    let id = parse_id("id", id)?;
    let delivery_id: Uuid = delivery.parse().map_err(|_| {
        bad(
            "delivery_id",
            format!("delivery_id {delivery:?} is not a UUID"),
        )
    })?;
    let mut c = p.pool.get().await?;
    let tx = c.transaction().await?;
    endpoint(&tx, id, true).await?;
    let event = match store_wh::delivery_event(&tx, id, delivery_id).await {
        Err(store::Error::NotFound) => {
            return Err(Error::Rejected(Problem::new(
                Kind::NotFound,
                "delivery_not_found",
                format!("webhook {id} has no delivery {delivery_id}"),
            )))
        }
        other => other?,
    };
    let ids = store_wh::insert_deliveries(
        &tx,
        &[store_wh::NewDelivery {
            endpoint_id: id,
            event: &event,
        }],
        true,
        Some(delivery_id),
    )
    .await?;
    record(
        &tx,
        actor,
        "webhook_replayed",
        json!({"webhook_id": id, "delivery_id": delivery_id, "event_id": event.id}),
    )
    .await?;
    tx.commit().await?;
    one_delivery(p, &ids).await
}

/// Sends again every event of `[since, until)` the endpoint's patterns take.
pub async fn replay_range(
    p: &Platform,
    id: &str,
    req: &ReplayRange,
    actor: &str,
) -> Result<Replayed> {
    let id = parse_id("id", id)?;
    let until = req.until.unwrap_or_else(Utc::now);
    if until <= req.since {
        return Err(bad("until", "until must be later than since"));
    }
    let mut c = p.pool.get().await?;
    let tx = c.transaction().await?;
    let w = endpoint(&tx, id, true).await?;
    let events = store_wh::events_between(&tx, req.since, until, MAX_REPLAY + 1).await?;
    if events.len() as i64 > MAX_REPLAY {
        return Err(bad(
            "since",
            format!("more than {MAX_REPLAY} events in that range: replay a shorter one"),
        ));
    }
    let new: Vec<_> = events
        .iter()
        .filter(|e| w.events.iter().any(|pat| matches(pat, &e.event_type)))
        .map(|e| store_wh::NewDelivery {
            endpoint_id: id,
            event: e,
        })
        .collect();
    let ids = store_wh::insert_deliveries(&tx, &new, true, None).await?;
    record(
        &tx,
        actor,
        "webhook_replayed",
        json!({"webhook_id": id, "since": req.since, "until": until, "queued": ids.len()}),
    )
    .await?;
    tx.commit().await?;
    Ok(Replayed {
        queued: ids.len(),
        deliveries: ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_known_types_prefixes_or_everything() {
        assert!(valid_events(&["tenant.*".into(), "*".into(), "quota.exceeded".into()]).is_ok());
        assert_eq!(
            valid_events(&["tenant.*".into(), "tenant.*".into()]).unwrap(),
            vec!["tenant.*"]
        );
        for bad in [
            "tenant.nope",
            "tenant*",
            ".*",
            "Tenant.*",
            "",
            "tenant.created.x",
        ] {
            let e = valid_events(&[bad.into()]).unwrap_err();
            assert!(
                matches!(e, Error::Rejected(ref p) if p.field.as_deref() == Some("events")),
                "{bad}"
            );
        }
        assert!(valid_events(&[]).is_err());
    }

    #[tokio::test]
    async fn urls_must_be_absolute_http_and_public() {
        let s = Settings::default();
        for (u, code) in [
            ("ftp://example.com/x", "invalid_field"),
            ("/relative", "invalid_field"),
            ("http://user:pw@example.com/", "invalid_field"),
            ("http://127.0.0.1:9/", "url_not_allowed"),
            ("http://10.0.0.1/", "url_not_allowed"),
            ("http://[::1]/", "url_not_allowed"),
        ] {
            match valid_url(u, &s).await {
                Err(Error::Rejected(p)) => {
                    assert_eq!(p.field.as_deref(), Some("url"), "{u}");
                    assert_eq!(p.code, code, "{u}");
                }
                other => panic!("{u}: {other:?}"),
            }
        }
        let allow = Settings {
            allow_private: true,
        };
        assert!(valid_url("http://127.0.0.1:9/hook", &allow).await.is_ok());
    }
}
