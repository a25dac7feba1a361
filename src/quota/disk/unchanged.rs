//! Schema-mode sizes without opening relations that cannot have changed.
//!
//! Sizing a relation opens it, and a backend whose relation cache is cold builds each
//! entry from the catalogs: most of a round at 10,000 tenants (80,000 relations). But
//! a schema's size only moves with what PostgreSQL already counts without opening
//! anything: its relations and their files (`pg_class`: oid, relfilenode, TOAST
//! table; a TRUNCATE, VACUUM FULL, CLUSTER or REINDEX gives a new file) and the rows
//! written and vacuums run on them (the cumulative statistics, which count aborted
//! writes too). A round reads that *signature* for every schema, and measures only:
//!
//! - a schema never measured by this process, or whose signature moved;
//! - a tenant with a session in a transaction, or active within [`STATS_DELAY`]: a
//!   backend reports its counts at the end of a transaction, and then at most once a
//!   second, the rest once idle (PostgreSQL 15: `PGSTAT_IDLE_INTERVAL`, 10 s; held
//!   back under contention for up to `PGSTAT_MAX_INTERVAL`, 60 s);
//! - and every round, of the rest measured [`REFRESH_ROUNDS`] rounds ago or more, the
//!   longest ago, at most `1 / REFRESH_ROUNDS` of all: every tenant is measured again
//!   within about twice that many rounds whatever the statistics say (a reset, say).
//!
//! The others keep the size last measured for them. What a round measures is recorded
//! with its signature (`disk_usage.schema_bytes`, `schema_signature`), and a
//! process's first round starts from those: a restart, or another instance taking the
//! round over, measures what moved, not every schema (9 s at 10,000 tenants). Writes
//! by sessions of berqenas's own roles (a migration, a restore) count like any once
//! they commit.

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex};

use tokio_postgres::Client;
use uuid::Uuid;

type Result<T> = std::result::Result<T, tokio_postgres::Error>;

/// How long after a tenant's session was last active its counts may still be
/// unreported.
pub const STATS_DELAY: &str = "70 seconds";

/// Every tenant is measured again within this many rounds.
pub const REFRESH_ROUNDS: usize = 20;

/// Per schema (tenant, schema): a digest of its relations, their files and their
/// counts. Sums, not a list: each part only grows as the schema changes (a new file or
/// relation takes a new oid, a count only rises) until a reset, which moves it too, so
/// a change cannot cancel out, and summing needs no sort within each schema. The
/// counts are read for tables only (an index's or a sequence's are always zero). A
/// TOAST table's own file is not looked up (a second pass over `pg_class`, half the
/// digest's time): it gets a new one with its table's (TRUNCATE, VACUUM FULL, CLUSTER,
/// a rewrite), its growth comes from its table's counted writes, and what is left, a
/// `VACUUM FULL` of the TOAST table alone, only shrinks it: run by the tenant's own
/// session it is measured anyway (a session active within [`STATS_DELAY`]), by another
/// role's at the tenant's next refresh, the larger size kept meanwhile. At 10,000
/// tenants the digest of every schema took 1.0-1.7 s a round as an ordered list, and
/// now 0.3 s (docs/scale.md).
///
/// The relations are summed by schema oid before the round's schemas are joined:
/// summed after the join, grouped by tenant id, the same digest took 316 to 421 ms
/// against 292 to 393 ms (`psql`, 10,231 schemas, four runs of each in turn), and
/// gives the same text to `md5`, so the signatures recorded before still match (all
/// 10,231 did). A schema without relations reads `0`, without tables no writes.
const SIGNATURES: &str = "SELECT s.id, md5(pg_catalog.concat_ws(':', coalesce(g.n, 0), g.oids, g.files,
            g.toast, g.writes))
       FROM unnest($1::uuid[], $2::text[]) AS s(id, schema)
       JOIN pg_catalog.pg_namespace n ON n.nspname = s.schema
       LEFT JOIN (SELECT c.relnamespace, count(*) AS n, sum(c.oid::int8) AS oids,
                         sum(c.relfilenode::int8) AS files, sum(c.reltoastrelid::int8) AS toast,
                         sum(CASE WHEN c.relkind IN ('r', 'm') THEN
                             pg_catalog.pg_stat_get_tuples_inserted(c.oid) + pg_catalog.pg_stat_get_tuples_updated(c.oid)
                             + pg_catalog.pg_stat_get_tuples_deleted(c.oid) + pg_catalog.pg_stat_get_vacuum_count(c.oid)
                             + pg_catalog.pg_stat_get_autovacuum_count(c.oid)
                             + pg_catalog.pg_stat_get_vacuum_count(c.reltoastrelid)
                             + pg_catalog.pg_stat_get_autovacuum_count(c.reltoastrelid) END) AS writes
                    FROM pg_catalog.pg_class c WHERE c.relkind IN ('r', 'm', 'S', 'i')
                   GROUP BY c.relnamespace) g ON g.relnamespace = n.oid";

/// Login names of sessions in this database whose counts may not be reported yet.
const BUSY: &str = "SELECT DISTINCT usename::text FROM pg_catalog.pg_stat_activity
                     WHERE datname = pg_catalog.current_database() AND usename IS NOT NULL
                       AND pid <> pg_catalog.pg_backend_pid()
                       AND (xact_start IS NOT NULL OR state_change > now() - $1::text::interval)";

struct Known {
    signature: u128,
    bytes: i64,
    /// The round it was measured in.
    round: u64,
}

#[derive(Default)]
struct Memo {
    round: u64,
    known: HashMap<Uuid, Known>,
}

