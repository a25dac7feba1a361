//! The backup worker's round, in the pieces the workflow composes: scheduled backups
//! that are due (each a `backup.take` operation), expired backups deleted. Only the
//! instance holding a PostgreSQL advisory lock runs a round, and due policies are
//! claimed with `FOR UPDATE SKIP LOCKED` and moved to their next run in the same
//! transaction, so two servers never back up twice.

use chrono::Utc;
use uuid::Uuid;

use super::{policy, registry, Result};
use crate::audit;
use crate::platform::Platform;
use crate::store::backups;

/// Any constant; held (session level, on a connection of its own) for one round.
const WORKER_LOCK: i64 = 0x6265_7271_6261_636b; // "berqback"

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Whether this instance held the lock (else it did nothing).
    pub leader: bool,
    pub backups_taken: usize,
    pub backups_failed: usize,
    pub backups_expired: usize,
}

/// At most this many scheduled backups per round; the rest wait for the next.
pub const MAX_PER_ROUND: usize = 20;

/// This instance runs the round while it holds this (a session of its own).
pub struct Leader(tokio_postgres::Client);

/// The round's lock, if no other instance holds it.
pub async fn lead(p: &Platform) -> Result<Option<Leader>> {
    let lock = crate::pg::connect(&p.config).await?;
    let leader: bool = lock
        .query_one("SELECT pg_try_advisory_lock($1)", &[&WORKER_LOCK])
        .await?
        .get(0);
    Ok(leader.then_some(Leader(lock)))
}

impl Leader {
    pub async fn release(self) -> Result<()> {
        self.0
            .execute("SELECT pg_advisory_unlock($1)", &[&WORKER_LOCK])
            .await?;
        Ok(())
    }
}

/// A scheduled backup that is due: its tenant, retention in days, and encryption.
pub struct Due {
    pub tenant_id: Uuid,
    pub retention_days: i32,
    pub encryption: bool,
}

/// Claims one due policy of a live tenant and moves it to its next run.
pub async fn claim_due(p: &Platform) -> Result<Option<Due>> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let Some((tenant_id, schedule, retention, encryption)) = backups::claim_due_policy(&tx).await?
    else {
        return Ok(None);
    };
    let next = policy::parse_schedule("schedule", &schedule)
        .and_then(|c| policy::next_run(&c, Utc::now()))
        // A schedule that stopped parsing (it was valid when stored) waits a day.
        .unwrap_or_else(|_| Utc::now() + chrono::Duration::days(1));
    backups::set_next_run(&tx, tenant_id, next).await?;
    tx.commit().await?;
    Ok(Some(Due {
        tenant_id,
        retention_days: retention,
        encryption,
    }))
}

/// Deletes the objects of backups past their expiry; their rows stay, `expired`.
pub async fn expire(p: &Platform) -> Result<usize> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let due = backups::claim_expired(&tx, 100).await?;
    for (id, tenant_id, tenant_name) in &due {
        p.backups
            .delete(&registry::object_key(*tenant_id, *id))
            .await
            .map_err(super::Error::Store)?;
        p.backups
            .delete(&registry::manifest_key(*tenant_id, *id))
            .await
            .map_err(super::Error::Store)?;
        backups::mark_expired(&tx, *id).await?;
        audit::record(
            &tx,
            &audit::Entry {
                actor: "worker",
                action: "backup_expired",
                tenant_id: Some(*tenant_id),
                tenant_name: Some(tenant_name),
                operation_id: None,
                details: serde_json::json!({"backup_id": id}),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(due.len())
}
