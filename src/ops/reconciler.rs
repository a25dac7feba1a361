//! Finds operations whose process died: still `running`, lease expired. Whoever
//! owns the operation's kind decides how to finish or revert it.

use tokio_postgres::GenericClient;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Stale {
    pub id: Uuid,
    pub kind: String,
    pub tenant_id: Option<Uuid>,
    pub tenant_name: String,
}

pub async fn stale(c: &impl GenericClient, limit: i64) -> Result<Vec<Stale>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT id, kind, tenant_id, tenant_name FROM berqenas.operations
              WHERE state = 'running' AND lease_until < now()
              ORDER BY created_at LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Stale {
            id: r.get(0),
            kind: r.get(1),
            tenant_id: r.get(2),
            tenant_name: r.get(3),
        })
        .collect())
}

/// Forgets idempotency keys after a day, as clients are told; the operation stays.
pub async fn expire_idempotency_keys(c: &impl GenericClient) -> Result<u64, tokio_postgres::Error> {
    c.execute(
        "UPDATE berqenas.operations SET idempotency_key = NULL, response = NULL
          WHERE idempotency_key IS NOT NULL AND created_at < now() - interval '24 hours'",
        &[],
    )
    .await
}
