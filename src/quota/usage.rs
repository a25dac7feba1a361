//! Usage: the summary against quotas (seed 002's `get_usage_summary`), seed 003's
//! resources, and application-reported counters (`POST .../usage`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::rate::{Decision, RateLimits};
use super::{disk, Quotas};
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::store::quotas::{self as store, Period};
use crate::store::tenants::{Isolation, Status, Tenant};
use crate::store::{tenants as registry, users};
use crate::tenant::service::Error;

type Result<T, E = Error> = std::result::Result<T, E>;

/// A metric is at risk above this share of its quota.
pub const AT_RISK_PERCENT: f64 = 90.0;

/// One measured or counted metric against its quota.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Resource {
    /// `storage_bytes`, `connections`, `users`, `api_calls`, `realtime_events`,
    /// `llm_tokens`, `agents` or `concurrent_agents`.
    pub resource_type: String,
    pub used: i64,
    pub limit_value: i64,
    /// When `used` was measured or last changed (null: never).
    pub updated_at: Option<DateTime<Utc>>,
}

/// Seed 003's `GET .../resources`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Resources {
    pub tenant_id: Uuid,
    pub tenant: String,
    pub resources: Vec<Resource>,
}

/// Seed 002's usage summary.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageSummary {
    pub tenant_id: Uuid,
    pub tenant_slug: String,
    /// The plan.
    pub tier: String,
    pub status: Status,
    /// By metric, as in [`Resource::resource_type`]. `api_calls` is this minute's, as
    /// this server counted it; `realtime_events` this minute's published events (and
    /// reported ones), `realtime_events_hour` this hour's; `llm_tokens` today's (UTC).
    pub usage: BTreeMap<String, i64>,
    pub quotas: Quotas,
    /// By metric: usage as a percentage of its quota (one decimal).
    pub utilization_percent: BTreeMap<String, f64>,
    /// Some metric is above 90% of its quota.
    pub at_risk: bool,
    /// Over the disk quota: the tenant's writes are revoked until it is under again.
    pub writes_blocked: bool,
    pub disk_measured_at: Option<DateTime<Utc>>,
}

async fn tenant(p: &Platform, key: &str) -> Result<(Tenant, Quotas)> {
    let client = p.pool.get().await?;
    let t = registry::find(&client, key)
        .await?
        .ok_or_else(|| Error::not_found(key))?;
    let q = store::effective(&client, t.id)
        .await?
        .ok_or_else(|| Error::not_found(key))?;
    Ok((t, q))
}

/// Every metric of the tenant, with whether writes are blocked.
async fn collect(
    p: &Platform,
    limits: &RateLimits,
    t: &Tenant,
    q: &Quotas,
) -> Result<(Vec<Resource>, bool)> {
    collect_with(p, limits, t, q, true).await
}

/// Every metric of the tenant; `measure`: measure the disk now if the worker has not
/// yet (else it counts as 0 until it has).
pub(crate) async fn collect_with(
    p: &Platform,
    limits: &RateLimits,
    t: &Tenant,
    q: &Quotas,
    measure: bool,
) -> Result<(Vec<Resource>, bool)> {
    let client = p.pool.get().await?;
    let disk_row = match store::disk_usage(&client, t.id).await? {
        Some(d) => Some(d),
        None if !measure => None,
        None => {
            // Not measured by the worker yet: measure now.
            disk::measure_now(p, t.id).await?;
            store::disk_usage(&client, t.id).await?
        }
    };
    let now = Some(Utc::now());
    let api = limits.this_minute(t.id);
    // Published events as SQL admitted them (every publish path), and those the
    // application reported through `POST .../usage`: one count.
    let (rt_minute, rt_hour) = realtime_counted(p, &client, t).await?;
    let (tokens, tokens_at) = store::counter(&client, t.id, "llm_tokens", Period::Day).await?;
    let (agents, agents_at) = store::counter(&client, t.id, "agents", Period::Total).await?;
    let (conc, conc_at) = store::counter(&client, t.id, "concurrent_agents", Period::Total).await?;
    let r = |kind: &str, used: i64, limit: i64, at: Option<DateTime<Utc>>| Resource {
        resource_type: kind.into(),
        used,
        limit_value: limit,
        updated_at: at,
    };
    let resources = vec![
        r(
            "storage_bytes",
            disk_row.as_ref().map_or(0, |d| d.bytes),
            q.db_quota_bytes,
            disk_row.as_ref().map(|d| d.measured_at),
        ),
        r(
            "connections",
            if t.server == crate::store::servers::DEFAULT {
                registry::open_sessions(&client, t.id).await?
            } else {
                crate::quota::placed::open_sessions(p, t).await?
            },
            q.max_connections as i64,
            now,
        ),
        r(
            "users",
            users::count(&client, t.id).await?,
            q.max_users as i64,
            now,
        ),
        r("api_calls", api as i64, q.api_calls_per_minute as i64, now),
        r(
            "realtime_events",
            rt_minute,
            q.realtime_events_per_minute as i64,
            now,
        ),
        r(
            "realtime_events_hour",
            rt_hour,
            q.realtime_events_per_hour as i64,
            now,
        ),
        r("llm_tokens", tokens, q.max_llm_tokens_per_day, tokens_at),
        r("agents", agents, q.max_agents as i64, agents_at),
        r(
            "concurrent_agents",
            conc,
            q.max_concurrent_agents as i64,
            conc_at,
        ),
    ];
    Ok((resources, disk_row.is_some_and(|d| d.writes_blocked)))
}

