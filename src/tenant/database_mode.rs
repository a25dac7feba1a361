//! Database per tenant: the template database every tenant's is cloned from, and the
//! parts of a creation, one per step of the `tenant.create.database` operation
//! (`workflows::create`): roles and registry row, the clone (no transaction can hold
//! `CREATE DATABASE`), its configuration, activation.

use deadpool_postgres::{GenericClient, Transaction};
use uuid::Uuid;

use super::service::{self, Error, Validated};
use super::{Isolation, Slug, Status};
use crate::isolation::database as sql;
use crate::isolation::Strategy;
use crate::pg::{self, hardening, Ident};
use crate::platform::Platform;
use crate::store::warm_pool::Member;
use crate::store::{self, tenants};
use crate::{apikey, audit};

type Result<T, E = Error> = std::result::Result<T, E>;

/// Any constant; serialises template rebuilds between servers starting together.
const TEMPLATE_LOCK: i64 = 0x6265_7271_746d_706c; // "berqtmpl"

fn template_db(p: &Platform) -> Ident {
    sql::template_db(&p.endpoint.database)
}

/// Opens a connection to another database of the platform's server.
async fn connect_to(p: &Platform, database: &str) -> Result<tokio_postgres::Client> {
    let mut config = p.config.clone();
    config.dbname(database);
    Ok(pg::connect(&config).await?)
}

/// Installs the realtime trigger functions every tenant of a database shares
/// (`isolation::realtime_triggers`) in `database`, as the control role. Idempotent.
pub async fn install_realtime_triggers(p: &Platform, database: &str) -> Result<()> {
    connect_to(p, database)
        .await?
        .batch_execute(crate::isolation::realtime_triggers::INSTALL_SQL)
        .await?;
    Ok(())
}

/// Makes sure the template database exists at the current tenant template, rebuilding
/// it when the template changed. Runs at start.
pub async fn ensure_template(p: &Platform) -> Result<()> {
    let admin = template_session(p, true).await?;
    let key = template_db(p);
    rebuild_if_stale(p, &p.pool, key.as_str(), &admin).await
}

/// [`ensure_template`] on another server (`view`: `Platform::on(server)`): its
/// template database is built there, and recorded in the control registry (`control`)
/// under `<server>/<template database>`.
pub async fn ensure_template_on(control: &Platform, view: &Platform, server: &str) -> Result<()> {
    let admin = template_session(view, true).await?;
    let key = format!("{server}/{}", template_db(view));
    rebuild_if_stale(view, &control.pool, &key, &admin).await
}

/// Whether the template database of another server (`view`) is missing or older than
/// this process's template, as the control registry (`control`) and that server say:
/// what [`ensure_template_on`] would rebuild. `session` is any session of that server
/// (the one holding the template lock, when the answer must hold until a clone).
async fn template_stale_with(
    control: &Platform,
    view: &Platform,
    server: &str,
    session: &tokio_postgres::Client,
) -> Result<bool> {
    let key = format!("{server}/{}", template_db(view));
    let recorded = store::templates::built(&control.pool.get().await?, &key).await?;
    if recorded != Some(wanted(view)) {
        return Ok(true);
    }
    let exists = session
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&template_db(view).as_str()],
        )
        .await?
        .is_some();
    Ok(!exists)
}

/// [`template_stale_with`] on a pooled session (a migration run's look, which takes
/// no lock).
pub async fn template_stale_on(control: &Platform, view: &Platform, server: &str) -> Result<bool> {
    let session = view.pool.get().await?;
    template_stale_with(control, view, server, &session).await
}

/// The tenant's database on another server (`view`), cloned from a template database
/// at this process's template. The check and the clone hold one template lock: a
/// rebuild to another template (a migration run, or an instance of another release
/// during a rolling upgrade) cannot slip in between and hand the tenant objects of a
/// version its registry row does not say. A stale template is rebuilt under the
/// exclusive lock and cloned before that lock is let go, so two releases taking
/// turns at the template cannot keep a create from its clone.
pub async fn clone_current_on(
    control: &Platform,
    view: &Platform,
    server: &str,
    slug: &Slug,
    connection_limit: i32,
) -> Result<()> {
    let session = current_template_session(control, view, server).await?;
    clone_with(&session, view, slug, connection_limit).await
}

