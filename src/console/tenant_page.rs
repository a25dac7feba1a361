//! One tenant: what it is, its usage against each quota, its keys, the actions its
//! state allows, its recent audit rows; and its credentials, on demand.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use secrecy::ExposeSecret;

use super::{html, Failure, Fields, Operator};
use crate::api::AppState;
use crate::audit::query::{self as audit, AuditQuery};
use crate::store::api_keys::KeyState;
use crate::tenant::{api_keys, service, Status, Tenant};

pub async fn show(
    State(state): State<AppState>,
    op: Operator,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let t = service::get(&state.platform, &name).await?;
    let n = html::esc(t.name.as_str());
    let mut body = format!(
        "<h2>Tenant <span id=\"tenant-name\">{n}</span></h2><section><dl>\
         <dt>Status</dt><dd id=\"status\" class=\"status-{0}\">{0}</dd>\
         <dt>Plan</dt><dd id=\"plan\">{1}</dd><dt>Isolation</dt><dd id=\"isolation\">{2}</dd>\
         <dt>Database</dt><dd><code>{3}</code></dd><dt>Schema</dt><dd><code>{4}</code></dd>\
         <dt>Login role</dt><dd><code>{5}</code></dd><dt>Template version</dt><dd id=\"template-version\">v{6}</dd>\
         <dt>Access</dt><dd>{7:?}</dd><dt>Created</dt><dd>{8}</dd>",
        t.status.as_str(),
        html::esc(&t.plan),
        t.isolation.as_str(),
        html::esc(t.database.as_str()),
        html::esc(t.schema.as_ref().map(|s| s.as_str()).unwrap_or("—")),
        html::esc(t.role.as_str()),
        t.template_version,
        t.access_mode,
        html::time(&t.created_at),
    );
    if t.trial_ends_at.is_some() {
        body.push_str(&format!(
            "<dt>Trial ends</dt><dd>{}</dd>",
            html::opt_time(&t.trial_ends_at)
        ));
    }
    if t.status == Status::Suspended {
        body.push_str(&format!(
            "<dt>Suspended</dt><dd>{}</dd><dt>Reason</dt><dd id=\"suspension-reason\">{}</dd>",
            html::opt_time(&t.suspended_at),
            html::esc(t.suspension_reason.as_deref().unwrap_or("(none given)"))
        ));
    }
    if t.purge_after.is_some() || t.purged_at.is_some() {
        body.push_str(&format!(
            "<dt>Purge date</dt><dd id=\"purge-after\">{}</dd><dt>Purged</dt><dd>{}</dd>",
            html::opt_time(&t.purge_after),
            html::opt_time(&t.purged_at)
        ));
    }
    body.push_str("</dl></section>");
    body.push_str(&usage(&state, &t).await);
    body.push_str(&history(&state, &t).await?);
    body.push_str(&actions(&op, &t));
    let live = !matches!(
        t.status,
        Status::Purged | Status::Failed | Status::Provisioning
    );
    if live {
        body.push_str(&super::people::quotas_section(&state, &op, &t).await?);
        body.push_str(&super::people::users_section(&state, &op, &t).await?);
        body.push_str(&super::network::section(&state, &op, &t).await?);
    }
    body.push_str(&keys(&state, &op, &t).await?);
    body.push_str(&super::backups::section(&state, &op, &t).await?);
    body.push_str(&super::operations::section(&state, &t).await?);
    body.push_str(&recent_audit(&state, &t).await?);
    Ok(html::page(t.name.as_str(), &op, &body).into_response())
}

/// Usage against each quota as bars (`<meter>`: no inline style, which the CSP forbids).
async fn usage(state: &AppState, t: &Tenant) -> String {
    if matches!(
        t.status,
        Status::Purged | Status::Failed | Status::Provisioning
    ) {
        return "<section><h3>Usage</h3><p>No usage: the tenant has no database objects.</p></section>".into();
    }
    let r = match crate::quota::usage::resources(&state.platform, &state.limits, t.name.as_str())
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = ?e, tenant = %t.name, "console: usage unavailable");
            return "<section><h3>Usage</h3><p class=\"error\">Usage is unavailable right now.</p></section>".into();
        }
    };
    let mut out = String::from(
        "<section><h3>Usage</h3><table id=\"usage\"><thead><tr><th>Quota</th><th>Used</th><th>Limit</th><th></th></tr></thead><tbody>",
    );
    for q in &r.resources {
        let (used, limit) = if q.resource_type == "storage_bytes" {
            (
                humansize::format_size(q.used.max(0) as u64, humansize::BINARY),
                humansize::format_size(q.limit_value.max(0) as u64, humansize::BINARY),
            )
        } else {
            (q.used.to_string(), q.limit_value.to_string())
        };
        out.push_str(&format!(
            "<tr id=\"usage-{0}\"><td>{0}</td><td>{used}</td><td>{limit}</td>\
             <td><meter min=\"0\" max=\"{1}\" high=\"{2}\" value=\"{3}\">{3}/{1}</meter></td></tr>",
            html::esc(&q.resource_type),
            q.limit_value.max(1),
            q.limit_value.max(1) as f64 * 0.9,
            q.used.max(0),
        ));
    }
    out.push_str("</tbody></table></section>");
    out
}

