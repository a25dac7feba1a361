//! Keeps a lease alive while long work runs. Operations (and other rows the
//! reconciler or the sweeper may take over once their lease lapses) are presumed dead
//! when `lease_until` passes; a restore of a large tenant outlasts any fixed lease,
//! so while the work runs a task renews the lease every third of its length. A killed
//! process stops renewing, which is exactly what lets the reconciler step in.

use std::time::Duration;

use uuid::Uuid;

use deadpool_postgres::Pool;

/// What a lease belongs to: the statement renewing it, `$1` the row's id and `$2` the
/// lease in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Renewal(pub &'static str);

impl Renewal {
    pub const OPERATION: Renewal = Renewal(
        "UPDATE berqenas.operations SET lease_until = now() + make_interval(secs => $2)
          WHERE id = $1 AND state = 'running'",
    );
    /// A scratch object in use (`berqenas.scratch_objects`, see `backup::scratch`).
    pub const SCRATCH: Renewal = Renewal(
        "UPDATE berqenas.scratch_objects SET lease_until = now() + make_interval(secs => $2)
          WHERE id = $1",
    );
}

/// Renews the lease until dropped.
pub struct Keeper {
    task: tokio::task::JoinHandle<()>,
}

impl Keeper {
    pub fn start(pool: Pool, renewal: Renewal, id: Uuid) -> Self {
        let secs = super::lease_secs();
        let every = Duration::from_secs_f64((secs / 3.0).max(0.05));
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let renewed = async {
                    let c = pool.get().await.map_err(|e| e.to_string())?;
                    c.execute(
                        renewal.0,
                        &[&id as &(dyn tokio_postgres::types::ToSql + Sync), &secs],
                    )
                    .await
                    .map_err(|e| e.to_string())
                }
                .await;
                if let Err(e) = renewed {
                    // The next tick tries again; a lapse only lets the reconciler look.
                    tracing::warn!(lease.id = %id, error = %e, "could not renew a lease");
                }
            }
        });
        Self { task }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
