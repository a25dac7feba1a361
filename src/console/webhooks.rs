//! Webhooks (`/console/webhooks`): the endpoints, one added (its secret shown once),
//! an endpoint's deliveries with every attempt, and a delivery replayed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use secrecy::ExposeSecret;

use super::{field, html, Failure, Fields, Operator};
use crate::api::AppState;
use crate::events::webhooks::{self as wh, CreateWebhook, DeliveryQuery};

pub async fn list(State(state): State<AppState>, op: Operator) -> Result<Response, Failure> {
    let list = wh::list(&state.platform).await?;
    let mut body = String::from(
        "<h2>Webhooks</h2><table id=\"webhooks\"><thead><tr><th>Endpoint</th><th>Events</th><th>Enabled</th>\
         <th>Description</th><th>Created</th></tr></thead><tbody>",
    );
    for w in &list.webhooks {
        body.push_str(&format!(
            "<tr><td><a href=\"/console/webhooks/{}\" class=\"webhook-link\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            w.id,
            html::esc(&w.url),
            html::esc(&w.events.join(", ")),
            match (&w.enabled, &w.disabled_reason) {
                (true, _) => "yes".to_string(),
                (false, r) => format!("no {}", html::esc(r.as_deref().unwrap_or(""))),
            },
            html::esc(w.description.as_deref().unwrap_or("")),
            html::time(&w.created_at),
        ));
    }
    if list.webhooks.is_empty() {
        body.push_str("<tr><td colspan=\"5\" id=\"no-webhooks\">No endpoints.</td></tr>");
    }
    body.push_str(&format!(
        "</tbody></table><section><h3>Add an endpoint</h3><form method=\"post\" action=\"/console/webhooks\" id=\"webhook-form\">{}\
         <p><label>URL <input name=\"url\" id=\"webhook-url\" type=\"url\" required size=\"50\"></label></p>\
         <p><label>Events <input name=\"events\" id=\"webhook-events\" value=\"*\" size=\"40\"></label> \
         <small>comma-separated: <code>tenant.created</code>, <code>tenant.*</code>, <code>*</code></small></p>\
         <p><label>Description <input name=\"description\" id=\"webhook-description\" maxlength=\"200\"></label></p>\
         <button type=\"submit\" id=\"add-webhook\">Add</button></form></section>",
        html::csrf(&op)
    ));
    Ok(html::page("Webhooks", &op, &body).into_response())
}

pub async fn create(
    State(state): State<AppState>,
    op: Operator,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    let req = CreateWebhook {
        url: field(&form, "url").unwrap_or("").to_string(),
        events: field(&form, "events")
            .unwrap_or("")
            .split(',')
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect(),
        description: field(&form, "description").map(str::to_string),
        enabled: None,
    };
    let w = wh::create(&state.platform, &state.webhooks, &req, &op.actor).await?;
    let body = format!(
        "<h2>Endpoint added</h2><section class=\"secret\"><p><strong>Shown once:</strong> verify each \
         delivery's signature with this secret; berqenas keeps it sealed and never shows it again.</p>\
         <p><code id=\"webhook-secret\">{}</code></p></section>\
         <p><a href=\"/console/webhooks/{}\" id=\"back\">The endpoint's deliveries</a></p>",
        html::esc(w.secret.expose_secret()),
        w.webhook.id,
    );
    Ok((
        StatusCode::CREATED,
        html::page("Endpoint added", &op, &body),
    )
        .into_response())
}

pub async fn show(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let w = wh::get(&state.platform, &id).await?;
    let d = wh::deliveries(
        &state.platform,
        &id,
        &DeliveryQuery {
            state: None,
            limit: Some(50),
        },
    )
    .await?;
    let mut body = format!(
        "<h2>Endpoint <code id=\"webhook-url-shown\">{}</code></h2><section><dl><dt>Events</dt><dd>{}</dd>\
         <dt>Enabled</dt><dd>{}</dd><dt>Created</dt><dd>{}</dd></dl>{}</section>\
         <h3>Deliveries</h3><table id=\"deliveries\"><thead><tr><th>Event</th><th>State</th><th>Attempts</th>\
         <th>Last status</th><th>Created</th><th>Next try</th><th></th></tr></thead><tbody>",
        html::esc(&w.url),
        html::esc(&w.events.join(", ")),
        if w.enabled { "yes" } else { "no" },
        html::time(&w.created_at),
        html::button(&op, &format!("/console/webhooks/{}/ping", w.id), "ping", "Send a ping"),
    );
    for x in &d.deliveries {
        let attempts: Vec<String> = x
            .attempt_log
            .iter()
            .map(|a| {
                format!(
                    "{} → {} in {} ms{}",
                    html::time(&a.at),
                    a.status
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "no answer".into()),
                    a.latency_ms,
                    a.error
                        .as_deref()
                        .map(|e| format!(" ({})", html::esc(e)))
                        .unwrap_or_default()
                )
            })
            .collect();
        body.push_str(&format!(
            "<tr class=\"delivery-{1}\"><td>{0}{2}</td><td>{1}</td><td title=\"{3}\">{4}</td><td>{5}</td><td>{6}</td><td>{7}</td><td>{8}</td></tr>",
            html::esc(&x.event_type),
            html::esc(&x.state),
            if x.replay { " (replay)" } else { "" },
            attempts.join("; "),
            x.attempts,
            x.last_status.map(|s| s.to_string()).unwrap_or_default(),
            html::time(&x.created_at),
            html::opt_time(&x.next_attempt_at),
            html::button(
                &op,
                &format!("/console/webhooks/{}/deliveries/{}/replay", w.id, x.id),
                &format!("replay-{}", &x.id.to_string()[..8]),
                "Replay"
            ),
        ));
    }
    if d.deliveries.is_empty() {
        body.push_str("<tr><td colspan=\"7\" id=\"no-deliveries\">No deliveries yet.</td></tr>");
    }
    body.push_str("</tbody></table>");
    Ok(html::page("Webhook", &op, &body).into_response())
}

pub async fn ping(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    wh::ping(&state.platform, &id, &op.actor).await?;
    state.relay_wake.notify_one();
    Ok(Redirect::to(&format!("/console/webhooks/{id}")).into_response())
}

pub async fn replay(
    State(state): State<AppState>,
    op: Operator,
    Path((id, delivery)): Path<(String, String)>,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    wh::replay_one(&state.platform, &id, &delivery, &op.actor).await?;
    state.relay_wake.notify_one();
    Ok(Redirect::to(&format!("/console/webhooks/{id}")).into_response())
}
