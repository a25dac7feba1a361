//! Disk quotas: measuring each tenant's size, and cutting off its writes in
//! PostgreSQL when it is over quota (reads keep working), then giving them back.
//!
//! Sizes:
//! - schema mode: `pg_total_relation_size` (heap, indexes, TOAST) of every table,
//!   materialized view and sequence in the tenant's schema;
//! - database mode: `pg_database_size` of its database less that of the template
//!   database it was cloned from (the ~7.5 MB of catalogs every database carries);
//! - shared mode: for each pool table, the table's total size times the tenant's share
//!   of the live row bytes (`sum(pg_column_size(row))`). An estimate: dead rows and
//!   free space are charged to the tenants that have live rows, in proportion.
//!
//! Writes are cut off where the privileges are, never by a setting the tenant could
//! change. Schema and database modes: relations in the tenant's schema owned by another
//! tenant role (a tenant admin's own tables) pass to the tenant's owner role, then every
//! INSERT and UPDATE grant on them (tables and columns), CREATE on the schema, and in
//! database mode TEMPORARY on the database, are revoked (CASCADE) from everyone but
//! the owner role; on the relations handed over, DELETE too (a rule there runs with the
//! owner role's rights), and their previous owner is lent SELECT. Shared mode: the
//! tenant's roles leave the pool's write roles and join its read-only (auditor) pool
//! role. What was taken is recorded, and exactly that comes back.
//!
//! [`measure`] (this file) sizes tenants; [`enforce`] compares and blocks or restores;
//! `privileges` renders the grants taken and given back; `guard` is the shared pool's
//! row-security guard.

mod enforce;
mod privileges;
mod schemas;
pub mod unchanged;

use deadpool_postgres::Transaction;
use uuid::Uuid;

use crate::isolation::shared as pool;
use crate::pg::Ident;
use crate::platform::Platform;
use crate::store::{quotas as store, tenants as registry};
use crate::tenant::service;

pub use enforce::{apply_remaining, enforce_locked, finish_locked, Remaining};
pub use privileges::Revoked;

type Result<T, E = service::Error> = std::result::Result<T, E>;

/// Bounds for the statements of a disk round on tenant objects: a tenant holding a lock
/// (`LOCK TABLE` in an idle transaction) makes its own measurement or enforcement fail,
/// logged and retried next round, instead of holding up the round.
pub const ROUND_TIMEOUTS: &str =
    "SET LOCAL lock_timeout = '5s'; SET LOCAL statement_timeout = '60s'";

/// The template database's size, which database-mode tenants are not charged for.
fn template_db(p: &Platform) -> String {
    crate::isolation::database::template_db(&p.endpoint.database)
        .as_str()
        .to_string()
}

/// Measures every live tenant (or just `only`): (tenant, bytes).
///
/// Schema-mode tenants are measured many per statement (under [`ROUND_TIMEOUTS`]); a
/// batch that meets a held lock is measured one tenant at a time, so one whose tables
/// are locked fails alone, logged, and is left out (measuring just `only`, the error
/// is returned). See `schemas`. A round leaves out the schemas whose size cannot
/// have moved since this process measured them, and keeps their last size (see
/// `unchanged`).
pub async fn measure(p: &Platform, only: Option<Uuid>) -> Result<Vec<(Uuid, i64)>> {
    let mut client = p.pool.get().await?;
    // No transaction spans the schemas' sizing (see `schemas`): each statement below
    // reads the registry as of its own start, as it would in one transaction here.
    let schemas = registry::live_schemas(&client, only).await?;
    let mut sizes: Vec<(Uuid, i64)> = match only {
        Some(_) => schemas::sizes(&mut client, &schemas, true).await?,
        None => round_sizes(p, &schemas).await?,
    };
    let mut tx = client.transaction().await?;
    tx.batch_execute(ROUND_TIMEOUTS).await?;
    sizes.extend(registry::live_database_sizes(&tx, only, &template_db(p)).await?);
    let shared = registry::live_shared(&tx, only).await?;
    let temp = temp_usage(&mut tx, only).await?;
    tx.commit().await?;
    // Tenants on other servers, measured there (one statement per server).
    sizes.extend(crate::quota::placed::sizes(p, only).await?);
    if !shared.is_empty() {
        let shares = match shared_shares(&mut client).await {
            Ok(s) => s,
            Err(e) if only.is_none() => {
                tracing::warn!(error = %e, "measuring the shared pool failed (a lock held?); retrying next round");
                return Ok(sizes);
            }
            Err(e) => return Err(e),
        };
        for id in shared {
            let bytes = shares.get(&id).copied().unwrap_or(0.0);
            sizes.push((id, bytes.round() as i64));
        }
    }
    for (id, bytes) in sizes.iter_mut() {
        *bytes += temp.get(id).copied().unwrap_or(0);
    }
    Ok(sizes)
}

/// A round's schema-mode sizes: only the schemas whose size may have moved are
/// measured (`unchanged`), on a session of the round's own, closed after. Sizing a
/// relation leaves an entry in the session's relation cache, and a pooled session that
/// sized every tenant's relations once kept them all (over a gigabyte per backend at
/// 10,000 tenants).
///
/// The session reads the cumulative statistics as one snapshot (`stats_fetch_consistency
/// = snapshot`): the signatures ask for seven counters of each of the server's tables,
/// and copying them all once took 0.16 s of the statement at 10,000 tenants against
/// 0.34 s for looking each up in shared memory as it is asked for (the default,
/// `cache`), with about the same memory (49 MB against 42 + 16 MB), freed when the
/// statement ends (docs/scale.md).
async fn round_sizes(p: &Platform, schemas: &[(Uuid, String)]) -> Result<Vec<(Uuid, i64)>> {
    let mut config = p.config.clone();
    config.application_name("berqenas-disk-round");
    crate::pg::add_session_options(&mut config, "-c stats_fetch_consistency=snapshot");
    let mut client = crate::pg::connect(&config).await?;
    let plan = unchanged::plan(&client, schemas).await?;
    let measured = schemas::sizes(&mut client, &plan.measure, false).await?;
    Ok(unchanged::remember(&client, plan, &measured).await?)
}

