//! Reading operations for the operations API (`GET /api/v1/operations`): the row, and
//! its steps in the kind's order, each with its state and a summary of what it
//! journaled, so a slow operation can be watched. Steps not reached yet show as
//! `pending`, steps the run went past with nothing to do as `skipped`. Nothing here
//! writes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Error, Runtime};
use crate::problem::{Kind as ProblemKind, Problem};
use crate::store::operations::{self as store, OperationInfo, StepInfo};
use crate::tenant::service::{DEFAULT_PAGE, MAX_PAGE};

/// The tenant an operation is about (`id` is null until the operation made it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperationTenant {
    pub id: Option<Uuid>,
    pub name: String,
}

/// One step of an operation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperationStep {
    pub name: String,
    /// `pending` (not reached), `skipped` (nothing to do in this run: a vector store
    /// or onboarding steps not asked for), `started` (it reaches outside the control
    /// database and has not answered yet), `waiting` (for an answer from outside, e.g. an onboarding
    /// step's callback after its 202), `applied`, `compensated` (undone).
    pub state: String,
    /// When its journal row was last written (null while pending).
    pub at: Option<DateTime<Utc>>,
    /// What it journaled, in short (`database=tenant_acme`); never a secret.
    pub summary: Option<String>,
}

/// An operation and its steps.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Operation {
    pub id: Uuid,
    /// `tenant.create`, `tenant.create.database`, `backup.take`, ... (docs/operations.md).
    pub kind: String,
    /// `running`, `succeeded` or `failed` (failed operations were undone, or are
    /// being: see `phase`).
    pub state: String,
    /// `forward`, or `compensating` once a failure is being undone.
    pub phase: String,
    pub tenant: OperationTenant,
    pub created_at: DateTime<Utc>,
    /// When a step or the operation last moved.
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When an operator asked to abort it (`POST /api/v1/operations/{id}/abort`).
    pub abort_requested_at: Option<DateTime<Utc>>,
    /// Why it failed (or, while running, why a step is being retried): the refusal the
    /// client got, or the step that failed; never a database's text.
    pub error: Option<String>,
    pub steps: Vec<OperationStep>,
}

/// A page of operations, newest first; pass `next_cursor` as `cursor` for older ones.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperationPage {
    pub operations: Vec<Operation>,
    pub next_cursor: Option<String>,
}

pub const STATES: [&str; 3] = ["running", "succeeded", "failed"];

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::Rejected(Problem::bad_field(field, message))
}

/// `GET /api/v1/operations/{id}`.
pub async fn get(rt: &Runtime, id: &str) -> Result<Operation, Error> {
    let id: Uuid = id
        .parse()
        .map_err(|_| invalid("id", format!("{id:?} is not an operation id (a UUID)")))?;
    let c = rt.pool.get().await?;
    let row = store::find_info(&c, id).await?.ok_or_else(|| {
        Error::Rejected(Problem::new(
            ProblemKind::NotFound,
            "operation_not_found",
            format!("operation {id} not found"),
        ))
    })?;
    let steps = store::steps_of(&c, &[id]).await?;
    Ok(view(rt, row, &steps))
}