/// A warm pool member's database on `server` (docs/warm_pool.md), cloned from that
/// server's template database as [`clone_current_on`] clones a tenant's.
pub async fn clone_member_on(
    control: &Platform,
    view: &Platform,
    server: &str,
    member: &Slug,
) -> Result<()> {
    let session = current_template_session(control, view, server).await?;
    session
        .batch_execute(&sql::member_clone_sql(member, &template_db(view)))
        .await?;
    Ok(())
}

/// A session holding the template lock on `view`'s server, its template database
/// current: the lock shared when it is, else exclusive while it is rebuilt.
async fn current_template_session(
    control: &Platform,
    view: &Platform,
    server: &str,
) -> Result<tokio_postgres::Client> {
    let shared = template_session(view, false).await?;
    if !template_stale_with(control, view, server, &shared).await? {
        return Ok(shared);
    }
    drop(shared);
    let exclusive = template_session(view, true).await?;
    let key = format!("{server}/{}", template_db(view));
    rebuild_if_stale(view, &control.pool, &key, &exclusive).await?;
    Ok(exclusive)
}

/// What a current template database records: the template's version, and its checksum
/// with the hardening level (a release that takes more from PUBLIC rebuilds it once).
fn wanted(p: &Platform) -> (i32, String) {
    (
        p.template.latest_version(),
        format!(
            "{}+h{}",
            p.template.checksum(),
            crate::pg::hardening::DATABASE_LEVEL
        ),
    )
}

/// A session of the control database holding the template lock: exclusively while
/// one connects to the template database (to build or change it), shared while one
/// clones it. `CREATE DATABASE ... TEMPLATE` fails when anyone else is connected to
/// the template for more than 5 s; with the lock a clone waits instead. The lock is a
/// session's own, so it ends with the session however its holder ends.
pub async fn template_session(p: &Platform, exclusive: bool) -> Result<tokio_postgres::Client> {
    let session = connect_to(p, &p.endpoint.database).await?;
    let take = if exclusive {
        "SELECT pg_catalog.pg_advisory_lock($1)"
    } else {
        "SELECT pg_catalog.pg_advisory_lock_shared($1)"
    };
    session.execute(take, &[&TEMPLATE_LOCK]).await?;
    Ok(session)
}

async fn rebuild_if_stale(
    p: &Platform,
    registry: &deadpool_postgres::Pool,
    key: &str,
    admin: &tokio_postgres::Client,
) -> Result<()> {
    let (version, checksum) = wanted(p);
    // The registry is read and written on a pooled session; `admin` holds the lock.
    let registry = registry.get().await?;
    let recorded = store::templates::built(&registry, key).await?;
    let exists = admin
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&template_db(p).as_str()],
        )
        .await?
        .is_some();
    if exists && recorded.as_ref() == Some(&(version, checksum.clone())) {
        return Ok(());
    }
    let db = template_db(p);
    let owner = Ident::new(sql::TEMPLATE_OWNER).expect("static name");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&pg::ensure_nologin_role_sql(&owner))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await?;
    // Until this commits PUBLIC may connect, so another control plane of the cluster
    // closing every open database at its start may be revoking on the same row.
    hardening::transaction_retrying(
        admin,
        &format!("REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC;"),
    )
    .await?;
    let template = connect_to(p, template_db(p).as_str()).await?;
    template
        .batch_execute(&format!(
            "BEGIN;\n{}\nCOMMIT;",
            sql::template_sql(&p.template.full_sql(), !p.caps.superuser)
        ))
        .await?;
    drop(template);
    store::templates::set_built(&registry, key, version, &checksum).await?;
    tracing::info!(version, "built the tenant template database");
    Ok(())
}

/// What a database-mode create registered in its first step.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Registered {
    pub tenant_id: Uuid,
    pub plan: String,
    pub db_quota_bytes: i64,
    pub trial_days: i32,
    pub max_connections: i32,
    /// The key of the warm pool member the create claimed (docs/warm_pool.md): its
    /// database and roles were renamed to the tenant's, not made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

/// The tenant's roles and its registry row (status `provisioning`), inside the
/// caller's transaction; the caller holds (or has queued before this) the name lock
/// and has [`super::create::precheck`]ed. The password is sealed into the registry (a
/// later step opens it from there).
pub async fn register(
    p: &Platform,
    tx: &Transaction<'_>,
    v: &Validated,
    pre: super::create::Prechecked,
    tenant_id: Uuid,
) -> Result<Registered> {
    register_from(p, tx, v, pre, tenant_id, None).await
}

