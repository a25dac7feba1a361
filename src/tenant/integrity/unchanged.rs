//! Rounds that skip the pages because nothing they read has changed.
//!
//! The pages read every tenant's roles in the catalog and its rows in the registry: at
//! 10,000 tenants (60,000 roles) ten statements of 30 to 40 ms each every round
//! (docs/scale.md), to find what the round before found on a server where no role
//! changed. Before its pages a round reads a *fingerprint* of everything they read, in
//! two statements (6 to 9 ms for the registry of 10,000 tenants, 23 to 36 ms for the
//! catalog of 60,000 roles; `psql`, a build running beside it). If it is the one read
//! before the last round whose pages all ran, they would find what that round left,
//! and the round skips them; at most [`SKIPPED_AT_MOST`] rounds in a row do.
//!
//! The catalog part is which row versions `pg_authid`, `pg_auth_members` and
//! `pg_db_role_setting` hold, not what they say: a row's `xmin` is the transaction
//! that wrote that version, so an `ALTER ROLE`, a `GRANT`, a `REVOKE` or an `ALTER
//! ROLE ... SET` replaces a row's `xmin` or adds or removes rows (freezing keeps the
//! raw `xmin`). For `pg_authid` that costs a fifth of hashing the rows' contents (12 to
//! 19 ms against 67 ms). A berqenas that is not superuser cannot read
//! `pg_authid` and hashes what `pg_roles` shows instead. The registry part is the
//! contents of the columns the pages read (tenants, their plans and quota overrides,
//! their users): an operation that only takes or gives back a tenant's row
//! (`owner_op`: a backup's, say) moves no fingerprint.
//!
//! Each part is a count and a sum of 64-bit hashes, so no sort; the hashes take a seed
//! drawn when the process starts, so no one outside it can make two states hash
//! alike. The round's fixes (taking away, putting back, suspending, recording a new
//! login's verifier) change what the next fingerprint reads: the round after one that
//! fixed something reads its pages.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use deadpool_postgres::GenericClient;

use crate::platform::Platform;

/// Rounds in a row that may skip the pages (then one reads them whatever the
/// fingerprint says): with the worker's 30 s, every tenant's roles are read at least
/// every five and a half minutes.
pub const SKIPPED_AT_MOST: u32 = 10;

/// What the pages of a round read, as one value (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fingerprint(String);

/// The catalog part, on the tenants' server. `{roles}`: the roles' part (it depends on
/// what berqenas may read there).
const CATALOG: &str = "SELECT pg_catalog.concat_ws(' ',
    (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()),
    {roles},
    (SELECT count(*) || '/' || coalesce(sum(pg_catalog.hash_record_extended((m.xmin, m.roleid, m.member), $1)), 0)
       FROM pg_catalog.pg_auth_members m),
    (SELECT count(*) || '/' || coalesce(sum(pg_catalog.hash_record_extended((s.xmin, s.setdatabase, s.setrole), $1)), 0)
       FROM pg_catalog.pg_db_role_setting s))";

const ROLE_VERSIONS: &str = "(SELECT count(*) || '/' || coalesce(sum(pg_catalog.hash_record_extended((a.xmin, a.oid), $1)), 0)
       FROM pg_catalog.pg_authid a)";

const ROLE_CONTENTS: &str =
    "(SELECT count(*) || '/' || coalesce(sum(pg_catalog.hashtextextended(r::text, $1)), 0)
       FROM pg_catalog.pg_roles r)";

/// The registry part: the columns the pages read, of every server's tenants (a change
/// on one server makes every server's next round read its roles). A tenant's quota
/// overrides as text: whatever columns they gain, every type has one.
const REGISTRY: &str = "SELECT pg_catalog.concat_ws(' ',
    (SELECT count(*) || '/' || coalesce(sum(pg_catalog.hash_record_extended(
               (t.id, t.name, t.isolation, t.schema_name, t.status, t.server, t.verifier_sha256,
                t.plan, t.db_quota_bytes, q::text), $1)), 0)
       FROM berqenas.tenants t LEFT JOIN berqenas.tenant_quotas q ON q.tenant_id = t.id),
    (SELECT count(*) || '/' || coalesce(sum(pg_catalog.hashtextextended(p::text, $1)), 0)
       FROM berqenas.plans p),
    (SELECT count(*) || '/' || coalesce(sum(pg_catalog.hash_record_extended(
               (u.id, u.tenant_id, u.db_user, u.role, u.verifier_sha256), $1)), 0)
       FROM berqenas.tenant_users u))";

static SEED: LazyLock<i64> = LazyLock::new(rand::random);

/// The fingerprint now: the registry's (`control`) and then the catalog's of the
/// server the roles are on (`there`, `superuser` there), each in one statement.
pub(super) async fn read(
    control: &impl GenericClient,
    there: &impl GenericClient,
    superuser: bool,
) -> Result<Fingerprint, tokio_postgres::Error> {
    let roles = if superuser {
        ROLE_VERSIONS
    } else {
        ROLE_CONTENTS
    };
    let registry: String = control.query_one(REGISTRY, &[&*SEED]).await?.get(0);
    let catalog: String = there
        .query_one(&CATALOG.replace("{roles}", roles), &[&*SEED])
        .await?
        .get(0);
    Ok(Fingerprint(format!("{registry} {catalog}")))
}

struct Last {
    /// Read before the pages of the last round that read them all.
    fingerprint: Fingerprint,
    /// Rounds skipped since.
    skipped: u32,
}

/// Per control database, server, and what berqenas may read there.
static LAST: LazyLock<Mutex<HashMap<String, Last>>> = LazyLock::new(Mutex::default);

/// `p`: the control database's platform; `there`: the view of the roles' server.
fn key(p: &Platform, there: &Platform, server: &str) -> String {
    format!(
        "{:?} {:?} {:?} {server} {}",
        p.config.get_hosts(),
        p.config.get_ports(),
        p.config.get_dbname(),
        there.caps.superuser
    )
}

/// Whether this round on `server` may skip its pages (counted as one skipped if so).
pub(super) fn may_skip(p: &Platform, there: &Platform, server: &str, now: &Fingerprint) -> bool {
    let mut last = LAST.lock().expect("not poisoned");
    match last.get_mut(&key(p, there, server)) {
        Some(l) if l.fingerprint == *now && l.skipped < SKIPPED_AT_MOST => {
            l.skipped += 1;
            tracing::debug!(
                server,
                skipped = l.skipped,
                "role check: nothing the roles are judged by moved since they were last read; not read again"
            );
            true
        }
        _ => false,
    }
}

/// A round on `server` read all its pages, with `before` read before them.
pub(super) fn read_all(p: &Platform, there: &Platform, server: &str, before: Fingerprint) {
    LAST.lock().expect("not poisoned").insert(
        key(p, there, server),
        Last {
            fingerprint: before,
            skipped: 0,
        },
    );
}
