//! Creating a tenant.
//!
//! - `tenant.create` (schema and shared modes, and a database-mode create that claims
//!   a warm pool member): one transaction holds the roles, the schema (or pool rows,
//!   or the claimed database's rename), the template, the registry row, the API key,
//!   the backup policy, the audit row and the operation row: a crash leaves all or
//!   nothing (`create_one`).
//! - `tenant.create.database`: `CREATE DATABASE` cannot run in a transaction, so it is
//!   steps: the roles and the registry row (the operation takes the tenant), the
//!   clone (declared before it runs), its configuration, the vector store (when asked
//!   for; workflows/vector_store.rs), the external onboarding steps, then activation (the API key,
//!   the policy, the audit row, the tenant given back and the operation closed, in one
//!   transaction). Failing or dying before that commits undoes the steps, last first,
//!   each only where this
//!   operation still owns the tenant: a loser of a race for the name never touches the
//!   winner's roles or database.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{failed, open_value, seal_value, step_error, Error, Runtime};
use crate::ops::{
    self, fence, Begin, Idempotency, Kind, NewOp, NewOperation, Object, Run, Step, StepError,
    StepFuture, StoredResponse,
};
use crate::platform::Platform;
use crate::tenant::create::{self as domain, CreateTenant, CreatedTenant, Validated};
use crate::tenant::{database_mode, service, Isolation, Slug};

pub const CREATE: &str = "tenant.create";
pub const CREATE_DATABASE: &str = "tenant.create.database";

pub fn kinds() -> Vec<Kind<Runtime>> {
    vec![
        Kind::single(CREATE),
        Kind {
            name: CREATE_DATABASE,
            steps: vec![
                Step {
                    name: "register",
                    reaches_out: false,
                    apply: register,
                    compensate: Some(unregister),
                    skip: None,
                },
                Step {
                    name: "clone",
                    reaches_out: true,
                    apply: clone,
                    compensate: Some(drop_clone),
                    // A claimed member's database was renamed by `register`.
                    skip: Some(claimed_a_member),
                },
                Step {
                    name: "configure",
                    reaches_out: true,
                    apply: configure,
                    compensate: None,
                    skip: Some(configured_at_activation),
                },
            ]
            .into_iter()
            .chain(before_activation())
            .chain([Step {
                name: "activate",
                reaches_out: false,
                apply: activate,
                compensate: None,
                skip: None,
            }])
            .collect(),
            // Activation closes the operation in its own transaction: until it commits,
            // a crash undoes the create (its client got no credentials, and retries).
            point_of_no_return: 6,
        },
    ]
}

/// Whether `register` claimed a warm pool member (docs/warm_pool.md).
fn claimed_a_member(run: &Run) -> bool {
    run.outcome::<database_mode::Registered>("register")
        .is_some_and(|r| r.member.is_some())
}

/// Whether `activate` configures the database beside its own transaction instead of a
/// `configure` step before it: a claimed member's (configured when it was made; only
/// its schema's name and the gate's limits are left), when no step in between (a
/// vector store, an integration) could need it done first. The two connections' work
/// then overlaps: the claim's time is the slower of the two, not their sum.
pub(super) fn configured_at_activation(run: &Run) -> bool {
    claimed_a_member(run)
        && super::vector_store::not_asked(run)
        && super::onboarding::none_matched(run)
}

/// The steps every multi-step create runs after the tenant is made and before its
/// activation (each skipped when not asked for): the tenant's vector collection
/// (docs/vector-store.md; its intent journaled before it is made), then the
/// onboarding steps the create matched (each call's intent journaled first).
pub(super) fn before_activation() -> [Step<Runtime>; 2] {
    [
        Step {
            name: super::vector_store::STEP,
            reaches_out: true,
            apply: super::vector_store::create,
            compensate: Some(super::vector_store::undo_create),
            skip: Some(super::vector_store::not_asked),
        },
        Step {
            name: "integrations",
            reaches_out: false,
            apply: super::onboarding::integrations,
            compensate: Some(super::onboarding::undo_integrations),
            skip: Some(super::onboarding::none_matched),
        },
    ]
}

