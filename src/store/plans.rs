//! The `plans` table: seed 002's tiers and their quotas. The caller owns the
//! transaction.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::Result;
use crate::store::quotas::Quotas;
use crate::store::tenants::Plan;

pub async fn find(c: &impl GenericClient, name: &str) -> Result<Option<Plan>> {
    let row = c
        .query_opt(
            &c.prepare_cached("SELECT * FROM berqenas.plans WHERE name = $1")
                .await?,
            &[&name],
        )
        .await?;
    row.as_ref().map(plan_row).transpose()
}

/// Every plan, smallest storage first.
pub async fn list(c: &impl GenericClient) -> Result<Vec<Plan>> {
    let rows = c
        .query("SELECT * FROM berqenas.plans ORDER BY storage_bytes", &[])
        .await?;
    rows.iter().map(plan_row).collect()
}

/// A plan row; its columns' older names (`storage_bytes`, `llm_tokens_per_day`,
/// `concurrent_agents`, `retention_days`) become the quotas' names here.
fn plan_row(r: &Row) -> Result<Plan> {
    let storage: i64 = r.try_get("storage_bytes")?;
    Ok(Plan {
        name: r.try_get("name")?,
        quotas: Quotas {
            db_quota_bytes: storage,
            max_connections: r.try_get("max_connections")?,
            statement_timeout_ms: r.try_get("statement_timeout_ms")?,
            api_calls_per_minute: r.try_get("api_calls_per_minute")?,
            realtime_events_per_minute: r.try_get("realtime_events_per_minute")?,
            max_users: r.try_get("max_users")?,
            max_llm_tokens_per_day: r.try_get("llm_tokens_per_day")?,
            max_agents: r.try_get("max_agents")?,
            max_concurrent_agents: r.try_get("concurrent_agents")?,
            max_data_retention_days: r.try_get("retention_days")?,
            transaction_timeout_ms: r.try_get("transaction_timeout_ms")?,
            realtime_events_per_hour: r.try_get("realtime_events_per_hour")?,
            realtime_max_subscribers: r.try_get("realtime_max_subscribers")?,
            max_storage_gb: crate::store::quotas::storage_gb(storage),
        },
        trial_days: r.try_get("trial_days")?,
        default_isolation: r.try_get("default_isolation")?,
        vector_store: r.try_get("vector_store")?,
    })
}
