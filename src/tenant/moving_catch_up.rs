//! A shared-mode move's copy in two passes (docs/moves.md "Out of and into shared
//! mode"): the bulk while the tenant still writes, then, with its writes blocked, only
//! what changed since. Logical replication cannot carry pool rows into a tenant
//! schema (see `moving_shared`), but PostgreSQL says which rows changed: every insert
//! or update writes a row version whose `xmin` is the writing transaction, and a
//! transaction that was not finished when the bulk's snapshot was taken has an id at
//! or past that snapshot's `xmin`. So the second pass re-copies the rows whose `xmin`
//! follows it (a few unchanged ones too: harmless) and deletes the target's rows whose
//! key the source no longer has (looked for only when counting says there are some).
//! A table with no key (a primary key, or a unique index over NOT NULL columns) is
//! copied whole again.

use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt};
use tokio_postgres::{Client, Transaction};

use super::moving::Result;
use crate::pg::Ident;

/// The oldest transaction the bulk copy's snapshot did not see finished, as the
/// 32 bits a row's `xmin` carries. Taken on the source before the bulk reads it.
pub async fn since(c: &Client) -> Result<i64> {
    Ok(c
        .query_one(
            "SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint % 4294967296",
            &[],
        )
        .await?
        .get(0))
}

/// Which side of a copy holds the pool's rows (the tenant's among every tenant's).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    Source,
    Target,
    /// From one server's pool into another's.
    Both,
}

/// One table copied: qualified names on both sides, the columns both have, and the
/// tenant's id (a SQL literal) selecting or stamping its rows on the pool's side.
pub struct Table {
    /// The table's name (the same on both sides).
    pub name: String,
    pub source: String,
    pub target: String,
    /// The columns copied (never `tenant_id`).
    pub columns: Vec<Ident>,
    pub tenant: String,
    pub pool: Pool,
}

impl Table {
    fn column_list(&self) -> String {
        let quoted: Vec<String> = self.columns.iter().map(Ident::to_string).collect();
        quoted.join(", ")
    }

    /// `what` of the source's rows of the tenant (`AND` more).
    fn source_rows(&self, what: &str, and: &str) -> String {
        let (source, tenant) = (&self.source, &self.tenant);
        match self.pool {
            Pool::Source | Pool::Both => {
                format!("SELECT {what} FROM {source} WHERE tenant_id = {tenant}{and}")
            }
            Pool::Target => format!("SELECT {what} FROM {source} WHERE true{and}"),
        }
    }

    /// The source's rows of the tenant, as the target takes them (`AND` more).
    fn select(&self, and: &str) -> String {
        match self.pool {
            Pool::Source => self.source_rows(&self.column_list(), and),
            Pool::Target | Pool::Both => {
                self.source_rows(&format!("{}, {}", self.column_list(), self.tenant), and)
            }
        }
    }

    /// The target's columns that [`Self::select`] fills.
    fn filled(&self) -> String {
        match self.pool {
            Pool::Source => self.column_list(),
            Pool::Target | Pool::Both => format!("{}, tenant_id", self.column_list()),
        }
    }

    /// The target's rows of the tenant, as a condition on `alias`.
    fn owned(&self, alias: &str) -> String {
        match self.pool {
            Pool::Source => "true".into(),
            Pool::Target | Pool::Both => format!("{alias}.tenant_id = {}", self.tenant),
        }
    }

    /// The target's rows of the tenant deleted.
    pub fn clear_sql(&self) -> String {
        format!("DELETE FROM {} d WHERE {}", self.target, self.owned("d"))
    }
}

/// Rows of `select` (run on `src`, or inside `tx` when both are one database) added
/// to `into` (a table and its column list) in `tx`. Returns the rows.
pub async fn transfer(
    src: &Client,
    tx: &Transaction<'_>,
    same: bool,
    select: &str,
    into: &str,
) -> Result<u64> {
    if same {
        return Ok(tx
            .execute(
                &format!("INSERT INTO {into} OVERRIDING SYSTEM VALUE {select}"),
                &[],
            )
            .await?);
    }
    let out = src.copy_out(&format!("COPY ({select}) TO STDOUT")).await?;
    let chunks: Vec<Bytes> = out.try_collect().await?;
    let sink = tx.copy_in(&format!("COPY {into} FROM STDIN")).await?;
    futures_util::pin_mut!(sink);
    for chunk in chunks {
        sink.send(chunk).await?;
    }
    Ok(sink.finish().await?)
}

/// The first pass of one table: every row of the tenant. The caller emptied the
/// target's rows of the tenant first.
pub async fn bulk(src: &Client, tx: &Transaction<'_>, same: bool, t: &Table) -> Result<u64> {
    let into = format!("{} ({})", t.target, t.filled());
    transfer(src, tx, same, &t.select(""), &into).await
}

/// What a second pass did to one table.
#[derive(serde::Serialize, Default)]
pub struct Caught {
    /// Rows written or changed since the bulk, copied again.
    pub copied: u64,
    /// Rows the source no longer has, deleted from the target.
    pub deleted: u64,
    /// Copied whole again (no key to tell rows apart).
    pub whole: bool,
    /// Every source key read to find the deleted rows (counting said there were some).
    pub keys_read: bool,
}

