//! `POST /api/v1/operations/{id}/steps/{name}/complete`: the answer of an onboarding
//! step that answered 202 (docs/onboarding-steps.md). The create's `integrations` step
//! is waiting for it (journaled `waiting`); this stores the answer in the control
//! database, once, where that step (on whichever server runs it, after a restart too)
//! finds it. Authenticated by a Standard Webhooks signature with the step's own secret
//! (the agent that calls back holds it already, and should never hold the admin
//! token), or by the admin token (an operator settling a step by hand).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Error, Runtime};
use crate::problem::{Kind as ProblemKind, Problem};
use crate::store::onboarding as store;
use crate::store::operations as ops_store;

/// The body of a step's callback.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepCallback {
    /// `succeeded` (the create goes on) or `failed` (it is undone).
    pub status: String,
    /// What the step made (a JSON object), stored on the tenant under
    /// `integrations.<name>` [default: `{}`].
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Why it failed (kept in the journal, at most 1000 characters; never shown to the
    /// create's client).
    #[serde(default)]
    pub error: Option<String>,
}

/// The callback, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallbackReceived {
    pub operation_id: Uuid,
    pub step: String,
    pub status: String,
    pub received_at: DateTime<Utc>,
}

/// Who is calling back.
pub enum Caller<'a> {
    /// The admin token was presented.
    Admin,
    /// The Standard Webhooks headers, as sent (any of them may be missing).
    Signed {
        id: Option<&'a str>,
        timestamp: Option<&'a str>,
        signature: Option<&'a str>,
    },
}

/// How far a callback's timestamp may be from this server's clock.
const TOLERANCE_SECS: i64 = 300;

fn rejected(kind: ProblemKind, code: &str, message: String) -> Error {
    Error::Rejected(Problem::new(kind, code, message))
}

fn unauthorized(why: &str) -> Error {
    rejected(
        ProblemKind::Unauthorized,
        "unauthorized",
        format!("{why}: sign the callback with the step's secret (Standard Webhooks headers webhook-id, webhook-timestamp, webhook-signature) or send the admin token"),
    )
}

/// The checks on the body that need no database.
fn validate(body: &StepCallback) -> Result<(), Error> {
    if !["succeeded", "failed"].contains(&body.status.as_str()) {
        return Err(Error::Rejected(Problem::bad_field(
            "status",
            format!(
                "status must be \"succeeded\" or \"failed\", got {:?}",
                body.status
            ),
        )));
    }
    if body.result.as_ref().is_some_and(|r| !r.is_object()) {
        return Err(Error::Rejected(Problem::bad_field(
            "result",
            "result must be a JSON object",
        )));
    }
    if body.result.is_some() && body.status == "failed" {
        return Err(Error::Rejected(Problem::bad_field(
            "result",
            "a failed step has no result: send error instead",
        )));
    }
    if serde_json::to_vec(&body.result).map_or(0, |b| b.len()) > 64 * 1024 {
        return Err(Error::Rejected(Problem::bad_field(
            "result",
            "result must be at most 64 KiB of JSON",
        )));
    }
    if body
        .error
        .as_ref()
        .is_some_and(|e| e.chars().count() > 1000)
    {
        return Err(Error::Rejected(Problem::bad_field(
            "error",
            "error must be at most 1000 characters",
        )));
    }
    Ok(())
}

fn check_signature(
    rt: &Runtime,
    step: &store::StepRow,
    caller: &Caller<'_>,
    raw: &[u8],
) -> Result<(), Error> {
    let Caller::Signed {
        id,
        timestamp,
        signature,
    } = caller
    else {
        return Ok(());
    };
    let (Some(id), Some(ts), Some(sig)) = (id, timestamp, signature) else {
        return Err(unauthorized("missing signature headers"));
    };
    let ts: i64 = ts
        .parse()
        .map_err(|_| unauthorized("webhook-timestamp is not Unix seconds"))?;
    if (Utc::now().timestamp() - ts).abs() > TOLERANCE_SECS {
        return Err(unauthorized(
            "webhook-timestamp is more than 5 minutes from this server's clock",
        ));
    }
    let secret = crate::integrations::secret(rt, step).map_err(|_| {
        Error::Tenant(crate::tenant::service::Error::Secret(
            crate::secrets::SecretError::Open,
        ))
    })?;
    if !crate::events::signature::verify(&secret, id, ts, raw, sig) {
        return Err(unauthorized("the signature does not verify"));
    }
    Ok(())
}

