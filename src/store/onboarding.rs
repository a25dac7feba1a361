//! The `onboarding_steps` table (migration 0022): the HTTP steps an operator registered
//! for tenant creates, their secrets sealed. The caller owns the transaction.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Result;

/// A registered step as stored (its secret still sealed).
#[derive(Debug, Clone)]
pub struct StepRow {
    pub id: Uuid,
    pub name: String,
    pub url: String,
    pub when_plan: Option<String>,
    pub when_isolation: Option<String>,
    pub timeout_ms: i32,
    pub compensate_url: Option<String>,
    pub sealed_secret: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, name, url, when_plan, when_isolation, timeout_ms, compensate_url, secret, created_at";

fn row(r: &Row) -> StepRow {
    StepRow {
        id: r.get(0),
        name: r.get(1),
        url: r.get(2),
        when_plan: r.get(3),
        when_isolation: r.get(4),
        timeout_ms: r.get(5),
        compensate_url: r.get(6),
        sealed_secret: r.get(7),
        created_at: r.get(8),
    }
}

/// Inserts a step; a taken name is [`super::Error::Conflict`].
pub async fn insert(c: &impl GenericClient, s: &StepRow) -> Result<StepRow> {
    let r = c
        .query_one(
            &format!(
                "INSERT INTO berqenas.onboarding_steps ({COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now()) RETURNING {COLUMNS}"
            ),
            &[
                &s.id,
                &s.name,
                &s.url,
                &s.when_plan,
                &s.when_isolation,
                &s.timeout_ms,
                &s.compensate_url,
                &s.sealed_secret,
            ],
        )
        .await?;
    Ok(row(&r))
}

/// Every step, in registration order (the order a create calls them in).
pub async fn list(c: &impl GenericClient) -> Result<Vec<StepRow>> {
    Ok(c.query(
        &format!("SELECT {COLUMNS} FROM berqenas.onboarding_steps ORDER BY created_at, name"),
        &[],
    )
    .await?
    .iter()
    .map(row)
    .collect())
}

pub async fn find(c: &impl GenericClient, name: &str) -> Result<Option<StepRow>> {
    Ok(c.query_opt(
        &format!("SELECT {COLUMNS} FROM berqenas.onboarding_steps WHERE name = $1"),
        &[&name],
    )
    .await?
    .as_ref()
    .map(row))
}

/// The steps a create of this plan and isolation mode runs, in registration order.
pub async fn matching(c: &impl GenericClient, plan: &str, isolation: &str) -> Result<Vec<StepRow>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM berqenas.onboarding_steps
              WHERE (when_plan IS NULL OR when_plan = $1)
                AND (when_isolation IS NULL OR when_isolation = $2)
              ORDER BY created_at, name"
        ))
        .await?;
    Ok(c.query(&stmt, &[&plan, &isolation])
        .await?
        .iter()
        .map(row)
        .collect())
}

/// Removes a step; whether there was one.
pub async fn delete(c: &impl GenericClient, name: &str) -> Result<bool> {
    Ok(c.execute(
        "DELETE FROM berqenas.onboarding_steps WHERE name = $1",
        &[&name],
    )
    .await?
        == 1)
}

/// A step's settled answer after a 202 (migration 0024): its callback, or the create's
/// own `timed_out` when the step's timeout passed first.
#[derive(Debug, Clone)]
pub struct CallbackRow {
    pub status: String,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// Settles a step's answer, once: `None` if it was settled already (the other writer
/// won), else the row written.
pub async fn settle(
    c: &impl GenericClient,
    operation: Uuid,
    step: &str,
    status: &str,
    result: Option<&serde_json::Value>,
    error: Option<&str>,
) -> Result<Option<CallbackRow>> {
    Ok(c.query_opt(
        "INSERT INTO berqenas.onboarding_callbacks (operation_id, step, status, result, error)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
             RETURNING status, result, error, received_at",
        &[&operation, &step, &status, &result, &error],
    )
    .await?
    .map(|r| callback_row(&r)))
}

/// A step's settled answer, if it has one.
pub async fn settled(
    c: &impl GenericClient,
    operation: Uuid,
    step: &str,
) -> Result<Option<CallbackRow>> {
    let stmt = c
        .prepare_cached(
            "SELECT status, result, error, received_at FROM berqenas.onboarding_callbacks
              WHERE operation_id = $1 AND step = $2",
        )
        .await?;
    Ok(c.query_opt(&stmt, &[&operation, &step])
        .await?
        .map(|r| callback_row(&r)))
}

fn callback_row(r: &Row) -> CallbackRow {
    CallbackRow {
        status: r.get(0),
        result: r.get(1),
        error: r.get(2),
        received_at: r.get(3),
    }
}
