//! Database-per-tenant provisioning. `CREATE DATABASE` cannot run in a transaction, so
//! this is the step engine for real: the operation is recorded before any work, each
//! step is recorded (a non-transactional one as `started` before it runs), and a
//! failure, or after a crash the reconciler, reverts what the steps left.

use deadpool_postgres::{GenericClient, Transaction};
use uuid::Uuid;

use super::service::{self, CreatedTenant, Error, Validated};
use super::{Isolation, Slug, Status};
use crate::isolation::database as sql;
use crate::isolation::Strategy;
use crate::ops::{self, failpoint, Idempotency, NewOperation, StoredResponse};
use crate::pg::{self, hardening, Ident};
use crate::platform::Platform;
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

/// Makes sure the template database exists at the current tenant template, rebuilding
/// it when the template changed. Runs at start.
pub async fn ensure_template(p: &Platform) -> Result<()> {
    let admin = connect_to(p, &p.endpoint.database).await?;
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
        .await?;
    let result = rebuild_if_stale(p, &admin).await;
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await?;
    result
}

async fn rebuild_if_stale(p: &Platform, admin: &tokio_postgres::Client) -> Result<()> {
    // The hardening level is part of what the template database was built at: a
    // release that takes more from PUBLIC rebuilds it once.
    let (version, checksum) = (
        p.template.latest_version(),
        format!(
            "{}+h{}",
            p.template.checksum(),
            crate::pg::hardening::DATABASE_LEVEL
        ),
    );
    // The registry is read and written on a pooled session; `admin` holds the lock.
    let registry = p.pool.get().await?;
    let recorded = store::templates::built(&registry, template_db(p).as_str()).await?;
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
    admin
        .batch_execute(&format!(
            "REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC"
        ))
        .await?;
    let template = connect_to(p, template_db(p).as_str()).await?;
    template
        .batch_execute(&format!(
            "BEGIN;\n{}\nCOMMIT;",
            sql::template_sql(&p.template.full_sql(), !p.caps.superuser)
        ))
        .await?;
    drop(template);
    store::templates::set_built(&registry, template_db(p).as_str(), version, &checksum).await?;
    tracing::info!(version, "built the tenant template database");
    Ok(())
}

async fn record_step(
    c: &impl GenericClient,
    op: Uuid,
    seq: i32,
    name: &str,
    state: &str,
) -> Result<()> {
    c.execute(
        "INSERT INTO berqenas.operation_steps (operation_id, seq, name, state) VALUES ($1, $2, $3, $4)
         ON CONFLICT (operation_id, seq) DO UPDATE SET state = EXCLUDED.state, at = now()",
        &[&op, &seq, &name, &state],
    )
    .await?;
    c.execute(
        "UPDATE berqenas.operations SET lease_until = now() + make_interval(secs => $2) WHERE id = $1",
        &[&op, &ops::lease_secs()],
    )
    .await?;
    Ok(())
}

/// Creates a database-mode tenant, step by step.
pub(crate) async fn create(
    p: &Platform,
    v: &Validated,
    idem: Option<&Idempotency>,
    actor: &str,
) -> Result<CreatedTenant> {
    let client = p.pool.get().await?;
    let op_id = Uuid::now_v7();
    let tenant_id = Uuid::now_v7();
    let begun = ops::begin(
        &client,
        &NewOperation {
            id: op_id,
            kind: "tenant.create",
            tenant_id: Some(tenant_id),
            tenant_name: v.slug.as_str(),
            idempotency: idem,
            params: None,
            instance: None,
        },
    )
    .await?;
    if let Some(answer) = service::settled(p, begun) {
        return answer;
    }
    drop(client);
    match run_steps(p, v, op_id, tenant_id, actor).await {
        Ok(created) => {
            let sealed = service::seal_response(
                p,
                &StoredResponse::Success(serde_json::to_value(&created)?),
            )?;
            let client = p.pool.get().await?;
            ops::succeed(&client, op_id, &[], idem.map(|_| sealed.as_slice())).await?;
            tracing::info!(tenant.name = %created.tenant.name, "database-mode tenant created");
            crate::metrics::tenant_created();
            Ok(created)
        }
        Err(e) => {
            revert(p, &v.slug, op_id).await?;
            let client = p.pool.get().await?;
            let stored = match &e {
                Error::Rejected(problem) if idem.is_some() => Some(service::seal_response(
                    p,
                    &StoredResponse::Failure(problem.clone()),
                )?),
                _ => None,
            };
            ops::fail(&client, op_id, &e.to_string(), stored.as_deref()).await?;
            Err(e)
        }
    }
}