/// [`register`] of a warm pool member the caller claimed in this transaction: its
/// roles and its database renamed to the tenant's (no session is ever on a member's
/// database), the login given its password and limits, the database its connection
/// limit; the schema inside it is renamed by [`configure_claimed`].
pub async fn register_claimed(
    p: &Platform,
    tx: &Transaction<'_>,
    v: &Validated,
    pre: super::create::Prechecked,
    tenant_id: Uuid,
    member: &Member,
) -> Result<Registered> {
    register_from(p, tx, v, pre, tenant_id, Some(member)).await
}

async fn register_from(
    p: &Platform,
    tx: &Transaction<'_>,
    v: &Validated,
    pre: super::create::Prechecked,
    tenant_id: Uuid,
    member: Option<&Member>,
) -> Result<Registered> {
    let slug = &v.slug;
    let plan = pre.plan;
    let quota = v.db_quota_bytes.unwrap_or(plan.quotas.db_quota_bytes);
    let trial_days = v.trial_days(&plan);
    let login = super::credentials::login_for(p, member).await?;
    let limits = service::limits(p, &plan, quota);
    let made = match member {
        Some(m) => crate::isolation::warm::claim_sql(
            crate::isolation::warm::Mode::Database,
            &Slug::warm_member(&m.key).expect("the table's CHECK keeps keys 20 hex digits"),
            slug,
            login.verifier.as_deref(),
            &limits,
        ),
        None => sql::roles_sql(
            slug,
            login.verifier.as_deref().unwrap_or_default(),
            &limits,
            !p.caps.superuser,
        ),
    };
    let roles: Vec<String> = slug.fixed_role_names();
    let database = slug.schema();
    let (login_role, owner_role) = (slug.login_role(), slug.owner_role());
    let row = tenants::NewTenant {
        id: tenant_id,
        name: slug.as_str(),
        status: Status::Provisioning,
        plan: &plan.name,
        isolation: Isolation::Database,
        schema: Some(database.as_str()),
        database: database.as_str(),
        login_role: login_role.as_str(),
        owner_role: owner_role.as_str(),
        db_quota_bytes: quota,
        vpn_enabled: v.vpn_enabled,
        public_api: v.public_api,
        template_version: p.template.latest_version(),
        metadata: &v.metadata,
        credentials: &login.sealed,
        trial_days,
    };
    // Pipelined: one round trip; the first error in queue order is the one reported.
    let (made, checked, inserted) = tokio::join!(
        tx.batch_execute(&made),
        async {
            // A claimed member's roles were checked at its refill; a claim changes
            // none of their privileges.
            match member {
                None => hardening::check(tx, &roles).await,
                Some(_) => Ok(()),
            }
        },
        tenants::insert(tx, &row),
    );
    made.map_err(|e| service::taken(e, slug))?;
    checked?;
    inserted.map_err(|e| service::taken_row(e, slug))?;
    Ok(Registered {
        tenant_id,
        plan: plan.name,
        db_quota_bytes: quota,
        trial_days,
        max_connections: plan.quotas.max_connections,
        member: member.map(|m| m.key.clone()),
    })
}

/// Undoes [`register`]: the tenant's roles (users first) and its registry row, inside
/// the caller's transaction. The caller made sure they are its own to drop.
pub async fn unregister(tx: &Transaction<'_>, slug: &Slug, tenant_id: Uuid) -> Result<()> {
    let roles = service::existing_roles(tx, slug).await?;
    tx.batch_execute(&crate::isolation::schema::SchemaPerTenant.drop_sql(slug, &roles))
        .await?;
    tenants::delete(tx, tenant_id).await?;
    Ok(())
}

/// Whether a database of the tenant's name exists.
pub async fn database_exists(p: &Platform, slug: &Slug) -> Result<bool> {
    Ok(p.pool
        .get()
        .await?
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[&slug.schema().as_str()],
        )
        .await?
        .is_some())
}

