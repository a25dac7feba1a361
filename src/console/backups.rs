//! A tenant's backups on its page: the list, take one, verify one, restore one in place
//! or into a new tenant, and the backup policy (schedule, retention, encryption). Each
//! action is the API's workflow with the console session as the actor.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;

use super::{field, html, tenants, Failure, Fields, Operator};
use crate::api::AppState;
use crate::backup::policy::{self, PolicyRequest};
use crate::backup::restore::RestoreRequest;
use crate::backup::{self, Backup};
use crate::problem::Kind;
use crate::store::backups::BackupStatus;
use crate::tenant::{Status, Tenant};
use crate::workflows;
use crate::workflows::restores::Restored;

/// Backups listed on the tenant page (the newest).
const SHOWN: usize = 20;

fn size(b: &Backup) -> String {
    b.size_bytes
        .map(|s| humansize::format_size(s.max(0) as u64, humansize::BINARY))
        .unwrap_or_else(|| "—".into())
}

fn row(op: &Operator, t: &Tenant, b: &Backup) -> String {
    let base = format!("/console/tenants/{}/backups/{}", t.name.as_str(), b.id);
    let id = b.id.to_string();
    let short = &id[..8];
    let actions = if b.status == BackupStatus::Succeeded {
        format!(
            "{}<form method=\"post\" action=\"{base}/restore\" class=\"inline\">{}\
             <label><input type=\"checkbox\" name=\"confirm\" value=\"yes\" id=\"restore-confirm-{short}\" required> \
             in place (logins off meanwhile)</label>\
             <button type=\"submit\" id=\"restore-{short}\" class=\"danger\">Restore</button></form>\
             <form method=\"post\" action=\"{base}/restore\" class=\"inline\">{}\
             <label>or as <input name=\"as\" id=\"restore-as-{short}\" placeholder=\"new-tenant-name\" maxlength=\"32\" required></label>\
             <button type=\"submit\" id=\"restore-new-{short}\">Restore as new</button></form>",
            html::button(op, &format!("{base}/verify"), &format!("verify-{short}"), "Verify"),
            html::csrf(op),
            html::csrf(op),
        )
    } else {
        String::new()
    };
    format!(
        "<tr id=\"backup-{short}\" class=\"backup-{}\"><td><code>{short}</code></td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{actions}</td></tr>",
        b.status.as_str(),
        b.kind.as_str(),
        b.status.as_str(),
        size(b),
        if b.encrypted { "yes" } else { "no" },
        html::time(&b.created_at),
        html::opt_time(&b.expires_at),
    )
}

/// The backups section of the tenant page.
pub async fn section(state: &AppState, op: &Operator, t: &Tenant) -> Result<String, Failure> {
    let list = backup::list(&state.platform, t.name.as_str()).await?;
    let base = format!("/console/tenants/{}", t.name.as_str());
    let mut out = String::from("<section id=\"backups\"><h3>Backups</h3>");
    let live = !matches!(
        t.status,
        Status::Deleted | Status::Purged | Status::Failed | Status::Provisioning
    );
    if live {
        out.push_str(&html::button(
            op,
            &format!("{base}/backups"),
            "take-backup",
            "Take a backup now",
        ));
    }
    out.push_str(
        "<table id=\"backup-list\"><thead><tr><th>Id</th><th>Kind</th><th>Status</th><th>Size</th>\
         <th>Encrypted</th><th>Taken</th><th>Expires</th><th></th></tr></thead><tbody>",
    );
    for b in list.iter().take(SHOWN) {
        out.push_str(&row(op, t, b));
    }
    if list.is_empty() {
        out.push_str("<tr><td colspan=\"8\" id=\"no-backups\">No backups yet.</td></tr>");
    }
    out.push_str("</tbody></table>");
    if list.len() > SHOWN {
        out.push_str(&format!(
            "<p>The newest {SHOWN} of {} backups.</p>",
            list.len()
        ));
    }
    let p = policy::get(&state.platform, t.name.as_str()).await?;
    out.push_str(&format!(
        "<h4>Policy</h4><p id=\"policy\">{}</p>\
         <form method=\"post\" action=\"{base}/backup-policy\" id=\"policy-form\"><p>{}\
         <label>Schedule <input name=\"schedule\" id=\"policy-schedule\" value=\"{}\" placeholder=\"0 3 * * * (cron, UTC)\"></label>\
         <label>Keep <input name=\"retention_days\" id=\"policy-retention\" type=\"number\" min=\"1\" max=\"3650\" value=\"{}\"> days</label>\
         <label><input type=\"checkbox\" name=\"encryption\" value=\"on\" id=\"policy-encryption\"{}> encrypted</label>\
         <button type=\"submit\" name=\"do\" value=\"save\" id=\"policy-save\">Save the policy</button>\
         <button type=\"submit\" name=\"do\" value=\"remove\" id=\"policy-remove\">No scheduled backups</button></p></form></section>",
        match (&p.schedule, &p.next_run_at) {
            (Some(s), next) => format!(
                "Scheduled <code id=\"policy-current\">{}</code>, kept {} days, next {}",
                html::esc(s),
                p.retention_days,
                html::opt_time(next)
            ),
            (None, _) => "No scheduled backups.".into(),
        },
        html::csrf(op),
        html::esc(p.schedule.as_deref().unwrap_or("")),
        p.retention_days,
        if p.encryption { " checked" } else { "" },
    ));
    Ok(out)
}

