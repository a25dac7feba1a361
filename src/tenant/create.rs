//! Creating a tenant: validation, the schema- and shared-mode create in one
//! transaction (database mode is [`super::database_mode`]), and the idempotency key's
//! replay. A crash at any point leaves the tenant either complete or absent.

use deadpool_postgres::Transaction;
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use utoipa::ToSchema;
use uuid::Uuid;

use super::credentials::{credentials, login_for, Credentials};
use super::service::{db_quota, find_plan, limits, validate_metadata, Error, DEFAULT_PLAN};
use super::{Isolation, Plan, Slug, Status, Tenant};
use crate::isolation::{schema::SchemaPerTenant, Provision, Strategy};
use crate::isolation::{shared, warm};
use crate::platform::Platform;
use crate::secrets::SecretString;
use crate::store::outbox::data::{KeyRef, TenantCreated, TenantState};
use crate::store::tenants::{self as store, NewTenant};
use crate::store::warm_pool::Member;
use crate::store::{api_keys, outbox, plans};
use crate::{apikey, audit};

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
    /// A vector store for the tenant (docs/vector-store.md) [default: the plan's
    /// `vector_store`]. Database mode only, for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_store: Option<bool>,
    /// The server the tenant is placed on (docs/servers.md) [default: the one
    /// `placement` picks].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// `"least_tenants"` (the default), `"least_disk"`, or labels the server must
    /// have: `{"region": "eu"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub placement: Option<serde_json::Value>,
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

/// Validated create input.
pub struct Validated {
    pub slug: Slug,
    pub db_quota_bytes: Option<i64>,
    pub vpn_enabled: bool,
    pub public_api: bool,
    pub isolation: Isolation,
    /// Whether the request named the isolation (else the plan's default applies).
    pub isolation_given: bool,
    pub trial_days: Option<i32>,
    pub plan: String,
    pub metadata: serde_json::Value,
    pub backup_schedule: Option<String>,
    /// The request's `vector_store`; settled to the plan's when it says nothing.
    pub vector_store: Option<bool>,
    /// The request's `server` and `placement` (judged by the placement workflow).
    pub server: Option<String>,
    pub placement: Option<serde_json::Value>,
}

/// The request, checked field by field; nothing is read or changed.
pub(crate) fn validate_create(req: &CreateTenant) -> Result<Validated> {
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
        vector_store: req.vector_store,
        server: req.server.clone(),
        placement: req.placement.clone(),
    })
}

impl Validated {
    /// The trial this tenant starts with: the request's, else the plan's (0: none).
    pub(crate) fn trial_days(&self, plan: &Plan) -> i32 {
        self.trial_days.unwrap_or(plan.trial_days)
    }
}

/// The plan's isolation mode and vector store, where the request names none.
pub async fn settle_isolation(
    c: &impl deadpool_postgres::GenericClient,
    v: &mut Validated,
) -> Result<()> {
    if !v.isolation_given || v.vector_store.is_none() {
        if let Some(plan) = plans::find(c, &v.plan).await? {
            if !v.isolation_given {
                v.isolation = plan.default_isolation.unwrap_or(Isolation::Schema);
            }
            v.vector_store.get_or_insert(plan.vector_store);
        }
    }
    Ok(())
}

/// Unique violations and existing objects are a taken name, not an outage.
pub(crate) fn taken(e: tokio_postgres::Error, slug: &Slug) -> Error {
    let kind = match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => return taken_name(slug),
        Some(c) if *c == SqlState::DUPLICATE_SCHEMA => "schema",
        Some(c) if *c == SqlState::DUPLICATE_DATABASE => "database",
        // The one other object a create makes outside the registry is a role.
        Some(c) if *c == SqlState::DUPLICATE_OBJECT => "role",
        _ => return Error::Db(e),
    };
    // PostgreSQL names the object in quotes (`role "tenant_acme_user" already exists`);
    // only that name is passed on, none of the rest of its text.
    let object = e
        .as_db_error()
        .and_then(|d| d.message().split('"').nth(1))
        .map(|n| format!(" {n:?}"))
        .unwrap_or_default();
    Error::conflict(
        "name_taken",
        format!(
            "tenant name {:?} is taken: a PostgreSQL {kind}{object} already exists",
            slug.as_str()
        ),
    )
}

