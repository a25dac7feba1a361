//! Reading and changing a tenant's quotas: `GET .../limits`, `PUT .../quotas`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{apply, disk, Quotas, FIELDS};
use crate::audit;
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::store::quotas::{self as store, Period};
use crate::store::{tenants as registry, users};
use crate::tenant as tenants;
use crate::tenant::service::Error;

type Result<T, E = Error> = std::result::Result<T, E>;

/// `PUT /api/v1/tenants/{name}/quotas`: only the fields given change; `null` puts a
/// field back to the plan's value. A quota below what the tenant uses now is refused
/// (409) unless `force` is true, and then enforced at once.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaUpdate {
    #[serde(
        default,
        deserialize_with = "crate::nullable::field",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub db_quota_bytes: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "crate::nullable::field",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub max_connections: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "crate::nullable::field",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub statement_timeout_ms: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "crate::nullable::field",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub api_calls_per_minute: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "crate::nullable::field",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub realtime_events_per_minute: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "crate::nullable::field",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub max_users: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "crate::nullable::field",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub max_llm_tokens_per_day: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "crate::nullable::field",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub max_agents: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "crate::nullable::field",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub max_concurrent_agents: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "crate::nullable::field",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub max_data_retention_days: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "crate::nullable::field",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub transaction_timeout_ms: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "crate::nullable::field",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub realtime_events_per_hour: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "crate::nullable::field",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub realtime_max_subscribers: Option<Option<i64>>,
    /// Accept quotas below current usage (they are enforced at once).
    #[serde(default)]
    pub force: bool,
}

impl QuotaUpdate {
    /// (field, new value or `None` for the plan's), in the order of [`FIELDS`].
    fn changes(&self) -> Vec<(&'static str, Option<i64>)> {
        let given = [
            self.db_quota_bytes,
            self.max_connections,
            self.statement_timeout_ms,
            self.api_calls_per_minute,
            self.realtime_events_per_minute,
            self.max_users,
            self.max_llm_tokens_per_day,
            self.max_agents,
            self.max_concurrent_agents,
            self.max_data_retention_days,
            self.transaction_timeout_ms,
            self.realtime_events_per_hour,
            self.realtime_max_subscribers,
        ];
        FIELDS
            .iter()
            .zip(given)
            .filter_map(|((name, _, _), v)| v.map(|v| (*name, v)))
            .collect()
    }
}