async fn run_steps(
    p: &Platform,
    v: &Validated,
    op_id: Uuid,
    tenant_id: Uuid,
    actor: &str,
) -> Result<CreatedTenant> {
    let slug = &v.slug;
    let (password, verifier) = crate::secrets::new_password();

    // 1. Roles and the registry row (status provisioning), in one transaction.
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    service::lock_name(&tx, slug).await?;
    if tenants::find(&tx, slug.as_str()).await?.is_some() {
        return Err(service::taken_name(slug));
    }
    let plan = service::find_plan(&tx, &v.plan).await?;
    let quota = v.db_quota_bytes.unwrap_or(plan.quotas.db_quota_bytes);
    let trial_days = v.trial_days(&plan);
    let verifier = verifier
        .await
        .expect("computing a SCRAM verifier does not panic");
    let limits = service::limits(p, &plan, quota);
    tx.batch_execute(&sql::roles_sql(slug, &verifier, &limits, !p.caps.superuser))
        .await
        .map_err(|e| service::taken(e, slug))?;
    let roles: Vec<String> = slug
        .fixed_roles()
        .iter()
        .map(|r| r.as_str().to_string())
        .collect();
    hardening::check(&tx, &roles).await?;
    let sealed = p.key.seal(&service::seal_password(&password)?);
    let database = slug.schema();
    tenants::insert(
        &tx,
        &tenants::NewTenant {
            id: tenant_id,
            name: slug.as_str(),
            status: Status::Provisioning,
            plan: &plan.name,
            isolation: Isolation::Database,
            schema: Some(slug.schema().as_str()),
            database: database.as_str(),
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
    record_step(&tx, op_id, 1, "roles_and_registry", "applied").await?;
    // The step intent of the clone commits with the roles: from here a crash is undone
    // by the reconciler, which then knows the database (if any) is ours.
    record_step(&tx, op_id, 2, "create_database", "started").await?;
    tx.commit().await?;
    failpoint("database.after_roles");

    // 2. The clone (no transaction possible).
    match client
        .batch_execute(&sql::clone_sql(
            slug,
            &template_db(p),
            plan.quotas.max_connections,
        ))
        .await
    {
        Ok(()) => {}
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {
            // Someone else's database: never ours to drop.
            record_step(&client, op_id, 2, "create_database", "failed").await?;
            return Err(service::taken(e, slug));
        }
        Err(e) => return Err(e.into()),
    }
    record_step(&client, op_id, 2, "create_database", "applied").await?;
    failpoint("database.after_create_database");

    // 3. Inside the new database: ownership, grants, PUBLIC's privileges taken away.
    let tenant_db = connect_to(p, database.as_str()).await?;
    tenant_db
        .batch_execute(&format!("BEGIN;\n{}\nCOMMIT;", sql::configure_sql(slug)))
        .await?;
    let all_roles: Vec<String> = roles.clone();
    hardening::check_client(&tenant_db, &all_roles).await?;
    drop(tenant_db);
    record_step(&client, op_id, 3, "configure_database", "applied").await?;
    failpoint("database.after_configure");

    // 4. Active: the API key, the audit entry and the status, in one transaction.
    let tx = client.transaction().await?;
    let status = if trial_days > 0 {
        Status::Trial
    } else {
        Status::Active
    };
    let tenant = tenants::set_status(&tx, tenant_id, status).await?;
    let key = apikey::generate(&p.key);
    store::api_keys::insert(&tx, tenant_id, None, None, &key.public_id, &key.hash).await?;
    crate::backup::policy::apply_at_create(
        &tx,
        tenant_id,
        &plan.name,
        v.backup_schedule.as_deref(),
    )
    .await
    .map_err(service::backup_policy_error)?;
    audit::record(
        &tx,
        &audit::Entry {
            actor,
            action: "tenant_created",
            tenant_id: Some(tenant_id),
            tenant_name: Some(slug.as_str()),
            operation_id: Some(op_id),
            details: serde_json::json!({
                "plan": plan.name, "isolation": "database", "database": database.as_str(),
                "db_quota_bytes": quota, "api_key_prefix": key.public_id,
            }),
        },
    )
    .await?;
    record_step(&tx, op_id, 4, "activate", "applied").await?;
    tx.commit().await?;
    let credentials =
        service::credentials_for(p, tenant.role.as_str(), tenant.database.as_str(), password);
    Ok(CreatedTenant {
        tenant,
        api_key: key.plaintext,
        credentials,
    })
}

/// Undoes whatever an unfinished create of `slug` left: its database (only if this
/// operation started the clone), its roles, its registry row. Idempotent.
pub async fn revert(p: &Platform, slug: &Slug, op_id: Uuid) -> Result<()> {
    let mut client = p.pool.get().await?;
    let cloned = client
        .query_opt(
            "SELECT 1 FROM berqenas.operation_steps WHERE operation_id = $1 AND name = 'create_database'
                AND state IN ('started', 'applied')",
            &[&op_id],
        )
        .await?
        .is_some();
    if cloned {
        client.batch_execute(&sql::drop_database_sql(slug)).await?;
        record_step(&client, op_id, 2, "create_database", "reverted").await?;
    }
    let tx = client.transaction().await?;
    service::lock_name(&tx, slug).await?;
    let live = tenants::find(&tx, slug.as_str()).await?;
    if live
        .as_ref()
        .is_some_and(|t| t.status != Status::Provisioning)
    {
        return Ok(()); // finished after all, or the name belongs to another tenant now
    }
    let roles = service::existing_roles(&tx, slug).await?;
    tx.batch_execute(&crate::isolation::schema::SchemaPerTenant.drop_sql(slug, &roles))
        .await?;
    if let Some(t) = live {
        tenants::delete(&tx, t.id).await?;
    }
    tx.commit().await?;
    Ok(())
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
