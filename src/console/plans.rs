//! Plans (`/console/plans`): each plan's quotas, trial and default isolation, and how
//! many tenants are on it. The API has no plan edit (only the plan's backup policy,
//! shown here), so neither has the console.

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::{html, Failure, Operator};
use crate::api::AppState;
use crate::backup::policy;
use crate::quota::service::value;
use crate::quota::FIELDS;
use crate::tenant::service;

pub async fn list(State(state): State<AppState>, op: Operator) -> Result<Response, Failure> {
    let plans = service::plans(&state.platform).await?;
    let mix = service::count_by_status_plan_isolation(&state.platform).await?;
    let mut body = String::from("<h2>Plans</h2><table id=\"plans\"><thead><tr><th>Quota</th>");
    for p in &plans {
        body.push_str(&format!("<th>{}</th>", html::esc(&p.name)));
    }
    body.push_str("</tr></thead><tbody>");
    let mut row = |label: &str, cells: Vec<String>| {
        body.push_str(&format!("<tr><td>{}</td>", html::esc(label)));
        for c in cells {
            body.push_str(&format!("<td>{c}</td>"));
        }
        body.push_str("</tr>");
    };
    row(
        "tenants",
        plans
            .iter()
            .map(|p| {
                mix.iter()
                    .filter(|m| m.1 == p.name)
                    .map(|m| m.3)
                    .sum::<i64>()
                    .to_string()
            })
            .collect(),
    );
    row(
        "trial_days",
        plans.iter().map(|p| p.trial_days.to_string()).collect(),
    );
    row(
        "default isolation",
        plans
            .iter()
            .map(|p| {
                p.default_isolation
                    .map(|i| i.as_str())
                    .unwrap_or("schema")
                    .to_string()
            })
            .collect(),
    );
    for (name, _, _) in FIELDS {
        row(
            name,
            plans
                .iter()
                .map(|p| value(&p.quotas, name).to_string())
                .collect(),
        );
    }
    let mut schedules = Vec::new();
    for p in &plans {
        let s = policy::get_plan(&state.platform, &p.name).await?;
        schedules.push(match s.schedule {
            Some(s) => format!("<code>{}</code>", html::esc(&s)),
            None => "none".into(),
        });
    }
    row("backup schedule", schedules);
    body.push_str("</tbody></table>");
    Ok(html::page("Plans", &op, &body).into_response())
}
