//! Suspend, resume, activate, delete, restore, purge: the API's workflows, with the
//! console session as the actor.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;

use super::{field, Failure, Fields, Operator};
use crate::api::AppState;
use crate::problem::Kind;
use crate::tenant::offboarding::DeleteOptions;
use crate::tenant::suspension::SuspendTenant;
use crate::workflows::{lifecycle, offboarding};

/// The ticked confirmation the forms of actions that take logins away carry.
fn confirmed(form: &Fields, what: &str) -> Result<(), Failure> {
    match field(form, "confirm") {
        Some("yes") => Ok(()),
        _ => Err(Failure::bad_field(
            "confirm",
            format!("tick the box to confirm the {what}"),
        )),
    }
}

pub async fn act(
    State(state): State<AppState>,
    op: Operator,
    Path((name, action)): Path<(String, String)>,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    let rt = &state.platform;
    let actor = op.actor.as_str();
    let t = match action.as_str() {
        "suspend" => {
            confirmed(&form, "suspension")?;
            let body = SuspendTenant {
                reason: field(&form, "reason").map(str::to_string),
            };
            lifecycle::suspend(rt, &name, &body, actor).await?
        }
        "resume" => lifecycle::resume(rt, &name, actor).await?,
        "activate" => lifecycle::activate(rt, &name, actor).await?,
        "restore" => offboarding::restore(rt, &name, actor).await?,
        "delete" => {
            confirmed(&form, "delete")?;
            let retention_days = field(&form, "retention_days")
                .map(|d| d.parse::<i64>())
                .transpose()
                .map_err(|_| {
                    Failure::bad_field(
                        "retention_days",
                        "retention_days must be a whole number of days",
                    )
                })?;
            let opts = DeleteOptions {
                retention_days,
                retention_field: "retention_days",
                purge_now: false,
                confirm: None,
            };
            offboarding::delete(rt, &name, &opts, actor).await?
        }
        "purge" => {
            // The workflow refuses a name that is not the tenant's, naming `confirm`.
            let opts = DeleteOptions {
                retention_days: None,
                retention_field: "retention_days",
                purge_now: true,
                confirm: Some(field(&form, "confirm_name").unwrap_or("").to_string()),
            };
            offboarding::delete(rt, &name, &opts, actor).await?
        }
        other => {
            return Err(Failure::new(
                Kind::NotFound,
                "not_found",
                format!("no action {other:?}"),
            ))
        }
    };
    Ok(Redirect::to(&format!("/console/tenants/{}", t.name.as_str())).into_response())
}