/// `POST /api/v1/tenants`. With an idempotency key, a repeat of the same request
/// replays the first answer, and another request with the key is refused.
pub async fn create(
    rt: &Runtime,
    req: &CreateTenant,
    idem: Option<&Idempotency>,
    actor: &str,
) -> Result<CreatedTenant, Error> {
    create_as(rt, req, idem, actor, true).await
}

/// [`create`]; `announce`: whether it emits `tenant.created`. A restore into a new
/// tenant creates it quietly and announces it once the restore is done: until then
/// the restore may still be undone, and an undone change emits nothing.
pub async fn create_as(
    rt: &Runtime,
    req: &CreateTenant,
    idem: Option<&Idempotency>,
    actor: &str,
    announce: bool,
) -> Result<CreatedTenant, Error> {
    super::warm_pool::create_started();
    let mut v = match domain::validate_create(req) {
        Ok(v) => v,
        Err(e) => return remember_rejection(rt, idem, &req.name, e.into()).await,
    };
    // The backup policy's schedule is the backup domain's to judge.
    if let Some(s) = &req.backup_schedule {
        if let Err(p) = crate::backup::policy::parse_schedule("backup_schedule", s) {
            return remember_rejection(rt, idem, &req.name, Error::Rejected(p)).await;
        }
    }
    let mut trace = super::create_trace::start();
    // The plan's isolation and the server it goes to, read side by side.
    let (server, placement) = (v.server.clone(), v.placement.clone());
    let (isolation, placed) = tokio::join!(
        async { domain::settle_isolation(&rt.pool.get().await?, &mut v).await },
        super::placement::place(&rt.platform, server.as_deref(), placement.as_ref()),
    );
    isolation?;
    super::create_trace::mark(&mut trace, "settle");
    if v.vector_store == Some(true) {
        if let Err(p) = vector_store_possible(rt) {
            return remember_rejection(rt, idem, &req.name, Error::Rejected(p)).await;
        }
    }
    // The server it goes to (docs/servers.md): with only `default` registered and no
    // `server` or `placement` asked for, one read and the create goes on as before.
    match place_on(placed) {
        Ok(None) => {}
        Ok(Some(server)) => {
            return super::create_placed::create(rt, &v, &server, idem, actor, announce).await
        }
        Err(e) => return remember_rejection(rt, idem, &req.name, e).await,
    }
    // A database-mode create is steps (`tenant.create.database`), unless it claims a
    // warm pool member: `create_one` tries that first, and falls back to the steps.
    if v.isolation == Isolation::Database && v.vector_store == Some(true) {
        return create_database(rt, &v, idem, actor, announce).await;
    }
    super::create_one::create(rt, &v, idem, actor, announce, trace).await
}

/// The server a create goes to: `None` for `default` (the paths below), else the one
/// `create_placed` makes it on.
fn place_on(placed: Result<String, Error>) -> Result<Option<String>, Error> {
    let server = placed?;
    if server == crate::store::servers::DEFAULT {
        return Ok(None);
    }
    Ok(Some(server))
}

/// A vector store needs a backend, and (until the schema- and shared-mode creates are
/// staged operations) database mode.
fn vector_store_possible(rt: &Runtime) -> Result<(), crate::problem::Problem> {
    match rt.vectors {
        None => Err(crate::vector::not_configured()),
        Some(_) => Ok(()),
    }
}

/// The input of a database-mode create, as journaled (no secret in it).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Params {
    tenant_id: Uuid,
    name: Slug,
    plan: String,
    db_quota_bytes: Option<i64>,
    vpn_enabled: bool,
    public_api: bool,
    trial_days: Option<i32>,
    metadata: Value,
    backup_schedule: Option<String>,
    actor: String,
    /// Whether activation emits `tenant.created` (see [`create_as`]).
    #[serde(default = "announced")]
    announce: bool,
    /// Whether the `vector_store` step makes the tenant a collection.
    #[serde(default)]
    vector_store: bool,
}

