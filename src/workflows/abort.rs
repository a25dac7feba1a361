//! `POST /api/v1/operations/{id}/abort`: an operator stops a long operation (a move
//! during its copy, a create waiting on an onboarding step) before its point of no
//! return. Only the request is written here, with its audit entry: the instance that
//! runs the operation reads it back when it renews its lease (within a third of the
//! lease) and the engine undoes the operation at its next step boundary, or sooner
//! when a step that waits checks [`crate::ops::Run::abort_requested`]. A request that
//! arrives while the step before the point of no return is running is too late: the
//! operation finishes, and shows `abort_requested_at`.

use uuid::Uuid;

use super::{Error, Runtime};
use crate::problem::{Kind as ProblemKind, Problem};
use crate::store::operations as store;

use super::operations::Operation;

fn conflict(code: &str, message: String) -> Error {
    Error::Rejected(Problem::new(ProblemKind::Conflict, code, message))
}

/// Asks operation `id` to abort; returns it as it stands (still `running`: the undoing
/// follows).
pub async fn abort(rt: &Runtime, id: &str, actor: &str) -> Result<Operation, Error> {
    let parsed: Uuid = id.parse().map_err(|_| {
        Error::Rejected(Problem::bad_field(
            "id",
            format!("{id:?} is not an operation id (a UUID)"),
        ))
    })?;
    let mut c = rt.pool.get().await?;
    let tx = c.transaction().await?;
    let Some(op) = store::abort_target(&tx, parsed).await? else {
        return Err(Error::Rejected(Problem::new(
            ProblemKind::NotFound,
            "operation_not_found",
            format!("operation {parsed} not found"),
        )));
    };
    // A kind this process does not know cannot be judged: nothing of it can be undone here.
    let point = rt
        .engine
        .registry()
        .get(&op.kind)
        .filter(|k| !k.is_single())
        .map_or(0, |k| k.point_of_no_return);
    if op.state != "running" {
        return Err(conflict(
            "operation_finished",
            format!("operation {parsed} ({}) has ended already", op.kind),
        ));
    }
    if op.phase != "forward" {
        return Err(conflict(
            "operation_undoing",
            format!("operation {parsed} ({}) is being undone already", op.kind),
        ));
    }
    if op.applied >= point {
        return Err(conflict(
            "past_point_of_no_return",
            format!(
                "operation {parsed} ({}) is past its point of no return: it can only finish",
                op.kind
            ),
        ));
    }
    store::request_abort(&tx, parsed).await?;
    crate::audit::record(
        &tx,
        &crate::audit::Entry {
            actor,
            action: "operation_abort_requested",
            tenant_id: op.tenant_id,
            tenant_name: Some(&op.tenant_name),
            operation_id: Some(parsed),
            details: serde_json::json!({"kind": op.kind}),
        },
    )
    .await
    .map_err(crate::tenant::service::Error::from)?;
    tx.commit().await?;
    super::operations::get(rt, id).await
}