/// What a schema- or shared-mode create made, for its audit row.
pub struct Provisioned {
    pub created: CreatedTenant,
    pub plan: String,
    pub db_quota_bytes: i64,
    pub trial_days: i32,
    pub key_prefix: String,
    /// Its first API key, for the `tenant.created` event.
    pub key: KeyRef,
    /// The key's keyed hash: [`store_key`] inserts it.
    key_hash: Vec<u8>,
}

/// What a create reads before it makes anything, in one round trip (the statements
/// pipelined): that the name is free, its plan, and (shared mode) the version of the
/// shared pool's tables, which its tenants are at.
pub struct Prechecked {
    pub(super) plan: Plan,
    pool_version: Option<i32>,
}

impl Prechecked {
    /// The plan's realtime limits (per minute, per hour): a new tenant's own.
    pub fn realtime_limits(&self) -> (i32, i32) {
        let q = &self.plan.quotas;
        (q.realtime_events_per_minute, q.realtime_events_per_hour)
    }

    /// A claimed database-mode member's database renamed to `v`'s, with the plan's
    /// connection limit: the last of the claim's statements (`workflows::create_one`).
    pub fn rename_database_sql(&self, p: &Platform, v: &Validated, member: &Slug) -> String {
        let quota = v.db_quota_bytes.unwrap_or(self.plan.quotas.db_quota_bytes);
        warm::rename_database_sql(member, &v.slug, &limits(p, &self.plan, quota))
    }
}

/// [`Prechecked`]; the caller holds (or has queued before this) the name lock.
pub async fn precheck(tx: &Transaction<'_>, v: &Validated) -> Result<Prechecked> {
    let shared = v.isolation == Isolation::Shared;
    let (existing, plan, pool_version) = tokio::join!(
        store::name_taken(tx, v.slug.as_str()),
        find_plan(tx, &v.plan),
        async {
            if shared {
                super::shared_mode::pool_version(tx).await.map(Some)
            } else {
                Ok(None)
            }
        },
    );
    if existing? {
        return Err(taken_name(&v.slug));
    }
    Ok(Prechecked {
        plan: plan?,
        pool_version: pool_version?,
    })
}

/// Everything a schema- or shared-mode tenant is (roles, schema or pool rows,
/// template, registry row), inside the caller's transaction; the caller holds the
/// name lock and has [`precheck`]ed. Its first API key is made here and stored by
/// [`store_key`], pipelined with the create's last statements.
pub async fn provision(
    p: &Platform,
    tx: &Transaction<'_>,
    v: &Validated,
    pre: Prechecked,
) -> Result<Provisioned> {
    provision_from(p, tx, v, pre, None).await
}

/// [`provision`] of a warm pool member the caller claimed in this transaction
/// (docs/warm_pool.md): the member renamed to the tenant's names and given its login,
/// limits, registry row and key; the tenant takes the member's id.
pub async fn provision_claimed(
    p: &Platform,
    tx: &Transaction<'_>,
    v: &Validated,
    pre: Prechecked,
    member: &Member,
) -> Result<Provisioned> {
    provision_from(p, tx, v, pre, Some(member)).await
}

async fn provision_from(
    p: &Platform,
    tx: &Transaction<'_>,
    v: &Validated,
    pre: Prechecked,
    claimed: Option<&Member>,
) -> Result<Provisioned> {
    let id = claimed.map_or_else(Uuid::now_v7, |m| m.id);
    let (tenant, plan, quota, trial_days, password) =
        provision_objects(p, tx, v, id, pre, None, claimed).await?;
    let key = apikey::generate(&p.key);
    let credentials = credentials(p, &tenant, password);
    Ok(Provisioned {
        created: CreatedTenant {
            tenant,
            api_key: key.plaintext,
            credentials,
        },
        plan: plan.name,
        db_quota_bytes: quota,
        trial_days,
        key: KeyRef {
            id: Uuid::now_v7(),
            prefix: format!("{}{}", apikey::PREFIX, key.public_id),
        },
        key_prefix: key.public_id,
        key_hash: key.hash,
    })
}