fn validate(changes: &[(&'static str, Option<i64>)]) -> Result<()> {
    if changes.is_empty() {
        let names: Vec<&str> = FIELDS.iter().map(|f| f.0).collect();
        return Err(Error::Rejected(Problem::new(
            Kind::BadInput,
            "no_quota_given",
            format!("give at least one of {}", names.join(", ")),
        )));
    }
    for (field, value) in changes {
        let (_, lo, hi) = FIELDS
            .iter()
            .find(|f| f.0 == *field)
            .expect("changes come from FIELDS");
        if let Some(v) = value {
            if !(*lo..=*hi).contains(v) {
                return Err(Error::Rejected(Problem::bad_field(
                    field,
                    format!("{field} must be between {lo} and {hi}, got {v}"),
                )));
            }
        }
    }
    Ok(())
}

/// A quota's value by field name.
pub fn value(q: &Quotas, field: &str) -> i64 {
    match field {
        "db_quota_bytes" => q.db_quota_bytes,
        "max_connections" => q.max_connections as i64,
        "statement_timeout_ms" => q.statement_timeout_ms as i64,
        "api_calls_per_minute" => q.api_calls_per_minute as i64,
        "realtime_events_per_minute" => q.realtime_events_per_minute as i64,
        "max_users" => q.max_users as i64,
        "max_llm_tokens_per_day" => q.max_llm_tokens_per_day,
        "max_agents" => q.max_agents as i64,
        "max_concurrent_agents" => q.max_concurrent_agents as i64,
        "max_data_retention_days" => q.max_data_retention_days as i64,
        "transaction_timeout_ms" => q.transaction_timeout_ms as i64,
        "realtime_events_per_hour" => q.realtime_events_per_hour as i64,
        "realtime_max_subscribers" => q.realtime_max_subscribers as i64,
        other => unreachable!("unknown quota field {other}"),
    }
}

/// Seed 003's limits: what applies to the tenant, and which of it overrides its plan.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Limits {
    pub tenant_id: Uuid,
    pub tenant: String,
    pub plan: String,
    pub limits: Quotas,
    /// Fields set for this tenant; the others are its plan's.
    pub overridden: Vec<String>,
    /// `db_quota_bytes` in whole GiB (rounded down), as `limits.max_storage_gb`.
    pub max_storage_gb: i64,
}

pub async fn limits(p: &Platform, key: &str) -> Result<Limits> {
    let client = p.pool.get().await?;
    let t = registry::find(&client, key)
        .await?
        .ok_or_else(|| Error::not_found(key))?;
    limits_of(&client, &t).await
}

async fn limits_of(
    c: &impl deadpool_postgres::GenericClient,
    t: &tenants::Tenant,
) -> Result<Limits> {
    let q = store::effective(c, t.id)
        .await?
        .ok_or_else(|| Error::not_found(&t.name))?;
    Ok(Limits {
        tenant_id: t.id,
        tenant: t.name.to_string(),
        plan: t.plan.clone(),
        max_storage_gb: q.max_storage_gb,
        limits: q,
        overridden: store::overridden(c, t.id).await?,
    })
}

/// What the tenant uses now, for a quota being lowered to `new`: (usage, what) when
/// `new` is below it.
async fn below_usage(
    p: &Platform,
    c: &impl deadpool_postgres::GenericClient,
    tenant_id: Uuid,
    field: &str,
    new: i64,
    elsewhere: Option<&Measured>,
) -> Result<Option<(i64, &'static str)>> {
    let (used, what) = match (field, elsewhere) {
        ("db_quota_bytes", Some(m)) => (m.disk_bytes, "bytes on disk"),
        ("max_connections", Some(m)) => (m.sessions, "open sessions"),
        ("db_quota_bytes", None) => (
            disk::measure(p, Some(tenant_id))
                .await?
                .first()
                .map_or(0, |s| s.1),
            "bytes on disk",
        ),
        ("max_connections", None) => (
            registry::open_sessions(c, tenant_id).await?,
            "open sessions",
        ),
        ("max_users", _) => (users::count(c, tenant_id).await?, "users"),
        ("max_llm_tokens_per_day", _) => (
            store::counter(c, tenant_id, "llm_tokens", Period::Day)
                .await?
                .0,
            "LLM tokens today",
        ),
        ("max_agents", _) => (
            store::counter(c, tenant_id, "agents", Period::Total)
                .await?
                .0,
            "agents",
        ),
        ("max_concurrent_agents", _) => (
            store::counter(c, tenant_id, "concurrent_agents", Period::Total)
                .await?
                .0,
            "concurrent agents",
        ),
        _ => return Ok(None),
    };
    Ok((new < used).then_some((used, what)))
}

/// What a quota change leaves to do once it has committed.
pub struct Changed {
    pub limits: Limits,
    /// The disk quota changed: measure and enforce it now, not at the next round.
    pub enforce_disk: bool,
    /// The connection quota went below the sessions open: end the newest past it.
    pub trim_connections: Option<i64>,
    /// The quotas in force after the change (applied to PostgreSQL already, unless
    /// the tenant lives on another server: see [`update_elsewhere`]).
    pub quotas: Quotas,
}

/// What a tenant on another server uses now, measured there before the change (the
/// registry's cluster does not see its sessions or its objects).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Measured {
    pub disk_bytes: i64,
    pub sessions: i64,
}

/// `PUT /api/v1/tenants/{name}/quotas`, inside the caller's transaction (which holds
/// the tenant's name and row): only the fields given change; a quota below what the
/// tenant uses now is refused (409) unless `force` is true.
pub async fn update_locked(
    p: &Platform,
    tx: &deadpool_postgres::Transaction<'_>,
    t: &tenants::Tenant,
    req: &QuotaUpdate,
    op_id: Uuid,
    actor: &str,
) -> Result<Changed> {
    update_in(p, tx, t, req, op_id, actor, None).await
}

/// [`update_locked`] for a tenant on another server: the registry's half only (the
/// quotas in force are returned in [`Changed::quotas`] for the caller to apply
/// there), `measured` standing for what the tenant uses.
pub async fn update_elsewhere(
    p: &Platform,
    tx: &deadpool_postgres::Transaction<'_>,
    t: &tenants::Tenant,
    req: &QuotaUpdate,
    measured: &Measured,
    op_id: Uuid,
    actor: &str,
) -> Result<Changed> {
    update_in(p, tx, t, req, op_id, actor, Some(measured)).await
}