fn back(name: &str) -> Response {
    Redirect::to(&format!("/console/tenants/{name}#backups")).into_response()
}

pub async fn take(
    State(state): State<AppState>,
    op: Operator,
    Path(name): Path<String>,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    workflows::backups::create(&state.platform, &name, &op.actor).await?;
    Ok(back(&name))
}

pub async fn act(
    State(state): State<AppState>,
    op: Operator,
    Path((name, id, action)): Path<(String, String, String)>,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    match action.as_str() {
        "verify" => {
            let r =
                workflows::backups::verify(&state.platform, Some(&name), &id, &op.actor).await?;
            let mut body = format!(
                "<h2>Backup <code>{}</code> of <a href=\"/console/tenants/{1}\">{1}</a></h2><section>{2}",
                r.backup_id,
                html::esc(&name),
                if r.ok {
                    format!("<p id=\"verify-ok\">Verified: restored into a scratch database, every table matches its manifest ({} ms).</p>", r.duration_ms)
                } else {
                    format!(
                        "<p id=\"verify-failed\" class=\"error\">The backup does not match its manifest{}</p>",
                        r.error.as_deref().map(|e| format!(": {}", html::esc(e))).unwrap_or_default()
                    )
                }
            );
            body.push_str("<table id=\"verify-tables\"><thead><tr><th>Table</th><th>Rows expected</th><th>Rows restored</th><th>Checksum</th></tr></thead><tbody>");
            for c in &r.tables {
                body.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    html::esc(&c.table),
                    c.expected_rows.map(|n| n.to_string()).unwrap_or_default(),
                    c.restored_rows.map(|n| n.to_string()).unwrap_or_default(),
                    if c.ok { "matches" } else { "differs" },
                ));
            }
            body.push_str(&format!(
                "</tbody></table></section><p><a href=\"/console/tenants/{}#backups\" id=\"back\">Back to the tenant</a></p>",
                html::esc(&name)
            ));
            Ok(html::page("Backup verified", &op, &body).into_response())
        }
        "restore" => {
            let as_name = field(&form, "as").map(str::to_string);
            if as_name.is_none() && field(&form, "confirm") != Some("yes") {
                return Err(Failure::bad_field(
                    "confirm",
                    "tick the box to confirm the restore in place",
                ));
            }
            let req = RestoreRequest { as_name };
            match workflows::restores::restore(&state.platform, &name, &id, &req, &op.actor).await?
            {
                Restored::InPlace(t) => Ok(back(t.name.as_str())),
                Restored::New(c) => Ok(tenants::created_page(&op, &c, "Restored as a new tenant")),
            }
        }
        other => Err(Failure::new(
            Kind::NotFound,
            "not_found",
            format!("no backup action {other:?}"),
        )),
    }
}

pub async fn set_policy(
    State(state): State<AppState>,
    op: Operator,
    Path(name): Path<String>,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    if field(&form, "do") == Some("remove") {
        policy::remove(&state.platform, &name, &op.actor).await?;
        return Ok(back(&name));
    }
    let retention_days = field(&form, "retention_days")
        .map(|d| d.parse::<i32>())
        .transpose()
        .map_err(|_| {
            Failure::bad_field(
                "retention_days",
                "retention_days must be a whole number of days",
            )
        })?;
    let req = PolicyRequest {
        schedule: field(&form, "schedule").unwrap_or("").to_string(),
        retention_days,
        encryption: Some(field(&form, "encryption").is_some()),
    };
    policy::put(&state.platform, &name, &req, &op.actor).await?;
    Ok(back(&name))
}