fn announced() -> bool {
    true
}

impl Params {
    fn validated(&self) -> Validated {
        Validated {
            slug: self.name.clone(),
            db_quota_bytes: self.db_quota_bytes,
            vpn_enabled: self.vpn_enabled,
            public_api: self.public_api,
            isolation: Isolation::Database,
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

pub(super) async fn create_database(
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
        db_quota_bytes: v.db_quota_bytes,
        vpn_enabled: v.vpn_enabled,
        public_api: v.public_api,
        trial_days: v.trial_days,
        metadata: v.metadata.clone(),
        backup_schedule: v.backup_schedule.clone(),
        actor: actor.to_string(),
        announce,
        vector_store: v.vector_store == Some(true),
    };
    let params = serde_json::to_value(&params).map_err(service::Error::from)?;
    let created = run_create(rt, CREATE_DATABASE, tenant_id, &v.slug, params, idem).await?;
    Ok(created)
}

/// Runs a multi-step create (database mode, staged, placed) through the engine and
/// opens its sealed answer: the created tenant, or the answer an idempotent replay
/// stored.
pub(super) async fn run_create(
    rt: &Runtime,
    kind: &'static str,
    tenant_id: Uuid,
    slug: &Slug,
    params: Value,
    idem: Option<&Idempotency>,
) -> Result<CreatedTenant, Error> {
    let done = rt
        .engine
        .run(
            rt,
            NewOp {
                kind,
                tenant_id: Some(tenant_id),
                tenant_name: slug.as_str(),
                params,
                idempotency: idem,
            },
        )
        .await?;
    match done {
        ops::Done::Replay(sealed) => replay(&rt.platform, &sealed),
        ops::Done::Finished(outcome) => {
            let answer = outcome["answer"].as_str().unwrap_or_default();
            let created: CreatedTenant = open_value(&rt.platform, answer)?;
            tracing::info!(tenant.name = %created.tenant.name, kind, "tenant created");
            crate::metrics::tenant_created();
            Ok(created)
        }
    }
}

fn slug_of(run: &Run) -> Result<Slug, StepError> {
    Slug::parse(&run.tenant_name).map_err(failed)
}

/// 1. The roles and the registry row (`provisioning`), and the tenant taken by this
///    operation, in one transaction with the step's journal row.
fn register<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        let mut client = p.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        // What it reads and the name lock, pipelined (one round trip): the onboarding
        // steps this create runs, a warm pool member (docs/warm_pool.md) claimed in
        // this transaction (a crash before it commits gives the member back; after,
        // the tenant owns what was the member's, and `unregister` drops it all), and
        // the name and the plan.
        let validated = params.validated();
        let (locked, member, onboarding, pre) = tokio::join!(
            fence::lock_name(&tx, params.name.as_str()),
            super::warm_pool::claim(p, &tx, &validated),
            crate::store::onboarding::matching(&tx, &params.plan, "database"),
            domain::precheck(&tx, &validated),
        );
        locked?;
        let member = member.map_err(step_error)?;
        let onboarding: Vec<String> = onboarding
            .map_err(failed)?
            .into_iter()
            .map(|s| s.name)
            .collect();
        let pre = pre.map_err(step_error)?;
        let (v, id) = (&validated, params.tenant_id);
        let registered = match member {
            Some(m) => database_mode::register_claimed(p, &tx, v, pre, id, &m).await,
            None => database_mode::register(p, &tx, v, pre, id).await,
        };
        let registered = registered.map_err(step_error)?;
        if params.vpn_enabled {
            crate::network::pool::allocate(&tx, &p.network.pool, params.tenant_id)
                .await
                .map_err(|e| super::refusal(e.into()))?;
        }
        let mut outcome = serde_json::to_value(&registered).map_err(failed)?;
        outcome["onboarding"] = json!(onboarding);
        fence::acquire_registered(&tx, run, params.tenant_id, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// Drops the roles and the registry row, if this operation still owns the tenant
/// (a create that lost the race for the name registered nothing of its own).
fn unregister<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let slug = slug_of(run)?;
        let mut client = p.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        fence::lock_name(&tx, slug.as_str()).await?;
        if !fence::owns(&tx, run).await? {
            return Ok(Value::Null);
        }
        let tenant = run.tenant_id.expect("an owned tenant");
        // A claimed member's database is the tenant's from the claim's commit on (no
        // `clone` intent names it): dropped here, under the name lock, before the roles.
        let registered: Option<database_mode::Registered> = run.outcome("register");
        if registered.is_some_and(|r| r.member.is_some()) {
            database_mode::drop_database(p, &slug)
                .await
                .map_err(step_error)?;
        }
        database_mode::unregister(&tx, &slug, tenant)
            .await
            .map_err(step_error)?;
        tx.commit().await.map_err(failed)?;
        Ok(Value::Null)
    })
}