/// Stores the first API key of a [`provision`]ed tenant, under the id its
/// `tenant.created` event names.
pub async fn store_key(tx: &Transaction<'_>, made: &Provisioned) -> Result<()> {
    api_keys::insert_with_id(
        tx,
        made.key.id,
        made.created.tenant.id,
        None,
        None,
        &made.key_prefix,
        &made.key_hash,
    )
    .await?;
    Ok(())
}

/// A schema- or shared-mode tenant's objects and its registry row as `provisioning`,
/// with no API key yet, inside the caller's transaction (the caller holds the name
/// lock): the first step of a staged create (`workflows::create_staged`), which
/// activates it later ([`super::database_mode::activate`]). The password is sealed
/// into the registry, where activation opens it.
pub async fn provision_staged(
    p: &Platform,
    tx: &Transaction<'_>,
    v: &Validated,
    tenant_id: Uuid,
) -> Result<super::database_mode::Registered> {
    let pre = precheck(tx, v).await?;
    let (_, plan, quota, trial_days, _) =
        provision_objects(p, tx, v, tenant_id, pre, Some(Status::Provisioning), None).await?;
    Ok(super::database_mode::Registered {
        tenant_id,
        plan: plan.name,
        db_quota_bytes: quota,
        trial_days,
        max_connections: plan.quotas.max_connections,
        member: None,
    })
}

/// The objects and the registry row of [`provision`] and [`provision_staged`];
/// `status`: the registry's status (`None`: trial or active, as the plan says);
/// `member`: a claimed warm pool member, renamed instead of made. The DDL, the
/// least-privilege check of the six roles and the registry row are one round trip
/// (pipelined, in that order on the connection). Returns the tenant's password too.
async fn provision_objects(
    p: &Platform,
    tx: &Transaction<'_>,
    v: &Validated,
    id: Uuid,
    Prechecked { plan, pool_version }: Prechecked,
    status: Option<Status>,
    member: Option<&Member>,
) -> Result<(Tenant, Plan, i64, i32, SecretString)> {
    let quota = v.db_quota_bytes.unwrap_or(plan.quotas.db_quota_bytes);
    let trial_days = v.trial_days(&plan);
    let login = login_for(p, member).await?;
    let verifier = login.verifier.as_deref().unwrap_or_default();
    let limits = limits(p, &plan, quota);
    let (sql, schema) = match (member, v.isolation) {
        (Some(m), mode) => {
            // The table's CHECK keeps every key 20 hex digits.
            let member = Slug::warm_member(&m.key).expect("a warm pool key");
            let mode = warm::Mode::from(mode);
            let schema = match mode {
                warm::Mode::Shared => shared::POOL_SCHEMA.to_string(),
                _ => v.slug.schema().as_str().to_string(),
            };
            let verifier = login.verifier.as_deref();
            let sql = match mode {
                // Its database is renamed last, once nobody is in it (`workflows::create_one`).
                warm::Mode::Database => {
                    warm::claim_roles_sql(mode, &member, &v.slug, verifier, &limits)
                }
                _ => warm::claim_sql(mode, &member, &v.slug, verifier, &limits),
            };
            (sql, schema)
        }
        (None, isolation) => match isolation {
            Isolation::Shared => (
                shared::create_sql(
                    &v.slug,
                    &id.to_string(),
                    &crate::isolation::create_login_role(&v.slug.login_role(), verifier, &limits),
                    !p.caps.superuser,
                ),
                shared::POOL_SCHEMA.to_string(),
            ),
            _ => (
                SchemaPerTenant.create_sql(&Provision {
                    slug: &v.slug,
                    password_verifier: verifier,
                    limits: &limits,
                    template_sql: &p.template.full_sql(),
                    grant_owner_to_creator: !p.caps.superuser,
                }),
                v.slug.schema().as_str().to_string(),
            ),
        },
    };
    let roles: Vec<String> = v.slug.fixed_role_names();
    let (login_role, owner_role) = (v.slug.login_role(), v.slug.owner_role());
    let new = NewTenant {
        id,
        name: v.slug.as_str(),
        status: status.unwrap_or(if trial_days > 0 {
            Status::Trial
        } else {
            Status::Active
        }),
        trial_days,
        plan: &plan.name,
        isolation: v.isolation,
        schema: Some(&schema),
        database: match v.isolation {
            Isolation::Database => &schema,
            _ => &p.endpoint.database,
        },
        login_role: login_role.as_str(),
        owner_role: owner_role.as_str(),
        db_quota_bytes: quota,
        vpn_enabled: v.vpn_enabled,
        public_api: v.public_api,
        // Shared tenants live in the pool's tables: they are at the pool's version.
        template_version: pool_version.unwrap_or_else(|| p.template.latest_version()),
        metadata: &v.metadata,
        credentials: &login.sealed,
    };
    // Pipelined: the check and the insert are queued behind the DDL, and a failed DDL
    // fails them too (an aborted transaction); its error is the one reported. A
    // claimed member's roles were checked at its refill, and a claim changes no
    // privilege of theirs (renames, LOGIN, limits and settings only).
    let (made, checked, inserted) = tokio::join!(
        tx.batch_execute(&sql),
        async {
            match member {
                None => crate::pg::hardening::check(tx, &roles).await,
                Some(_) => Ok(()),
            }
        },
        store::insert(tx, &new),
    );
    made.map_err(|e| taken(e, &v.slug))?;
    checked?;
    let tenant = inserted.map_err(|e| taken_row(e, &v.slug))?;
    Ok((tenant, plan, quota, trial_days, login.password))
}