/// The clone of the template database (no transaction possible). A database of that
/// name that appeared meanwhile is someone else's: a taken name.
pub async fn clone(p: &Platform, slug: &Slug, connection_limit: i32) -> Result<()> {
    let session = template_session(p, false).await?;
    clone_with(&session, p, slug, connection_limit).await
}

/// The clone, on a session holding the shared template lock.
async fn clone_with(
    client: &tokio_postgres::Client,
    p: &Platform,
    slug: &Slug,
    connection_limit: i32,
) -> Result<()> {
    match client
        .batch_execute(&sql::clone_sql(slug, &template_db(p), connection_limit))
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {
            Err(service::taken(e, slug))
        }
        Err(e) => Err(e.into()),
    }
}

/// A warm pool member's database, cloned from the template (no transaction possible).
pub async fn clone_member(p: &Platform, member: &Slug) -> Result<()> {
    let client = template_session(p, false).await?;
    client
        .batch_execute(&sql::member_clone_sql(member, &template_db(p)))
        .await?;
    Ok(())
}

/// Drops the tenant's database (its sessions ended). Idempotent.
pub async fn drop_database(p: &Platform, slug: &Slug) -> Result<()> {
    p.pool
        .get()
        .await?
        .batch_execute(&sql::drop_database_sql(slug))
        .await?;
    Ok(())
}

/// Makes the clone the tenant's, inside the new database: ownership, grants, PUBLIC's
/// privileges taken away, checked. One transaction there; running it again after it
/// committed finds nothing left to rename (and changes nothing).
pub async fn configure(p: &Platform, slug: &Slug) -> Result<()> {
    configure_from(p, slug, None).await
}

/// [`configure`] of a claimed warm pool member's database: configured when it was
/// made, under the member's name; only its schema is renamed to the tenant's.
pub async fn configure_claimed(p: &Platform, slug: &Slug, member: &str) -> Result<()> {
    let member = Slug::warm_member(member).expect("the table's CHECK keeps keys 20 hex digits");
    configure_from(p, slug, Some(&member)).await
}

/// A warm pool member's database, made the member's (as [`configure`] makes a
/// tenant's), under the member's names.
pub async fn configure_member(p: &Platform, member: &Slug) -> Result<()> {
    let db = connect_to(p, member.schema().as_str()).await?;
    let done = db
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
            &[&member.schema().as_str()],
        )
        .await?
        .is_some();
    if !done {
        hardening::transaction_retrying(&db, &sql::configure_sql(member)).await?;
    }
    // What a claim would otherwise do in the database (`claimed_in_one`): the gate,
    // with no limits until the claim sets its plan's, and the least-privilege check.
    store::realtime_gate::install(&db).await?;
    let roles: Vec<String> = member.fixed_role_names();
    hardening::check_client(&db, &roles).await?;
    Ok(())
}

async fn configure_from(p: &Platform, slug: &Slug, member: Option<&Slug>) -> Result<()> {
    let database = slug.schema();
    let tenant_db = match member {
        Some(m) => {
            let (db, limits) =
                tokio::join!(connect_to(p, database.as_str()), realtime_limits(p, slug));
            let db = db?;
            if claimed_in_one(&db, slug, m, limits?).await? {
                return Ok(());
            }
            db
        }
        None => connect_to(p, database.as_str()).await?,
    };
    let renamed = tenant_db
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
            &[&slug.schema().as_str()],
        )
        .await?
        .is_some();
    if !renamed {
        let configure = match member {
            Some(m) => crate::isolation::warm::rename_schema_sql(m, slug),
            None => sql::configure_sql(slug),
        };
        hardening::transaction_retrying(&tenant_db, &configure).await?;
    }
    sync_realtime_gate(p, &tenant_db, slug).await?;
    let roles: Vec<String> = slug.fixed_role_names();
    hardening::check_client(&tenant_db, &roles).await?;
    Ok(())
}

