//! A template migration run's workers (`access::worker`): the idle ones per server,
//! and lending one to a tenant (whole, or checked on the unit's own connection), with a
//! tainted or failed one retired.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::access::{Lending, Tainted, Worker};
use crate::pg::open_transaction::OpenTransaction;
use crate::pg::Ident;
use crate::platform::Platform;
use crate::tenant::service::Error as TenantError;

/// The run's idle workers, per server.
#[derive(Default)]
pub(super) struct Workers(Mutex<HashMap<String, Vec<Worker>>>);

impl Workers {
    pub(super) fn take(&self, server: &str) -> Option<Worker> {
        self.0
            .lock()
            .expect("not poisoned")
            .get_mut(server)
            .and_then(Vec::pop)
    }

    pub(super) fn put(&self, server: &str, w: Worker) {
        self.0
            .lock()
            .expect("not poisoned")
            .entry(server.to_string())
            .or_default()
            .push(w);
    }

    /// Retires every idle worker (after the units: none is lent).
    pub(super) async fn retire_all(&self, views: &HashMap<String, Platform>) {
        let idle = std::mem::take(&mut *self.0.lock().expect("not poisoned"));
        for (server, workers) in idle {
            let Some(p) = views.get(&server) else {
                continue;
            };
            for w in workers {
                retire(p, w).await;
            }
        }
    }
}

/// Lends `w` to `owner`'s tenant. In the control database (`control`) only its first
/// half ([`Worker::check`]) runs, on the unit's connection `open`, and the
/// [`Lending`] comes back for the unit's opening to send; elsewhere the whole lending,
/// on a connection of its own. `Err(None)`: it was tainted and is retired.
pub(super) async fn lend_for(
    p: &Platform,
    open: &OpenTransaction,
    control: bool,
    mut w: Worker,
    owner: &Ident,
) -> Result<(Worker, Option<Lending>), Option<TenantError>> {
    match control {
        true => {
            let checked = w.check(open.client(), owner).await;
            kept(p, w, checked).await.map(|(w, l)| (w, Some(l)))
        }
        false => {
            let lent = w.lend(p, owner).await;
            kept(p, w, lent).await.map(|(w, ())| (w, None))
        }
    }
}

/// `w` with what a lending gave, or retired: `Err(None)` if it was tainted.
async fn kept<T>(
    p: &Platform,
    w: Worker,
    lending: Result<Result<T, Tainted>, crate::access::Error>,
) -> Result<(Worker, T), Option<TenantError>> {
    match lending {
        Ok(Ok(v)) => Ok((w, v)),
        Ok(Err(tainted)) => {
            tracing::warn!(role = %w.name(), after = ?tainted.after, found = %tainted.found,
                "a migration session role was changed by code of the last tenant it served; it is dropped and a new one takes its place");
            retire(p, w).await;
            Err(None)
        }
        Err(e) => {
            retire(p, w).await;
            Err(Some(session_error(e)))
        }
    }
}

pub(super) async fn retire(p: &Platform, w: Worker) {
    let name = w.name().clone();
    if let Err(e) = w.retire(p).await {
        tracing::warn!(role = %name, error = %e,
            "could not drop a migration's session role; the run drops it when it ends");
    }
}

/// A worker tainted before it served anyone: someone else changed it.
pub(super) fn fresh_tainted() -> TenantError {
    TenantError::Rejected(crate::problem::Problem::new(
        crate::problem::Kind::Internal,
        "session_role_changed",
        "a new migration session role was changed before its first use".to_string(),
    ))
}

/// A throw-away role's failure (made, connected, dropped) as the tenant's.
pub(super) fn session_error(e: crate::access::Error) -> TenantError {
    match e {
        crate::access::Error::Db(e) => TenantError::Db(e),
        crate::access::Error::Pool(e) => TenantError::Pool(e),
        crate::access::Error::Pg(e) => TenantError::Pg(e),
    }
}
