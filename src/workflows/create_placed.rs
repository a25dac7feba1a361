//! `tenant.create.placed`: a create in any mode on a server other than
//! `default` (docs/servers.md). No transaction spans two servers, so it is steps:
//!
//! 1. `register`: the registry row (`provisioning`, on its server, password sealed)
//!    and the tenant taken by this operation, in one control transaction with the
//!    step's journal row. Nothing exists on the server yet.
//! 2. `provision` (reaches out): its intent journaled first (the roles and the schema
//!    or database on that server), then made there (`tenant::placed::make`; the
//!    schema mode in one transaction on the server; shared mode, its roles and member
//!    rows in the server's pool, built there first if it is not).
//! 3. `vector_store` and `integrations`: the tenant's vector collection when the create
//!    asked for one (an external backend: Chroma), and the onboarding steps its plan
//!    and mode match, the same steps as every staged create;
//! 4. `activate`: the activation every multi-step create ends with.
//!
//! Failing or dying before activation commits undoes it, last first: what the intent
//! names is dropped on the server, then the registry row, each only where this
//! operation still owns the tenant. A failpoint sits at every step boundary.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::create::{
    activate_registered, configure_database, configured_at_activation, Activation, Alongside,
};
use super::{failed, step_error, Error, Runtime};
use crate::ops::{fence, Idempotency, Kind, Object, Run, Step, StepError, StepFuture};
use crate::tenant::create::{CreatedTenant, Validated};
use crate::tenant::database_mode::Registered;
use crate::tenant::{placed, placed_members, service, Isolation, Slug};

pub const CREATE_PLACED: &str = "tenant.create.placed";

pub fn kind() -> Kind<Runtime> {
    Kind {
        name: CREATE_PLACED,
        steps: vec![
            Step {
                name: "register",
                reaches_out: false,
                apply: register,
                compensate: Some(unregister),
                skip: None,
            },
            Step {
                name: "provision",
                reaches_out: true,
                apply: provision,
                compensate: Some(unprovision),
                skip: None,
            },
        ]
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
        point_of_no_return: 5,
    }
}

/// The input of a placed create, as journaled (no secret in it).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Params {
    tenant_id: Uuid,
    name: Slug,
    server: String,
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
            server: Some(self.server.clone()),
            placement: None,
        }
    }
}

/// Runs a placed create to its end (or its undoing).
pub async fn create(
    rt: &Runtime,
    v: &Validated,
    server: &str,
    idem: Option<&Idempotency>,
    actor: &str,
    announce: bool,
) -> Result<CreatedTenant, Error> {
    let tenant_id = Uuid::now_v7();
    let params = Params {
        tenant_id,
        name: v.slug.clone(),
        server: server.to_string(),
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
        super::create::run_create(rt, CREATE_PLACED, tenant_id, &v.slug, params, idem).await?;
    tracing::info!(server = %server, "placed on its server");
    Ok(created)
}

/// The server's view of the platform (its pool, config, endpoint), opened once.
pub(super) async fn view_of(
    p: &Runtime,
    server: &str,
) -> Result<crate::platform::Platform, StepError> {
    p.platform.view_of(server).await.map_err(failed)
}

/// 1. The registry row on its server and the tenant taken, one control transaction.
fn register<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        let view = view_of(p, &params.server).await?;
        let mut client = p.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        fence::lock_name(&tx, params.name.as_str()).await?;
        let validated = params.validated();
        // A warm pool member on that server (docs/warm_pool.md), claimed in this
        // transaction: from its commit the member is this operation's, renamed by
        // `provision` or dropped by the undo.
        let (member, onboarding) = tokio::join!(
            claim(p, &tx, &params),
            crate::store::onboarding::matching(&tx, &params.plan, params.isolation.as_str()),
        );
        let member = member.map_err(failed)?;
        let registered = placed::register(
            p,
            &tx,
            &validated,
            params.tenant_id,
            (&params.server, &view.endpoint.database),
            member.as_ref(),
        )
        .await
        .map_err(step_error)?;
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

/// A member of the server's pool in the create's mode at the current template
/// version, or `None` (none there: the create makes the tenant from scratch).
async fn claim(
    p: &Runtime,
    tx: &deadpool_postgres::Transaction<'_>,
    params: &Params,
) -> Result<Option<crate::store::warm_pool::Member>, crate::store::Error> {
    let version = crate::store::warm_pool::Version::Exactly(p.template.latest_version());
    crate::store::warm_pool::claim(tx, &params.server, params.isolation, version).await
}

/// The claimed member's key and slug, if `register` claimed one.
fn claimed(run: &Run) -> Result<Option<(String, Slug)>, StepError> {
    let registered: Option<Registered> = run.outcome("register");
    registered
        .and_then(|r| r.member)
        .map(|key| match Slug::warm_member(&key) {
            Some(slug) => Ok((key, slug)),
            None => Err(StepError::Fenced(format!("not a warm pool key: {key:?}"))),
        })
        .transpose()
}

/// Whether a claimed database's inside (its schema's rename, the gate's limits) is
/// done beside activation's transaction rather than at the end of `provision`: when
/// nothing runs in between, as on `default` (`create::configured_at_activation`).
fn configured_beside(run: &Run, params: &Params) -> bool {
    params.isolation == Isolation::Database && configured_at_activation(run)
}

/// Drops the registry row, if this operation still owns the tenant; and a member it
/// claimed, wherever `provision` left it (never renamed: still the member's names).
fn unregister<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        if let Some((_, member)) = claimed(run)? {
            let params: Params = run.params()?;
            let view = view_of(p, &params.server).await?;
            placed::unmake(&view, &member, params.isolation)
                .await
                .map_err(step_error)?;
        }
        let slug = Slug::parse(&run.tenant_name).map_err(failed)?;
        let mut client = p.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        fence::lock_name(&tx, slug.as_str()).await?;
        if !fence::owns(&tx, run).await? {
            return Ok(Value::Null);
        }
        let id = run.tenant_id.expect("an owned tenant");
        crate::store::tenants::delete(&tx, id)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok(Value::Null)
    })
}

