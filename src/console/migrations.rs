//! Template migrations (`/console/migrations`): tenants per template version, a dry
//! run, a run started, and the run's page, which reloads itself while it goes on.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;

use super::{field, html, Failure, Fields, Operator};
use crate::api::AppState;
use crate::migrate::{self, MigrateRequest, MigrationRun, Started};
use crate::problem::Problem;
use crate::store::tenants::Isolation;

/// Seconds between reloads of a running run's page.
const REFRESH: u32 = 2;

pub async fn show(State(state): State<AppState>, op: Operator) -> Result<Response, Failure> {
    let s = migrate::status(&state.platform).await?;
    let mut body = format!(
        "<h2>Template migrations</h2><section><dl><dt>Latest version</dt><dd id=\"latest-version\">v{}</dd>\
         <dt>Template checksum</dt><dd><code>{}</code></dd><dt>Tenants below it</dt><dd id=\"pending\">{}</dd>{}</dl>\
         <table id=\"versions\"><thead><tr><th>Version</th><th>Live tenants</th></tr></thead><tbody>",
        s.latest_version,
        html::esc(&s.template_checksum),
        s.pending,
        s.running
            .map(|id| format!(
                "<dt>Running</dt><dd><a href=\"/console/migrations/{id}\" id=\"running-run\">{id}</a></dd>"
            ))
            .unwrap_or_default(),
    );
    for v in &s.tenants_by_version {
        body.push_str(&format!(
            "<tr id=\"version-{0}\"><td>v{0}</td><td>{1}</td></tr>",
            v.version, v.tenants
        ));
    }
    body.push_str(&format!(
        "</tbody></table></section>\
         <section><h3>Run</h3><form method=\"post\" action=\"/console/migrations\" id=\"migrate-form\">{}\
         <p><label>Only tenant <input name=\"tenant\" id=\"migrate-tenant\" placeholder=\"every tenant\"></label>\
         <label>Only plan <input name=\"plan\" id=\"migrate-plan\" placeholder=\"any\"></label>\
         <label>Only isolation <select name=\"isolation\" id=\"migrate-isolation\">{}</select></label></p>\
         <p><label>Tenants at once <input name=\"jobs\" id=\"migrate-jobs\" type=\"number\" min=\"1\" max=\"{}\" placeholder=\"4\"></label>\
         <label>Canary <input name=\"canary\" id=\"migrate-canary\" type=\"number\" min=\"1\" placeholder=\"none\"></label></p>\
         <p><button type=\"submit\" name=\"do\" value=\"dry-run\" id=\"dry-run\">Dry run</button> \
         <button type=\"submit\" name=\"do\" value=\"run\" id=\"run-migration\" class=\"danger\">Run</button></p></form></section>",
        html::csrf(&op),
        html::options("any", &["schema", "database", "shared"], None),
        migrate::MAX_JOBS,
    ));
    Ok(html::page("Migrations", &op, &body).into_response())
}

fn number(form: &Fields, name: &str) -> Result<Option<u32>, Failure> {
    field(form, name)
        .map(|v| v.parse::<u32>())
        .transpose()
        .map_err(|_| Failure::bad_field(name, format!("{name} must be a whole number")))
}

/// The form as the API's request; a bad value names its field.
fn request(form: &Fields) -> Result<MigrateRequest, Failure> {
    let isolation = field(form, "isolation")
        .map(|i| {
            Isolation::parse(i).ok_or_else(|| {
                Failure::bad_field("isolation", "isolation must be schema, database or shared")
            })
        })
        .transpose()?;
    let req = MigrateRequest {
        tenant: field(form, "tenant").map(str::to_string),
        plan: field(form, "plan").map(str::to_string),
        isolation,
        jobs: number(form, "jobs")?,
        dry_run: field(form, "do") != Some("run"),
        canary: number(form, "canary")?,
    };
    req.validate().map_err(Failure)?;
    Ok(req)
}

pub async fn start(
    State(state): State<AppState>,
    op: Operator,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    let req = request(&form)?;
    match crate::workflows::migrate::start(&state.platform, req, &op.actor).await? {
        Started::Run(run) => {
            Ok(Redirect::to(&format!("/console/migrations/{}", run.id)).into_response())
        }
        Started::Plan(plan) => {
            let mut body = format!(
                "<h2>Dry run</h2><section><p id=\"plan-summary\">To v{}: {} tenants would be migrated, {} are already current. Nothing was changed.</p>\
                 <table id=\"plan\"><thead><tr><th>Tenant</th><th>Isolation</th><th>From</th><th>Migrations</th></tr></thead><tbody>",
                plan.target_version,
                plan.pending.len(),
                plan.already_current,
            );
            for p in plan.pending.iter().take(200) {
                body.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>v{}</td><td>{}</td></tr>",
                    html::esc(p.tenant.as_str()),
                    p.isolation.as_str(),
                    p.from_version,
                    html::esc(&p.migrations.join(", ")),
                ));
            }
            body.push_str("</tbody></table>");
            if plan.pending.len() > 200 {
                body.push_str("<p>The first 200 are listed.</p>");
            }
            body.push_str("</section><p><a href=\"/console/migrations\" id=\"back\">Back</a></p>");
            Ok(html::page("Dry run", &op, &body).into_response())
        }
    }
}

fn run_body(r: &MigrationRun) -> String {
    let done = r.migrated + r.failed + r.not_attempted;
    let mut body = format!(
        "<h2>Migration run</h2><section><dl><dt>State</dt><dd id=\"run-state\" class=\"status-{0}\">{0}</dd>\
         <dt>Target</dt><dd>v{1}</dd><dt>Started</dt><dd>{2}</dd><dt>Finished</dt><dd>{3}</dd><dt>By</dt><dd>{4}</dd>\
         <dt>Progress</dt><dd><meter id=\"run-progress\" min=\"0\" max=\"{5}\" value=\"{6}\">{6}/{5}</meter> \
         <span id=\"run-counts\">{7} migrated, {8} failed, {9} not attempted of {5}; {10} already current</span></dd>",
        html::esc(&r.state),
        r.target_version,
        html::time(&r.started_at),
        html::opt_time(&r.finished_at),
        html::esc(&r.actor),
        r.total.max(1),
        done,
        r.migrated,
        r.failed,
        r.not_attempted,
        r.already_current,
    );
    if let Some(e) = &r.error {
        body.push_str(&format!(
            "<dt>Error</dt><dd class=\"error\">{}</dd>",
            html::esc(e)
        ));
    }
    body.push_str("</dl>");
    if !r.failures.is_empty() {
        body.push_str("<h3>Failures</h3><table id=\"run-failures\"><thead><tr><th>Tenant</th><th>From</th><th>Error</th></tr></thead><tbody>");
        for f in &r.failures {
            body.push_str(&format!(
                "<tr><td>{}</td><td>v{}</td><td>{}</td></tr>",
                html::esc(&f.tenant),
                f.from_version,
                html::esc(&f.error)
            ));
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section><p><a href=\"/console/migrations\">All versions</a></p>");
    body
}

pub async fn run(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let id = id.parse().map_err(|_| {
        Failure(Problem::bad_field(
            "id",
            format!("{id:?} is not a migration run id (a UUID)"),
        ))
    })?;
    let r = migrate::get(&state.platform, id).await?;
    let body = run_body(&r);
    Ok(if r.state == "running" {
        html::page_refreshing("Migration running", &op, &body, REFRESH).into_response()
    } else {
        html::page("Migration run", &op, &body).into_response()
    })
}