/// 2. The clone, declared first. A database of the name that exists already is
///    someone else's: a taken name, and never dropped.
fn clone<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let slug = slug_of(run)?;
        let registered: database_mode::Registered = run
            .outcome("register")
            .ok_or_else(|| StepError::Fenced("nothing registered".into()))?;
        if registered.member.is_some() {
            // Claimed: the member's database, renamed by `register`.
            return Ok(json!({"database": slug.schema().as_str()}));
        }
        if run.intent::<Value>("clone").is_none() {
            if database_mode::database_exists(p, &slug)
                .await
                .map_err(step_error)?
            {
                return Err(step_error(service::taken_name(&slug)));
            }
            run.intend(
                vec![Object {
                    kind: "database".into(),
                    name: slug.schema().as_str().to_string(),
                    database: None,
                    scratch: false,
                }],
                json!({"ours": true}),
            )
            .await?;
        } else if database_mode::database_exists(p, &slug)
            .await
            .map_err(step_error)?
        {
            return Ok(json!({"database": slug.schema().as_str()})); // cloned before a crash
        }
        if let Err(e) = database_mode::clone(p, &slug, registered.max_connections).await {
            if matches!(e, service::Error::Rejected(_)) {
                // It appeared between the check and the clone: not ours to drop.
                run.intend(vec![], json!({"ours": false})).await?;
            }
            return Err(step_error(e));
        }
        Ok(json!({"database": slug.schema().as_str()}))
    })
}

fn drop_clone<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let ours = run
            .intent::<Value>("clone")
            .is_some_and(|i| i["ours"] == true);
        if !ours {
            return Ok(Value::Null);
        }
        let slug = slug_of(run)?;
        let mut client = p.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        fence::lock_name(&tx, slug.as_str()).await?;
        if fence::owns(&tx, run).await? {
            database_mode::drop_database(p, &slug)
                .await
                .map_err(step_error)?;
        }
        Ok(Value::Null)
    })
}

/// 3. Inside the new database: ownership, grants, PUBLIC's privileges taken away.
fn configure<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let slug = slug_of(run)?;
        let registered: Option<database_mode::Registered> = run.outcome("register");
        configure_database(p, &slug, registered.and_then(|r| r.member).as_deref()).await?;
        Ok(Value::Null)
    })
}

/// The clone (or the claimed `member`'s database) made the tenant's: see `configure`.
/// Running it again after it committed changes nothing. `p`: the tenant's server (a
/// view, for a placed create).
pub(super) async fn configure_database(
    p: &Platform,
    slug: &Slug,
    member: Option<&str>,
) -> Result<(), StepError> {
    match member {
        Some(member) => database_mode::configure_claimed(p, slug, member).await,
        None => database_mode::configure(p, slug).await,
    }
    .map_err(step_error)?;
    super::pooler::prepare_tenant_database(p, slug.schema().as_str())
        .await
        .map_err(failed)?;
    Ok(())
}

