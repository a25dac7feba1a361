//! `tenant.create.staged`: a schema- or shared-mode create that must hear from the
//! outside before the tenant is ready (docs/onboarding-steps.md). A create that needs
//! none of that stays the one transaction of `tenant.create` (`workflows::create`):
//! whether it needs staging is read pipelined with that transaction's first statement
//! ([`staging`]), and only a create that does is rolled back and run here, in steps:
//!
//! 1. `provision`: the roles, the schema (or pool rows), the template and the registry
//!    row (`provisioning`), the tenant taken by this operation, in one transaction
//!    with the step's journal row;
//! 2. `integrations`: the onboarding steps it matched (`workflows::onboarding`), which
//!    may wait for a callback;
//! 3. `activate`: active, with its API key, backup policy, audit row and
//!    `tenant.created` event; the tenant given back and the operation closed, in one
//!    transaction.
//!
//! Failing or dying before activation commits undoes it, last first: the steps'
//! `compensate_url`s are called, then the schema or pool rows, the roles and the
//! registry row are dropped, each only where this operation still owns the tenant.
//!
//! Another step of the same shape (a vector store, a cloud resource) goes between
//! `integrations` and `activate`, and says when a create needs it in [`needs_staging`].

use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::create::{activate_registered, Activation};
use super::{failed, step_error, Error, Runtime};
use crate::ops::{fence, Idempotency, Kind, Run, Step, StepFuture};
use crate::store::onboarding::StepRow;
use crate::tenant::create::{self as domain, CreatedTenant, Validated};
use crate::tenant::{service, Isolation, Slug};

pub const CREATE_STAGED: &str = "tenant.create.staged";

pub fn kind() -> Kind<Runtime> {
    Kind {
        name: CREATE_STAGED,
        steps: vec![Step {
            name: "provision",
            reaches_out: false,
            apply: provision,
            compensate: Some(unprovision),
            skip: None,
        }]
        .into_iter()
        .chain(super::create::before_activation())
        .chain([Step {
            name: "activate",
            reaches_out: false,
            apply: activate,
            compensate: None,
            skip: None,
        }])
        .collect(),
        // Activation closes the operation in its own transaction: until it commits, a
        // crash undoes the create (its client got no credentials, and retries).
        point_of_no_return: 4,
    }
}

/// Whether a schema- or shared-mode create runs staged: it matched an onboarding step.
/// (The one place to add another reason.)
pub fn needs_staging(v: &Validated, matched: &[StepRow]) -> bool {
    !matched.is_empty() || v.vector_store == Some(true)
}

/// [`needs_staging`], read on the create's transaction (pipelined by the caller).
pub async fn staging(c: &impl GenericClient, v: &Validated) -> Result<bool, crate::store::Error> {
    let matched = crate::store::onboarding::matching(c, &v.plan, v.isolation.as_str()).await?;
    Ok(needs_staging(v, &matched))
}

/// The input of a staged create, as journaled (no secret in it).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Params {
    tenant_id: Uuid,
    name: Slug,
    plan: String,
    isolation: Isolation,
    db_quota_bytes: Option<i64>,
    vpn_enabled: bool,
    public_api: bool,
    trial_days: Option<i32>,
    metadata: Value,
    backup_schedule: Option<String>,
    /// Whether the `vector_store` step makes the tenant a collection.
    #[serde(default)]
    vector_store: bool,
    actor: String,
    /// Whether activation emits `tenant.created` (see `create::create_as`).
    announce: bool,
}

impl Params {
    fn validated(&self) -> Validated {
        Validated {
            slug: self.name.clone(),
            db_quota_bytes: self.db_quota_bytes,
            vpn_enabled: self.vpn_enabled,
            public_api: self.public_api,
            isolation: self.isolation,
            isolation_given: true,
            trial_days: self.trial_days,
            plan: self.plan.clone(),
            metadata: self.metadata.clone(),
            backup_schedule: self.backup_schedule.clone(),
            vector_store: Some(self.vector_store),
            server: None,
            placement: None,
        }
    }
}

/// Runs a staged create to its end (or its undoing).
pub async fn create(
    rt: &Runtime,
    v: &Validated,
    idem: Option<&Idempotency>,
    actor: &str,
    announce: bool,
) -> Result<CreatedTenant, Error> {
    let tenant_id = Uuid::now_v7();
    let params = Params {
        tenant_id,
        name: v.slug.clone(),
        plan: v.plan.clone(),
        isolation: v.isolation,
        db_quota_bytes: v.db_quota_bytes,
        vpn_enabled: v.vpn_enabled,
        public_api: v.public_api,
        trial_days: v.trial_days,
        metadata: v.metadata.clone(),
        backup_schedule: v.backup_schedule.clone(),
        vector_store: v.vector_store == Some(true),
        actor: actor.to_string(),
        announce,
    };
    let params = serde_json::to_value(&params).map_err(service::Error::from)?;
    let created =
        super::create::run_create(rt, CREATE_STAGED, tenant_id, &v.slug, params, idem).await?;
    Ok(created)
}

/// 1. Everything the tenant is in PostgreSQL, its registry row `provisioning` and the
///    tenant taken by this operation, in one transaction with the step's journal row;
///    the onboarding steps it runs read there too (pipelined).
fn provision<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        let mut client = p.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        fence::lock_name(&tx, params.name.as_str()).await?;
        let validated = params.validated();
        let (registered, onboarding) = tokio::join!(
            domain::provision_staged(p, &tx, &validated, params.tenant_id),
            crate::store::onboarding::matching(&tx, &params.plan, params.isolation.as_str()),
        );
        let registered = registered.map_err(step_error)?;
        let onboarding: Vec<String> = onboarding
            .map_err(failed)?
            .into_iter()
            .map(|s| s.name)
            .collect();
        fence::acquire(&tx, run, params.tenant_id).await?;
        if params.vpn_enabled {
            crate::network::pool::allocate(&tx, &p.network.pool, params.tenant_id)
                .await
                .map_err(|e| super::refusal(e.into()))?;
        }
        let mut outcome = serde_json::to_value(&registered).map_err(failed)?;
        outcome["onboarding"] = json!(onboarding);
        outcome["isolation"] = json!(params.isolation.as_str());
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// Drops what [`provision`] made (schema or pool rows, roles, registry row), if this
/// operation still owns the tenant: a create that lost the race for the name made
/// nothing of its own.
fn unprovision<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let slug = Slug::parse(&run.tenant_name).map_err(failed)?;
        let mut client = p.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        fence::lock_name(&tx, slug.as_str()).await?;
        if !fence::owns(&tx, run).await? {
            return Ok(Value::Null);
        }
        let id = run.tenant_id.expect("an owned tenant");
        let tenant = crate::store::tenants::get(&tx, id).await.map_err(failed)?;
        crate::tenant::offboarding::drop_objects(p, &tx, &tenant)
            .await
            .map_err(step_error)?;
        crate::store::tenants::delete(&tx, id)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok(Value::Null)
    })
}

/// 3. Active (or trial): the activation every multi-step create ends with
///    ([`super::create::activate_registered`]).
fn activate<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        let how = Activation {
            registered_by: "provision",
            name: &params.name,
            actor: &params.actor,
            backup_schedule: params.backup_schedule.as_deref(),
            announce: params.announce,
            network: params.vpn_enabled,
            alongside: None,
        };
        activate_registered(p, run, how).await
    })
}
