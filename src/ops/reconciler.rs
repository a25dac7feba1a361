//! Finds operations whose process died: still `running`, lease expired. Whoever
//! owns the operation's kind decides how to finish or revert it.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Stale {
    pub id: Uuid,
    pub kind: String,
    pub tenant_id: Option<Uuid>,
    pub tenant_name: String,
}

pub async fn stale(
    c: &impl GenericClient,
    limit: i64,
) -> Result<Vec<Stale>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT id, kind, tenant_id, tenant_name FROM berqenas.operations
              WHERE state = 'running' AND lease_until < now() AND instance_id IS NULL
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

/// Finishes or reverts every operation whose process died, and forgets expired
/// idempotency keys. Returns how many operations it closed.
///
/// Schema-mode creates run in one transaction, so a crash rolls them back inside
/// PostgreSQL and leaves nothing here; this covers operations recorded as `running`
/// before their work (multi-step modes), whatever they left in the catalog.
pub async fn run_once(
    p: &crate::platform::Platform,
) -> Result<usize, crate::tenant::service::Error> {
    use crate::tenant::{store, Status};

    let client = p.pool.get().await?;
    expire_idempotency_keys(&client).await?;
    let mut closed = 0;
    for op in stale(&client, 100).await? {
        // Claim it: another server's reconciler may be looking at the same row.
        let claimed = client
            .execute(
                "UPDATE berqenas.operations SET lease_until = now() + interval '1 minute'
                  WHERE id = $1 AND state = 'running' AND lease_until < now()",
                &[&op.id],
            )
            .await?;
        if claimed == 0 {
            continue;
        }
        if [
            crate::backup::journal::IN_PLACE,
            crate::backup::journal::AS_NEW,
        ]
        .contains(&op.kind.as_str())
        {
            // A restore journals what it changed; its own module puts it right.
            match crate::backup::journal::recover(p, op.id).await {
                Ok(()) => closed += 1,
                Err(e) => {
                    tracing::error!(operation.id = %op.id, error = %e, "could not settle an interrupted restore; retrying later")
                }
            }
            continue;
        }
        let tenant = store::find(&client, &op.tenant_name).await?;
        let finished = tenant
            .as_ref()
            .is_some_and(|t| t.status != Status::Provisioning);
        match op.kind.as_str() {
            _ if finished => {
                super::succeed(&client, op.id, &[], None).await?;
            }
            _ => {
                super::fail(
                    &client,
                    op.id,
                    "the process died before the operation finished",
                    None,
                )
                .await?;
            }
        }
        tracing::warn!(operation.id = %op.id, operation.kind = %op.kind, tenant.name = %op.tenant_name, "reconciled");
        closed += 1;
    }
    Ok(closed)
}
