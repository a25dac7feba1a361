//! The one keeper of a process (see [`super::engine`]): it renews the leases of the
//! operations the process drives and its instance's heartbeat, and brings back the
//! aborts operators asked for on the same round trip.

use std::sync::atomic::Ordering;
use std::time::Duration;

use uuid::Uuid;

use super::engine::{Context, Inner};
use super::lease_secs;
use crate::store::operations as store;

/// Renews the leases of the operations it drives and
/// its instance's heartbeat, every third of a lease. A killed process stops renewing,
/// which is what lets a reconciler step in (at once, when its restart marks it gone).
pub(super) async fn keep<C: Context>(engine: std::sync::Weak<Inner<C>>) {
    let secs = lease_secs();
    let every = Duration::from_secs_f64((secs / 3.0).max(0.05));
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let ids: Vec<Uuid> = inner
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        let renewed = async {
            let c = inner.pool.get().await.map_err(|e| e.to_string())?;
            if !ids.is_empty() {
                let aborted = store::renew(&c, inner.instance, &ids, secs)
                    .await
                    .map_err(|e| e.to_string())?;
                let active = inner.active.lock().unwrap_or_else(|e| e.into_inner());
                for id in aborted {
                    if let Some(r) = active.get(&id) {
                        r.abort.store(true, Ordering::SeqCst);
                    }
                }
            }
            store::heartbeat(&c, inner.instance)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = renewed {
            // The next tick tries again; a lapse only lets a reconciler look.
            tracing::warn!(error = %e, "could not renew operation leases");
        }
    }
}
