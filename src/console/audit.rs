//! The audit trail with its filters, and the chain check.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Form;

use super::{html, Failure, Fields, Operator};
use crate::api::AppState;
use crate::audit::query::{self, AuditQuery};

fn get<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

pub async fn list(
    State(state): State<AppState>,
    op: Operator,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, Failure> {
    let aq = AuditQuery {
        tenant: get(&q, "tenant"),
        action: get(&q, "action"),
        since: get(&q, "since"),
        limit: Some(50),
        cursor: get(&q, "cursor"),
    };
    let page = query::page(&state.platform, &aq).await?;
    let mut body = format!(
        "<h2>Audit trail</h2><form method=\"post\" action=\"/console/audit/verify\" class=\"inline\">{}\
         <button type=\"submit\" id=\"verify-chain\">Verify the chain</button></form>\
         <form method=\"get\" action=\"/console/audit\" class=\"filters\" id=\"audit-filters\">\
         <label>Tenant <input name=\"tenant\" id=\"audit-tenant\" value=\"{}\"></label>\
         <label>Action <input name=\"action\" id=\"audit-action\" value=\"{}\" placeholder=\"tenant_suspended\"></label>\
         <label>Since <input name=\"since\" id=\"audit-since\" value=\"{}\" placeholder=\"24h, 7d, 2026-01-31\"></label>\
         <button type=\"submit\" id=\"audit-apply\">Apply</button> <a href=\"/console/audit\">Clear</a></form>\
         <table id=\"audit\"><thead><tr><th>#</th><th>At</th><th>Actor</th><th>Action</th><th>Tenant</th><th>Details</th></tr></thead><tbody>",
        html::csrf(&op),
        html::esc(aq.tenant.unwrap_or("")),
        html::esc(aq.action.unwrap_or("")),
        html::esc(aq.since.unwrap_or("")),
    );
    for e in &page.entries {
        let mut details = e.details.to_string();
        if details.len() > 160 {
            let cut = (0..=160)
                .rev()
                .find(|i| details.is_char_boundary(*i))
                .unwrap_or(0);
            details.truncate(cut);
            details.push('…');
        }
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            e.id,
            html::time(&e.at),
            html::esc(&e.actor),
            html::esc(&e.action),
            html::esc(e.tenant_name.as_deref().unwrap_or("")),
            html::esc(&details),
        ));
    }
    body.push_str("</tbody></table>");
    if let Some(next) = &page.next_cursor {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("tenant", aq.tenant),
            ("action", aq.action),
            ("since", aq.since),
        ] {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        }
        s.append_pair("cursor", next);
        body.push_str(&format!(
            "<p><a href=\"/console/audit?{}\" id=\"audit-older\">Older</a></p>",
            html::esc(&s.finish())
        ));
    }
    Ok(html::page("Audit", &op, &body).into_response())
}

pub async fn verify(
    State(state): State<AppState>,
    op: Operator,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    let v = query::verify(&state.platform).await?;
    let result = match &v.broken {
        None if v.ok => format!(
            "<p id=\"chain-ok\">The chain is intact: {} rows.</p>",
            v.rows
        ),
        None => "<p id=\"chain-broken\" class=\"error\">The chain is broken.</p>".to_string(),
        Some(b) => format!(
            "<p id=\"chain-broken\" class=\"error\">Broken at row {}: {}</p>",
            b.id,
            html::esc(&b.problem)
        ),
    };
    let body = format!(
        "<h2>Audit chain</h2><section>{result}</section><p><a href=\"/console/audit\">Back to the trail</a></p>"
    );
    Ok(html::page("Audit chain", &op, &body).into_response())
}
