//! Schema-mode sizes for a disk round: many schemas per statement, so a round over
//! 10,000 tenants is a handful of round trips, not three per tenant.
//!
//! Sizing a relation takes (and at once releases) an ACCESS SHARE lock on it, so a
//! tenant holding its table in `LOCK TABLE` makes the whole statement wait out the
//! round's `lock_timeout`. Such a batch is then measured one schema at a time, as
//! before, and only the tenant holding the lock is left out (until the next round).

use tokio_postgres::Transaction;
use uuid::Uuid;

type Result<T> = std::result::Result<T, tokio_postgres::Error>;

/// Schemas per statement: one held lock sends at most this many to the slow path.
const BATCH: usize = 500;

/// A schema's size: heap, indexes and TOAST of every table, materialized view and
/// sequence in it.
const ONE: &str = "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = $1 AND c.relkind IN ('r', 'm', 'S')";

/// The same for a batch of (tenant, schema): one row per tenant whose schema exists.
const MANY: &str = "SELECT s.id, coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                      FROM unnest($1::uuid[], $2::text[]) AS s(id, schema)
                      JOIN pg_namespace n ON n.nspname = s.schema
                      LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm', 'S')
                     GROUP BY s.id";

/// Sizes of `schemas` (tenant, schema). With `strict` (measuring one tenant on
/// request) an error is returned; otherwise a schema that cannot be measured is
/// logged and left out.
pub(super) async fn sizes(
    tx: &mut Transaction<'_>,
    schemas: &[(Uuid, String)],
    strict: bool,
) -> Result<Vec<(Uuid, i64)>> {
    let mut sizes = Vec::with_capacity(schemas.len());
    for batch in schemas.chunks(BATCH) {
        let ids: Vec<Uuid> = batch.iter().map(|s| s.0).collect();
        let names: Vec<&str> = batch.iter().map(|s| s.1.as_str()).collect();
        let sp = tx.savepoint("measure_batch").await?;
        match sp.query(MANY, &[&ids, &names]).await {
            Ok(rows) => {
                sp.commit().await?;
                sizes.extend(rows.iter().map(|r| (r.get(0), r.get(1))));
            }
            Err(e) if strict => return Err(e),
            Err(_) => {
                sp.rollback().await?;
                one_by_one(tx, batch, &mut sizes).await?;
            }
        }
    }
    Ok(sizes)
}

/// The slow path for a batch that failed: each schema in its own savepoint.
async fn one_by_one(
    tx: &mut Transaction<'_>,
    batch: &[(Uuid, String)],
    sizes: &mut Vec<(Uuid, i64)>,
) -> Result<()> {
    for (id, schema) in batch {
        let sp = tx.savepoint("measure_tenant").await?;
        match sp.query_one(ONE, &[schema]).await {
            Ok(r) => {
                sp.commit().await?;
                sizes.push((*id, r.get(0)));
            }
            Err(e) => {
                sp.rollback().await?;
                let error = e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string());
                tracing::warn!(tenant.id = %id, %error, "measuring the tenant's disk use failed (a lock held?); retrying next round");
            }
        }
    }
    Ok(())
}
