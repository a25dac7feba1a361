//! The audit trail: one row per change, written in the same transaction as the change.
//! The rows form a hash chain (linked by a trigger, see migration 0007); [`chain`]
//! verifies it, [`query`] reads it.

pub mod chain;
pub mod query;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

/// One audit row to append. `action` is one of the names in docs/audit.md
/// (`tenant_created`, `tenant_suspended`, `api_key_revoked`, ...).
pub struct Entry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub tenant_id: Option<Uuid>,
    pub tenant_name: Option<&'a str>,
    pub operation_id: Option<Uuid>,
    pub details: serde_json::Value,
}

/// Appends a row inside the caller's transaction. The chain trigger takes the chain's
/// lock until that transaction ends, so call this as the transaction's last change.
pub async fn record(c: &impl GenericClient, e: &Entry<'_>) -> Result<(), tokio_postgres::Error> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO berqenas.audit_log (actor, action, tenant_id, tenant_name, operation_id, details)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    c.execute(
        &stmt,
        &[
            &e.actor,
            &e.action,
            &e.tenant_id,
            &e.tenant_name,
            &e.operation_id,
            &e.details,
        ],
    )
    .await?;
    Ok(())
}