/// 2. The roles and schema (or database) on the server, declared first. Roles of the
///    tenant's names that exist there already are someone else's: a taken name,
///    never dropped.
fn provision<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        let registered: Registered = run
            .outcome("register")
            .ok_or_else(|| StepError::Fenced("nothing registered".into()))?;
        let view = view_of(p, &params.server).await?;
        let slug = &params.name;
        let claimed = claimed(run)?;
        if run.intent::<Value>("provision").is_none() {
            if placed::roles_exist(&view, slug).await.map_err(step_error)? {
                return Err(step_error(service::taken_name(slug)));
            }
            let mut objects = declared(slug, params.isolation, &view, []);
            if let Some((_, member)) = &claimed {
                objects.extend(declared(member, params.isolation, &view, []));
            }
            run.intend(objects, json!({"ours": true, "server": params.server}))
                .await?;
        }
        match &claimed {
            Some((key, _)) => {
                let pool_version =
                    placed_members::claim(p, &view, slug, key, params.isolation, &registered)
                        .await
                        .map_err(step_error)?;
                record_pool_version(p, &registered, pool_version).await?;
                if params.isolation == Isolation::Database && !configured_beside(run, &params) {
                    configure_database(&view, slug, Some(key)).await?;
                }
            }
            None => {
                make(p, &view, &params, &registered).await?;
                if params.isolation == Isolation::Database {
                    super::pooler::prepare_tenant_database(&view, slug.schema().as_str())
                        .await
                        .map_err(failed)?;
                }
            }
        }
        Ok(json!({"server": params.server, "claimed": claimed.is_some()}))
    })
}

/// The tenant made on its server from scratch, with the password sealed in its row.
async fn make(
    p: &Runtime,
    view: &crate::platform::Platform,
    params: &Params,
    registered: &Registered,
) -> Result<(), StepError> {
    let sealed = {
        let c = p.pool.get().await.map_err(failed)?;
        crate::store::tenants::sealed_credentials(&c, registered.tenant_id)
            .await
            .map_err(failed)?
    };
    let password = service::open_password(p, &sealed).map_err(step_error)?;
    // That server's template database is as its add or the last migration run left
    // it; the clone checks it against this process's template under the template
    // lock and rebuilds it when it is not (`clone_current_on`).
    let pool_version = placed::make(
        p,
        view,
        &params.server,
        &params.name,
        params.isolation,
        &password,
        registered,
    )
    .await
    .map_err(step_error)?;
    record_pool_version(p, registered, pool_version).await
}

/// A shared-mode tenant is at its server's pool's version, which an older release may
/// have built: the registry says so before the tenant is active.
async fn record_pool_version(
    p: &Runtime,
    registered: &Registered,
    pool_version: Option<i32>,
) -> Result<(), StepError> {
    if let Some(version) = pool_version {
        let c = p.pool.get().await.map_err(failed)?;
        crate::store::tenants::set_template_version(&c, registered.tenant_id, version)
            .await
            .map_err(failed)?;
    }
    Ok(())
}

/// What a tenant's making on another server declares before it starts: its roles
/// (and `more`, its users' logins), and its schema or database on the server `view`
/// sees.
pub(super) fn declared(
    slug: &Slug,
    isolation: Isolation,
    view: &crate::platform::Platform,
    more: impl IntoIterator<Item = crate::pg::Ident>,
) -> Vec<Object> {
    let mut objects: Vec<Object> = slug
        .fixed_roles()
        .into_iter()
        .chain(more)
        .map(|r| Object {
            kind: "role".into(),
            name: r.as_str().to_string(),
            database: None,
            scratch: false,
        })
        .collect();
    // A shared-mode tenant's rows are in its server's pool, not an object of its own.
    if isolation != Isolation::Shared {
        objects.push(Object {
            kind: match isolation {
                Isolation::Database => "database".into(),
                _ => "schema".into(),
            },
            name: slug.schema().as_str().to_string(),
            database: Some(view.endpoint.database.clone()),
            scratch: false,
        });
    }
    objects
}

/// Drops what [`provision`] made on the server, if the intent says it was ours and
/// this operation still owns the tenant.
fn unprovision<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let ours = run
            .intent::<Value>("provision")
            .is_some_and(|i| i["ours"] == true);
        if !ours {
            return Ok(Value::Null);
        }
        let params: Params = run.params()?;
        let mut client = p.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        fence::lock_name(&tx, params.name.as_str()).await?;
        if fence::owns(&tx, run).await? {
            let view = view_of(p, &params.server).await?;
            placed::unmake(&view, &params.name, params.isolation)
                .await
                .map_err(step_error)?;
        }
        Ok(Value::Null)
    })
}

/// 4. Active (or trial): the activation every multi-step create ends with.
fn activate<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        // The tenant's credentials name its server's host and port.
        let view = view_of(p, &params.server).await?;
        let member = match configured_beside(run, &params) {
            true => claimed(run)?.map(|(key, _)| key),
            false => None,
        };
        let how = Activation {
            registered_by: "register",
            name: &params.name,
            actor: &params.actor,
            backup_schedule: params.backup_schedule.as_deref(),
            announce: params.announce,
            network: params.vpn_enabled,
            alongside: member.map(|m| -> Alongside<'_> {
                let (view, name) = (&view, &params.name);
                Box::pin(async move { configure_database(view, name, Some(&m)).await })
            }),
        };
        activate_registered(p, run, how).await
    })
}
