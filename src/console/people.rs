//! A tenant's users (list, add with a role, remove) and quotas (each one editable, with
//! the API's validation: a bad value is refused naming the field, nothing changed).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use super::{field, html, Failure, Fields, Operator};
use crate::api::AppState;
use crate::names::roles::DefaultRole;
use crate::quota::service::{self as quotas, QuotaUpdate};
use crate::quota::FIELDS;
use crate::tenant::users::{self, AddUser};
use crate::tenant::Tenant;
use crate::workflows::changes;

/// The users section of the tenant page.
pub async fn users_section(state: &AppState, op: &Operator, t: &Tenant) -> Result<String, Failure> {
    let list = users::list(&state.platform, t.name.as_str()).await?;
    let base = format!("/console/tenants/{}/users", t.name.as_str());
    let mut out = String::from(
        "<section id=\"users\"><h3>Users</h3><table id=\"user-list\"><thead><tr><th>Email</th><th>Role</th>\
         <th>Login role</th><th>Added</th><th></th></tr></thead><tbody>",
    );
    for u in &list.users {
        let action = format!("{base}/remove");
        out.push_str(&format!(
            "<tr><td class=\"user-email\">{0}</td><td>{1}</td><td><code>{2}</code></td><td>{3}</td><td>\
             <form method=\"post\" action=\"{4}\" class=\"inline\">{5}<input type=\"hidden\" name=\"email\" value=\"{0}\">\
             <button type=\"submit\" id=\"remove-{6}\">Remove</button></form></td></tr>",
            html::esc(&u.email),
            u.role.as_str(),
            html::esc(u.db_user.as_str()),
            html::time(&u.created_at),
            html::esc(&action),
            html::csrf(op),
            html::esc(&u.email.replace(['@', '.'], "-")),
        ));
    }
    if list.users.is_empty() {
        out.push_str("<tr><td colspan=\"5\" id=\"no-users\">No users.</td></tr>");
    }
    let roles: Vec<&str> = DefaultRole::ALL.iter().map(|r| r.as_str()).collect();
    let mut role_options = String::new();
    for r in roles {
        role_options.push_str(&format!("<option value=\"{r}\">{r}</option>"));
    }
    out.push_str(&format!(
        "</tbody></table><form method=\"post\" action=\"{base}\" id=\"user-form\"><p>{}\
         <label>Email <input name=\"email\" id=\"user-email\" type=\"email\" required maxlength=\"254\"></label>\
         <label>Role <select name=\"role\" id=\"user-role\">{role_options}</select></label>\
         <button type=\"submit\" id=\"add-user\">Add a user</button></p></form></section>",
        html::csrf(op)
    ));
    Ok(out)
}

pub async fn add_user(
    State(state): State<AppState>,
    op: Operator,
    Path(name): Path<String>,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    let req = AddUser {
        email: field(&form, "email").unwrap_or("").to_string(),
        role: field(&form, "role").unwrap_or("").to_string(),
        // The console adds people directly (credentials shown once); invitations
        // are the API's (`invite: true`), whose link goes out by mail.
        teams: Vec::new(),
        invited_by: None,
        invite: Some(false),
    };
    let added = changes::add_user(&state.platform, &name, &req, &op.actor).await?;
    let Some(c) = &added.credentials else {
        return Err(Failure::new(
            crate::problem::Kind::Internal,
            "internal",
            "the user was added without credentials",
        ));
    };
    let body = format!(
        "<h2>User <span id=\"added-user\">{}</span> added to {}</h2><section class=\"secret\">\
         <p><strong>Shown once:</strong> give these to the user now.</p><dl>\
         <dt>User</dt><dd><code id=\"cred-user\">{}</code></dd><dt>Password</dt><dd><code id=\"cred-password\">{}</code></dd>\
         <dt>DSN</dt><dd><code id=\"cred-dsn\">{}</code></dd></dl></section>\
         <p><a href=\"/console/tenants/{1}#users\" id=\"back\">Back to {1}</a></p>",
        html::esc(&added.user.email),
        html::esc(&name),
        html::esc(&c.user),
        html::esc(c.password.expose_secret()),
        html::esc(c.dsn.expose_secret()),
    );
    Ok((StatusCode::CREATED, html::page("User added", &op, &body)).into_response())
}

pub async fn remove_user(
    State(state): State<AppState>,
    op: Operator,
    Path(name): Path<String>,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    let email = field(&form, "email").unwrap_or("");
    changes::remove_user(&state.platform, &name, email, &op.actor).await?;
    Ok(Redirect::to(&format!("/console/tenants/{name}#users")).into_response())
}

/// The quotas section: each quota, its value and whether it is the plan's, and a
/// form to change any of them.
pub async fn quotas_section(
    state: &AppState,
    op: &Operator,
    t: &Tenant,
) -> Result<String, Failure> {
    let l = quotas::limits(&state.platform, t.name.as_str()).await?;
    let mut out = format!(
        "<section id=\"quotas\"><h3>Quotas</h3><form method=\"post\" action=\"/console/tenants/{}/quotas\" id=\"quota-form\">{}\
         <p>Leave a field empty to keep it; <code>plan</code> puts it back to the plan's value.</p>\
         <table id=\"quota-list\"><thead><tr><th>Quota</th><th>Now</th><th>From</th><th>Range</th><th>New value</th></tr></thead><tbody>",
        html::esc(t.name.as_str()),
        html::csrf(op),
    );
    for (name, lo, hi) in FIELDS {
        let from = if l.overridden.iter().any(|o| o == name) {
            "this tenant"
        } else {
            "plan"
        };
        out.push_str(&format!(
            "<tr id=\"quota-{name}\"><td>{name}</td><td class=\"quota-value\">{}</td><td>{from}</td><td>{lo} – {hi}</td>\
             <td><input name=\"{name}\" id=\"quota-input-{name}\" size=\"14\"></td></tr>",
            quotas::value(&l.limits, name),
        ));
    }
    out.push_str(
        "</tbody></table><p><label><input type=\"checkbox\" name=\"force\" value=\"on\" id=\"quota-force\"> \
         below current usage too (enforced at once)</label> \
         <button type=\"submit\" id=\"save-quotas\">Save the quotas</button></p></form></section>",
    );
    Ok(out)
}

/// The form as the API's request body, checked by the same deserializer and rules.
fn quota_update(form: &Fields) -> Result<QuotaUpdate, Failure> {
    let mut body = Map::new();
    for (name, _, _) in FIELDS {
        let Some(v) = field(form, name) else { continue };
        let value = if v.eq_ignore_ascii_case("plan") {
            Value::Null
        } else {
            let n = v.replace('_', "").parse::<i64>().map_err(|_| {
                Failure::bad_field(
                    name,
                    format!("{name} must be a whole number (or `plan`), got {v:?}"),
                )
            })?;
            Value::from(n)
        };
        body.insert((*name).to_string(), value);
    }
    body.insert("force".into(), Value::Bool(field(form, "force").is_some()));
    serde_json::from_value(Value::Object(body))
        .map_err(|e| Failure::bad_field("quotas", format!("the quotas are not valid: {e}")))
}

pub async fn set_quotas(
    State(state): State<AppState>,
    op: Operator,
    Path(name): Path<String>,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    let req = quota_update(&form)?;
    changes::set_quotas(&state.platform, &name, &req, &op.actor).await?;
    Ok(Redirect::to(&format!("/console/tenants/{name}#quotas")).into_response())
}
