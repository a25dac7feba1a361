//! A tenant on a server other than `default` (docs/servers.md): its registry row on
//! the control database, its roles and schema (or database) on its server. No
//! transaction spans two servers, so a placed create is steps
//! (`workflows::create_placed`): [`register`] the row, [`make`] the objects there,
//! then the activation every multi-step create ends with. [`unmake`] undoes [`make`].
//!
//! Functions taking a `view` (`Platform::on(server)`) touch only that server; the
//! registry is read and written through the control platform.

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::database_mode::{self, Registered};
use super::service::{self, Error, Validated};
use super::{shared_mode, Isolation, Slug, Status};
use crate::isolation::database as dbsql;
use crate::isolation::shared;
use crate::isolation::{schema::SchemaPerTenant, Provision, Strategy};
use crate::pg::{hardening, Ident};
use crate::platform::Platform;
use crate::secrets::SecretString;
use crate::store::tenants;

type Result<T, E = Error> = std::result::Result<T, E>;

/// The registry row (`provisioning`, on `server`), with no object anywhere yet;
/// inside the caller's control transaction, which holds the name lock. The password
/// is sealed into the row, where [`make`] and the activation open it. `member`: a warm
/// pool member on that server the caller claimed in this transaction: the tenant
/// takes its password (its login role has it already).
pub async fn register(
    p: &Platform,
    tx: &Transaction<'_>,
    v: &Validated,
    tenant_id: Uuid,
    (server, server_database): (&str, &str),
    member: Option<&crate::store::warm_pool::Member>,
) -> Result<Registered> {
    let slug = &v.slug;
    if tenants::find(tx, slug.as_str()).await?.is_some() {
        return Err(service::taken_name(slug));
    }
    let plan = service::find_plan(tx, &v.plan).await?;
    let quota = v.db_quota_bytes.unwrap_or(plan.quotas.db_quota_bytes);
    let trial_days = v.trial_days(&plan);
    let sealed = match member.and_then(|m| m.credentials.clone()) {
        Some(sealed) => sealed,
        None => {
            let (password, _verifier) = crate::secrets::new_password();
            p.key.seal(&service::seal_password(&password)?)
        }
    };
    let database = match v.isolation {
        Isolation::Database => slug.schema().as_str().to_string(),
        _ => server_database.to_string(),
    };
    // A shared-mode tenant's rows are in its server's pool (its version is the pool's:
    // `make` records it once it has read it there).
    let schema = match v.isolation {
        Isolation::Shared => crate::isolation::shared::POOL_SCHEMA.to_string(),
        _ => slug.schema().as_str().to_string(),
    };
    tenants::insert(
        tx,
        &tenants::NewTenant {
            id: tenant_id,
            name: slug.as_str(),
            status: Status::Provisioning,
            plan: &plan.name,
            isolation: v.isolation,
            schema: Some(&schema),
            database: &database,
            login_role: slug.login_role().as_str(),
            owner_role: slug.owner_role().as_str(),
            db_quota_bytes: quota,
            vpn_enabled: v.vpn_enabled,
            public_api: v.public_api,
            template_version: p.template.latest_version(),
            metadata: &v.metadata,
            credentials: &sealed,
            trial_days,
        },
    )
    .await
    .map_err(|e| service::taken_row(e, slug))?;
    crate::store::servers::place_tenant(tx, tenant_id, server).await?;
    Ok(Registered {
        tenant_id,
        plan: plan.name,
        db_quota_bytes: quota,
        trial_days,
        max_connections: plan.quotas.max_connections,
        member: member.map(|m| m.key.clone()),
    })
}

/// Whether the tenant's roles are on the server already (made before a crash, or
/// someone else's: the caller's journal tells which).
pub async fn roles_exist(view: &Platform, slug: &Slug) -> Result<bool> {
    Ok(view
        .pool
        .get()
        .await?
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&slug.owner_role().as_str()],
        )
        .await?
        .is_some())
}