/// 4. Active, with its API key, backup policy and audit row; the tenant given back and
///    the operation closed, in one transaction (see [`activate_registered`]).
fn activate<'a>(p: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: Params = run.params()?;
        let member = configured_at_activation(run)
            .then(|| run.outcome::<database_mode::Registered>("register"))
            .flatten()
            .and_then(|r| r.member);
        let how = Activation {
            registered_by: "register",
            name: &params.name,
            actor: &params.actor,
            backup_schedule: params.backup_schedule.as_deref(),
            announce: params.announce,
            network: true,
            alongside: member.map(|m| -> Alongside<'_> {
                let name = &params.name;
                Box::pin(async move { configure_database(p, name, Some(&m)).await })
            }),
        };
        activate_registered(p, run, how).await
    })
}

/// What a multi-step create's activation needs from its journaled params.
pub(super) struct Activation<'a> {
    /// The step whose outcome is the tenant's `database_mode::Registered`.
    pub registered_by: &'static str,
    pub name: &'a Slug,
    pub actor: &'a str,
    pub backup_schedule: Option<&'a str>,
    /// Whether it emits `tenant.created` (see [`create_as`]).
    pub announce: bool,
    /// Whether the tenant's network rules are rendered (a VPN or restricted tenant).
    pub network: bool,
    /// Work on another connection that must succeed before the activation commits,
    /// run beside its transaction.
    pub alongside: Option<Alongside<'a>>,
}

pub(super) type Alongside<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StepError>> + Send + 'a>>;

/// The last step of every multi-step create: the API key, the backup policy, the
/// configuration's version 1, `tenant.created` and the audit row, the tenant given
/// back and the operation closed, in one transaction. The answer (it carries the
/// password and the key, shown once) is journaled sealed.
pub(super) async fn activate_registered(
    p: &Runtime,
    run: &mut Run,
    how: Activation<'_>,
) -> Result<Value, StepError> {
    let registered: database_mode::Registered = run
        .outcome(how.registered_by)
        .ok_or_else(|| StepError::Fenced(format!("no {} outcome", how.registered_by)))?;
    let mut client = p.pool.get().await.map_err(failed)?;
    let tx = client.transaction().await.map_err(failed)?;
    let alongside = async {
        match how.alongside {
            Some(work) => work.await,
            None => Ok(()),
        }
    };
    // Pipelined in two round trips after `BEGIN`, as the one-transaction create's
    // (workflows/create_one.rs): what it checks and writes, then what it records (the
    // audit row there, its chain lock held until the commit, then the network's turn:
    // one lock order, the chain's head before the network's).
    // Statements run in the order they are queued; once one fails the rest fail with
    // the aborted transaction, so the first error in queue order is the one reported.
    let (op, tenant_id) = (run.id, registered.tenant_id);
    let activation = async {
        let key = crate::apikey::generate(&p.key);
        let (locked, owned, activated, policy, config, sealed) = tokio::join!(
            fence::lock_name(&tx, how.name.as_str()),
            fence::check(&tx, run),
            database_mode::activate(&tx, &registered, &key),
            crate::backup::policy::apply_at_create(
                &tx,
                tenant_id,
                &registered.plan,
                how.backup_schedule,
            ),
            crate::tenantconfig::create_default(&tx, tenant_id, &registered.plan, how.actor),
            crate::store::tenants::sealed_credentials(&tx, tenant_id),
        );
        locked?;
        owned?;
        let (tenant, key_ref) = activated.map_err(step_error)?;
        policy.map_err(super::backups::backup_error)?;
        config.map_err(|e| super::refusal(e.into()))?;
        let password = service::open_password(p, &sealed.map_err(failed)?).map_err(step_error)?;
        let credentials = service::credentials_on(
            &p.endpoint_of(&tenant.server),
            tenant.role.as_str(),
            tenant.database.as_str(),
            password,
        );
        let key_prefix = key.public_id;
        let created = CreatedTenant {
            tenant,
            api_key: key.plaintext,
            credentials,
        };
        let t = &created.tenant;
        let outcome = json!({"tenant_id": t.id, "answer": seal_value(p, &created)?});
        let response = seal_response(
            p,
            &StoredResponse::Success(serde_json::to_value(&created).map_err(failed)?),
        )
        .map_err(step_error)?;
        let (announced, audited, network, released, finished) = tokio::join!(
            async {
                match how.announce {
                    true => crate::tenant::create::announce_created(&tx, t, key_ref, None).await,
                    false => Ok(()),
                }
            },
            database_mode::audit_created(&tx, t, &registered, &key_prefix, how.actor, op),
            async {
                match how.network {
                    true => super::network::touch(p, &tx, t, false).await,
                    false => Ok(None),
                }
            },
            fence::release_by(&tx, tenant_id, op),
            // Undone with the transaction if the work alongside fails: the engine
            // reads a run's `closed` only after its step succeeded.
            run.finish_in(&tx, &outcome, Some(&response)),
        );
        announced.map_err(step_error)?;
        audited.map_err(step_error)?;
        let network = network.map_err(super::refusal)?;
        released?;
        finished?;
        Ok::<_, StepError>((outcome, network))
    };
    let (activation, alongside) = tokio::join!(activation, alongside);
    let (outcome, network) = activation?;
    alongside?;
    tx.commit().await.map_err(failed)?;
    drop(client);
    super::network::follow(p, network).await;
    Ok(outcome)
}

