//! The tenant list (search, filters, keyset pages) and the create form.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use secrecy::ExposeSecret;

use super::{field, html, Failure, Fields, Operator};
use crate::api::AppState;
use crate::store::tenants::search::Filter;
use crate::tenant::service::{self, CreateTenant, CreatedTenant};
use crate::tenant::Status;

/// Rows per page: enough to scan, small enough to stay light.
const PAGE: i64 = 50;
const ISOLATIONS: [&str; 3] = ["schema", "database", "shared"];

fn query_field<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

pub async fn list(
    State(state): State<AppState>,
    op: Operator,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, Failure> {
    let filter = Filter {
        name: query_field(&q, "q"),
        status: query_field(&q, "status"),
        plan: query_field(&q, "plan"),
        isolation: query_field(&q, "isolation"),
    };
    let page = service::search(&state.platform, &filter, PAGE, query_field(&q, "after")).await?;
    let plans = service::plans(&state.platform).await?;
    let plan_names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    let counts = service::count_by_status(&state.platform).await?;
    let summary = counts
        .iter()
        .map(|(s, n)| format!("{} {}", n, html::esc(s)))
        .collect::<Vec<_>>()
        .join(" · ");
    let mut body = format!(
        "<h2>Tenants</h2><p class=\"summary\">{summary}</p>\
         <form method=\"get\" action=\"/console\" class=\"filters\" id=\"filters\">\
         <label>Search <input type=\"search\" name=\"q\" id=\"search\" value=\"{}\" maxlength=\"64\"></label>\
         <label>Status <select name=\"status\" id=\"filter-status\">{}</select></label>\
         <label>Plan <select name=\"plan\" id=\"filter-plan\">{}</select></label>\
         <label>Isolation <select name=\"isolation\" id=\"filter-isolation\">{}</select></label>\
         <button type=\"submit\" id=\"apply\">Apply</button> <a href=\"/console\">Clear</a></form>",
        html::esc(filter.name.unwrap_or("")),
        html::options("any", &statuses, filter.status),
        html::options("any", &plan_names, filter.plan),
        html::options("any", &ISOLATIONS, filter.isolation),
    );
    body.push_str(
        "<table id=\"tenants\"><thead><tr><th>Name</th><th>Status</th><th>Plan</th>\
         <th>Isolation</th><th>Template</th><th>Created</th></tr></thead><tbody>",
    );
    for t in &page.tenants {
        body.push_str(&format!(
            "<tr><td><a href=\"/console/tenants/{0}\">{0}</a></td><td class=\"status-{1}\">{1}</td>\
             <td>{2}</td><td>{3}</td><td>v{4}</td><td>{5}</td></tr>",
            html::esc(t.name.as_str()),
            t.status.as_str(),
            html::esc(&t.plan),
            t.isolation.as_str(),
            t.template_version,
            html::time(&t.created_at),
        ));
    }
    if page.tenants.is_empty() {
        body.push_str("<tr><td colspan=\"6\" id=\"no-tenants\">No tenant matches.</td></tr>");
    }
    body.push_str("</tbody></table><p>");
    if query_field(&q, "after").is_some() {
        body.push_str(&format!(
            "<a href=\"/console?{}\" id=\"first-page\">First page</a> ",
            html::esc(&link(&filter, None))
        ));
    }
    if let Some(next) = &page.next_cursor {
        body.push_str(&format!(
            "<a href=\"/console?{}\" id=\"next-page\">Next page</a>",
            html::esc(&link(&filter, Some(next)))
        ));
    }
    body.push_str("</p>");
    // The pictures on the first page only: the next pages stay as light as the list.
    if query_field(&q, "after").is_none() {
        body.push_str(&pictures(&state).await?);
    }
    Ok(html::page("Tenants", &op, &body).into_response())
}

/// Days of creations and deletions the list draws.
const CHANGE_DAYS: i32 = 30;

/// Tenants by (status, plan, isolation).
type Mix = (String, String, String, i64);

/// Tenants per status and per plan, and creations and deletions per day.
async fn pictures(state: &AppState) -> Result<String, Failure> {
    let mix = service::count_by_status_plan_isolation(&state.platform).await?;
    let tally = |key: &dyn Fn(&Mix) -> &str| {
        let mut out: Vec<(String, i64)> = Vec::new();
        for m in &mix {
            match out.iter_mut().find(|o| o.0 == key(m)) {
                Some(o) => o.1 += m.3,
                None => out.push((key(m).to_string(), m.3)),
            }
        }
        out.sort();
        out
    };
    let days = crate::quota::history::changes_per_day(&state.platform, CHANGE_DAYS).await?;
    Ok(format!(
        "<section id=\"pictures\"><div class=\"charts\">{}{}{}</div></section>",
        super::charts::bars(
            "chart-status",
            "Tenants per status",
            &tally(&|m| m.0.as_str())
        ),
        super::charts::bars("chart-plan", "Tenants per plan", &tally(&|m| m.1.as_str())),
        super::charts::per_day(
            "chart-per-day",
            &format!("Created and deleted, last {CHANGE_DAYS} days"),
            &days
        ),
    ))
}

/// The list's query string for these filters, from `after` on.
fn link(f: &Filter<'_>, after: Option<&str>) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("q", f.name),
        ("status", f.status),
        ("plan", f.plan),
        ("isolation", f.isolation),
        ("after", after),
    ] {
        if let Some(v) = v {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

pub async fn new_form(State(state): State<AppState>, op: Operator) -> Result<Response, Failure> {
    let plans = service::plans(&state.platform).await?;
    let plan_names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    let body = format!(
        "<h2>New tenant</h2><form method=\"post\" action=\"/console/tenants\" id=\"create\">{}\
         <p><label>Name <input name=\"name\" id=\"name\" required pattern=\"[a-z][a-z0-9-]*[a-z0-9]\" \
         minlength=\"3\" maxlength=\"32\"></label> <small>3 to 32 of a-z, 0-9, -</small></p>\
         <p><label>Isolation <select name=\"isolation\" id=\"isolation\">{}</select></label>\
         <label>Plan <select name=\"plan\" id=\"plan\">{}</select></label></p>\
         <p><label>Disk quota <input name=\"db_quota\" id=\"db_quota\" placeholder=\"plan's (e.g. 5GB)\"></label>\
         <label>Trial days <input name=\"trial_days\" id=\"trial_days\" type=\"number\" min=\"1\" max=\"365\" placeholder=\"plan's\"></label></p>\
         <p><label><input type=\"checkbox\" name=\"public_api\" id=\"public_api\" value=\"on\"> Public API</label>\
         <label><input type=\"checkbox\" name=\"vpn_enabled\" id=\"vpn_enabled\" value=\"on\"> VPN</label></p>\
         <p><label>Backup schedule <input name=\"backup_schedule\" id=\"backup_schedule\" placeholder=\"0 3 * * * (cron, UTC)\"></label></p>\
         <p><label>Metadata (JSON object)<br><textarea name=\"metadata\" id=\"metadata\" rows=\"3\" cols=\"50\"></textarea></label></p>\
         <button type=\"submit\" id=\"create-tenant\">Create</button></form>",
        html::csrf(&op),
        html::options("plan's default", &ISOLATIONS, None),
        html::options("free", &plan_names, None),
    );
    Ok(html::page("New tenant", &op, &body).into_response())
}

/// The form as the API's create request; a bad number or JSON names its field.
fn create_request(form: &Fields) -> Result<CreateTenant, Failure> {
    let trial_days = field(form, "trial_days")
        .map(|d| d.parse::<i32>())
        .transpose()
        .map_err(|_| {
            Failure::bad_field("trial_days", "trial_days must be a whole number of days")
        })?;
    let metadata = field(form, "metadata")
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
        .map_err(|e| Failure::bad_field("metadata", format!("metadata is not JSON: {e}")))?;
    let on = |name: &str| field(form, name).is_some();
    Ok(CreateTenant {
        name: field(form, "name").unwrap_or("").to_string(),
        db_quota: field(form, "db_quota").map(str::to_string),
        vpn_enabled: on("vpn_enabled"),
        public_api: on("public_api"),
        plan: field(form, "plan").map(str::to_string),
        isolation: field(form, "isolation").map(str::to_string),
        trial_days,
        metadata,
        backup_schedule: field(form, "backup_schedule").map(str::to_string),
        // The plan's default (the form has no switch for it yet).
        vector_store: None,
        server: None,
        placement: None,
    })
}

pub async fn create(
    State(state): State<AppState>,
    op: Operator,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    let req = create_request(&form)?;
    let created = crate::workflows::create::create(&state.platform, &req, None, &op.actor).await?;
    Ok(created_page(&op, &created, "Tenant created"))
}

/// A new tenant with its API key and credentials, shown once (a create, or a restore
/// into a new tenant).
pub(super) fn created_page(op: &Operator, created: &CreatedTenant, title: &str) -> Response {
    let t = &created.tenant;
    let c = &created.credentials;
    let body = format!(
        "<h2>Tenant <a href=\"/console/tenants/{0}\" id=\"created-name\">{0}</a> created</h2>\
         <section class=\"secret\"><p><strong>Shown once:</strong> copy these now; berqenas keeps only a hash of the key.</p>\
         <dl><dt>API key</dt><dd><code id=\"api-key\">{1}</code></dd>\
         <dt>User</dt><dd><code id=\"cred-user\">{2}</code></dd>\
         <dt>Password</dt><dd><code id=\"cred-password\">{3}</code></dd>\
         <dt>Host</dt><dd><code id=\"cred-host\">{4}</code></dd><dt>Port</dt><dd><code id=\"cred-port\">{5}</code></dd>\
         <dt>Database</dt><dd><code id=\"cred-database\">{6}</code></dd>\
         <dt>DSN</dt><dd><code id=\"cred-dsn\">{7}</code></dd></dl></section>\
         <p>Status <span id=\"status\">{8}</span>, isolation {9}, plan {10}.</p>",
        html::esc(t.name.as_str()),
        html::esc(created.api_key.expose_secret()),
        html::esc(&c.user),
        html::esc(c.password.expose_secret()),
        html::esc(&c.host),
        c.port,
        html::esc(&c.database),
        html::esc(c.dsn.expose_secret()),
        t.status.as_str(),
        t.isolation.as_str(),
        html::esc(&t.plan),
    );
    (StatusCode::CREATED, html::page(title, op, &body)).into_response()
}