/// Temporary tables of schema- and shared-mode tenants' sessions, which live in the
/// control database outside any tenant schema (database mode's are in its database's
/// size already): charged to their tenant like any table.
async fn temp_usage(
    tx: &mut Transaction<'_>,
    only: Option<Uuid>,
) -> Result<std::collections::HashMap<Uuid, i64>> {
    let relations = registry::temp_relations(&*tx, only).await?;
    size_temp(tx, relations).await
}

/// The sizes of temporary `relations` (tenant, relation), summed by tenant, read in
/// the database `tx` is on: `default`'s control database, or another server's
/// (`quota::placed`).
///
/// Sizing a relation takes a lock on it, and a session may hold its own temporary
/// table locked: all are sized in one statement with a short lock timeout, and if one
/// is held, one by one, leaving out (until the next round) the ones that are held.
pub(crate) async fn size_temp(
    tx: &mut Transaction<'_>,
    relations: Vec<(Uuid, u32)>,
) -> Result<std::collections::HashMap<Uuid, i64>> {
    let mut usage = std::collections::HashMap::new();
    if relations.is_empty() {
        return Ok(usage);
    }
    let size = "SELECT pg_catalog.pg_total_relation_size($1::oid)";
    let sp = tx.savepoint("temp_usage").await?;
    sp.batch_execute("SET LOCAL lock_timeout = '100ms'").await?;
    let oids: Vec<u32> = relations.iter().map(|r| r.1).collect();
    let all = sp
        .query(
            "SELECT o, pg_catalog.pg_total_relation_size(o) FROM unnest($1::oid[]) o",
            &[&oids],
        )
        .await;
    let sizes: std::collections::HashMap<u32, i64> = match all {
        Ok(rows) => {
            sp.commit().await?;
            rows.iter().map(|r| (r.get(0), r.get(1))).collect()
        }
        Err(_) => {
            sp.rollback().await?;
            let mut sizes = std::collections::HashMap::new();
            for oid in &oids {
                let one = tx.savepoint("temp_relation").await?;
                one.batch_execute("SET LOCAL lock_timeout = '100ms'")
                    .await?;
                match one.query_one(size, &[oid]).await {
                    Ok(r) => {
                        one.commit().await?;
                        sizes.insert(*oid, r.get::<_, i64>(0));
                    }
                    Err(_) => one.rollback().await?,
                }
            }
            sizes
        }
    };
    for (id, oid) in relations {
        *usage.entry(id).or_insert(0) += sizes.get(&oid).copied().unwrap_or(0);
    }
    Ok(usage)
}

/// Each tenant's share of every pool table, in bytes (the pool of the server `client`
/// is on).
pub(crate) async fn shared_shares(
    client: &mut deadpool_postgres::Client,
) -> Result<std::collections::HashMap<Uuid, f64>> {
    let mut shares = std::collections::HashMap::new();
    let tx = client.transaction().await?;
    tx.batch_execute(ROUND_TIMEOUTS).await?;
    let tables = crate::isolation::pool_catalog::table_names(&*tx).await?;
    // The pool owner's maintenance policy sees every tenant's rows.
    tx.batch_execute(&format!("SET LOCAL ROLE {}", ident(pool::POOL_OWNER)))
        .await?;
    let schema = ident(pool::POOL_SCHEMA);
    for t in tables {
        let table = Ident::new(t).expect("catalog names are identifiers");
        let total: i64 = tx
            .query_one(
                "SELECT pg_total_relation_size($1::text::regclass)",
                &[&format!("{schema}.{table}")],
            )
            .await?
            .get(0);
        let rows = tx
            .query(
                &format!(
                    "SELECT tenant_id, sum(pg_column_size(t.*))::float8 FROM {schema}.{table} t GROUP BY tenant_id"
                ),
                &[],
            )
            .await?;
        let all: f64 = rows.iter().map(|r| r.get::<_, f64>(1)).sum();
        if all <= 0.0 {
            continue;
        }
        for r in rows {
            *shares.entry(r.get::<_, Uuid>(0)).or_insert(0.0) +=
                total as f64 * r.get::<_, f64>(1) / all;
        }
    }
    tx.commit().await?;
    Ok(shares)
}

pub(super) fn ident(s: &str) -> Ident {
    Ident::new(s).expect("static names are identifiers")
}

/// What one enforcement pass did for a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Blocked,
    Restored,
}

/// Measures every tenant and records it; returns how many were measured and the
/// tenants to enforce (over their quota, or blocked).
pub async fn measure_round(p: &Platform) -> Result<(usize, Vec<Uuid>)> {
    let sizes = measure(p, None).await?;
    let client = p.pool.get().await?;
    store::record_measurements(&client, &sizes).await?;
    let due = store::over_quota_or_blocked(&client).await?;
    Ok((sizes.len(), due))
}

/// Measures one tenant now and records it (for a forced quota change, or a usage
/// request before the first round).
pub async fn measure_now(p: &Platform, tenant_id: Uuid) -> Result<Option<i64>> {
    let sizes = measure(p, Some(tenant_id)).await?;
    let client = p.pool.get().await?;
    store::record_measurements(&client, &sizes).await?;
    Ok(sizes.first().map(|s| s.1))
}
