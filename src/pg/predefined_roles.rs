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
//! A check reports the major version it ran on, and one that ran with another
//! version's names loads that version's and runs again.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use tokio_postgres::Row;

/// The predefined roles of one major version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predefined {
    /// `server_version_num / 10000` (15 for 15.18).
    pub major: i32,
    /// Their names, sorted.
    pub names: Arc<[String]>,
}

static KNOWN: LazyLock<Mutex<HashMap<i32, Predefined>>> = LazyLock::new(Default::default);
static LAST: Mutex<Option<Predefined>> = Mutex::new(None);

/// The names a check should try first: those of the version last loaded (one
/// PostgreSQL major version per deployment, as a rule), or none yet (major 0, which
/// no server reports, so the first check loads them).
pub fn likely() -> Predefined {
    LAST.lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or(Predefined {
            major: 0,
            names: Arc::from([]),
        })
}

/// The names of `major` if a check met that version before.
pub fn known(major: i32) -> Option<Predefined> {
    let p = KNOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&major)
        .cloned()?;
    Some(remember(p))
}

/// Reads the predefined roles of the server it runs on: its major version and their
/// names (one scan of `pg_authid`, once per version and process).
pub const READ: &str = "SELECT pg_catalog.current_setting('server_version_num')::int4 / 10000,
        coalesce(array_agg(rolname::text ORDER BY rolname), '{}')
   FROM pg_catalog.pg_roles WHERE rolname LIKE 'pg\\_%'";

/// Keeps what [`READ`] returned.
pub fn remember_read(row: &Row) -> Predefined {
    let names: Vec<String> = row.get(1);
    remember(Predefined {
        major: row.get(0),
        names: names.into(),
    })
}

fn remember(p: Predefined) -> Predefined {
    KNOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(p.major, p.clone());
    *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
    p
}
