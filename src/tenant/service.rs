//! Tenant operations: create, read, list, update, delete. Each runs as one recorded
//! operation; in schema mode all of it (DDL, registry, key, audit, operation row) is one
//! transaction, so a crash at any point leaves the tenant either complete or absent.

use deadpool_postgres::{GenericClient, Transaction};
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use utoipa::ToSchema;
use uuid::Uuid;

use super::size::{format_size, parse_size};
use super::{Isolation, Plan, Slug, Status, Tenant};
use crate::isolation::shared;
use crate::isolation::{schema::SchemaPerTenant, Provision, RoleLimits, Strategy};
use crate::ops::{self, Begin, Idempotency, NewOperation, StoredResponse};
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::secrets::{ExposeSecret, SecretString};
use crate::store::tenants::{self as store, Changes, NewTenant};
use crate::store::{api_keys, plans};
use crate::{apikey, audit};

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
}

impl Error {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Rejected(Problem::bad_field(field, message))
    }
    pub(crate) fn not_found(key: &str) -> Self {
        Self::Rejected(Problem::new(
            Kind::NotFound,
            "tenant_not_found",
            format!("tenant {key:?} not found"),
        ))
    }
    fn conflict(code: &str, message: impl Into<String>) -> Self {
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

type Result<T, E = Error> = std::result::Result<T, E>;

/// `POST /api/v1/tenants`. Unknown fields are refused by the API layer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// 3 to 32 characters, `[a-z][a-z0-9-]*[a-z0-9]`, no `--`.
    pub name: String,
    /// PostgreSQL size units: `5GB` (5 × 1024³ bytes), `500MB`, `1TB` or bytes.
    /// Defaults to the plan's storage.
    #[serde(default)]
    pub db_quota: Option<String>,
    #[serde(default)]
    pub vpn_enabled: bool,
    #[serde(default)]
    pub public_api: bool,
    /// A plan from `GET /api/v1/plans`; `free` when omitted.
    #[serde(default)]
    pub plan: Option<String>,
    /// `schema` (the default). `database` and `shared` are not available yet.
    #[serde(default)]
    pub isolation: Option<String>,
    /// Start in `trial` for this many days (1 to 365) [default: the plan's trial].
    #[serde(default)]
    pub trial_days: Option<i32>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Scheduled backups: 5-field cron in UTC, e.g. `0 3 * * *` [default: the plan's
    /// backup policy, if it has one]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_schedule: Option<String>,
}

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

/// How to connect as the tenant's login role. `Debug` shows no secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Credentials {
    pub user: String,
    #[serde(serialize_with = "crate::secrets::serialize_exposed")]
    #[schema(value_type = String)]
    pub password: SecretString,
    pub host: String,
    pub port: u16,
    pub database: String,
    /// `postgresql://user:password@host:port/database`
    #[serde(serialize_with = "crate::secrets::serialize_exposed")]
    #[schema(value_type = String)]
    pub dsn: SecretString,
}

/// The answer to a create: the tenant, and its secrets shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedTenant {
    #[serde(flatten)]
    pub tenant: Tenant,
    /// `bqk_...`: shown once; only a keyed hash is stored.
    #[serde(serialize_with = "crate::secrets::serialize_exposed")]
    #[schema(value_type = String)]
    pub api_key: SecretString,
    pub credentials: Credentials,
}

/// A page of tenants; pass `next_cursor` as `cursor` for the next one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantPage {
    pub tenants: Vec<Tenant>,
    pub next_cursor: Option<String>,
}

/// What the password blob in the registry holds (sealed). Opened only by
/// [`open_password`].
#[derive(Serialize, Deserialize)]
struct SealedSecret {
    #[serde(serialize_with = "crate::secrets::serialize_exposed")]
    password: SecretString,
}

/// Validated create input.
pub(crate) struct Validated {
    pub(crate) slug: Slug,
    pub(crate) db_quota_bytes: Option<i64>,
    pub(crate) vpn_enabled: bool,
    pub(crate) public_api: bool,
    pub(crate) isolation: Isolation,
    /// Whether the request named the isolation (else the plan's default applies).
    pub(crate) isolation_given: bool,
    pub(crate) trial_days: Option<i32>,
    pub(crate) plan: String,
    pub(crate) metadata: serde_json::Value,
    pub(crate) backup_schedule: Option<String>,
}

