//! Electing one instance per background job among several berqenas instances on one
//! control database: each job is a session-level advisory lock, taken with
//! `pg_try_advisory_lock` on a connection of its own and held for as long as that
//! connection lives. The instance that holds a job's lock runs it; when that instance
//! dies (however it dies) PostgreSQL ends its session, the lock goes with it, and the
//! next campaign round of another instance takes it. Nothing is written: there is no
//! row to clean up after a crash.
//!
//! Each round also reads back which locks its session really holds (`pg_locks`), so a
//! connection that broke without an error is noticed within a round, and the jobs are
//! given up at once rather than run by two instances.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::Config;

/// The first half of every job's two-key advisory lock ("berq"). Two-key locks never
/// meet the one-key (bigint) locks used elsewhere: PostgreSQL keeps them apart.
const NAMESPACE: i32 = 0x6265_7271;

/// How often an instance tries for the jobs it does not hold, and checks the ones it
/// does (so how long a job waits after its instance died).
pub const ROUND: Duration = Duration::from_secs(1);

/// The jobs this instance holds right now. Cheap to read from any task.
#[derive(Debug, Default)]
pub struct Elected {
    held: Mutex<BTreeSet<&'static str>>,
}

impl Elected {
    /// Whether this instance runs `job` now (read at the start of each of its rounds).
    pub fn holds(&self, job: &str) -> bool {
        self.lock().contains(job)
    }

    /// The jobs this instance holds, by name.
    pub fn held(&self) -> Vec<&'static str> {
        self.lock().iter().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<&'static str>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, now: BTreeSet<&'static str>) {
        let mut held = self.lock();
        for gained in now.difference(&held) {
            tracing::info!(job = gained, "this instance now runs the job");
        }
        for lost in held.difference(&now) {
            tracing::warn!(job = lost, "this instance no longer runs the job");
        }
        *held = now;
    }
}

/// How long a round may take before the session is given up: an instance that cannot
/// confirm its locks stops running their jobs before PostgreSQL lets another
/// instance have them (the server notices a vanished peer only after [`SERVER_KEEPALIVE`]).
const ROUND_DEADLINE: Duration = Duration::from_secs(5);

/// The election session's TCP keepalives on the server side (idle seconds, interval,
/// count): a host that vanishes without closing its connection (a power loss, a
/// partition) loses its locks after about 20 s, not the kernel's default two hours.
const SERVER_KEEPALIVE: &str =
    "SET tcp_keepalives_idle = 8; SET tcp_keepalives_interval = 3; SET tcp_keepalives_count = 4";

/// Campaigns for `jobs` until the task is aborted: one connection, kept open, holding
/// the locks won; reconnected (and every job given up meanwhile) when it breaks.
pub async fn campaign_forever(
    mut config: Config,
    jobs: &'static [&'static str],
    elected: Arc<Elected>,
) {
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(2);
    let mut session: Option<tokio_postgres::Client> = None;
    loop {
        if session.as_ref().is_none_or(|c| c.is_closed()) {
            elected.set(BTreeSet::new());
            session = open(&config).await;
        }
        if let Some(c) = &session {
            let result = tokio::time::timeout(ROUND_DEADLINE, round(c, jobs)).await;
            match result {
                Ok(Ok(now)) => elected.set(now),
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "no answer in time".to_string(),
                    };
                    tracing::warn!(error = %why, "the election session failed; giving up every job until it is back");
                    elected.set(BTreeSet::new());
                    // Dropping the client closes the session, and its locks go with it.
                    session = None;
                }
            }
        }
        tokio::time::sleep(ROUND).await;
    }
}

/// A new election session (`None`: not now; the next round tries again).
async fn open(config: &Config) -> Option<tokio_postgres::Client> {
    let c = super::connect(config).await.ok()?;
    // Ignored on a Unix socket; a server that refuses them still elects.
    if let Err(e) = c.batch_execute(SERVER_KEEPALIVE).await {
        tracing::debug!(error = %e, "could not set the election session's keepalives; the server's defaults apply");
    }
    Some(c)
}

/// One round: every job not held is tried for, then the session's locks are read back.
async fn round(
    c: &tokio_postgres::Client,
    jobs: &'static [&'static str],
) -> Result<BTreeSet<&'static str>, tokio_postgres::Error> {
    let names: Vec<&str> = jobs.to_vec();
    let held: Vec<String> = c
        .query(
            "WITH j AS (SELECT name, pg_catalog.hashtext(name) AS key FROM unnest($2::text[]) AS name),
                  mine AS (SELECT objid::int4 AS key FROM pg_catalog.pg_locks
                            WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid()
                              AND classid::int4 = $1 AND objsubid = 2 AND granted)
             SELECT j.name FROM j
              -- CASE: a lock already held is not taken again (it would stack).
              WHERE CASE WHEN j.key IN (SELECT key FROM mine) THEN true
                         ELSE pg_catalog.pg_try_advisory_lock($1, j.key) END",
            &[&NAMESPACE, &names],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(jobs
        .iter()
        .copied()
        .filter(|j| held.iter().any(|h| h == j))
        .collect())
}