async fn update_in(
    p: &Platform,
    tx: &deadpool_postgres::Transaction<'_>,
    t: &tenants::Tenant,
    req: &QuotaUpdate,
    op_id: Uuid,
    actor: &str,
    elsewhere: Option<&Measured>,
) -> Result<Changed> {
    let changes = req.changes();
    validate(&changes)?;
    let old = store::effective(tx, t.id)
        .await?
        .ok_or_else(|| Error::not_found(t.name.as_str()))?;
    store::set_overrides(tx, t.id, &changes).await?;
    let t = registry::get(tx, t.id).await?;
    // A purged tenant has no roles to apply them to: they are recorded, and a rebuild
    // from its archive applies the quotas in force then.
    let new = if t.status == tenants::Status::Purged || elsewhere.is_some() {
        store::effective(tx, t.id)
            .await?
            .ok_or_else(|| Error::not_found(t.name.as_str()))?
    } else {
        apply::apply_limits(p, tx, &t).await?
    };
    let mut lowered_below = Vec::new();
    for (field, _) in &changes {
        let (from, to) = (value(&old, field), value(&new, field));
        if to >= from {
            continue;
        }
        if let Some((used, what)) = below_usage(p, tx, t.id, field, to, elsewhere).await? {
            if !req.force {
                return Err(Error::Rejected(Problem {
                    kind: Kind::Conflict,
                    code: "quota_below_usage".into(),
                    message: format!(
                        "{field} {to} is below the tenant's current usage of {used} {what}; send \"force\": true to apply it anyway"
                    ),
                    field: Some(field.to_string()),
                }));
            }
            lowered_below.push(*field);
        }
    }
    let detail: serde_json::Map<String, serde_json::Value> = changes
        .iter()
        .map(|(field, _)| {
            (
                field.to_string(),
                serde_json::json!({"from": value(&old, field), "to": value(&new, field)}),
            )
        })
        .collect();
    let moved = crate::store::outbox::data::quota_changes(&old, &new);
    if !moved.is_empty() {
        crate::store::outbox::emit(
            tx,
            t.id,
            t.name.as_str(),
            &crate::store::outbox::data::QuotaUpdated {
                changes: moved,
                force: req.force,
                quotas: new.clone(),
            },
        )
        .await?;
    }
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "quotas_updated",
            tenant_id: Some(t.id),
            tenant_name: Some(&t.name),
            operation_id: Some(op_id),
            details: serde_json::json!({"changes": detail, "force": req.force, "below_usage": lowered_below}),
        },
    )
    .await?;
    let limits = limits_of(tx, &t).await?;
    Ok(Changed {
        limits,
        enforce_disk: changes.iter().any(|c| c.0 == "db_quota_bytes"),
        trim_connections: lowered_below
            .contains(&"max_connections")
            .then_some(new.max_connections as i64),
        quotas: new,
    })
}

/// Ends the tenant's newest sessions past `max` (a forced lower connection quota).
pub async fn trim_connections(p: &Platform, t: &tenants::Tenant, max: i64) -> Result<()> {
    let logins = tenants::access::login_roles(&p.pool.get().await?, t).await?;
    trim_sessions(p, t, &logins, max).await
}

/// Ends the newest sessions of `logins` past `max` on the server `p` reaches (for a
/// tenant on another server, `p` is the platform as seen from there).
pub async fn trim_sessions(
    p: &Platform,
    t: &tenants::Tenant,
    logins: &[crate::pg::Ident],
    max: i64,
) -> Result<()> {
    let client = p.pool.get().await?;
    // Each login role's limit is the quota; in database mode the database's is
    // too, capping them together: counted per database there.
    let per_database = t.isolation == tenants::Isolation::Database;
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM (
                 SELECT pid, row_number() OVER (
                          PARTITION BY CASE WHEN $3 THEN datname::text ELSE usename::text END
                          ORDER BY backend_start) AS n
                   FROM pg_stat_activity
                  WHERE usename = ANY($1) AND pid <> pg_backend_pid()
                    AND backend_type = 'client backend') s
              WHERE n > $2",
            &[&logins, &max, &per_database],
        )
        .await?;
    Ok(())
}