fn validate_create(req: &CreateTenant) -> Result<Validated> {
    let slug = Slug::parse(&req.name).map_err(|e| Error::invalid("name", e.to_string()))?;
    let db_quota_bytes = db_quota(req.db_quota.as_deref())?;
    if let Some(days) = req.trial_days {
        if !(0..=365).contains(&days) {
            return Err(Error::invalid(
                "trial_days",
                "trial_days must be between 0 and 365",
            ));
        }
    }
    if let Some(s) = &req.backup_schedule {
        crate::backup::policy::parse_schedule("backup_schedule", s).map_err(Error::Rejected)?;
    }
    let isolation = match req.isolation.as_deref() {
        None | Some("schema") => Isolation::Schema,
        Some("database") => Isolation::Database,
        Some("shared") => Isolation::Shared,
        Some(other) => {
            return Err(Error::invalid(
                "isolation",
                format!("isolation must be \"schema\", \"database\" or \"shared\", got {other:?}"),
            ))
        }
    };
    Ok(Validated {
        slug,
        isolation,
        isolation_given: req.isolation.is_some(),
        trial_days: req.trial_days,
        db_quota_bytes,
        vpn_enabled: req.vpn_enabled,
        public_api: req.public_api,
        plan: req.plan.clone().unwrap_or_else(|| DEFAULT_PLAN.into()),
        metadata: validate_metadata(req.metadata.clone())?,
        backup_schedule: req.backup_schedule.clone(),
    })
}

impl Validated {
    /// The trial this tenant starts with: the request's, else the plan's (0: none).
    pub(crate) fn trial_days(&self, plan: &Plan) -> i32 {
        self.trial_days.unwrap_or(plan.trial_days)
    }
}

/// A `db_quota` as bytes, within the range `PUT .../quotas` allows `db_quota_bytes`
/// (one rule, wherever the disk quota is set).
fn db_quota(text: Option<&str>) -> Result<Option<i64>> {
    let Some(text) = text else { return Ok(None) };
    let bytes =
        parse_size(text).map_err(|e| Error::invalid("db_quota", format!("db_quota {e}")))?;
    let (lo, hi) = crate::quota::range("db_quota_bytes").expect("db_quota_bytes is a quota");
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

fn validate_metadata(m: Option<serde_json::Value>) -> Result<serde_json::Value> {
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
        plan.max_connections,
        plan.statement_timeout_ms,
        quota,
        p.caps.superuser,
    )
}

fn credentials(p: &Platform, t: &Tenant, password: SecretString) -> Credentials {
    credentials_for(p, t.role.as_str(), t.database.as_str(), password)
}

/// How to connect as `user` to `database` on this platform's server.
pub(crate) fn credentials_for(
    p: &Platform,
    user: &str,
    database: &str,
    password: SecretString,
) -> Credentials {
    let e = &p.endpoint;
    Credentials {
        dsn: format!(
            "postgresql://{user}:{}@{}:{}/{database}",
            password.expose_secret(),
            e.host,
            e.port
        )
        .into(),
        user: user.to_string(),
        password,
        host: e.host.clone(),
        port: e.port,
        database: database.to_string(),
    }
}

/// The registry's sealed-credentials plaintext for a password.
pub(crate) fn seal_password(password: &SecretString) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&SealedSecret {
        password: password.clone(),
    })?)
}

/// A login password sealed in the registry. Fails when it does not open: never an
/// empty password in its place.
pub fn open_password(p: &Platform, sealed: &[u8]) -> Result<SecretString> {
    let secret: SealedSecret = serde_json::from_slice(&p.key.open(sealed)?)?;
    Ok(secret.password)
}

/// Unique violations and existing objects are a taken name, not an outage.
pub(crate) fn taken(e: tokio_postgres::Error, slug: &Slug) -> Error {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::DUPLICATE_OBJECT || *c == SqlState::DUPLICATE_SCHEMA
                || *c == SqlState::DUPLICATE_DATABASE => {
            Error::conflict(
                "name_taken",
                format!("tenant name {:?} is taken (or a PostgreSQL role, schema or database of that name exists)", slug.as_str()),
            )
        }
        _ => Error::Db(e),
    }
}