fn percent(used: i64, limit: i64) -> f64 {
    if limit <= 0 {
        return if used > 0 { 100.0 } else { 0.0 };
    }
    (used as f64 * 1000.0 / limit as f64).round() / 10.0
}

pub async fn summary(p: &Platform, limits: &RateLimits, key: &str) -> Result<UsageSummary> {
    let (t, q) = tenant(p, key).await?;
    let (resources, writes_blocked) = collect(p, limits, &t, &q).await?;
    let utilization: BTreeMap<String, f64> = resources
        .iter()
        .map(|r| (r.resource_type.clone(), percent(r.used, r.limit_value)))
        .collect();
    Ok(UsageSummary {
        tenant_id: t.id,
        tenant_slug: t.name.to_string(),
        tier: t.plan.clone(),
        status: t.status,
        at_risk: utilization.values().any(|p| *p > AT_RISK_PERCENT),
        usage: resources
            .iter()
            .map(|r| (r.resource_type.clone(), r.used))
            .collect(),
        utilization_percent: utilization,
        disk_measured_at: resources[0].updated_at,
        writes_blocked,
        quotas: q,
    })
}

pub async fn resources(p: &Platform, limits: &RateLimits, key: &str) -> Result<Resources> {
    let (t, q) = tenant(p, key).await?;
    let (resources, _) = collect(p, limits, &t, &q).await?;
    Ok(Resources {
        tenant_id: t.id,
        tenant: t.name.to_string(),
        resources,
    })
}

/// `POST /api/v1/tenants/{name}/usage`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Increment {
    /// `llm_tokens` (per UTC day), `agents` and `concurrent_agents` (running totals:
    /// a negative amount lowers them), or `realtime_events` (per minute, GCRA).
    pub metric: String,
    pub amount: i64,
}

/// A counted increment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Counted {
    pub metric: String,
    pub amount: i64,
    /// The counter after this increment (realtime events: this minute's, here).
    pub used: i64,
    pub limit: i64,
    pub remaining: i64,
    /// `day`, `total` or `minute`
    pub period: String,
}

/// How an increment went.
#[derive(Debug)]
pub enum Outcome {
    /// The tenant's API rate limit refused the call itself.
    RateLimited(Decision),
    /// Counted; with the API rate decision for the headers.
    Counted(Counted, Decision),
    /// The quota is spent; nothing was counted. `retry_after`: when it resets, if it does.
    Refused {
        problem: Problem,
        retry_after: Option<u64>,
        api: Decision,
    },
}

const METRICS: &[(&str, &str, Period)] = &[
    ("llm_tokens", "max_llm_tokens_per_day", Period::Day),
    ("agents", "max_agents", Period::Total),
    ("concurrent_agents", "max_concurrent_agents", Period::Total),
];

fn validate(req: &Increment) -> Result<()> {
    let known = req.metric == "realtime_events" || METRICS.iter().any(|m| m.0 == req.metric);
    if !known {
        return Err(Error::Rejected(Problem::bad_field(
            "metric",
            format!(
                "metric must be one of llm_tokens, agents, concurrent_agents, realtime_events; got {:?}",
                req.metric
            ),
        )));
    }
    let signed = matches!(req.metric.as_str(), "agents" | "concurrent_agents");
    let max = if req.metric == "realtime_events" {
        u32::MAX as i64
    } else {
        1_000_000_000_000
    };
    if req.amount == 0 || req.amount.abs() > max || (!signed && req.amount < 0) {
        let range = if signed {
            format!("a non-zero whole number between -{max} and {max}")
        } else {
            format!("between 1 and {max}")
        };
        return Err(Error::Rejected(Problem::bad_field(
            "amount",
            format!("amount for {} must be {range}", req.metric),
        )));
    }
    Ok(())
}

fn seconds_to_utc_midnight() -> u64 {
    let now = Utc::now();
    let tomorrow = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    (tomorrow - now).num_seconds().max(1) as u64
}

/// A connection to a database-mode tenant's own database (where its realtime events
/// are counted), as the control role.
async fn tenant_db(p: &Platform, t: &Tenant) -> Result<tokio_postgres::Client> {
    // On the tenant's own server.
    let mut config = crate::quota::placed::view(p, &t.server).await?.config;
    config.dbname(t.database.as_str());
    Ok(crate::pg::connect(&config).await?)
}

/// This minute's and this hour's realtime events as SQL counted them: in the control
/// database, or in database mode in the gate of the tenant's own database.
async fn realtime_counted(
    p: &Platform,
    control: &deadpool_postgres::Object,
    t: &Tenant,
) -> Result<(i64, i64)> {
    Ok(match t.isolation {
        Isolation::Database => {
            crate::store::realtime_gate::counted(&tenant_db(p, t).await?).await?
        }
        _ => crate::store::realtime::counted(control, t.id).await?,
    })
}

