//! The backup worker's round: scheduled backups that are due, expired backups deleted,
//! tenants purged after their date. Only the instance holding a PostgreSQL advisory
//! lock runs a round, and due policies are claimed with `FOR UPDATE SKIP LOCKED` and
//! moved to their next run in the same transaction, so two servers never back up twice.

use chrono::Utc;
use uuid::Uuid;

use super::{policy, registry, take::take, BackupKind, Result};
use crate::audit;
use crate::platform::Platform;
use crate::store::{backups, tenants as store};

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
const MAX_PER_ROUND: usize = 20;

pub async fn run_once(p: &Platform) -> Result<Report> {
    let lock = crate::pg::connect(&p.config).await?;
    let leader: bool = lock
        .query_one("SELECT pg_try_advisory_lock($1)", &[&WORKER_LOCK])
        .await?
        .get(0);
    let mut report = Report {
        leader,
        ..Report::default()
    };
    if !leader {
        return Ok(report);
    }
    for _ in 0..MAX_PER_ROUND {
        let Some((tenant_id, retention, encryption)) = claim_due(p).await? else {
            break;
        };
        let client = p.pool.get().await?;
        let Some(t) = store::find(&client, &tenant_id.to_string()).await? else {
            continue;
        };
        drop(client);
        let expires = Utc::now() + chrono::Duration::days(retention.into());
        match take(
            p,
            &t,
            BackupKind::Scheduled,
            encryption,
            Some(expires),
            "worker",
        )
        .await
        {
            Ok(_) => report.backups_taken += 1,
            Err(_) => report.backups_failed += 1,
        }
    }
    // One stuck file must not stop purges and name releases: log and go on.
    report.backups_expired = match expire(p).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "expiring old backups failed; retried next round");
            0
        }
    };
    lock.execute("SELECT pg_advisory_unlock($1)", &[&WORKER_LOCK])
        .await?;
    Ok(report)
}

/// Claims one due policy of a live tenant and moves it to its next run.
async fn claim_due(p: &Platform) -> Result<Option<(Uuid, i32, bool)>> {
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
    Ok(Some((tenant_id, retention, encryption)))
}

/// Deletes the objects of backups past their expiry; their rows stay, `expired`.
/// A backup still `running` after a day lost its process: it is recorded as failed,
/// and whatever it had committed to the store (killed between committing its objects
/// and recording them) is deleted.
async fn expire(p: &Platform) -> Result<usize> {
    let mut client = p.pool.get().await?;
    let lost = backups::fail_lost(&client).await?;
    for (id, tenant_id) in lost {
        for key in [
            registry::object_key(tenant_id, id),
            registry::manifest_key(tenant_id, id),
        ] {
            if let Err(e) = p.backups.delete(&key).await {
                tracing::warn!(backup.id = %id, error = %e, "could not delete an unfinished backup's object");
            }
        }
    }
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
