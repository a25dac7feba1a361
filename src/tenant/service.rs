//! Tenant operations: read, list, update, and what every tenant operation shares (the
//! name lock, plans, limits, this domain's error). Creating a tenant is in
//! [`super::create`], its credentials in [`super::credentials`]; both are re-exported
//! here, where callers have always found them.

use deadpool_postgres::Transaction;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::size::{format_size, parse_size};
use super::{Plan, Slug, Status, Tenant};
use crate::audit;
use crate::isolation::RoleLimits;
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::store::outbox::data::{
    quota_changes, NetworkChanged, QuotaUpdated, TenantPlanChanged, TenantState, TenantUpdated,
};
use crate::store::quotas::Quotas;
use crate::store::tenants::{self as store, Changes};
use crate::store::{outbox, plans};

pub(crate) use super::create::{taken, taken_name, taken_row, Validated};
pub use super::create::{CreateTenant, CreatedTenant};
pub(crate) use super::credentials::{credentials_for, credentials_on, seal_password};
pub use super::credentials::{credentials_of, open_password, Credentials};

pub const DEFAULT_PLAN: &str = "free";
pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's mistake, with the field it concerns; nothing was changed.
    #[error("{}", .0.message)]
    Rejected(Problem),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    /// The store found no row, or a conflict, where this operation expected none.
    #[error(transparent)]
    Store(crate::store::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error(transparent)]
    Hardening(#[from] crate::pg::hardening::HardeningError),
    #[error(transparent)]
    Pg(#[from] crate::pg::PgError),
    #[error("stored response is unreadable: {0}")]
    Stored(#[from] serde_json::Error),
    /// A name read from the catalog that is not a valid identifier.
    #[error(transparent)]
    Name(#[from] crate::pg::ident::IdentError),
}

impl Error {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Rejected(Problem::bad_field(field, message))
    }
    pub(crate) fn not_found(key: &str) -> Self {
        Self::Rejected(Problem::new(
            Kind::NotFound,
            "tenant_not_found",
            format!("tenant {key:?} not found"),
        ))
    }
    pub(crate) fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::Rejected(Problem::new(Kind::Conflict, code, message))
    }
}

/// Database failures stay `Db` (their SQLSTATE readable); the store's own findings
/// are `Store`.
impl From<crate::store::Error> for Error {
    fn from(e: crate::store::Error) -> Self {
        match e {
            crate::store::Error::Db(e) => Error::Db(e),
            other => Error::Store(other),
        }
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// `PATCH /api/v1/tenants/{name}`: only the fields given change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    #[serde(default)]
    pub db_quota: Option<String>,
    #[serde(default)]
    pub public_api: Option<bool>,
    #[serde(default)]
    pub vpn_enabled: Option<bool>,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// A page of tenants; pass `next_cursor` as `cursor` for the next one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantPage {
    pub tenants: Vec<Tenant>,
    pub next_cursor: Option<String>,
}

/// A `db_quota` as bytes, within the range `PUT .../quotas` allows `db_quota_bytes`
/// (one rule, wherever the disk quota is set).
pub(crate) fn db_quota(text: Option<&str>) -> Result<Option<i64>> {
    let Some(text) = text else { return Ok(None) };
    let bytes =
        parse_size(text).map_err(|e| Error::invalid("db_quota", format!("db_quota {e}")))?;
    let (lo, hi) =
        crate::store::quotas::range("db_quota_bytes").expect("db_quota_bytes is a quota");
    if !(lo..=hi).contains(&bytes) {
        return Err(Error::invalid(
            "db_quota",
            format!(
                "db_quota must be between {} and {} ({lo} to {hi} bytes), got {text:?}",
                format_size(lo),
                format_size(hi)
            ),
        ));
    }
    Ok(Some(bytes))
}

pub(crate) fn validate_metadata(m: Option<serde_json::Value>) -> Result<serde_json::Value> {
    match m {
        None | Some(serde_json::Value::Null) => Ok(serde_json::json!({})),
        Some(v @ serde_json::Value::Object(_)) => Ok(v),
        Some(_) => Err(Error::invalid("metadata", "metadata must be a JSON object")),
    }
}

pub(crate) async fn find_plan(tx: &Transaction<'_>, name: &str) -> Result<Plan> {
    plans::find(tx, name).await?.ok_or_else(|| {
        Error::invalid(
            "plan",
            format!("plan {name:?} does not exist; see GET /api/v1/plans"),
        )
    })
}

pub(crate) fn limits(p: &Platform, plan: &Plan, quota: i64) -> RoleLimits {
    RoleLimits::new(
        plan.quotas.max_connections,
        plan.quotas.statement_timeout_ms,
        quota,
        p.caps.superuser,
    )
}

/// Serialises every operation on one tenant name, for the rest of the transaction.
/// Bounded: a long operation holds the name, and a caller that already holds the
/// tenant's row would otherwise wait for it forever.
pub(crate) async fn lock_name(tx: &Transaction<'_>, slug: &Slug) -> Result<()> {
    crate::store::operations::lock_name(tx, slug.as_str())
        .await
        .map_err(|e| name_lock_error(e, slug.as_str()))
}

/// The name lock's failure: a wait past its bound is 409 `tenant_busy`.
pub(crate) fn name_lock_error(e: tokio_postgres::Error, tenant_name: &str) -> Error {
    match e.code() {
        Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            Error::Rejected(Problem::new(
                Kind::Conflict,
                "tenant_busy",
                format!(
                    "another operation on tenant {tenant_name} is in progress; retry when it has finished"
                ),
            ))
        }
        _ => e.into(),
    }
}

/// A tenant by name or id.
pub async fn get(p: &Platform, key: &str) -> Result<Tenant> {
    let client = p.pool.get().await?;
    store::find(&client, key)
        .await?
        .ok_or_else(|| Error::not_found(key))
}

/// A page of tenants, oldest first, optionally filtered.
pub async fn list(
    p: &Platform,
    status: Option<&str>,
    plan: Option<&str>,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<TenantPage> {
    if let Some(s) = status {
        if Status::parse(s).is_none() {
            let all: Vec<_> = Status::ALL.iter().map(|s| s.as_str()).collect();
            return Err(Error::invalid(
                "status",
                format!("status must be one of {}", all.join(", ")),
            ));
        }
    }
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::invalid(
            "limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let after = cursor
        .map(|c| c.parse::<Uuid>())
        .transpose()
        .map_err(|_| Error::invalid("cursor", "cursor is not one this server handed out"))?;
    let client = p.pool.get().await?;
    // One row more than the page tells whether there is a next page: a page that is
    // exactly full and last offers no cursor to an empty one.
    let mut tenants = store::list(&client, status, plan, after, limit + 1).await?;
    let more = tenants.len() as i64 > limit;
    tenants.truncate(limit as usize);
    let next_cursor = more
        .then(|| tenants.last().map(|t| t.id.to_string()))
        .flatten();
    Ok(TenantPage {
        tenants,
        next_cursor,
    })
}

/// A page of tenants whose name contains `filter.name`, narrowed by status, plan and
/// isolation (the console's list); the cursor is the last id of the previous page.
pub async fn search(
    p: &Platform,
    filter: &store::search::Filter<'_>,
    limit: i64,
    cursor: Option<&str>,
) -> Result<TenantPage> {
    if filter.status.is_some_and(|s| Status::parse(s).is_none()) {
        return Err(Error::invalid("status", "no such status"));
    }
    if filter
        .isolation
        .is_some_and(|i| super::Isolation::parse(i).is_none())
    {
        return Err(Error::invalid(
            "isolation",
            "isolation must be schema, database or shared",
        ));
    }
    if filter.name.is_some_and(|n| n.len() > 64) {
        return Err(Error::invalid("q", "the search is at most 64 characters"));
    }
    let limit = limit.clamp(1, MAX_PAGE);
    let after = cursor
        .map(|c| c.parse::<Uuid>())
        .transpose()
        .map_err(|_| Error::invalid("after", "cursor is not one this server handed out"))?;
    let client = p.pool.get().await?;
    let mut tenants = store::search::search(&client, filter, after, limit + 1).await?;
    let more = tenants.len() as i64 > limit;
    tenants.truncate(limit as usize);
    let next_cursor = more
        .then(|| tenants.last().map(|t| t.id.to_string()))
        .flatten();
    Ok(TenantPage {
        tenants,
        next_cursor,
    })
}

/// How many tenants are in each status (the console's summary line).
pub async fn count_by_status(p: &Platform) -> Result<Vec<(String, i64)>> {
    let client = p.pool.get().await?;
    Ok(store::count_by_status(&client).await?)
}

/// Tenants by (status, plan, isolation).
pub async fn count_by_status_plan_isolation(
    p: &Platform,
) -> Result<Vec<(String, String, String, i64)>> {
    let client = p.pool.get().await?;
    Ok(store::count_by_status_plan_isolation(&client).await?)
}

/// Changes the given fields, inside the caller's transaction (which holds the
/// tenant's name and row). The caller re-applies a new plan or quota to the login
/// roles, then records the change ([`record_update`]).
pub async fn update_locked(
    tx: &Transaction<'_>,
    current: &Tenant,
    req: &UpdateTenant,
) -> Result<Tenant> {
    let db_quota_bytes = db_quota(req.db_quota.as_deref())?;
    let metadata = req
        .metadata
        .clone()
        .map(|m| validate_metadata(Some(m)))
        .transpose()?;
    // A named plan must exist; the limits applied below are read back from the registry.
    find_plan(tx, req.plan.as_deref().unwrap_or(&current.plan)).await?;
    Ok(store::update(
        tx,
        current.id,
        &Changes {
            plan: req.plan.as_deref(),
            db_quota_bytes,
            vpn_enabled: req.vpn_enabled,
            public_api: req.public_api,
            metadata: metadata.as_ref(),
        },
    )
    .await?)
}

/// A `PATCH`'s events and audit row, as its transaction's last changes: what changed
/// between `before` and `after` (the quotas in force before and after, when the plan
/// or the disk quota was given): `tenant.updated`, then `tenant.plan_changed`,
/// `quota.updated` and `network.changed` where they apply.
#[allow(clippy::too_many_arguments)]
pub async fn record_update(
    tx: &Transaction<'_>,
    before: &Tenant,
    after: &Tenant,
    quotas: Option<(Quotas, Quotas)>,
    req: &UpdateTenant,
    op_id: Uuid,
    actor: &str,
) -> Result<()> {
    let (b, a) = (
        serde_json::to_value(TenantState::of(before))?,
        serde_json::to_value(TenantState::of(after))?,
    );
    let mut changed = Vec::new();
    let mut previous = std::collections::BTreeMap::new();
    for field in [
        "db_quota_bytes",
        "public_api",
        "vpn_enabled",
        "vpn_subnet",
        "access_mode",
        "plan",
        "metadata",
    ] {
        if b[field] != a[field] {
            changed.push(field.to_string());
            previous.insert(field.to_string(), b[field].clone());
        }
    }
    let (id, name) = (after.id, after.name.as_str());
    if !changed.is_empty() {
        outbox::emit(
            tx,
            id,
            name,
            &TenantUpdated {
                changed: changed.clone(),
                previous,
                tenant: TenantState::of(after),
            },
        )
        .await?;
    }
    if let Some((q_before, q_after)) = quotas {
        if before.plan != after.plan {
            outbox::emit(
                tx,
                id,
                name,
                &TenantPlanChanged {
                    from: before.plan.clone(),
                    to: after.plan.clone(),
                    quotas: q_after.clone(),
                },
            )
            .await?;
        }
        let changes = quota_changes(&q_before, &q_after);
        if !changes.is_empty() {
            outbox::emit(
                tx,
                id,
                name,
                &QuotaUpdated {
                    changes,
                    force: false,
                    quotas: q_after,
                },
            )
            .await?;
        }
    }
    if ["vpn_enabled", "vpn_subnet", "access_mode"]
        .iter()
        .any(|f| changed.iter().any(|c| c == f))
    {
        outbox::emit(
            tx,
            id,
            name,
            &NetworkChanged {
                change: "access_changed".into(),
                access_mode: after.access_mode,
                vpn_enabled: after.vpn_enabled,
                vpn_subnet: after.vpn_subnet.clone(),
                rule: None,
                rules: None,
                peer: None,
            },
        )
        .await?;
    }
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "tenant_updated",
            tenant_id: Some(id),
            tenant_name: Some(name),
            operation_id: Some(op_id),
            details: serde_json::to_value(req)?,
        },
    )
    .await?;
    Ok(())
}

pub async fn plans(p: &Platform) -> Result<Vec<Plan>> {
    let client = p.pool.get().await?;
    Ok(plans::list(&client).await?)
}

/// The roles of this tenant that exist in the catalog (a rollback may have left none).
pub(crate) async fn existing_roles(
    tx: &Transaction<'_>,
    slug: &Slug,
) -> Result<Vec<crate::pg::Ident>> {
    // Users first: they are members of the group roles dropped after them.
    let mut wanted = crate::store::users::db_users_of_name(tx, slug.as_str()).await?;
    wanted.extend(slug.fixed_roles());
    let names: Vec<&str> = wanted.iter().map(|r| r.as_str()).collect();
    let rows = tx
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)",
            &[&names],
        )
        .await?;
    let present: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    Ok(wanted
        .into_iter()
        .filter(|r| present.iter().any(|p| p == r.as_str()))
        .collect())
}

/// Ends the sessions of the given roles, so a dropped or disabled role holds nothing open.
pub(crate) async fn terminate_sessions(tx: &Transaction<'_>, roles: &[&str]) -> Result<()> {
    tx.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY($1) AND pid <> pg_backend_pid()",
        &[&roles],
    )
    .await?;
    Ok(())
}