/// The tenant's roles and schema (schema mode: in the server URL's database, one
/// transaction there), roles and cloned database (database mode), or roles and their
/// member rows in the server's shared pool (shared mode; the pool built there first
/// if it is not) on its server. Runs again after a crash: what was made is found and
/// kept. Returns, in shared mode, the pool's template version (the tenant's).
pub async fn make(
    control: &Platform,
    view: &Platform,
    server: &str,
    slug: &Slug,
    isolation: Isolation,
    password: &SecretString,
    registered: &Registered,
) -> Result<Option<i32>> {
    let plan = {
        let mut c = control.pool.get().await?;
        let tx = c.transaction().await?;
        service::find_plan(&tx, &registered.plan).await?
    };
    let limits = service::limits(view, &plan, registered.db_quota_bytes);
    let for_verifier = password.clone();
    let verifier = tokio::task::spawn_blocking(move || {
        use crate::secrets::ExposeSecret;
        postgres_protocol::password::scram_sha_256(for_verifier.expose_secret().as_bytes())
    })
    .await
    .expect("computing a SCRAM verifier does not panic");
    let roles: Vec<String> = slug.fixed_role_names();
    let made_before = roles_exist(view, slug).await?;
    match isolation {
        Isolation::Database => {
            if !made_before {
                let mut c = view.pool.get().await?;
                let tx = c.transaction().await?;
                tx.batch_execute(&dbsql::roles_sql(
                    slug,
                    &verifier,
                    &limits,
                    !view.caps.superuser,
                ))
                .await
                .map_err(|e| service::taken(e, slug))?;
                hardening::check(&tx, &roles).await?;
                tx.commit().await?;
            }
            if !database_mode::database_exists(view, slug).await? {
                database_mode::clone_current_on(
                    control,
                    view,
                    server,
                    slug,
                    registered.max_connections,
                )
                .await?;
            }
            database_mode::configure(view, slug).await?;
        }
        Isolation::Shared => {
            // Built there by the first shared-mode tenant (docs/servers.md).
            shared_mode::ensure_pool_on(view).await?;
            // The version read and the member rows made under the pool's lock, shared:
            // a migration of the pool does not slip in between.
            let mut c = view.pool.get().await?;
            let tx = c.transaction().await?;
            let version = shared_mode::share_pool(&tx).await?;
            if !made_before {
                let login =
                    crate::isolation::create_login_role(&slug.login_role(), &verifier, &limits);
                tx.batch_execute(&shared::create_sql(
                    slug,
                    &registered.tenant_id.to_string(),
                    &login,
                    !view.caps.superuser,
                ))
                .await
                .map_err(|e| service::taken(e, slug))?;
                hardening::check(&tx, &roles).await?;
            }
            tx.commit().await?;
            return Ok(Some(version));
        }
        Isolation::Schema => {
            if made_before {
                return Ok(None);
            }
            let mut c = view.pool.get().await?;
            let tx = c.transaction().await?;
            let sql = SchemaPerTenant.create_sql(&Provision {
                slug,
                password_verifier: &verifier,
                limits: &limits,
                template_sql: &view.template.full_sql(),
                grant_owner_to_creator: !view.caps.superuser,
            });
            tx.batch_execute(&sql)
                .await
                .map_err(|e| service::taken(e, slug))?;
            hardening::check(&tx, &roles).await?;
            tx.commit().await?;
        }
    }
    Ok(None)
}

/// Drops what [`make`] made on the server: the database (its sessions ended), the
/// schema and the roles. Idempotent. The caller made sure they are its own.
pub async fn unmake(view: &Platform, slug: &Slug, isolation: Isolation) -> Result<()> {
    if isolation == Isolation::Database {
        database_mode::drop_database(view, slug).await?;
    }
    let mut c = view.pool.get().await?;
    let tx = c.transaction().await?;
    let wanted: Vec<Ident> = slug.fixed_roles();
    let names: Vec<&str> = wanted.iter().map(|r| r.as_str()).collect();
    let present: Vec<String> = tx
        .query(
            "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname = ANY($1)",
            &[&names],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let existing: Vec<Ident> = wanted
        .into_iter()
        .filter(|r| present.iter().any(|p| p == r.as_str()))
        .collect();
    if isolation == Isolation::Shared {
        leave_pool(&tx, &existing).await?;
    }
    tx.batch_execute(&SchemaPerTenant.drop_sql(slug, &existing))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// A shared-mode tenant's rows and member rows gone from its server's pool, found by
/// its `roles`' member rows (none: nothing to do); inside `tx`, before the roles go.
async fn leave_pool(tx: &Transaction<'_>, roles: &[Ident]) -> Result<()> {
    if roles.is_empty() || shared_mode::pool_version_on(tx).await?.is_none() {
        return Ok(());
    }
    let tables = crate::isolation::pool_catalog::pool_tables(&**tx).await?;
    let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    let roles: Vec<&str> = roles.iter().map(Ident::as_str).collect();
    tx.batch_execute(&shared::purge_roles_rows_sql(&names, &roles))
        .await?;
    Ok(())
}

/// Whether the tenant's objects are on the server (its schema or its database).
pub async fn present(view: &Platform, slug: &Slug, isolation: Isolation) -> Result<bool> {
    if isolation == Isolation::Database {
        return database_mode::database_exists(view, slug).await;
    }
    let c = view.pool.get().await?;
    Ok(c.query_opt(
        "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
        &[&slug.schema().as_str()],
    )
    .await?
    .is_some())
}

/// A purge's drop on the tenant's server: its sessions ended, what its roles own in
/// other databases there, its database (database mode), its schema, then its roles,
/// users' first (`users`: their login roles, read from the registry). Idempotent;
/// returns the roles it dropped now.
pub async fn purge(
    view: &Platform,
    slug: &Slug,
    isolation: Isolation,
    users: &[Ident],
) -> Result<Vec<String>> {
    let mut wanted: Vec<Ident> = users.to_vec();
    wanted.extend(slug.fixed_roles());
    let mut c = view.pool.get().await?;
    let tx = c.transaction().await?;
    let names: Vec<&str> = wanted.iter().map(|r| r.as_str()).collect();
    let present: Vec<String> = tx
        .query(
            "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname = ANY($1)",
            &[&names],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut roles: Vec<Ident> = Vec::new();
    for r in wanted {
        if present.iter().any(|p| p == r.as_str()) && !roles.contains(&r) {
            roles.push(r);
        }
    }
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    service::terminate_sessions(&tx, &names).await?;
    let own_database = (isolation == Isolation::Database).then(|| slug.schema());
    crate::access::owned::drop_owned_elsewhere(
        view,
        &tx,
        &roles,
        own_database.as_ref().map(|d| d.as_str()),
    )
    .await?;
    if isolation == Isolation::Database {
        database_mode::drop_database(view, slug).await?;
    }
    if isolation == Isolation::Shared {
        leave_pool(&tx, &roles).await?;
    }
    tx.batch_execute(&SchemaPerTenant.drop_sql(slug, &roles))
        .await?;
    tx.commit().await?;
    Ok(roles.iter().map(|r| r.as_str().to_string()).collect())
}
