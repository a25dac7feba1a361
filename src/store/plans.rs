//! The `plans` table: seed 002's tiers and their quotas. The caller owns the
//! transaction.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::Result;
use crate::tenant::{Isolation, Plan};

pub async fn find(c: &impl GenericClient, name: &str) -> Result<Option<Plan>> {
    let row = c
        .query_opt(
            &c.prepare_cached("SELECT * FROM berqenas.plans WHERE name = $1")
                .await?,
            &[&name],
        )
        .await?;
    Ok(row.as_ref().map(plan_row))
}

/// Every plan, smallest storage first.
pub async fn list(c: &impl GenericClient) -> Result<Vec<Plan>> {
    let rows = c
        .query("SELECT * FROM berqenas.plans ORDER BY storage_bytes", &[])
        .await?;
    Ok(rows.iter().map(plan_row).collect())
}

fn plan_row(r: &Row) -> Plan {
    Plan {
        name: r.get("name"),
        max_users: r.get("max_users"),
        api_calls_per_minute: r.get("api_calls_per_minute"),
        storage_bytes: r.get("storage_bytes"),
        max_connections: r.get("max_connections"),
        statement_timeout_ms: r.get("statement_timeout_ms"),
        llm_tokens_per_day: r.get("llm_tokens_per_day"),
        max_agents: r.get("max_agents"),
        concurrent_agents: r.get("concurrent_agents"),
        retention_days: r.get("retention_days"),
        trial_days: r.get("trial_days"),
        transaction_timeout_ms: r.get("transaction_timeout_ms"),
        default_isolation: r
            .get::<_, Option<&str>>("default_isolation")
            .and_then(Isolation::parse),
    }
}