/// Serialises every operation on one tenant name, for the rest of the transaction.
pub(crate) async fn lock_name(tx: &Transaction<'_>, slug: &Slug) -> Result<()> {
    // Bounded: a long offboarding holds the name while it takes a backup, and a caller
    // that already holds the tenant's row would otherwise wait for it forever.
    tx.batch_execute("SET LOCAL lock_timeout = '10s'").await?;
    let stmt = tx
        .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .await?;
    let locked = tx.execute(&stmt, &[&slug.lock_key()]).await;
    if let Err(e) = locked {
        if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
            return Err(Error::Rejected(Problem::new(
                Kind::Conflict,
                "tenant_busy",
                format!(
                    "another operation on tenant {} is in progress; retry when it has finished",
                    slug.as_str()
                ),
            )));
        }
        return Err(e.into());
    }
    tx.batch_execute("SET LOCAL lock_timeout = DEFAULT").await?;
    Ok(())
}

/// Creates a tenant, all or nothing. With an idempotency key, a repeat of the same
/// request replays the first answer, and another request with the key is refused.
pub async fn create(
    p: &Platform,
    req: &CreateTenant,
    idem: Option<&Idempotency>,
    actor: &str,
) -> Result<CreatedTenant> {
    let mut v = match validate_create(req) {
        Ok(v) => v,
        Err(e) => return remember_rejection(p, idem, &req.name, e).await,
    };
    let mut client = p.pool.get().await?;
    if !v.isolation_given {
        if let Some(plan) = plans::find(&client, &v.plan).await? {
            v.isolation = plan.default_isolation.unwrap_or(Isolation::Schema);
        }
    }
    if v.isolation == Isolation::Database {
        drop(client);
        return super::database_mode::create(p, &v, idem, actor).await;
    }
    let (password, verifier) = crate::secrets::new_password();
    let tx = client.transaction().await?;
    let op_id = Uuid::now_v7();
    let begun = ops::begin(
        &tx,
        &NewOperation {
            id: op_id,
            kind: "tenant.create",
            tenant_id: None,
            tenant_name: v.slug.as_str(),
            idempotency: idem,
        },
    )
    .await?;
    if let Some(answer) = settled(p, begun) {
        return answer;
    }
    match provision(p, &tx, &v, (password, verifier), op_id, actor).await {
        Ok((created, steps)) => {
            let sealed =
                seal_response(p, &StoredResponse::Success(serde_json::to_value(&created)?))?;
            ops::succeed(&tx, op_id, &steps, idem.map(|_| sealed.as_slice())).await?;
            tx.commit().await?;
            tracing::info!(tenant.name = %created.tenant.name, tenant.id = %created.tenant.id, "tenant created");
            crate::metrics::tenant_created();
            Ok(created)
        }
        Err(e) => {
            tx.rollback().await?;
            remember_rejection(p, idem, v.slug.as_str(), e).await
        }
    }
}