/// The step the callback names, and its caller checked: a signature by the step's
/// secret over the raw body, or the admin token. (`_id`: the operation, for the
/// signature's message id, which the signer chooses.)
pub async fn authenticate(
    rt: &Runtime,
    _id: &str,
    name: &str,
    caller: &Caller<'_>,
    raw: &[u8],
) -> Result<store::StepRow, Error> {
    let step_missing = || {
        rejected(
            ProblemKind::NotFound,
            "onboarding_step_not_found",
            format!("onboarding step {name:?} not found"),
        )
    };
    crate::integrations::check_name(name).map_err(|_| step_missing())?;
    let c = rt.pool.get().await?;
    let step = store::find(&c, name)
        .await
        .map_err(crate::tenant::service::Error::from)?
        .ok_or_else(step_missing)?;
    check_signature(rt, &step, caller, raw)?;
    Ok(step)
}

/// Stores a step's callback. 404: no such operation, step, or step in that operation;
/// 409: the operation is not waiting for this step's callback (it finished, it has not
/// called the step yet, or the step was settled already).
pub async fn complete(
    rt: &Runtime,
    id: &str,
    name: &str,
    caller: Caller<'_>,
    raw: &[u8],
    body: &StepCallback,
) -> Result<CallbackReceived, Error> {
    authenticate(rt, id, name, &caller, raw).await?;
    validate(body)?;
    let c = rt.pool.get().await?;
    let op_missing = || {
        rejected(
            ProblemKind::NotFound,
            "operation_not_found",
            format!("operation {id} not found"),
        )
    };
    let op_id: Uuid = id.parse().map_err(|_| op_missing())?;
    let op = ops_store::get(&c, op_id)
        .await
        .map_err(crate::tenant::service::Error::from)?
        .ok_or_else(op_missing)?;
    let journal = ops_store::steps(&c, op_id)
        .await
        .map_err(crate::tenant::service::Error::from)?;
    let matched: Vec<String> = journal
        .iter()
        .find(|s| s.seq == 0)
        .and_then(|s| s.outcome.as_ref())
        .and_then(|o| serde_json::from_value(o["onboarding"].clone()).ok())
        .unwrap_or_default();
    if !matched.iter().any(|m| m == name) {
        return Err(rejected(
            ProblemKind::NotFound,
            "onboarding_step_not_found",
            format!(
                "operation {op_id} ({}) runs no onboarding step {name:?}",
                op.kind
            ),
        ));
    }
    if op.state != "running" {
        return Err(rejected(
            ProblemKind::Conflict,
            "operation_finished",
            format!(
                "operation {op_id} has {}; it waits for no callback",
                op.state
            ),
        ));
    }
    let waiting = journal.iter().any(|s| {
        s.name == "integrations"
            && s.state == crate::ops::run::WAITING
            && s.intent
                .as_ref()
                .is_some_and(|i| i["data"]["calling"] == name && !i["data"]["until"].is_null())
    });
    if !waiting {
        return Err(rejected(
            ProblemKind::Conflict,
            "step_not_waiting",
            format!(
                "operation {op_id} is not waiting for step {name:?}: the step has not answered 202 (yet), or it was settled"
            ),
        ));
    }
    let result = (body.status == "succeeded")
        .then(|| body.result.clone().unwrap_or_else(|| serde_json::json!({})));
    let stored = store::settle(
        &c,
        op_id,
        name,
        &body.status,
        result.as_ref(),
        body.error.as_deref(),
    )
    .await
    .map_err(crate::tenant::service::Error::from)?
    .ok_or_else(|| {
        rejected(
            ProblemKind::Conflict,
            "step_already_settled",
            format!("step {name:?} of operation {op_id} was settled already (a callback, or its timeout)"),
        )
    })?;
    tracing::info!(operation.id = %op_id, step = %name, status = %stored.status, "onboarding step called back");
    Ok(CallbackReceived {
        operation_id: op_id,
        step: name.to_string(),
        status: stored.status,
        received_at: stored.received_at,
    })
}