/// Days of usage history the tenant page draws.
const HISTORY_DAYS: i64 = 7;

/// Disk, connections and API calls over the last days, from the sampled history.
async fn history(state: &AppState, t: &Tenant) -> Result<String, Failure> {
    let now = chrono::Utc::now();
    let since = now - chrono::Duration::days(HISTORY_DAYS);
    let samples = crate::quota::history::of_tenant(&state.platform, t.id, since).await?;
    let series = |f: &dyn Fn(&crate::quota::history::Sample) -> f64| -> Vec<_> {
        samples.iter().map(|s| (s.at, f(s))).collect()
    };
    let bytes = |v: f64| humansize::format_size(v.max(0.0) as u64, humansize::BINARY);
    let count = |v: f64| format!("{v:.0}");
    Ok(format!(
        "<section id=\"usage-history\"><h3>Usage over {HISTORY_DAYS} days</h3><div class=\"charts\">{}{}{}</div></section>",
        super::charts::line("chart-disk", "Disk", &series(&|s| s.disk_bytes as f64), now, &bytes),
        super::charts::line("chart-connections", "Connections", &series(&|s| s.connections as f64), now, &count),
        super::charts::line("chart-api-calls", "API calls a minute", &series(&|s| s.api_calls as f64), now, &count),
    ))
}

/// The actions the tenant's state allows; the ones that take logins away ask for a
/// ticked confirmation, the purge for the tenant's name typed out.
fn actions(op: &Operator, t: &Tenant) -> String {
    let n = html::esc(t.name.as_str());
    let base = format!("/console/tenants/{}", t.name.as_str());
    let mut out = String::from("<section id=\"actions\"><h3>Actions</h3>");
    let gone = matches!(t.status, Status::Deleted | Status::Purged);
    if !gone && t.status != Status::Failed {
        out.push_str(&format!(
            "<form method=\"post\" action=\"{base}/credentials\" class=\"inline\">{}\
             <button type=\"submit\" id=\"show-credentials\">Show credentials</button></form> ",
            html::csrf(op)
        ));
    }
    match t.status {
        Status::Active | Status::Trial => out.push_str(&format!(
            "<form method=\"post\" action=\"{base}/suspend\" id=\"suspend-form\"><p>{}\
             <label>Reason <input name=\"reason\" id=\"suspend-reason\" maxlength=\"500\"></label>\
             <label><input type=\"checkbox\" name=\"confirm\" value=\"yes\" id=\"suspend-confirm\" required> \
             suspend {n}: logins off, sessions ended, API keys refused</label>\
             <button type=\"submit\" id=\"suspend\" class=\"danger\">Suspend</button></p></form>",
            html::csrf(op)
        )),
        Status::Suspended => out.push_str(&html::button(op, &format!("{base}/resume"), "resume", "Resume")),
        _ => {}
    }
    if t.status == Status::Trial {
        out.push_str(&html::button(
            op,
            &format!("{base}/activate"),
            "activate",
            "End the trial: activate",
        ));
    }
    if gone {
        out.push_str(&html::button(
            op,
            &format!("{base}/restore"),
            "restore",
            "Restore",
        ));
    } else if t.status != Status::Provisioning {
        out.push_str(&format!(
            "<form method=\"post\" action=\"{base}/delete\" id=\"delete-form\"><p>{}\
             <label>Keep for <input name=\"retention_days\" id=\"retention-days\" type=\"number\" min=\"0\" max=\"3650\" placeholder=\"30\"> days</label>\
             <label><input type=\"checkbox\" name=\"confirm\" value=\"yes\" id=\"delete-confirm\" required> \
             delete {n} (restorable until the purge date)</label>\
             <button type=\"submit\" id=\"delete\" class=\"danger\">Delete</button></p></form>",
            html::csrf(op)
        ));
    }
    if t.status != Status::Purged {
        out.push_str(&format!(
            "<form method=\"post\" action=\"{base}/purge\" id=\"purge-form\"><p>{}\
             <label>Type <code>{n}</code> to purge it now, for good (after a final backup): \
             <input name=\"confirm_name\" id=\"purge-name\" autocomplete=\"off\" required></label>\
             <button type=\"submit\" id=\"purge\" class=\"danger\">Purge</button></p></form>",
            html::csrf(op)
        ));
    }
    out.push_str("</section>");
    out
}

