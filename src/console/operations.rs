//! Operations (`/console/operations`, and the newest of a tenant on its page): each
//! operation's kind, state, phase and error, and its steps with their state.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};

use super::{html, Failure, Operator};
use crate::api::AppState;
use crate::tenant::Tenant;
use crate::workflows::operations::{self, Operation, STATES};

fn q<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn table(ops: &[Operation], id: &str) -> String {
    let mut out = format!(
        "<table id=\"{id}\"><thead><tr><th>Operation</th><th>Kind</th><th>State</th><th>Phase</th>\
         <th>Tenant</th><th>Started</th><th>Steps</th><th>Error</th></tr></thead><tbody>"
    );
    for o in ops {
        let applied = o.steps.iter().filter(|s| s.state == "applied").count();
        out.push_str(&format!(
            "<tr><td><a href=\"/console/operations/{0}\" class=\"op-link\">{1}</a></td><td>{2}</td>\
             <td class=\"status-{3}\">{3}</td><td>{4}</td><td>{5}</td><td>{6}</td><td>{7}/{8}</td><td>{9}</td></tr>",
            o.id,
            &o.id.to_string()[..8],
            html::esc(&o.kind),
            html::esc(&o.state),
            html::esc(&o.phase),
            html::esc(&o.tenant.name),
            html::time(&o.created_at),
            applied,
            o.steps.len(),
            html::esc(o.error.as_deref().unwrap_or("")),
        ));
    }
    if ops.is_empty() {
        out.push_str("<tr><td colspan=\"8\">No operations.</td></tr>");
    }
    out.push_str("</tbody></table>");
    out
}

pub async fn list(
    State(state): State<AppState>,
    op: Operator,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Failure> {
    let tenant = q(&query, "tenant");
    let st = q(&query, "state");
    let page = operations::list(&state.platform, tenant, st, Some(50), q(&query, "cursor")).await?;
    let mut body = format!(
        "<h2>Operations</h2><form method=\"get\" action=\"/console/operations\" class=\"filters\" id=\"op-filters\">\
         <label>Tenant <input name=\"tenant\" id=\"op-tenant\" value=\"{}\"></label>\
         <label>State <select name=\"state\" id=\"op-state\">{}</select></label>\
         <button type=\"submit\" id=\"op-apply\">Apply</button> <a href=\"/console/operations\">Clear</a></form>",
        html::esc(tenant.unwrap_or("")),
        html::options("any", &STATES, st),
    );
    body.push_str(&table(&page.operations, "operations"));
    if let Some(next) = &page.next_cursor {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("tenant", tenant),
            ("state", st),
            ("cursor", Some(next.as_str())),
        ] {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        }
        body.push_str(&format!(
            "<p><a href=\"/console/operations?{}\" id=\"op-older\">Older</a></p>",
            html::esc(&s.finish())
        ));
    }
    Ok(html::page("Operations", &op, &body).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let o = operations::get(&state.platform, &id).await?;
    let mut body = format!(
        "<h2>Operation <code>{}</code></h2><section><dl><dt>Kind</dt><dd id=\"op-kind\">{}</dd>\
         <dt>State</dt><dd id=\"op-state-value\" class=\"status-{2}\">{2}</dd><dt>Phase</dt><dd>{3}</dd>\
         <dt>Tenant</dt><dd><a href=\"/console/tenants/{4}\">{4}</a></dd><dt>Started</dt><dd>{5}</dd>\
         <dt>Last moved</dt><dd>{6}</dd><dt>Finished</dt><dd>{7}</dd>",
        o.id,
        html::esc(&o.kind),
        html::esc(&o.state),
        html::esc(&o.phase),
        html::esc(&o.tenant.name),
        html::time(&o.created_at),
        html::time(&o.updated_at),
        html::opt_time(&o.finished_at),
    );
    if let Some(e) = &o.error {
        body.push_str(&format!(
            "<dt>Error</dt><dd id=\"op-error\" class=\"error\">{}</dd>",
            html::esc(e)
        ));
    }
    body.push_str(
        "</dl><h3>Steps</h3><table id=\"op-steps\"><thead><tr><th>#</th><th>Step</th><th>State</th><th>At</th><th>What it recorded</th></tr></thead><tbody>",
    );
    for (i, s) in o.steps.iter().enumerate() {
        body.push_str(&format!(
            "<tr class=\"step-{2}\"><td>{0}</td><td>{1}</td><td>{2}</td><td>{3}</td><td><code>{4}</code></td></tr>",
            i + 1,
            html::esc(&s.name),
            html::esc(&s.state),
            html::opt_time(&s.at),
            html::esc(s.summary.as_deref().unwrap_or("")),
        ));
    }
    body.push_str("</tbody></table></section>");
    Ok(html::page("Operation", &op, &body).into_response())
}

/// The tenant's newest operations, for its page.
pub async fn section(state: &AppState, t: &Tenant) -> Result<String, Failure> {
    let page = operations::list(
        &state.platform,
        Some(&t.id.to_string()),
        None,
        Some(10),
        None,
    )
    .await?;
    Ok(format!(
        "<section id=\"tenant-operations\"><h3>Operations</h3>{}<p><a href=\"/console/operations?tenant={}\">All of them</a></p></section>",
        table(&page.operations, "tenant-operation-list"),
        html::esc(t.name.as_str()),
    ))
}