/// A claimed member's database as its refill left it (the realtime gate installed,
/// the roles and the database's PUBLIC privileges checked; a claim changes no
/// privilege): its schema renamed to the tenant's and the gate's limits set, in one
/// implicit transaction (plain SQL: a `DO` block would load PL/pgSQL into the fresh
/// session first, about a millisecond). `false`: the schema renamed already (a claim
/// run again after a crash), or a member made before members had their gate (none to
/// set limits on); the caller configures what is left.
async fn claimed_in_one(
    tenant_db: &tokio_postgres::Client,
    slug: &Slug,
    member: &Slug,
    (per_minute, per_hour): (i32, i32),
) -> Result<bool> {
    let rename = crate::isolation::warm::rename_schema_sql(member, slug);
    match store::realtime_gate::set_limits(tenant_db, &rename, per_minute, per_hour).await {
        Ok(()) => Ok(true),
        Err(store::Error::Db(e))
            if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
                || e.code() == Some(&tokio_postgres::error::SqlState::INVALID_SCHEMA_NAME) =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// The tenant's realtime limits (per minute, per hour) as the registry holds them.
async fn realtime_limits(p: &Platform, slug: &Slug) -> Result<(i32, i32)> {
    // `p` may be a view on another server (docs/servers.md): the registry is not there.
    let control = p.control().get().await?;
    let t = tenants::find(&control, slug.as_str())
        .await?
        .ok_or_else(|| service::Error::not_found(slug.as_str()))?;
    let q = store::found(store::quotas::effective(&control, t.id).await?)?;
    Ok((q.realtime_events_per_minute, q.realtime_events_per_hour))
}

/// The realtime gate inside the new database, with the tenant's realtime limits as
/// the registry holds them (the tenant is registered before its database is made).
async fn sync_realtime_gate(
    p: &Platform,
    tenant_db: &tokio_postgres::Client,
    slug: &Slug,
) -> Result<()> {
    let (per_minute, per_hour) = realtime_limits(p, slug).await?;
    store::realtime_gate::sync(tenant_db, per_minute, per_hour).await?;
    Ok(())
}

/// The tenant becomes active (or trial), with its first API key `key`; inside the
/// caller's transaction. Returns the tenant, and the key as the `tenant.created` event
/// names it.
pub async fn activate(
    tx: &Transaction<'_>,
    r: &Registered,
    key: &apikey::NewApiKey,
) -> Result<(super::Tenant, crate::store::outbox::data::KeyRef)> {
    let status = if r.trial_days > 0 {
        Status::Trial
    } else {
        Status::Active
    };
    // Pipelined: one round trip.
    let (tenant, stored) = tokio::join!(
        tenants::set_status(tx, r.tenant_id, status),
        store::api_keys::insert(tx, r.tenant_id, None, None, &key.public_id, &key.hash),
    );
    let (tenant, stored) = (tenant?, stored?);
    let key_ref = crate::store::outbox::data::KeyRef {
        id: stored.id,
        prefix: stored.prefix,
    };
    Ok((tenant, key_ref))
}

/// The audit row of a tenant created in steps (database mode, and a staged schema- or
/// shared-mode create).
pub async fn audit_created(
    tx: &Transaction<'_>,
    t: &super::Tenant,
    r: &Registered,
    key_prefix: &str,
    actor: &str,
    op: Uuid,
) -> Result<()> {
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "tenant_created",
            tenant_id: Some(t.id),
            tenant_name: Some(t.name.as_str()),
            operation_id: Some(op),
            details: audit_details(t, &r.plan, r.db_quota_bytes, key_prefix),
        },
    )
    .await?;
    Ok(())
}

/// The details of a database-mode tenant's `tenant_created` audit row, however it was
/// made (in steps, or claimed in one transaction: `super::create::audit_created`).
pub(super) fn audit_details(
    t: &super::Tenant,
    plan: &str,
    db_quota_bytes: i64,
    key_prefix: &str,
) -> serde_json::Value {
    serde_json::json!({
        "plan": plan, "isolation": t.isolation.as_str(), "database": t.database.as_str(),
        "db_quota_bytes": db_quota_bytes, "api_key_prefix": key_prefix,
    })
}

/// Deletes a database-mode tenant: the database (its sessions ended), then its roles
/// and registry row in one transaction.
pub async fn drop_tenant(p: &Platform, tx: &Transaction<'_>, slug: &Slug) -> Result<Vec<Ident>> {
    let roles = service::existing_roles(tx, slug).await?;
    let admin = connect_to(p, &p.endpoint.database).await?;
    admin.batch_execute(&sql::drop_database_sql(slug)).await?;
    tx.batch_execute(&crate::isolation::schema::SchemaPerTenant.drop_sql(slug, &roles))
        .await?;
    Ok(roles)
}
