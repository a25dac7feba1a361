//! PostgreSQL's predefined roles (`pg_read_all_data`, `pg_monitor`, ...), read once
//! per major version and kept for the life of the process.
//!
//! The least-privilege check of a create's roles asks whether each is a member of any
//! of them. Finding them in `pg_authid` on every create was a scan of every role: the
//! planner believes the control database's statistics for `pg_authid`, and autovacuum
//! analyzes a shared catalog from one database only, so a control database's
//! `pg_class` can keep saying 13 rows while the cluster holds 60,000. Their names
//! cannot change under a running server: PostgreSQL reserves the `pg_` prefix (no
//! `CREATE ROLE` or rename may take it), and only a new major version brings new ones.
//! A check reports the major version it ran on; one that ran on a version not read
//! yet reads it and runs again.

use std::sync::{Arc, Mutex};

use tokio_postgres::Row;

/// The predefined roles of every major version read so far: a check is given all
/// their names (on a server of another version, those it lacks match nothing), so
/// servers of several versions share one list and none runs a check twice.
#[derive(Debug, Clone, Default)]
pub struct Predefined {
    /// `server_version_num / 10000` (15 for 15.18) of each version read.
    majors: Vec<i32>,
    /// Their names, sorted, each once.
    pub names: Arc<[String]>,
}

impl Predefined {
    /// Whether a check that ran on `major` was given all of its names.
    pub fn covers(&self, major: i32) -> bool {
        self.majors.contains(&major)
    }
}

static KNOWN: Mutex<Option<Predefined>> = Mutex::new(None);

/// The versions read so far (none before a process's first check).
pub fn known() -> Predefined {
    KNOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

/// Reads the predefined roles of the server it runs on: its major version and their
/// names (one scan of `pg_authid`, once per version and process).
pub const READ: &str = "SELECT pg_catalog.current_setting('server_version_num')::int4 / 10000,
        coalesce(array_agg(rolname::text ORDER BY rolname), '{}')
   FROM pg_catalog.pg_roles WHERE rolname LIKE 'pg\\_%'";

/// Adds what [`READ`] returned to the versions read; returns them all.
pub fn remember_read(row: &Row) -> Predefined {
    let major: i32 = row.get(0);
    let read: Vec<String> = row.get(1);
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    let mut all = known.take().unwrap_or_default();
    if !all.covers(major) {
        all.majors.push(major);
        let mut names: Vec<String> = all.names.iter().cloned().chain(read).collect();
        names.sort();
        names.dedup();
        all.names = names.into();
    }
    *known = Some(all.clone());
    all
}
