//! L3: each tenant's configuration document (docs/config.md). A tenant gets version 1
//! at creation from its plan's defaults (seed 004's fields when the plan has none);
//! every change is a JSON merge patch (RFC 7396) validated against the plan's JSON
//! Schema, kept as a new version, audited and announced (`tenant.config_changed`).

pub mod merge;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::problem::{Kind, Problem};
use crate::store::outbox::{self, data::TenantConfigChanged};
use crate::store::tenant_config as store;
pub use crate::store::tenant_config::ConfigVersion;
use crate::store::tenants::Tenant;

/// What this domain fails with: a refusal (nothing changed), or the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", .0.message)]
    Rejected(Problem),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// Seed 004's `create_config`: the defaults of a plan that has none of its own.
pub fn builtin() -> Value {
    json!({
        "model": "gpt-4o-mini",
        "max_tokens": 1000,
        "rate_limit_per_minute": 60,
        "features": {"basic_chat": true},
    })
}

/// `PUT /api/v1/plans/{name}/config-defaults` (and its answer).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanConfigDefaults {
    /// The configuration a new tenant on the plan starts with (`plan` is set to the
    /// plan's name).
    #[schema(value_type = Object)]
    pub defaults: Value,
    /// A JSON Schema every configuration of the plan's tenants must satisfy (checked on
    /// every change; these defaults must satisfy it too).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
}

/// A tenant's current configuration.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantConfig {
    pub tenant: String,
    pub version: i32,
    #[schema(value_type = Object)]
    pub config: Value,
    pub changed_at: DateTime<Utc>,
}

/// Every version, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigHistory {
    pub tenant: String,
    pub versions: Vec<ConfigVersion>,
}

/// Seed 004's document for a new tenant, written in the create's transaction (one
/// statement, which the create pipelines beside its others).
pub async fn create_default(
    c: &impl GenericClient,
    tenant_id: Uuid,
    plan: &str,
    actor: &str,
) -> Result<()> {
    Ok(store::create_default(c, tenant_id, plan, &builtin(), actor).await?)
}

/// Compiles a plan's JSON Schema; a schema that does not compile (or reaches for a
/// remote `$ref`: nothing is fetched) is refused, naming `schema`.
fn compile(schema: &Value) -> Result<jsonschema::Validator, Problem> {
    jsonschema::validator_for(schema).map_err(|e| {
        Problem::bad_field("schema", format!("schema is not a usable JSON Schema: {e}"))
    })
}

/// Checks `config` against the compiled schema. The refusal names the first failing
/// field by its dotted path (`features.basic_chat`), or `config` for the document.
fn check(validator: &jsonschema::Validator, config: &Value, prefix: &str) -> Result<(), Problem> {
    let Some(e) = validator.iter_errors(config).next() else {
        return Ok(());
    };
    let path = e
        .instance_path()
        .as_str()
        .trim_start_matches('/')
        .replace('/', ".");
    let field = match (prefix, path.is_empty()) {
        ("", true) => "config".to_string(),
        ("", false) => path.clone(),
        (p, true) => p.to_string(),
        (p, false) => format!("{p}.{path}"),
    };
    Err(Problem::bad_field(
        &field,
        format!("{field}: {e} (the plan's configuration schema refuses it)"),
    ))
}

fn must_be_object(field: &str, v: &Value) -> Result<(), Problem> {
    match v.is_object() {
        true => Ok(()),
        false => Err(Problem::bad_field(
            field,
            format!("{field} must be a JSON object"),
        )),
    }
}

/// Sets a plan's defaults and schema; the defaults (as a tenant would get them) must
/// satisfy the schema. Audited.
pub async fn put_plan_defaults(
    tx: &Transaction<'_>,
    plan: &str,
    req: &PlanConfigDefaults,
    actor: &str,
) -> Result<PlanConfigDefaults> {
    must_be_object("defaults", &req.defaults).map_err(Error::Rejected)?;
    if req.defaults.get("plan").is_some() {
        return Err(Error::Rejected(Problem::bad_field(
            "defaults.plan",
            "defaults.plan is set by berqenas to the tenant's plan; leave it out",
        )));
    }
    if let Some(schema) = &req.schema {
        let validator = compile(schema).map_err(Error::Rejected)?;
        let mut as_given = req.defaults.clone();
        as_given["plan"] = json!(plan);
        check(&validator, &as_given, "defaults").map_err(Error::Rejected)?;
    }
    match store::put_plan_defaults(tx, plan, &req.defaults, req.schema.as_ref()).await {
        Err(crate::store::Error::NotFound) => {
            return Err(Error::Rejected(Problem::new(
                Kind::NotFound,
                "plan_not_found",
                format!("plan {plan:?} not found"),
            )))
        }
        other => other?,
    }
    crate::audit::record(
        tx,
        &crate::audit::Entry {
            actor,
            action: "plan_config_defaults_set",
            tenant_id: None,
            tenant_name: None,
            operation_id: None,
            details: json!({"plan": plan, "defaults": req.defaults, "schema": req.schema.is_some()}),
        },
    )
    .await?;
    Ok(req.clone())
}

