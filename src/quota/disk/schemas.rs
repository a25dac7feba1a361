//! Schema-mode sizes for a disk round: many schemas per statement, so a round over
//! 10,000 tenants is a handful of round trips, not three per tenant.
//!
//! Sizing a relation takes (and at once releases) an ACCESS SHARE lock on it, so a
//! tenant holding its table in `LOCK TABLE` makes the whole statement wait out the
//! round's `lock_timeout`. Such a batch is then measured one schema at a time, as
//! before, and only the tenant holding the lock is left out (until the next round).
//!
//! Each statement is a transaction of its own: a round that held one transaction over
//! every batch (9 s for a process's first round at 10,000 tenants) held back the
//! server's xmin horizon as long, and every row updated meanwhile (the audit chain's
//! head, once a tenant, in a template migration) grew a chain of versions that no
//! one could prune and each later update walked (docs/scale.md).

use std::sync::LazyLock;

use tokio_postgres::Client;
use uuid::Uuid;

use super::ROUND_TIMEOUTS;
use crate::pg::schema_relations::SCHEMA_RELATIONS;

type Result<T> = std::result::Result<T, tokio_postgres::Error>;

/// Schemas per statement: one held lock sends at most this many to the slow path.
const BATCH: usize = 500;

/// A schema's size: heap, indexes and TOAST of every table, materialized view and
/// sequence in it (`pg::schema_relations`).
static ONE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT coalesce(sum(pg_catalog.pg_total_relation_size(r.oid)), 0)::bigint
           FROM pg_catalog.pg_namespace n LEFT JOIN {SCHEMA_RELATIONS} r ON r.schema = n.oid
          WHERE n.nspname = $1"
    )
});

/// The same for a batch of (tenant, schema): one row per tenant whose schema exists.
static MANY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT s.id, coalesce(sum(pg_catalog.pg_total_relation_size(r.oid)), 0)::bigint
           FROM unnest($1::uuid[], $2::text[]) AS s(id, schema)
           JOIN pg_catalog.pg_namespace n ON n.nspname = s.schema
           LEFT JOIN {SCHEMA_RELATIONS} r ON r.schema = n.oid
          GROUP BY s.id"
    )
});

/// Sizes of `schemas` (tenant, schema). With `strict` (measuring one tenant on
/// request) an error is returned; otherwise a schema that cannot be measured is
/// logged and left out.
pub(super) async fn sizes(
    c: &mut Client,
    schemas: &[(Uuid, String)],
    strict: bool,
) -> Result<Vec<(Uuid, i64)>> {
    let mut sizes = Vec::with_capacity(schemas.len());
    for batch in schemas.chunks(BATCH) {
        let ids: Vec<Uuid> = batch.iter().map(|s| s.0).collect();
        let names: Vec<&str> = batch.iter().map(|s| s.1.as_str()).collect();
        let tx = c.transaction().await?;
        tx.batch_execute(ROUND_TIMEOUTS).await?;
        match tx.query(MANY.as_str(), &[&ids, &names]).await {
            Ok(rows) => {
                tx.commit().await?;
                sizes.extend(rows.iter().map(|r| (r.get(0), r.get(1))));
            }
            Err(e) if strict => return Err(e),
            Err(_) => {
                tx.rollback().await?;
                one_by_one(c, batch, &mut sizes).await?;
            }
        }
    }
    Ok(sizes)
}

/// The slow path for a batch that failed: each schema in its own transaction.
async fn one_by_one(
    c: &mut Client,
    batch: &[(Uuid, String)],
    sizes: &mut Vec<(Uuid, i64)>,
) -> Result<()> {
    for (id, schema) in batch {
        let tx = c.transaction().await?;
        tx.batch_execute(ROUND_TIMEOUTS).await?;
        match tx.query_one(ONE.as_str(), &[schema]).await {
            Ok(r) => {
                tx.commit().await?;
                sizes.push((*id, r.get(0)));
            }
            Err(e) => {
                tx.rollback().await?;
                let error = e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string());
                tracing::warn!(tenant.id = %id, %error, "measuring the tenant's disk use failed (a lock held?); retrying next round");
            }
        }
    }
    Ok(())
}
