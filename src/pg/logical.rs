//! PostgreSQL's own logical replication, as a tenant move between servers uses it
//! (issue 18, docs/servers.md): a publication and a slot on the source, a subscription
//! on the target that copies the tables and then streams their changes, a check that
//! the target has applied everything up to a source LSN, sequences copied (logical
//! replication does not carry them), and the three objects dropped again.
//!
//! Every call is idempotent (a second `publish` or `drop` finds its work done), so the
//! operation engine can retry or compensate a move's step after a crash. The three
//! objects share one name derived from the operation's id, known before anything is
//! made, so a step can journal it first.
//!
//! The slot is made apart from the subscription (`create_slot = false`) because a
//! subscription that makes its own slot cannot be made inside a transaction, and
//! cannot be made at all when source and target are one cluster (a mode move on one
//! server): its `CREATE SUBSCRIPTION` would wait for itself.

use std::time::{Duration, Instant};

use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::{Ident, Literal};

/// The publication, slot and subscription of one move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    name: Ident,
}

impl Link {
    /// The objects of the operation `op`: `bq_move_<id without dashes>` (40 bytes).
    pub fn of(op: Uuid) -> Self {
        Self {
            name: Ident::new(format!("bq_move_{}", op.simple()))
                .expect("a uuid's hex digits make a valid identifier"),
        }
    }

    pub fn name(&self) -> &str {
        self.name.as_str()
    }
}

/// What the source publishes.
#[derive(Debug, Clone, Copy)]
pub enum Tables<'a> {
    /// Every table of one schema (schema mode), present and future.
    Schema(&'a Ident),
    /// Every table of the database (database mode).
    All,
}

/// How far the target's initial copy is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyProgress {
    /// Tables the subscription replicates.
    pub tables: i64,
    /// Of those, the ones copied and streaming (`r`, ready).
    pub ready: i64,
}

impl CopyProgress {
    pub fn done(&self) -> bool {
        self.ready == self.tables
    }
}

/// Makes the publication and the slot on the source (the database the tables are in),
/// each unless it exists. The slot fixes the point the copy starts from; run this
/// outside a transaction (a slot cannot be made in one that has written).
pub async fn publish(
    src: &impl GenericClient,
    link: &Link,
    tables: Tables<'_>,
) -> Result<(), tokio_postgres::Error> {
    let name = &link.name;
    let exists = src
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&name.as_str()],
        )
        .await?
        .is_some();
    if !exists {
        let what = match tables {
            Tables::Schema(schema) => format!("TABLES IN SCHEMA {schema}"),
            Tables::All => "ALL TABLES".to_string(),
        };
        src.batch_execute(&format!("CREATE PUBLICATION {name} FOR {what}"))
            .await?;
    }
    src.execute(
        "SELECT pg_create_logical_replication_slot($1, 'pgoutput')
          WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
        &[&name.as_str()],
    )
    .await?;
    Ok(())
}

/// Makes the subscription on the target (the database the copies go into, whose
/// tables must exist, empty), unless it exists: it copies the tables, then streams
/// their changes. `source` is a libpq connection string to the source database, with
/// its credentials: it is kept in the target's catalog (`pg_subscription`, readable by
/// superusers only) until [`unsubscribe`], and never logged here.
pub async fn subscribe(
    dst: &impl GenericClient,
    link: &Link,
    source: &str,
) -> Result<(), tokio_postgres::Error> {
    let name = &link.name;
    let exists = dst
        .query_opt(
            "SELECT 1 FROM pg_subscription WHERE subname = $1",
            &[&name.as_str()],
        )
        .await?
        .is_some();
    if exists {
        return Ok(());
    }
    dst.batch_execute(&format!(
        "CREATE SUBSCRIPTION {name} CONNECTION {source} PUBLICATION {name}
             WITH (create_slot = false, slot_name = {slot}, copy_data = true)",
        source = Literal(source),
        slot = Literal(name.as_str()),
    ))
    .await
}

/// How far the initial copy is, on the target.
pub async fn progress(
    dst: &impl GenericClient,
    link: &Link,
) -> Result<CopyProgress, tokio_postgres::Error> {
    let row = dst
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE r.srsubstate = 'r')
               FROM pg_subscription s JOIN pg_subscription_rel r ON r.srsubid = s.oid
              WHERE s.subname = $1",
            &[&link.name.as_str()],
        )
        .await?;
    Ok(CopyProgress {
        tables: row.get(0),
        ready: row.get(1),
    })
}

/// The source's current WAL position: once the target has applied up to it, every
/// transaction committed before this call is on the target. The insert position, not
/// the write position (`pg_current_wal_lsn`): an asynchronous commit's record may not
/// be written yet when its client already has its answer.
pub async fn position(src: &impl GenericClient) -> Result<String, tokio_postgres::Error> {
    Ok(src
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await?
        .get(0))
}

/// Bytes of WAL the target has not confirmed yet (the lag), from the source's slot.
pub async fn lag_bytes(
    src: &impl GenericClient,
    link: &Link,
) -> Result<Option<i64>, tokio_postgres::Error> {
    Ok(src
        .query_opt(
            "SELECT (pg_current_wal_insert_lsn() - confirmed_flush_lsn)::int8
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&link.name.as_str()],
        )
        .await?
        .and_then(|r| r.get(0)))
}