/// `GET /api/v1/operations?tenant=&state=&limit=&cursor=`: newest first.
pub async fn list(
    rt: &Runtime,
    tenant: Option<&str>,
    state: Option<&str>,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<OperationPage, Error> {
    if let Some(s) = state.filter(|s| !STATES.contains(s)) {
        return Err(invalid(
            "state",
            format!("state must be one of {}, got {s:?}", STATES.join(", ")),
        ));
    }
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(invalid(
            "limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let before = cursor
        .map(|c| c.parse::<Uuid>())
        .transpose()
        .map_err(|_| invalid("cursor", "cursor is not one this server handed out"))?;
    let c = rt.pool.get().await?;
    // By id: the operations that name the tenant by id, and those under its name.
    let (tenant, tenant_id) = match tenant.map(|t| (t, t.parse::<Uuid>())) {
        Some((_, Ok(id))) => (
            crate::store::tenants::find(&c, &id.to_string())
                .await
                .map_err(crate::tenant::service::Error::from)?
                .map(|t| t.name.to_string()),
            Some(id),
        ),
        Some((name, Err(_))) => (Some(name.to_string()), None),
        None => (None, None),
    };
    // One row more than the page tells whether there is a next page.
    let mut rows =
        store::list_info(&c, tenant.as_deref(), tenant_id, state, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let steps = store::steps_of(&c, &ids).await?;
    let next_cursor = more
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let operations = rows
        .into_iter()
        .map(|r| {
            let mine: Vec<StepInfo> = steps
                .iter()
                .filter(|s| s.operation_id == r.id)
                .cloned()
                .collect();
            view(rt, r, &mine)
        })
        .collect();
    Ok(OperationPage {
        operations,
        next_cursor,
    })
}

/// The row and its journal as shown: a multi-step kind's steps in order, each with its
/// journal row if it has one; a one-transaction kind's journal as it is (its commit, if
/// it committed).
fn view(rt: &Runtime, r: OperationInfo, journal: &[StepInfo]) -> Operation {
    let shown = |s: &StepInfo| OperationStep {
        name: s.name.clone(),
        state: s.state.clone(),
        at: Some(s.at),
        summary: summary(match s.state.as_str() {
            "started" | "waiting" => s.intent.as_ref().map(|i| &i["data"]),
            _ => s.outcome.as_ref(),
        }),
    };
    let steps = match rt.engine.registry().get(&r.kind) {
        Some(kind) if !kind.is_single() => {
            // The steps its own build listed (they may differ from this build's).
            let listed: Vec<String> = r
                .steps
                .clone()
                .unwrap_or_else(|| kind.step_names().iter().map(|n| n.to_string()).collect());
            let mut steps: Vec<OperationStep> = listed
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    match journal
                        .iter()
                        .find(|s| s.seq as usize == i && s.name == *name)
                    {
                        Some(s) => shown(s),
                        None => OperationStep {
                            name: name.to_string(),
                            // A step with nothing to do is not journaled (`Step::skip`):
                            // one the run went past was skipped.
                            state: if r.state == "succeeded"
                                || journal.iter().any(|s| s.seq as usize > i)
                            {
                                "skipped".into()
                            } else {
                                "pending".into()
                            },
                            at: None,
                            summary: None,
                        },
                    }
                })
                .collect();
            // Rows an older release journaled under other names stay visible.
            steps.extend(
                journal
                    .iter()
                    .filter(|s| listed.get(s.seq as usize) != Some(&s.name))
                    .map(shown),
            );
            steps
        }
        _ if journal.is_empty() && r.state == "succeeded" => vec![OperationStep {
            name: crate::ops::kind::COMMIT.into(),
            state: "applied".into(),
            at: r.finished_at,
            summary: None,
        }],
        _ => journal.iter().map(shown).collect(),
    };
    Operation {
        id: r.id,
        kind: r.kind,
        state: r.state,
        phase: r.phase,
        tenant: OperationTenant {
            id: r.tenant_id,
            name: r.tenant_name,
        },
        created_at: r.created_at,
        updated_at: r.updated_at,
        finished_at: r.finished_at,
        abort_requested_at: r.abort_requested_at,
        error: r.error,
        steps,
    }
}

/// Keys whose values are never shown, whatever they hold: sealed answers and anything
/// that names a secret.
const HIDDEN: [&str; 8] = [
    "answer",
    "secret",
    "password",
    "token",
    "key",
    "dsn",
    "sealed",
    "credentials",
];

/// A step's journaled value in short: its top-level scalars (`database=tenant_acme,
/// sessions=0`), a list as its length; hidden keys and long strings (sealed blobs)
/// left out.
pub fn summary(v: Option<&Value>) -> Option<String> {
    let parts: Vec<String> = match v? {
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| !HIDDEN.iter().any(|h| k.contains(h)))
            .filter_map(|(k, v)| {
                let shown = match v {
                    Value::String(s) if s.chars().count() <= 80 => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Array(a) if a.len() == 1 => "1 item".into(),
                    Value::Array(a) => format!("{} items", a.len()),
                    _ => return None,
                };
                Some(format!("{k}={shown}"))
            })
            .collect(),
        Value::String(s) if s.chars().count() <= 80 => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        _ => Vec::new(),
    };
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_summary_shows_scalars_and_never_a_sealed_answer_or_a_secret() {
        let s = summary(Some(&json!({
            "tenant_id": "0190", "answer": "c2VhbGVk", "api_key_prefix": "bqk_1",
            "password": "x", "database": "tenant_acme", "sessions": 2, "ours": true,
            "logins": ["a", "b"], "blob": "x".repeat(200), "nested": {"password": "y"}
        })))
        .unwrap();
        assert_eq!(
            s,
            "database=tenant_acme, logins=2 items, ours=true, sessions=2, tenant_id=0190"
        );
        assert_eq!(summary(Some(&Value::Null)), None);
        assert_eq!(summary(None), None);
        assert_eq!(summary(Some(&json!({"answer": "z"}))), None);
    }
}
