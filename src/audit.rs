//! The audit trail: one row per change, written in the same transaction as the change.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

pub struct Entry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub tenant_id: Option<Uuid>,
    pub tenant_name: Option<&'a str>,
    pub operation_id: Option<Uuid>,
    pub details: serde_json::Value,
}

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
