//! A tenant's network rules on its page: the allowed ranges (none: open to all), one
//! added (the API's validation), one removed. VPN peers stay in the API and the CLI.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;

use super::{field, html, Failure, Fields, Operator};
use crate::api::AppState;
use crate::network::rules::{self, NewRule};
use crate::problem::Problem;
use crate::tenant::Tenant;
use crate::workflows::network as flow;

pub async fn section(state: &AppState, op: &Operator, t: &Tenant) -> Result<String, Failure> {
    let list = flow::rules(&state.platform, t.name.as_str()).await?;
    let base = format!("/console/tenants/{}/firewall", t.name.as_str());
    let mut out = String::from(
        "<section id=\"network\"><h3>Network rules</h3><table id=\"rule-list\"><thead><tr><th>Range</th>\
         <th>Service</th><th>Description</th><th>Added</th><th></th></tr></thead><tbody>",
    );
    for r in &list {
        out.push_str(&format!(
            "<tr><td><code class=\"rule-cidr\">{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html::esc(&r.cidr),
            html::esc(&r.service),
            html::esc(&r.description),
            html::time(&r.created_at),
            html::button(op, &format!("{base}/{}/remove", r.id), &format!("remove-rule-{}", &r.id.to_string()[..8]), "Remove"),
        ));
    }
    if list.is_empty() {
        out.push_str(
            "<tr><td colspan=\"5\" id=\"no-rules\">No rules: every address may connect.</td></tr>",
        );
    }
    out.push_str(&format!(
        "</tbody></table><form method=\"post\" action=\"{base}\" id=\"rule-form\"><p>{}\
         <label>Range <input name=\"cidr\" id=\"rule-cidr\" placeholder=\"203.0.113.0/24\" required></label>\
         <label>Service <select name=\"service\" id=\"rule-service\">{}</select></label>\
         <label>Description <input name=\"description\" id=\"rule-description\" maxlength=\"200\"></label>\
         <button type=\"submit\" id=\"add-rule\">Allow</button></p></form></section>",
        html::csrf(op),
        html::options("all", &["postgres", "api"], None),
    ));
    Ok(out)
}

pub async fn add(
    State(state): State<AppState>,
    op: Operator,
    Path(name): Path<String>,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    let req = NewRule {
        cidr: field(&form, "cidr").unwrap_or("").to_string(),
        service: field(&form, "service").map(str::to_string),
        description: field(&form, "description").map(str::to_string),
    };
    let rule = rules::validate("", &req)?;
    flow::allow(&state.platform, &name, rule, &op.actor).await?;
    Ok(Redirect::to(&format!("/console/tenants/{name}#network")).into_response())
}

pub async fn remove(
    State(state): State<AppState>,
    op: Operator,
    Path((name, id)): Path<(String, String)>,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| Failure(Problem::bad_field("id", format!("{id:?} is not a rule id"))))?;
    flow::remove_rule(&state.platform, &name, id, &op.actor).await?;
    Ok(Redirect::to(&format!("/console/tenants/{name}#network")).into_response())
}