/// What the start of an operation says about the request: `None` to go on, or the
/// answer to give now (a replay, or a refusal of the key).
pub(super) fn settled(p: &Platform, begun: Begin) -> Option<Result<CreatedTenant, Error>> {
    match begun {
        Begin::Started => None,
        Begin::Replay(sealed) => Some(replay(p, &sealed)),
        Begin::InProgress => Some(Err(ops::OpError::InProgress.into())),
        Begin::Mismatch => Some(Err(ops::OpError::Mismatch.into())),
    }
}

pub(super) fn seal_response(p: &Platform, r: &StoredResponse) -> Result<Vec<u8>, service::Error> {
    Ok(p.key.seal(&serde_json::to_vec(r)?))
}

pub(super) fn replay(p: &Platform, sealed: &[u8]) -> Result<CreatedTenant, Error> {
    let opened = p.key.open(sealed).map_err(service::Error::from)?;
    match serde_json::from_slice::<StoredResponse>(&opened).map_err(service::Error::from)? {
        StoredResponse::Success(v) => Ok(serde_json::from_value(v).map_err(service::Error::from)?),
        StoredResponse::Failure(problem) => Err(Error::Rejected(problem)),
    }
}

/// A refused request under an idempotency key is answered the same way next time;
/// an outage is not remembered, so the client may retry.
pub(super) async fn remember_rejection(
    rt: &Runtime,
    idem: Option<&Idempotency>,
    name: &str,
    e: Error,
) -> Result<CreatedTenant, Error> {
    let (Some(idem), Error::Rejected(problem)) = (idem, &e) else {
        return Err(e);
    };
    let p = &rt.platform;
    let client = p.pool.get().await?;
    let op_id = Uuid::now_v7();
    let begun = ops::begin(
        &client,
        &NewOperation {
            id: op_id,
            kind: CREATE,
            tenant_id: None,
            tenant_name: name,
            idempotency: Some(idem),
            params: None,
            instance: Some(rt.engine.instance()),
            plan: None,
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
        Begin::Mismatch => Err(ops::OpError::Mismatch.into()),
        Begin::InProgress => Err(e),
    }
}