/// The second pass of one table, in `tx` on the target, the tenant's writes blocked:
/// rows gone from the source deleted, rows changed since `since` replaced. `n` makes
/// this table's scratch tables' names unique in the transaction.
pub async fn catch_up(
    src: &Client,
    tx: &Transaction<'_>,
    same: bool,
    t: &Table,
    since: i64,
    n: usize,
) -> Result<Caught> {
    let keys = key_columns(tx, &t.target).await?;
    if keys.is_empty() || keys.iter().any(|k| !t.columns.contains(k)) {
        tx.batch_execute(&t.clear_sql()).await?;
        return Ok(Caught {
            copied: bulk(src, tx, same, t).await?,
            deleted: 0,
            whole: true,
            keys_read: false,
        });
    }
    let on = |a: &str, b: &str| {
        keys.iter()
            .map(|k| format!("{a}.{k} = {b}.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let keys = keys
        .iter()
        .map(Ident::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let (gone, changed) = (
        Ident::new(format!("berqenas_keys_{n}"))?,
        Ident::new(format!("berqenas_changed_{n}"))?,
    );
    let key_select = t.source_rows(&keys, "");
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE {changed} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA;",
        t.filled(),
        t.target
    ))
    .await?;
    // What the bulk may have missed.
    let after = format!(" AND {}", written_since(since));
    let into = format!("{changed} ({})", t.filled());
    let copied = transfer(src, tx, same, &t.select(&after), &into).await?;
    tx.batch_execute(&format!("ANALYZE {changed};")).await?;
    let keys_read = deletions_possible(src, tx, t, (&changed, copied), &on("c", "d")).await?;
    let deleted = if keys_read {
        // One database: the source's keys are read where they are. Else they cross
        // over into a scratch table first.
        let source_keys = if same {
            format!("({key_select})")
        } else {
            tx.batch_execute(&format!(
                "CREATE TEMP TABLE {gone} ON COMMIT DROP AS SELECT {keys} FROM {} WITH NO DATA;",
                t.target
            ))
            .await?;
            transfer(src, tx, same, &key_select, &format!("{gone} ({keys})")).await?;
            tx.batch_execute(&format!("ANALYZE {gone};")).await?;
            gone.to_string()
        };
        tx.execute(
            &format!(
                "DELETE FROM {target} d WHERE {owned} AND NOT EXISTS (SELECT FROM {source_keys} k WHERE {on})",
                target = t.target,
                owned = t.owned("d"),
                on = on("k", "d"),
            ),
            &[],
        )
        .await?
    } else {
        0
    };
    tx.batch_execute(&format!(
        "DELETE FROM {target} d USING {changed} c WHERE {owned} AND {on};
         INSERT INTO {target} ({filled}) OVERRIDING SYSTEM VALUE SELECT {filled} FROM {changed};",
        target = t.target,
        owned = t.owned("d"),
        on = on("c", "d"),
        filled = t.filled(),
    ))
    .await?;
    Ok(Caught {
        copied,
        deleted,
        whole: false,
        keys_read,
    })
}

/// Whether the source deleted rows since the first pass, told by counting instead of
/// comparing every key: every source row unchanged since is in the target already,
/// and every changed one (`changed`) will be, so once the changed rows replace theirs
/// the target holds the source's rows plus the deleted ones. When that sum equals the
/// source's count, nothing was deleted (the common case: a tenant mostly inserts and
/// updates), and the second pass never reads every key. `changed`: the scratch table
/// and its rows; `on`: the key join of `c` (changed) and `d` (the target).
async fn deletions_possible(
    src: &Client,
    tx: &Transaction<'_>,
    t: &Table,
    (changed, rows): (&Ident, u64),
    on: &str,
) -> Result<bool> {
    let source = t.source_rows("count(*)", "");
    let target = format!(
        "SELECT (SELECT count(*) FROM {target} d WHERE {owned}),
                (SELECT count(*) FROM {changed} c JOIN {target} d ON {on} WHERE {owned})",
        target = t.target,
        owned = t.owned("d"),
    );
    let (source, target) = tokio::join!(src.query_one(&source, &[]), tx.query_one(&target, &[]));
    let (source, target): (i64, _) = (source?.get(0), target?);
    let (held, replaced): (i64, i64) = (target.get(0), target.get(1));
    Ok(held + rows as i64 - replaced != source)
}

/// The columns that tell `table`'s rows apart (qualified, quoted name), in index
/// order: its primary key, else its narrowest unique index over NOT NULL
/// columns (the realtime tables have one), `tenant_id` left out (on the pool's side
/// every comparison is within the tenant's rows). None: copied whole.
async fn key_columns(tx: &Transaction<'_>, table: &str) -> Result<Vec<Ident>> {
    let row = tx
        .query_opt(
            "SELECT array_agg(a.attname::text ORDER BY k.n)
               FROM pg_catalog.pg_index i
               JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid = $1::text::regclass AND i.indisunique
                AND i.indpred IS NULL AND i.indexprs IS NULL
              GROUP BY i.indexrelid, i.indisprimary
             HAVING bool_and(a.attnotnull)
              ORDER BY i.indisprimary DESC, count(*), i.indexrelid LIMIT 1",
            &[&table],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Vec::new());
    };
    row.get::<_, Vec<String>>(0)
        .into_iter()
        .filter(|c| c != "tenant_id")
        .map(|c| Ok(Ident::new(c)?))
        .collect()
}

/// The condition (after `AND`) on a row version written since `since` (see
/// [`since`]): its `xmin` at or past it, modulo 2^32, as PostgreSQL compares
/// transaction ids.
pub fn written_since(since: i64) -> String {
    format!("((xmin::text::bigint - {since} + 4294967296) % 4294967296) < 2147483648")
}