/// The `tenant.created` event, in the create's transaction before its audit row (a
/// restore into a new tenant announces it once the restore is done: `restored_from`).
pub async fn announce_created(
    tx: &Transaction<'_>,
    t: &Tenant,
    key: KeyRef,
    restored_from: Option<Uuid>,
) -> Result<()> {
    outbox::emit(
        tx,
        t.id,
        t.name.as_str(),
        &TenantCreated {
            tenant: TenantState::of(t),
            api_key: key,
            restored_from,
        },
    )
    .await?;
    Ok(())
}

/// The audit row of a created schema- or shared-mode tenant.
pub async fn audit_created(
    tx: &Transaction<'_>,
    made: &Provisioned,
    actor: &str,
    op: Uuid,
) -> Result<()> {
    let t = &made.created.tenant;
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "tenant_created",
            tenant_id: Some(t.id),
            tenant_name: Some(t.name.as_str()),
            operation_id: Some(op),
            details: match t.isolation {
                Isolation::Database => super::database_mode::audit_details(
                    t,
                    &made.plan,
                    made.db_quota_bytes,
                    &made.key_prefix,
                ),
                _ => serde_json::json!({
                    "plan": made.plan, "isolation": t.isolation.as_str(), "db_quota_bytes": made.db_quota_bytes,
                    "trial_days": made.trial_days, "vpn_enabled": t.vpn_enabled, "public_api": t.public_api,
                    "api_key_prefix": made.key_prefix,
                }),
            },
        },
    )
    .await?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::Ident;
    use crate::secrets::ExposeSecret;

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
                vpn_subnet: None,
                public_api: true,
                access_mode: super::super::AccessMode::Public,
                template_version: 1,
                trial_ends_at: None,
                suspended_at: None,
                suspension_reason: None,
                metadata: serde_json::json!({}),
                created_at: now,
                updated_at: now,
                previous_status: None,
                purge_after: None,
                purged_at: None,
                final_backup_id: None,
                archive_expires_at: None,
                integrations: serde_json::json!({}),
                auth_providers: vec![],
                vector_store: None,
                server: "default".into(),
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
