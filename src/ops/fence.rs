//! Fencing, and the one lock order. Every change to a tenant first takes the
//! tenant-name advisory lock (for the rest of its transaction, waiting at most
//! [`store::NAME_WAIT`]), then the tenant's row. An operation of several transactions owns the
//! tenant from its first step to its last (`tenants.owner_op`, with a generation that
//! moves at every taking); each of its steps and compensations checks, under those
//! locks, that it still does, so a loser of a race, or a process presumed dead, can
//! never change (or undo) what another operation did. A one-transaction change
//! refuses a tenant that a running operation owns: 409 `tenant_busy`.

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::run::Run;
use super::StepError;
use crate::problem::{Kind, Problem};
use crate::store::operations as store;

pub fn busy(tenant_name: &str, what: &str) -> Problem {
    Problem::new(
        Kind::Conflict,
        "tenant_busy",
        format!("{what} on tenant {tenant_name} is in progress; retry when it has finished"),
    )
}

/// Takes the tenant's name lock for the rest of the transaction (first in the lock
/// order), waiting at most [`store::NAME_WAIT`].
pub async fn lock_name(tx: &impl GenericClient, tenant_name: &str) -> Result<(), LockError> {
    match store::lock_name(tx, tenant_name).await {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
            Err(LockError::Busy(busy(tenant_name, "another operation")))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}", .0.message)]
    Busy(Problem),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

impl From<LockError> for StepError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Busy(p) => StepError::Rejected(p),
            LockError::Db(e) => StepError::failed(e),
        }
    }
}

/// Makes the run the tenant's owner (the caller holds the name lock). Taking it again
/// after a restart is a no-op; a tenant a running operation owns is 409 `tenant_busy`.
pub async fn acquire(
    tx: &impl GenericClient,
    run: &mut Run,
    tenant: Uuid,
) -> Result<(), StepError> {
    let own = store::lock_ownership(tx, tenant)
        .await
        .map_err(StepError::failed)?
        .ok_or_else(|| StepError::Fenced(format!("tenant {} is gone", run.tenant_name)))?;
    match own.owner {
        Some(o) if o == run.id => {
            run.generation = Some(own.generation);
            return Ok(());
        }
        Some(_) if own.running => {
            return Err(StepError::Rejected(busy(
                &run.tenant_name,
                &format!(
                    "a {} operation",
                    own.owner_kind.as_deref().unwrap_or("another")
                ),
            )))
        }
        _ => {}
    }
    run.generation = Some(
        store::take_ownership(tx, tenant, run.id)
            .await
            .map_err(StepError::failed)?,
    );
    run.tenant_id = Some(tenant);
    Ok(())
}

/// [`acquire`] of a tenant the caller's transaction registered (no other operation
/// can own it yet), pipelined with the step's journal row (`outcome`, as
/// [`Run::applied_in`]): one round trip.
pub async fn acquire_registered(
    tx: &impl GenericClient,
    run: &mut Run,
    tenant: Uuid,
    outcome: &serde_json::Value,
) -> Result<(), StepError> {
    let id = run.id;
    let (taken, applied) = tokio::join!(
        store::take_ownership(tx, tenant, id),
        run.applied_in(tx, outcome)
    );
    run.generation = Some(taken.map_err(StepError::failed)?);
    run.tenant_id = Some(tenant);
    applied
}

/// Checks (row locked: the caller holds the name lock) that the run still owns its
/// tenant at the generation it took it at.
pub async fn check(tx: &impl GenericClient, run: &Run) -> Result<(), StepError> {
    let tenant = run
        .tenant_id
        .ok_or_else(|| StepError::Fenced("the operation owns no tenant".into()))?;
    let own = store::lock_ownership(tx, tenant)
        .await
        .map_err(StepError::failed)?;
    match own {
        Some(o) if o.owner == Some(run.id) && run.generation.is_none_or(|g| g == o.generation) => {
            Ok(())
        }
        _ => Err(StepError::Fenced(format!(
            "operation {} no longer owns tenant {}",
            run.id, run.tenant_name
        ))),
    }
}

/// Whether the run owns its tenant now (for a compensation: it undoes only what is
/// still its own).
pub async fn owns(tx: &impl GenericClient, run: &Run) -> Result<bool, StepError> {
    Ok(check(tx, run).await.is_ok())
}

/// Gives the tenant up (the last step, or the end of a compensation).
pub async fn release(tx: &impl GenericClient, run: &Run) -> Result<(), StepError> {
    match run.tenant_id {
        Some(t) => release_by(tx, t, run.id).await,
        None => Ok(()),
    }
}

/// [`release`] by ids, for a step that records itself beside it (one borrow of the run).
pub async fn release_by(tx: &impl GenericClient, tenant: Uuid, op: Uuid) -> Result<(), StepError> {
    store::release_ownership(tx, tenant, op)
        .await
        .map_err(StepError::failed)
}

/// For a change made in one transaction: the tenant's row is locked (the caller holds
/// the name lock) and no running operation owns it.
pub async fn free(
    tx: &impl GenericClient,
    tenant: Uuid,
    tenant_name: &str,
) -> Result<(), FreeError> {
    let own = store::lock_ownership(tx, tenant).await?;
    match own {
        Some(o) if o.owner.is_some() && o.running => Err(FreeError::Busy {
            problem: busy(
                tenant_name,
                &format!(
                    "a {} operation",
                    o.owner_kind.as_deref().unwrap_or("another")
                ),
            ),
            kind: o.owner_kind,
        }),
        _ => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FreeError {
    /// `kind`: the owning operation's kind, for callers that name it (a purge).
    #[error("{}", problem.message)]
    Busy {
        problem: Problem,
        kind: Option<String>,
    },
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}