/// Whether the target has applied (and flushed) everything up to `lsn`, as the
/// source's slot knows it. When nothing is left to send, the source pings the
/// subscriber and its answer moves the slot on, so this turns true soon after the
/// last change is applied.
pub async fn applied(
    src: &impl GenericClient,
    link: &Link,
    lsn: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(src
        .query_opt(
            "SELECT confirmed_flush_lsn >= $2::text::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
            &[&link.name.as_str(), &lsn],
        )
        .await?
        .and_then(|r| r.get(0))
        .unwrap_or(false))
}

/// Polls [`applied`] until it is true or `within` has passed (`Ok(false)`).
pub async fn wait_applied(
    src: &impl GenericClient,
    link: &Link,
    lsn: &str,
    within: Duration,
) -> Result<bool, tokio_postgres::Error> {
    let until = Instant::now() + within;
    loop {
        if applied(src, link, lsn).await? {
            return Ok(true);
        }
        if Instant::now() >= until {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sets each sequence of `schema` (every schema but the system ones when `None`) on
/// the target to the source's value: logical replication copies rows, not sequences.
/// Run it once the source's writes are blocked, so the values are final.
pub async fn copy_sequences(
    src: &impl GenericClient,
    dst: &impl GenericClient,
    schema: Option<&Ident>,
) -> Result<usize, tokio_postgres::Error> {
    let rows = src
        .query(
            "SELECT schemaname::text, sequencename::text, last_value FROM pg_sequences
              WHERE ($1::text IS NULL AND schemaname NOT IN ('pg_catalog', 'information_schema'))
                 OR schemaname = $1",
            &[&schema.map(Ident::as_str)],
        )
        .await?;
    for r in &rows {
        let (schema, name, value): (String, String, Option<i64>) = (r.get(0), r.get(1), r.get(2));
        // A sequence never used has no value yet: the target's is unused too.
        let Some(value) = value else { continue };
        dst.execute(
            "SELECT setval(format('%I.%I', $1::text, $2::text)::regclass, $3, true)",
            &[&schema, &name, &value],
        )
        .await?;
    }
    Ok(rows.len())
}

/// Drops the subscription on the target, if it exists, and the table-sync slots it
/// still holds on the source; the move's own slot is [`unpublish`]'s to drop.
pub async fn unsubscribe(
    dst: &impl GenericClient,
    src: &impl GenericClient,
    link: &Link,
) -> Result<(), tokio_postgres::Error> {
    let name = &link.name;
    let oid: Option<u32> = dst
        .query_opt(
            "SELECT oid FROM pg_subscription WHERE subname = $1",
            &[&name.as_str()],
        )
        .await?
        .map(|r| r.get(0));
    let Some(oid) = oid else {
        return Ok(());
    };
    // Disabled first, so its workers stop; then the table-sync slots a copy still in
    // progress holds on the source (`pg_<subscription oid>_sync_<table oid>_<system
    // id>`): a subscription detached from its slot does not drop them itself, and each
    // one left would hold WAL and a slot for good. Named by the oid, which only the
    // subscription still there gives, so they go before it does (a rerun after a
    // crash between the two finds the subscription and does both again).
    dst.batch_execute(&format!("ALTER SUBSCRIPTION {name} DISABLE"))
        .await?;
    let pattern = format!("pg\\_{oid}\\_sync\\_%");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let held: Vec<(String, Option<i32>)> = src
            .query(
                "SELECT slot_name::text, active_pid FROM pg_replication_slots WHERE slot_name LIKE $1",
                &[&pattern],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        if held.is_empty() {
            break;
        }
        for (slot, pid) in held {
            match pid {
                Some(pid) if Instant::now() < until => {
                    src.execute("SELECT pg_terminate_backend($1)", &[&pid])
                        .await?;
                }
                _ => {
                    src.execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                        .await?;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    dst.batch_execute(&format!(
        "ALTER SUBSCRIPTION {name} SET (slot_name = NONE);
         DROP SUBSCRIPTION {name};"
    ))
    .await?;
    Ok(())
}

/// Drops the slot and the publication on the source, each if it exists. A slot still
/// held by a walsender (the subscription was dropped a moment ago, or never) is freed
/// first.
pub async fn unpublish(src: &impl GenericClient, link: &Link) -> Result<(), tokio_postgres::Error> {
    let name = link.name.as_str();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let active: Option<Option<i32>> = src
            .query_opt(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&name],
            )
            .await?
            .map(|r| r.get(0));
        match active {
            None => break,
            Some(None) => {
                src.execute("SELECT pg_drop_replication_slot($1)", &[&name])
                    .await?;
                break;
            }
            Some(Some(pid)) if Instant::now() < until => {
                src.execute("SELECT pg_terminate_backend($1)", &[&pid])
                    .await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // Still held after 10 s: the drop says why.
            Some(Some(_)) => {
                src.execute("SELECT pg_drop_replication_slot($1)", &[&name])
                    .await?;
                break;
            }
        }
    }
    src.batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", link.name))
        .await
}

/// Bytes the target's tables of this subscription hold so far.
pub async fn copied_bytes(
    dst: &impl GenericClient,
    link: &Link,
) -> Result<i64, tokio_postgres::Error> {
    Ok(dst
        .query_one(
            "SELECT coalesce(sum(pg_catalog.pg_total_relation_size(r.srrelid)), 0)::int8
               FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_subscription_rel r ON r.srsubid = s.oid
              WHERE s.subname = $1",
            &[&link.name.as_str()],
        )
        .await?
        .get(0))
}
