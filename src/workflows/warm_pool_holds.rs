//! Sessions opened ahead in database-mode members' databases (`serve --warm-pool`).
//!
//! A claim's work inside its member's database (`tenant::database_claim`) needs a
//! session there, and a new one was 5.3 ms of a 12.7 ms claim (TCP, SCRAM, a new
//! backend and its first catalog reads; docs/warm_pool.md). Between creates, the
//! refiller opens one in the database of each member the next claims take (the
//! oldest, up to [`MAX_HELD`]); a claim takes its member's, or connects as before.
//!
//! A held session is in its member's database, where `ALTER DATABASE ... RENAME`
//! refuses anyone. Every path that renames or drops a member's database ends them,
//! this server's and any other's (they are named `warm::HOLD_APPLICATION`):
//!
//! - a claim, in one transaction or in steps, in the statement that renames its
//!   member's database (`warm::rename_database_sql`), waiting until they have left;
//! - a recycle, which drops the database `WITH (FORCE)`.
//!
//! A held session that has ended (ended by one of those, an idle timeout, a
//! restarted PostgreSQL) is never handed out, and is forgotten at the next top-up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::warm_pool::Pace;
use super::{Error, Runtime};
use crate::names::Slug;
use crate::pg::closing::Closing;
use crate::store::tenants::Isolation;
use crate::store::warm_pool::{self as store, DEFAULT_SERVER as DEFAULT};
use crate::tenant::{database_claim, service};

/// At most this many held sessions (each is a backend of the server's).
pub const MAX_HELD: i64 = 16;

/// This server's held sessions, by member name.
#[derive(Default)]
pub struct Holds {
    open: Mutex<HashMap<String, Closing>>,
    taken: AtomicU64,
}

impl Holds {
    /// The session held in `member`'s database, if one is and it is still open.
    pub fn take(&self, member: &Slug) -> Option<Closing> {
        let session = self.lock().remove(member.as_str())?;
        let open = !session.client.is_closed();
        if open {
            self.taken.fetch_add(1, Ordering::Relaxed);
        }
        open.then_some(session)
    }

    /// How many held sessions claims have taken.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// How many sessions are held and open.
    pub fn count(&self) -> usize {
        self.lock()
            .values()
            .filter(|s| !s.client.is_closed())
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Closing>> {
        // A panic under the lock leaves a map that is still whole.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Holds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holds")
            .field("open", &self.lock().len())
            .field("taken", &self.taken())
            .finish()
    }
}

/// Holds a session in the database of each of the `n` (at most [`MAX_HELD`])
/// database-mode members claims take next, and lets go of the others;
/// [`Pace::AroundCreates`]: stops when creates arrive (a new session costs the CPU
/// the claims want). Returns how many it opened.
pub async fn top_up(rt: &Runtime, n: i64, pace: Pace) -> Result<usize, Error> {
    let keys = {
        let c = rt.pool.get().await?;
        let version = rt.template.latest_version();
        store::next_keys(&c, DEFAULT, Isolation::Database, version, n.min(MAX_HELD))
            .await
            .map_err(service::Error::from)?
    };
    let next: Vec<Slug> = keys.iter().filter_map(|k| Slug::warm_member(k)).collect();
    let missing: Vec<Slug> = {
        let mut open = rt.holds.lock();
        // Dropped, a session ends (its driver sends `Terminate`).
        open.retain(|name, s| !s.client.is_closed() && next.iter().any(|m| m.as_str() == name));
        next.into_iter()
            .filter(|m| !open.contains_key(m.as_str()))
            .collect()
    };
    let mut opened = 0;
    for member in missing {
        if pace == Pace::AroundCreates && super::warm_pool::creates_arriving() {
            break;
        }
        match database_claim::hold(&rt.platform, &member).await {
            Ok(session) => {
                rt.holds.lock().insert(member.as_str().to_string(), session);
                opened += 1;
            }
            // Claimed or recycled since it was listed; or the server is refusing:
            // its claim connects.
            Err(e) => tracing::debug!(member = %member, error = %e, "no session held ahead"),
        }
    }
    Ok(opened)
}