// Keyed by tenant id, which no two tenants of any server share; a tenant whose
// schema moved (another server, another mode, a restore) has new relations, so a new
// signature.
static MEMO: LazyLock<Mutex<Memo>> = LazyLock::new(Mutex::default);

/// The schemas of a round (every live schema-mode tenant on this server) split into
/// those to measure and the sizes kept for the rest, with their signatures read now.
pub(super) struct Plan {
    pub measure: Vec<(Uuid, String)>,
    pub kept: Vec<(Uuid, i64)>,
    signatures: HashMap<Uuid, u128>,
    round: u64,
}

pub(super) async fn plan(c: &Client, schemas: &[(Uuid, String)]) -> Result<Plan> {
    // All schemas in one statement: pg_class has no index on the namespace alone, so
    // each statement reads all of it (about 0.13 s at 10,000 tenants), and batches of
    // 1,000 made that ten reads (docs/scale.md).
    let mut signatures = HashMap::with_capacity(schemas.len());
    let ids: Vec<Uuid> = schemas.iter().map(|s| s.0).collect();
    let names: Vec<&str> = schemas.iter().map(|s| s.1.as_str()).collect();
    for r in c.query(SIGNATURES, &[&ids, &names]).await? {
        // An md5 in hex.
        let digest = u128::from_str_radix(r.get(1), 16).unwrap_or(0);
        signatures.insert(r.get::<_, Uuid>(0), digest);
    }
    let busy: Vec<String> = c
        .query(BUSY, &[&STATS_DELAY])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let first = MEMO.lock().expect("not poisoned").round == 0;
    let recorded = match first {
        true => recorded(c).await?,
        false => Vec::new(),
    };
    let mut memo = MEMO.lock().expect("not poisoned");
    if memo.round == 0 {
        // Measured by an earlier process: as if in this one's round 0.
        for (id, signature, bytes) in recorded {
            memo.known.entry(id).or_insert(Known {
                signature,
                bytes,
                round: 0,
            });
        }
    }
    memo.round += 1;
    let round = memo.round;
    let live: HashSet<Uuid> = schemas.iter().map(|s| s.0).collect();
    memo.known.retain(|id, _| live.contains(id));
    let mut measure = Vec::new();
    let mut unchanged = Vec::new();
    for (id, schema) in schemas {
        let known = memo.known.get(id);
        let same = known.is_some_and(|k| signatures.get(id) == Some(&k.signature));
        // A tenant's roles are `<schema>_<suffix>` (names have no underscores).
        let stem = format!("{schema}_");
        if !same || busy.iter().any(|u| u.starts_with(&stem)) {
            measure.push((*id, schema.clone()));
        } else {
            unchanged.push((*id, schema.clone()));
        }
    }
    // Of the rest, those measured [`REFRESH_ROUNDS`] ago or more, the longest first,
    // a share of them each round (a first round's all come due together).
    let age = |id: &Uuid| memo.known.get(id).map_or(0, |k| k.round);
    unchanged.sort_by_key(|(id, _)| age(id));
    let due = unchanged
        .iter()
        .take_while(|(id, _)| age(id) + REFRESH_ROUNDS as u64 <= round)
        .count()
        .min(schemas.len().div_ceil(REFRESH_ROUNDS));
    let rest = unchanged.split_off(due);
    measure.extend(unchanged);
    let kept = rest
        .iter()
        .filter_map(|(id, _)| memo.known.get(id).map(|k| (*id, k.bytes)))
        .collect();
    Ok(Plan {
        measure,
        kept,
        signatures,
        round,
    })
}

/// Remembers what the round measured, with the signatures read before measuring (a
/// write in between moves the signature: measured again next round), here and in
/// the registry for the next process.
pub(super) async fn remember(
    c: &Client,
    plan: Plan,
    measured: &[(Uuid, i64)],
) -> Result<Vec<(Uuid, i64)>> {
    let Plan {
        mut signatures,
        mut kept,
        round,
        ..
    } = plan;
    let (mut ids, mut sums, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    {
        let mut memo = MEMO.lock().expect("not poisoned");
        for (id, bytes) in measured {
            if let Some(signature) = signatures.remove(id) {
                memo.known.insert(
                    *id,
                    Known {
                        signature,
                        bytes: *bytes,
                        round,
                    },
                );
                ids.push(*id);
                sums.push(Uuid::from_u128(signature));
                sizes.push(*bytes);
            }
        }
    }
    if !ids.is_empty() {
        // `bytes` too for a tenant's first row: the round records its total after.
        c.execute(
            "INSERT INTO berqenas.disk_usage (tenant_id, bytes, schema_signature, schema_bytes)
             SELECT m.id, m.bytes, m.signature, m.bytes
               FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS m(id, signature, bytes)
               JOIN berqenas.tenants t ON t.id = m.id
             ON CONFLICT (tenant_id) DO UPDATE
                SET schema_signature = EXCLUDED.schema_signature, schema_bytes = EXCLUDED.schema_bytes",
            &[&ids, &sums, &sizes],
        )
        .await?;
    }
    kept.extend_from_slice(measured);
    Ok(kept)
}

/// What earlier processes measured: (tenant, signature, schema bytes).
async fn recorded(c: &Client) -> Result<Vec<(Uuid, u128, i64)>> {
    Ok(c.query(
        "SELECT tenant_id, schema_signature, schema_bytes FROM berqenas.disk_usage
              WHERE schema_signature IS NOT NULL AND schema_bytes IS NOT NULL",
        &[],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get::<_, Uuid>(1).as_u128(), r.get(2)))
    .collect())
}

/// Forgets what this process measured, as a process that starts knows nothing (for
/// the tests: the next round starts from what is recorded).
#[doc(hidden)]
pub fn forget() {
    *MEMO.lock().expect("not poisoned") = Memo::default();
}