async fn keys(state: &AppState, op: &Operator, t: &Tenant) -> Result<String, Failure> {
    let list = api_keys::list(&state.platform, t.name.as_str()).await?;
    let base = format!("/console/tenants/{}/keys", t.name.as_str());
    let mut out = String::from(
        "<section id=\"keys\"><h3>API keys</h3><table id=\"key-list\"><thead><tr><th>Prefix</th><th>Name</th>\
         <th>State</th><th>Created</th><th>Expires</th><th></th></tr></thead><tbody>",
    );
    for k in &list.api_keys {
        let state = match k.state {
            KeyState::Active => "active",
            KeyState::Revoked => "revoked",
            KeyState::Expired => "expired",
        };
        let buttons = if k.state == KeyState::Active {
            format!(
                "{} {}",
                html::button(
                    op,
                    &format!("{base}/{}/rotate", k.id),
                    &format!("rotate-{}", k.prefix),
                    "Rotate"
                ),
                html::button(
                    op,
                    &format!("{base}/{}/revoke", k.id),
                    &format!("revoke-{}", k.prefix),
                    "Revoke"
                )
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "<tr class=\"key-{state}\"><td><code>{}</code></td><td>{}</td><td>{state}</td><td>{}</td><td>{}</td><td>{buttons}</td></tr>",
            html::esc(&k.prefix),
            html::esc(k.name.as_deref().unwrap_or("")),
            html::time(&k.created_at),
            html::opt_time(&k.expires_at),
        ));
    }
    out.push_str(&format!(
        "</tbody></table><form method=\"post\" action=\"{base}\" id=\"key-form\"><p>{}\
         <label>Name <input name=\"name\" id=\"key-name\" maxlength=\"64\"></label>\
         <label>Expires in <input name=\"expires_in\" id=\"key-expires\" placeholder=\"never (or 30m, 7d)\"></label>\
         <button type=\"submit\" id=\"add-key\">Add a key</button></p></form></section>",
        html::csrf(op)
    ));
    Ok(out)
}

async fn recent_audit(state: &AppState, t: &Tenant) -> Result<String, Failure> {
    let q = AuditQuery {
        tenant: None,
        action: None,
        since: None,
        limit: Some(10),
        cursor: None,
    };
    let page = audit::tenant_page(&state.platform, &t.id.to_string(), &q).await?;
    let mut out = format!(
        "<section><h3>Recent audit</h3><p><a href=\"/console/audit?tenant={}\">All of it</a></p><table id=\"tenant-audit\"><tbody>",
        html::esc(t.name.as_str())
    );
    for e in &page.entries {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            html::time(&e.at),
            html::esc(&e.action),
            html::esc(&e.actor)
        ));
    }
    out.push_str("</tbody></table></section>");
    Ok(out)
}

/// The login role's credentials, on a page of their own (the read is audited).
pub async fn credentials(
    State(state): State<AppState>,
    op: Operator,
    Path(name): Path<String>,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    let c = service::credentials_of(&state.platform, &name, &op.actor).await?;
    let body = format!(
        "<h2>Credentials of <a href=\"/console/tenants/{0}\">{0}</a></h2><section class=\"secret\"><dl>\
         <dt>User</dt><dd><code id=\"cred-user\">{1}</code></dd>\
         <dt>Password</dt><dd><code id=\"cred-password\">{2}</code></dd>\
         <dt>Host</dt><dd><code>{3}</code></dd><dt>Port</dt><dd><code>{4}</code></dd>\
         <dt>Database</dt><dd><code>{5}</code></dd><dt>DSN</dt><dd><code id=\"cred-dsn\">{6}</code></dd></dl></section>",
        html::esc(&name),
        html::esc(&c.user),
        html::esc(c.password.expose_secret()),
        html::esc(&c.host),
        c.port,
        html::esc(&c.database),
        html::esc(c.dsn.expose_secret()),
    );
    Ok(html::page("Credentials", &op, &body).into_response())
}