/// A plan's defaults and schema as new tenants get them (the built-in ones if none
/// are stored).
pub async fn plan_defaults(c: &impl GenericClient, plan: &str) -> Result<PlanConfigDefaults> {
    Ok(match store::plan_defaults(c, plan).await? {
        Some(d) => PlanConfigDefaults {
            defaults: d.defaults,
            schema: d.schema,
        },
        None => PlanConfigDefaults {
            defaults: builtin(),
            schema: None,
        },
    })
}

fn no_config(t: &Tenant) -> Error {
    Error::Rejected(Problem::new(
        Kind::NotFound,
        "config_not_found",
        format!("tenant {} has no configuration", t.name),
    ))
}

/// The tenant's current configuration.
pub async fn get(c: &impl GenericClient, t: &Tenant) -> Result<TenantConfig> {
    let v = store::current(c, t.id).await?.ok_or_else(|| no_config(t))?;
    Ok(TenantConfig {
        tenant: t.name.to_string(),
        version: v.version,
        config: v.config,
        changed_at: v.changed_at,
    })
}

pub async fn history(c: &impl GenericClient, t: &Tenant) -> Result<ConfigHistory> {
    Ok(ConfigHistory {
        tenant: t.name.to_string(),
        versions: store::history(c, t.id).await?,
    })
}

/// Applies a merge patch to the tenant's configuration (its row locked by the
/// caller): validated, then a new version, its audit row and its event, in the
/// caller's transaction. An empty patch changes nothing and makes no version.
pub async fn patch_locked(
    tx: &Transaction<'_>,
    t: &Tenant,
    patch: &Value,
    actor: &str,
    op: Uuid,
) -> Result<TenantConfig> {
    must_be_object("config", patch).map_err(Error::Rejected)?;
    if patch.get("plan").is_some() {
        return Err(Error::Rejected(Problem::bad_field(
            "plan",
            "plan is the tenant's plan; change it with PATCH /api/v1/tenants/{name}",
        )));
    }
    if patch.as_object().is_some_and(|o| o.is_empty()) {
        return get(tx, t).await;
    }
    let (current, schema) = store::current_with_schema(tx, t.id, &t.plan).await?;
    let current = current.ok_or_else(|| no_config(t))?;
    let mut config = current.config.clone();
    merge::apply(&mut config, patch);
    if let Some(schema) = &schema {
        let validator = compile(schema).map_err(Error::Rejected)?;
        check(&validator, &config, "").map_err(Error::Rejected)?;
    }
    append(tx, t, current.version, config, patch, actor, op).await
}

/// After a change of the tenant's plan (its row already updated, in the caller's
/// transaction): the document's `plan` follows, as a new version. The rest is kept
/// as it is; the new plan's schema applies from the next change on.
pub async fn follow_plan(tx: &Transaction<'_>, t: &Tenant, actor: &str, op: Uuid) -> Result<()> {
    let Some(current) = store::current(tx, t.id).await? else {
        return Ok(());
    };
    if current.config["plan"] == json!(t.plan) {
        return Ok(());
    }
    let patch = json!({"plan": t.plan});
    let mut config = current.config;
    merge::apply(&mut config, &patch);
    append(tx, t, current.version, config, &patch, actor, op).await?;
    Ok(())
}

/// Writes the version after `previous`, its event and its audit row.
async fn append(
    tx: &Transaction<'_>,
    t: &Tenant,
    previous: i32,
    config: Value,
    patch: &Value,
    actor: &str,
    op: Uuid,
) -> Result<TenantConfig> {
    let version = previous + 1;
    let changed_at = store::append(tx, t.id, version, &config, patch, actor).await?;
    outbox::emit(
        tx,
        t.id,
        t.name.as_str(),
        &TenantConfigChanged {
            version,
            patch: patch.clone(),
            config: config.clone(),
        },
    )
    .await?;
    crate::audit::record(
        tx,
        &crate::audit::Entry {
            actor,
            action: "tenant_config_changed",
            tenant_id: Some(t.id),
            tenant_name: Some(&t.name),
            operation_id: Some(op),
            details: json!({"version": version, "patch": patch}),
        },
    )
    .await?;
    Ok(TenantConfig {
        tenant: t.name.to_string(),
        version,
        config,
        changed_at,
    })
}