/// Counts `n` reported realtime events where the tenant's publishes are counted, all
/// or none: `Ok(used this minute)` or `Err((message, retry_after_secs))`.
async fn realtime_admit(
    p: &Platform,
    t: &Tenant,
    n: i64,
) -> Result<std::result::Result<i64, (String, u64)>> {
    Ok(match t.isolation {
        Isolation::Database => {
            crate::store::realtime_gate::admit_n(&tenant_db(p, t).await?, n).await?
        }
        _ => crate::store::realtime::admit_n(&p.pool.get().await?, t.id, n).await?,
    })
}

/// Counts application-reported usage atomically against the tenant's quota. The call
/// itself counts against the tenant's API rate limit.
pub async fn increment(
    p: &Platform,
    limits: &RateLimits,
    key: &str,
    req: &Increment,
) -> Result<Outcome> {
    validate(req)?;
    let (t, q) = tenant(p, key).await?;
    let api = limits.api_call(t.id, q.api_calls_per_minute as u32);
    super::breaches::flush(p, limits);
    if !api.allowed() {
        return Ok(Outcome::RateLimited(api));
    }
    crate::metrics::api_call("usage");
    if req.metric == "realtime_events" {
        let per_minute = q.realtime_events_per_minute as i64;
        return Ok(match realtime_admit(p, &t, req.amount).await? {
            Ok(used) => Outcome::Counted(
                Counted {
                    metric: req.metric.clone(),
                    amount: req.amount,
                    used,
                    limit: per_minute,
                    remaining: (per_minute - used).max(0),
                    period: "minute".into(),
                },
                api,
            ),
            Err((message, retry_after_secs)) => {
                crate::metrics::rate_limited("realtime_events");
                // A refusal is a crossing now, not at the next quota round (which
                // sees the count too, and records nothing twice).
                let (limit_name, limit) = if message.contains("realtime_events_per_hour") {
                    (
                        "realtime_events_per_hour",
                        q.realtime_events_per_hour as i64,
                    )
                } else {
                    ("realtime_events_per_minute", per_minute)
                };
                let crossing = super::breaches::Crossing {
                    tenant: t.id,
                    quota: "realtime",
                    exceeded: true,
                    limit,
                    used: limit,
                };
                if let Err(e) = super::breaches::record_as(p, &crossing, limit_name).await {
                    tracing::warn!(tenant.id = %t.id, error = %e, "could not record a realtime limit crossing");
                }
                Outcome::Refused {
                    problem: Problem::new(
                        Kind::Conflict,
                        "rate_limited",
                        format!("{} realtime events refused: {message}", req.amount),
                    ),
                    retry_after: Some(retry_after_secs),
                    api,
                }
            }
        });
    }
    let (metric, quota, period) = *METRICS
        .iter()
        .find(|m| m.0 == req.metric)
        .expect("validated");
    let limit = super::service::value(&q, quota);
    let client = p.pool.get().await?;
    let counted = if req.amount > 0 {
        store::increment(&client, t.id, metric, period, req.amount, limit).await?
    } else {
        store::decrement(&client, t.id, metric, -req.amount).await?
    };
    let Some(used) = counted else {
        if req.amount < 0 {
            return Err(Error::Rejected(Problem::bad_field(
                "amount",
                format!("{metric} cannot go below 0"),
            )));
        }
        let (used, _) = store::counter(&client, t.id, metric, period).await?;
        crate::metrics::quota_breach(metric);
        let when = if period == Period::Day { " today" } else { "" };
        return Ok(Outcome::Refused {
            problem: Problem::new(
                Kind::Conflict,
                "quota_exceeded",
                format!(
                    "{metric}: {used} of {limit} used{when}; {} more would exceed {quota}",
                    req.amount
                ),
            ),
            retry_after: (period == Period::Day).then(seconds_to_utc_midnight),
            api,
        });
    };
    Ok(Outcome::Counted(
        Counted {
            metric: metric.into(),
            amount: req.amount,
            used,
            limit,
            remaining: (limit - used).max(0),
            period: if period == Period::Day {
                "day"
            } else {
                "total"
            }
            .into(),
        },
        api,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_validation() {
        assert_eq!(percent(91, 100), 91.0);
        assert_eq!(percent(1, 3), 33.3);
        assert_eq!(percent(0, 0), 0.0);
        let bad = |metric: &str, amount: i64| {
            validate(&Increment {
                metric: metric.into(),
                amount,
            })
            .err()
            .and_then(|e| match e {
                Error::Rejected(p) => p.field,
                _ => None,
            })
        };
        assert_eq!(bad("llm_tokens", 1500), None);
        assert_eq!(bad("agents", -1), None);
        assert_eq!(bad("tokens", 1).as_deref(), Some("metric"));
        assert_eq!(bad("llm_tokens", -5).as_deref(), Some("amount"));
        assert_eq!(bad("llm_tokens", 0).as_deref(), Some("amount"));
    }
}
