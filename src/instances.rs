//! Several `berqenas serve` instances on one control database (docs/instances.md):
//! the jobs one elected instance runs ([`JOBS`], see [`crate::pg::election`]), and the
//! rule that the embedded cluster serves one instance only. Everything else is shared
//! per item (operations, usage reports, webhook deliveries) or is the instance's own
//! (its files, its caches, its realtime subscribers).

use anyhow::bail;

use crate::platform::Platform;
use crate::store::operations as store;

/// Scheduled backups and the expiry of old ones.
pub const BACKUPS: &str = "backups";
/// Purges of deleted tenants past their date, and the release of purged names.
pub const PURGES: &str = "purges";
/// Trials that ended.
pub const TRIALS: &str = "trials";
/// The check that tenant roles have no more than berqenas gives them.
pub const ROLE_CHECK: &str = "role-check";
/// Idempotency keys past their lifetime.
pub const IDEMPOTENCY_KEYS: &str = "idempotency-keys";

/// Every job one elected instance runs; each is elected on its own.
pub const JOBS: &[&str] = &[
    crate::workflows::quotas::ROUND_JOB,
    crate::quota::worker::WATCHDOG_JOB,
    BACKUPS,
    PURGES,
    TRIALS,
    ROLE_CHECK,
    IDEMPOTENCY_KEYS,
];

/// How long an instance that stopped sending heartbeats still counts as live (three
/// leases: its keeper beats every third of one).
fn live_secs() -> f64 {
    3.0 * crate::ops::lease_secs()
}

/// Refuses to start when the embedded cluster would be shared: `embedded` (this
/// process runs the cluster) while other live instances use it, or `--database-url`
/// naming the cluster a live embedded instance runs (it stops with that process).
/// Runs before the control plane is touched: a control database too old to record
/// instances has none to refuse.
pub async fn refuse_shared_cluster(
    config: &tokio_postgres::Config,
    identity: &str,
    embedded: bool,
) -> anyhow::Result<()> {
    use tokio_postgres::error::SqlState;
    let pool = crate::pg::pool(config.clone(), 1)?;
    let others = match store::live_instances(&pool.get().await?, identity, live_secs()).await {
        Ok(o) => o,
        Err(e)
            if matches!(
                e.code(),
                Some(&SqlState::UNDEFINED_TABLE)
                    | Some(&SqlState::UNDEFINED_COLUMN)
                    | Some(&SqlState::INVALID_SCHEMA_NAME)
            ) =>
        {
            return Ok(())
        }
        Err(e) => return Err(e.into()),
    };
    if embedded {
        if let Some(o) = others.first() {
            bail!(
                "another berqenas instance ({}, pid {}) uses this embedded cluster's control database; the embedded cluster is for one instance: stop the others, or run every instance with --database-url on a PostgreSQL server of its own",
                o.identity,
                o.pid
            );
        }
    } else if let Some(o) = others.iter().find(|o| o.embedded) {
        bail!(
            "--database-url names the embedded cluster of the berqenas instance {} (pid {}); that cluster stops with it and is for one instance: run every instance with --database-url on a PostgreSQL server of its own",
            o.identity,
            o.pid
        );
    }
    Ok(())
}

/// Records that this instance runs the embedded cluster (see [`refuse_shared_cluster`]).
pub async fn mark_embedded(p: &Platform, instance: uuid::Uuid) -> anyhow::Result<()> {
    store::mark_embedded(&p.pool.get().await?, instance).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn job_names_are_distinct() {
        let mut names = super::JOBS.to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), super::JOBS.len());
    }
}