/// Everything a schema-mode tenant is, inside the caller's transaction.
async fn provision(
    p: &Platform,
    tx: &Transaction<'_>,
    v: &Validated,
    (password, verifier): (SecretString, tokio::task::JoinHandle<String>),
    op_id: Uuid,
    actor: &str,
) -> Result<(CreatedTenant, Vec<&'static str>)> {
    lock_name(tx, &v.slug).await?;
    if store::find(tx, v.slug.as_str()).await?.is_some() {
        return Err(taken_name(&v.slug));
    }
    let plan = find_plan(tx, &v.plan).await?;
    let quota = v.db_quota_bytes.unwrap_or(plan.storage_bytes);
    let trial_days = v.trial_days(&plan);
    let verifier = verifier
        .await
        .expect("computing a SCRAM verifier does not panic");
    let id = Uuid::now_v7();
    let limits = limits(p, &plan, quota);
    let (sql, schema) = match v.isolation {
        Isolation::Shared => (
            shared::create_sql(
                &v.slug,
                &id.to_string(),
                &crate::isolation::create_login_role(&v.slug.login_role(), &verifier, &limits),
                !p.caps.superuser,
            ),
            shared::POOL_SCHEMA.to_string(),
        ),
        _ => (
            SchemaPerTenant.create_sql(&Provision {
                slug: &v.slug,
                password_verifier: &verifier,
                limits: &limits,
                template_sql: &p.template.full_sql(),
                grant_owner_to_creator: !p.caps.superuser,
            }),
            v.slug.schema().as_str().to_string(),
        ),
    };
    tx.batch_execute(&sql)
        .await
        .map_err(|e| taken(e, &v.slug))?;
    let roles: Vec<String> = v
        .slug
        .fixed_roles()
        .iter()
        .map(|r| r.as_str().to_string())
        .collect();
    crate::pg::hardening::check(tx, &roles).await?;

    let sealed = p.key.seal(&seal_password(&password)?);
    let tenant = store::insert(
        tx,
        &NewTenant {
            id,
            name: v.slug.as_str(),
            status: if trial_days > 0 {
                Status::Trial
            } else {
                Status::Active
            },
            trial_days,
            plan: &plan.name,
            isolation: v.isolation,
            schema: Some(&schema),
            database: &p.endpoint.database,
            login_role: v.slug.login_role().as_str(),
            owner_role: v.slug.owner_role().as_str(),
            db_quota_bytes: quota,
            vpn_enabled: v.vpn_enabled,
            public_api: v.public_api,
            // Shared tenants live in the pool's tables: they are at the pool's version.
            template_version: match v.isolation {
                Isolation::Shared => super::shared_mode::pool_version(tx).await?,
                _ => p.template.latest_version(),
            },
            metadata: &v.metadata,
            credentials: &sealed,
        },
    )
    .await
    .map_err(|e| taken_row(e, &v.slug))?;
    let key = apikey::generate(&p.key);
    api_keys::insert(tx, id, None, None, &key.public_id, &key.hash).await?;
    crate::backup::policy::apply_at_create(tx, id, &plan.name, v.backup_schedule.as_deref())
        .await
        .map_err(backup_policy_error)?;
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "tenant_created",
            tenant_id: Some(id),
            tenant_name: Some(v.slug.as_str()),
            operation_id: Some(op_id),
            details: serde_json::json!({
                "plan": plan.name, "isolation": v.isolation.as_str(), "db_quota_bytes": quota, "trial_days": trial_days,
                "vpn_enabled": tenant.vpn_enabled, "public_api": tenant.public_api,
                "api_key_prefix": key.public_id,
            }),
        },
    )
    .await?;
    let credentials = credentials(p, &tenant, password);
    let steps = vec![
        "owner_role",
        "login_role",
        "schema",
        "template",
        "registry",
        "api_key",
        "audit",
    ];
    Ok((
        CreatedTenant {
            tenant,
            api_key: key.plaintext,
            credentials,
        },
        steps,
    ))
}

/// A registry insert refused by the name's unique constraint is a taken name.
pub(crate) fn taken_row(e: crate::store::Error, slug: &Slug) -> Error {
    match e {
        crate::store::Error::Conflict { .. } => taken_name(slug),
        other => other.into(),
    }
}

pub(crate) fn taken_name(slug: &Slug) -> Error {
    Error::conflict(
        "name_taken",
        format!("tenant name {:?} is taken", slug.as_str()),
    )
}

/// What the start of an operation says about the request: `None` to go on, or the
/// answer to give now (a replay, or a refusal of the key).
pub(crate) fn settled(p: &Platform, begun: Begin) -> Option<Result<CreatedTenant>> {
    match begun {
        Begin::Started => None,
        Begin::Replay(sealed) => Some(replay(p, &sealed)),
        Begin::InProgress => Some(Err(in_progress())),
        Begin::Mismatch => Some(Err(mismatch())),
    }
}

pub(crate) fn in_progress() -> Error {
    Error::conflict(
        "idempotency_in_progress",
        "a request with this Idempotency-Key is still in progress; retry later",
    )
}

pub(crate) fn mismatch() -> Error {
    Error::Rejected(Problem::new(
        Kind::Unprocessable,
        "idempotency_key_reused",
        "this Idempotency-Key was already used with a different request",
    ))
}

pub(crate) fn seal_response(p: &Platform, r: &StoredResponse) -> Result<Vec<u8>> {
    Ok(p.key.seal(&serde_json::to_vec(r)?))
}

pub(crate) fn replay(p: &Platform, sealed: &[u8]) -> Result<CreatedTenant> {
    match serde_json::from_slice::<StoredResponse>(&p.key.open(sealed)?)? {
        StoredResponse::Success(v) => Ok(serde_json::from_value(v)?),
        StoredResponse::Failure(problem) => Err(Error::Rejected(problem)),
    }
}

/// A refused request under an idempotency key is answered the same way next time;
/// an outage is not remembered, so the client may retry.
async fn remember_rejection(
    p: &Platform,
    idem: Option<&Idempotency>,
    name: &str,
    e: Error,
) -> Result<CreatedTenant> {
    let (Some(idem), Error::Rejected(problem)) = (idem, &e) else {
        return Err(e);
    };
    let client = p.pool.get().await?;
    let op_id = Uuid::now_v7();
    let begun = ops::begin(
        &client,
        &NewOperation {
            id: op_id,
            kind: "tenant.create",
            tenant_id: None,
            tenant_name: name,
            idempotency: Some(idem),
        },
    )
    .await?;
    match begun {
        Begin::Started => {
            let sealed = seal_response(p, &StoredResponse::Failure(problem.clone()))?;
            ops::fail(&client, op_id, &problem.message, Some(&sealed)).await?;
            Err(e)
        }
        Begin::Replay(sealed) => replay(p, &sealed),
        Begin::Mismatch => Err(mismatch()),
        Begin::InProgress => Err(e),
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
    let tenants = store::list(&client, status, plan, after, limit).await?;
    let next_cursor = (tenants.len() as i64 == limit)
        .then(|| tenants.last().map(|t| t.id.to_string()))
        .flatten();
    Ok(TenantPage {
        tenants,
        next_cursor,
    })
}

/// Changes the given fields; a new plan or quota is re-applied to the login role.
pub async fn update(p: &Platform, key: &str, req: &UpdateTenant, actor: &str) -> Result<Tenant> {
    let db_quota_bytes = db_quota(req.db_quota.as_deref())?;
    let metadata = req
        .metadata
        .clone()
        .map(|m| validate_metadata(Some(m)))
        .transpose()?;
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let current = store::find_for_update(&tx, key)
        .await?
        .ok_or_else(|| Error::not_found(key))?;
    // A named plan must exist; the limits applied below are read back from the registry.
    find_plan(&tx, req.plan.as_deref().unwrap_or(&current.plan)).await?;
    let tenant = store::update(
        &tx,
        current.id,
        &Changes {
            plan: req.plan.as_deref(),
            db_quota_bytes,
            vpn_enabled: req.vpn_enabled,
            public_api: req.public_api,
            metadata: metadata.as_ref(),
        },
    )
    .await?;
    if req.plan.is_some() || db_quota_bytes.is_some() {
        // The quotas in force go to every login of the tenant, and in database mode to
        // the database's own connection limit, at once (one code path: quota::apply).
        crate::quota::apply::apply_limits(p, &tx, &tenant).await?;
    }
    let op_id = Uuid::now_v7();
    ops::record_done(&tx, op_id, "tenant.update", tenant.id, &tenant.name).await?;
    audit::record(
        &tx,
        &audit::Entry {
            actor,
            action: "tenant_updated",
            tenant_id: Some(tenant.id),
            tenant_name: Some(&tenant.name),
            operation_id: Some(op_id),
            details: serde_json::to_value(req)?,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(tenant)
}

/// A backup-policy failure at create time, as this layer's error.
pub(crate) fn backup_policy_error(e: crate::backup::Error) -> Error {
    match e {
        crate::backup::Error::Rejected(p) => Error::Rejected(p),
        crate::backup::Error::Db(e) => Error::Db(e),
        other => Error::Rejected(Problem::new(Kind::Internal, "internal", other.to_string())),
    }
}

/// The tenant's login credentials, opened from the registry; the read is audited.
pub async fn credentials_of(p: &Platform, key: &str, actor: &str) -> Result<Credentials> {
    let client = p.pool.get().await?;
    let tenant = store::find(&client, key)
        .await?
        .ok_or_else(|| Error::not_found(key))?;
    let sealed = store::sealed_credentials(&client, tenant.id).await?;
    let password = open_password(p, &sealed)?;
    audit::record(
        &client,
        &audit::Entry {
            actor,
            action: "credentials_read",
            tenant_id: Some(tenant.id),
            tenant_name: Some(&tenant.name),
            operation_id: None,
            details: serde_json::json!({}),
        },
    )
    .await?;
    Ok(credentials(p, &tenant, password))
}

/// `POST /api/v1/tenants/{name}/credentials/rotate`: a new password for the tenant's
/// login role, set as its SCRAM verifier and sealed in the registry in one
/// transaction (audited). Sessions already open stay open; new ones need the new
/// password. A tenant may also change its own password with `ALTER ROLE`; berqenas
/// puts the one it knows back at its next round (see `tenant::integrity`), so this is
/// the way to change it.
pub async fn rotate_credentials(p: &Platform, key: &str, actor: &str) -> Result<Credentials> {
    let (password, verifier) = crate::secrets::new_password();
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let found = store::find(&tx, key)
        .await?
        .ok_or_else(|| Error::not_found(key))?;
    let slug = found.name.clone();
    lock_name(&tx, &slug).await?;
    let tenant = store::find_for_update(&tx, &found.id.to_string())
        .await?
        .ok_or_else(|| Error::not_found(key))?;
    if matches!(
        tenant.status,
        Status::Purged | Status::Failed | Status::Provisioning
    ) {
        return Err(Error::conflict(
            "invalid_state",
            format!(
                "tenant {} is {}: it has no login role to rotate",
                tenant.name,
                tenant.status.as_str()
            ),
        ));
    }
    let verifier = verifier
        .await
        .expect("computing a SCRAM verifier does not panic");
    let login = slug.login_role();
    tx.batch_execute(&format!(
        "ALTER ROLE {login} PASSWORD {}",
        crate::pg::Literal(&verifier)
    ))
    .await?;
    use sha2::Digest;
    let sealed = p.key.seal(&seal_password(&password)?);
    let seen = sha2::Sha256::digest(verifier.as_bytes()).to_vec();
    store::set_credentials(&tx, tenant.id, &sealed, &seen).await?;
    audit::record(
        &tx,
        &audit::Entry {
            actor,
            action: "credentials_rotated",
            tenant_id: Some(tenant.id),
            tenant_name: Some(&tenant.name),
            operation_id: None,
            details: serde_json::json!({"role": login.as_str()}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(credentials(p, &tenant, password))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::Ident;

    #[test]
    fn a_created_tenant_shows_its_secrets_in_json_only() {
        let slug = Slug::parse("acme").unwrap();
        let now = chrono::Utc::now();
        let created = CreatedTenant {
            tenant: Tenant {
                id: Uuid::now_v7(),
                name: slug.clone(),
                status: Status::Active,
                plan: "free".into(),
                isolation: Isolation::Schema,
                schema: Some(slug.schema()),
                database: Ident::new("berqenas").unwrap(),
                role: slug.login_role(),
                owner_role: slug.owner_role(),
                db_quota_bytes: 1 << 30,
                vpn_enabled: false,
                public_api: true,
                access_mode: super::super::AccessMode::Public,
                template_version: 1,
                trial_ends_at: None,
                suspended_at: None,
                suspension_reason: None,
                metadata: serde_json::json!({}),
                created_at: now,
                updated_at: now,
            },
            api_key: "bqk_0123456789abcdef_the-api-key-secret".into(),
            credentials: Credentials {
                user: "tenant_acme_user".into(),
                password: "the-login-password".into(),
                host: "127.0.0.1".into(),
                port: 5432,
                database: "berqenas".into(),
                dsn: "postgresql://tenant_acme_user:the-login-password@127.0.0.1:5432/berqenas"
                    .into(),
            },
        };
        let shown = format!("{created:?}");
        for secret in ["the-api-key-secret", "the-login-password"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        // The answer to the create shows them, this once.
        let json = serde_json::to_value(&created).unwrap();
        assert_eq!(json["api_key"], "bqk_0123456789abcdef_the-api-key-secret");
        assert_eq!(json["credentials"]["password"], "the-login-password");
        assert!(json["credentials"]["dsn"]
            .as_str()
            .unwrap()
            .contains("the-login-password"));
        assert_eq!(json["name"], "acme");
        assert_eq!(json["role"], "tenant_acme_user");
        // And reads back (an idempotent replay).
        let back: CreatedTenant = serde_json::from_value(json).unwrap();
        assert_eq!(
            back.credentials.password.expose_secret(),
            "the-login-password"
        );
    }
}
