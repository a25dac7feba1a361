//! Offboarding (seed 000 section 5), reversible at every stage:
//!
//! ```text
//! DELETE   logins off (sessions ended, API keys refused) -> final backup (the archive)
//!          -> status `deleted`, purge date set            [restore: everything back]
//! purge    (the worker, after the date; or ?purge=now)     schema/database/rows and
//!          roles dropped, registry row, credentials, keys and archive kept
//!                                                          [restore: rebuilt from the archive]
//! archive expiry (the worker)                              registry row dropped, name free
//! ```
//!
//! A restore brings back the status the tenant had (active, trial or suspended), the
//! logins that could log in, the original passwords (sealed in the registry) and keys.

use crate::secrets::ExposeSecret;
use chrono::Utc;
use deadpool_postgres::Transaction;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::service::{self, existing_roles};
use super::{access, state, suspension, Isolation, Slug, Status, Tenant};
use crate::backup::{self, restore, BackupKind, Error, Result};
use crate::isolation::{database, schema::SchemaPerTenant, shared, Provision, Strategy};
use crate::pg::{hardening, Ident, Literal};
use crate::platform::Platform;
use crate::store::offboarding::{self as records, Offboarding};
use crate::store::{backups, plans, tenants, users};
use crate::{audit, ops};

/// Days between a delete and its purge when the request names none.
pub const DEFAULT_RETENTION_DAYS: i64 = 30;
pub const MAX_RETENTION_DAYS: i64 = 3650;

/// The optional body of `DELETE /api/v1/tenants/{name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    /// Days until the purge (0 to 3650) [default: 30]; same as `?retention=`.
    #[serde(default)]
    pub retention_days: Option<i64>,
    /// With `?purge=now`: the tenant's name, to confirm.
    #[serde(default)]
    pub confirm: Option<String>,
}

/// A validated delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub retention_days: Option<i64>,
    /// The field the retention came in, for error messages.
    pub retention_field: &'static str,
    pub purge_now: bool,
    pub confirm: Option<String>,
}

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::invalid(field, message)
}

/// Checks what can be checked without the tenant.
pub fn validate(opts: &DeleteOptions) -> Result<()> {
    if let Some(days) = opts.retention_days {
        if !(0..=MAX_RETENTION_DAYS).contains(&days) {
            return Err(invalid(
                opts.retention_field,
                format!(
                    "{} must be a whole number of days from 0 to {MAX_RETENTION_DAYS}, got {days}",
                    opts.retention_field
                ),
            ));
        }
    }
    if opts.purge_now && opts.confirm.is_none() {
        return Err(invalid(
            "confirm",
            "purge=now destroys the tenant's data at once: send {\"confirm\":\"<tenant name>\"}",
        ));
    }
    Ok(())
}

/// A session-level lock on the tenant's name, on a connection of its own, held for the
/// whole delete (its final backup takes a while): other operations on the tenant wait,
/// and the worker can tell a delete that is running from one whose process died.
async fn hold_name(p: &Platform, slug: &Slug) -> Result<tokio_postgres::Client> {
    let c = crate::pg::connect(&p.config).await?;
    c.execute(
        "SELECT pg_advisory_lock(hashtextextended($1, 0))",
        &[&slug.lock_key()],
    )
    .await?;
    Ok(c)
}

/// `DELETE /api/v1/tenants/{name}`.
pub async fn delete(p: &Platform, key: &str, opts: &DeleteOptions, actor: &str) -> Result<Tenant> {
    validate(opts)?;
    let found = service::get(p, key).await?;
    crate::backup::journal::settle(p, &found.name).await?;
    let slug = found.name.clone();
    if opts.purge_now && opts.confirm.as_deref() != Some(found.name.as_str()) {
        return Err(invalid(
            "confirm",
            format!("confirm must be the tenant's name, {:?}", found.name),
        ));
    }
    let guard = hold_name(p, &slug).await?;
    let tenant = service::get(p, &found.id.to_string()).await?;
    if tenant.status == Status::Deleted && opts.purge_now {
        drop(guard);
        purge(p, tenant.id, actor).await?;
        return describe(p, tenant.id).await;
    }
    state::check(&tenant.name, tenant.status, Status::Deleted, "delete")
        .map_err(Error::Rejected)?;
    let retention = opts.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);

    // 1. Logins off, intent recorded.
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    // As a suspension: logins off, and outside roles' memberships in them revoked.
    let cut = suspension::cut(&tx, &tenant, p.caps.superuser).await?;
    let disabled = cut.roles.clone();
    records::insert_pending(
        &tx,
        tenant.id,
        tenant.status,
        &disabled,
        &cut.memberships,
        retention as i32,
        actor,
    )
    .await?;
    tx.commit().await?;
    access::end_sessions(&client, &disabled).await?;
    drop(client);

    // 2. The final backup. Without it nothing is deleted: the logins come back.
    let pol = backup::policy::effective(&p.pool.get().await?, &tenant).await?;
    // Expires even if the delete never completes (the worker then rolls it back):
    // step 3 sets the same date from the purge date.
    let plan_retention = plans::find(&p.pool.get().await?, &tenant.plan)
        .await?
        .map_or(0, |plan| plan.quotas.max_data_retention_days);
    let provisional = Utc::now() + chrono::Duration::days(retention + i64::from(plan_retention));
    let archive = match backup::take::take(
        p,
        &tenant,
        BackupKind::Final,
        pol.encryption,
        Some(provisional),
        actor,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            let mut client = p.pool.get().await?;
            let tx = client.transaction().await?;
            suspension::restore(&tx, &cut.roles, &cut.memberships, p.caps.superuser).await?;
            records::delete(&tx, tenant.id).await?;
            tx.commit().await?;
            return Err(e);
        }
    };

    // 3. Deleted, with its purge date; the archive kept past it.
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let current = tenants::find_for_update(&tx, &tenant.id.to_string())
        .await?
        .ok_or_else(|| service::Error::not_found(key))?;
    let plan = service::find_plan(&tx, &current.plan).await?;
    let (purge_after, archive_expires) = records::mark_deleted(
        &tx,
        tenant.id,
        current.status,
        archive.id,
        plan.quotas.max_data_retention_days,
    )
    .await?;
    backups::set_expiry(&tx, archive.id, Some(archive_expires)).await?;
    tenants::set_status(&tx, tenant.id, Status::Deleted).await?;
    let op_id = Uuid::now_v7();
    ops::record_done(&tx, op_id, "tenant.soft_delete", tenant.id, &tenant.name).await?;
    audit::record(
        &tx,
        &audit::Entry {
            actor,
            action: "tenant_soft_deleted",
            tenant_id: Some(tenant.id),
            tenant_name: Some(&tenant.name),
            operation_id: Some(op_id),
            details: serde_json::json!({
                "previous_status": current.status.as_str(), "disabled_roles": disabled,
                "purge_after": purge_after, "final_backup_id": archive.id, "archive_expires_at": archive_expires,
            }),
        },
    )
    .await?;
    tx.commit().await?;
    drop(guard);
    tracing::info!(tenant.name = %tenant.name, %purge_after, "tenant deleted (restorable until the purge)");
    if opts.purge_now {
        purge(p, tenant.id, actor).await?;
    }
    describe(p, tenant.id).await
}

/// The tenant as a delete answers it: with what the delete recorded.
async fn describe(p: &Platform, id: Uuid) -> Result<Tenant> {
    let c = p.pool.get().await?;
    Ok(tenants::get(&c, id).await?)
}

/// Drops what the tenant has in PostgreSQL (schema, database or pool rows; every
/// role, its users' included), inside `tx` (database mode also drops the database
/// on a connection of its own). Idempotent. Returns the roles dropped.
pub(crate) async fn drop_objects(
    p: &Platform,
    tx: &Transaction<'_>,
    t: &Tenant,
) -> Result<Vec<String>> {
    let slug = &t.name;
    let roles = existing_roles(tx, slug).await?;
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    service::terminate_sessions(tx, &names).await?;
    // A role holding anything in another database cannot be dropped: a purge must
    // finish whatever the tenant's roles were given elsewhere.
    let own_database = (t.isolation == Isolation::Database).then_some(t.database.as_str());
    crate::access::owned::drop_owned_elsewhere(p, tx, &roles, own_database).await?;
    match t.isolation {
        Isolation::Database => {
            super::database_mode::drop_tenant(p, tx, slug).await?;
        }
        Isolation::Shared => {
            let pool = Ident::new(shared::POOL_SCHEMA).expect("static");
            let owner = Ident::new(shared::POOL_OWNER).expect("static");
            let id = Literal(&t.id.to_string()).to_string();
            let mut sql = format!("SET LOCAL ROLE {owner};\n");
            // Children first: a foreign key without ON DELETE CASCADE would refuse.
            for table in backup::shared::pool_tables(&**tx).await?.iter().rev() {
                let table = Ident::new(table.name.clone()).expect("catalog names are valid");
                sql.push_str(&format!(
                    "DELETE FROM {pool}.{table} WHERE tenant_id = {id}::uuid;\n"
                ));
            }
            sql.push_str(&format!(
                "DELETE FROM {pool}.members WHERE tenant_id = {id}::uuid;\nRESET ROLE;\n"
            ));
            tx.batch_execute(&sql).await?;
            tx.batch_execute(&SchemaPerTenant.drop_sql(slug, &roles))
                .await?;
        }
        Isolation::Schema => {
            tx.batch_execute(&SchemaPerTenant.drop_sql(slug, &roles))
                .await?
        }
    }
    Ok(roles.iter().map(|r| r.as_str().to_string()).collect())
}

/// Purges a deleted tenant: its objects and roles go, its registry row (status
/// `purged`), credentials, keys and archive stay.
pub async fn purge(p: &Platform, tenant_id: Uuid, actor: &str) -> Result<Tenant> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let tenant = tenants::find_for_update(&tx, &tenant_id.to_string())
        .await?
        .ok_or_else(|| service::Error::not_found(&tenant_id.to_string()))?;
    let slug = &tenant.name;
    service::lock_name(&tx, slug).await?;
    state::check(&tenant.name, tenant.status, Status::Purged, "purge").map_err(Error::Rejected)?;
    let off = records::find(&tx, tenant.id)
        .await?
        .expect("a deleted tenant has its row");
    let archive = match off.final_backup_id {
        Some(id) => backups::find(&tx, id).await?.map(|(b, _)| b),
        None => None,
    };
    if !archive
        .as_ref()
        .is_some_and(|b| b.status == backup::BackupStatus::Succeeded)
    {
        return Err(Error::conflict(
            "no_archive",
            format!(
                "tenant {} has no usable final backup: it is not purged",
                tenant.name
            ),
        ));
    }
    if tenant.isolation == Isolation::Database {
        // The database goes outside this transaction: committed first, `purging` keeps
        // a restore away from a tenant whose database may be gone if this dies.
        records::mark_purging(&p.pool.get().await?, tenant.id).await?;
        ops::failpoint("purge.marked");
    }
    let dropped = drop_objects(p, &tx, &tenant).await?;
    ops::failpoint("purge.objects_dropped");
    let purged = tenants::set_status(&tx, tenant.id, Status::Purged).await?;
    records::mark_purged(&tx, tenant.id).await?;
    let op_id = Uuid::now_v7();
    ops::record_done(&tx, op_id, "tenant.purge", tenant.id, &tenant.name).await?;
    audit::record(
        &tx,
        &audit::Entry {
            actor,
            action: "tenant_purged",
            tenant_id: Some(tenant.id),
            tenant_name: Some(&tenant.name),
            operation_id: Some(op_id),
            details: serde_json::json!({"dropped_roles": dropped, "archive": off.final_backup_id}),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(tenant.name = %tenant.name, "tenant purged; its archive is kept");
    Ok(purged)
}

/// `POST /api/v1/tenants/{name}/restore`: a deleted tenant back as it was, or a purged
/// one rebuilt from its archive.
pub async fn restore(p: &Platform, key: &str, actor: &str) -> Result<Tenant> {
    let mut client = p.pool.get().await?;
    let g = client.transaction().await?;
    let tenant = tenants::find_for_update(&g, key)
        .await?
        .ok_or_else(|| service::Error::not_found(key))?;
    let slug = &tenant.name;
    service::lock_name(&g, slug).await?;
    let off = match tenant.status {
        Status::Deleted | Status::Purged => records::find(&g, tenant.id).await?,
        _ => None,
    };
    let Some(off) = off.filter(|o| o.state != "pending") else {
        // Names the current state in a 409.
        state::check(&tenant.name, tenant.status, Status::Active, "restore")
            .map_err(Error::Rejected)?;
        return Err(Error::conflict(
            "invalid_state",
            format!("tenant {} is not deleted", tenant.name),
        ));
    };
    if off.state == "purging" {
        return Err(Error::conflict(
            "purge_in_progress",
            format!(
                "tenant {} is being purged (its database may already be gone); the worker finishes the purge, then it can be restored from its archive",
                tenant.name
            ),
        ));
    }
    state::check(&tenant.name, tenant.status, off.previous_status, "restore")
        .map_err(Error::Rejected)?;
    let mut details =
        serde_json::json!({"from": tenant.status.as_str(), "to": off.previous_status.as_str()});
    if tenant.status == Status::Deleted {
        suspension::restore(
            &g,
            &off.disabled_roles,
            &off.disabled_memberships,
            p.caps.superuser,
        )
        .await?;
    } else {
        let archive_id = off.final_backup_id.ok_or_else(archive_gone)?;
        let (archive, manifest) = backups::find(&g, archive_id)
            .await?
            .ok_or_else(archive_gone)?;
        if archive.status != backup::BackupStatus::Succeeded {
            return Err(archive_gone());
        }
        let manifest = restore::usable(&archive, manifest)?;
        if let Err(e) = rebuild(p, &tenant, &off, &archive, &manifest).await {
            undo_rebuild(p, &tenant).await;
            return Err(e);
        }
        crate::migrate::set_restored_version(&g, &tenant, manifest.template_version).await?;
        // The purge dropped the login roles, and with them what outside roles (an
        // application's pool role) held in them; the rebuilt roles get it back.
        suspension::restore(&g, &[], &off.disabled_memberships, p.caps.superuser).await?;
        details["archive"] = serde_json::json!(archive_id);
    }
    let restored = tenants::set_status(&g, tenant.id, off.previous_status).await?;
    records::delete(&g, tenant.id).await?;
    let op_id = Uuid::now_v7();
    ops::record_done(&g, op_id, "tenant.restore", tenant.id, &tenant.name).await?;
    audit::record(
        &g,
        &audit::Entry {
            actor,
            action: "tenant_restored",
            tenant_id: Some(tenant.id),
            tenant_name: Some(&tenant.name),
            operation_id: Some(op_id),
            details,
        },
    )
    .await?;
    g.commit().await?;
    tracing::info!(tenant.name = %tenant.name, status = restored.status.as_str(), "tenant restored");
    Ok(restored)
}

fn archive_gone() -> Error {
    Error::conflict(
        "archive_expired",
        "the tenant is purged and its archive no longer exists: it cannot be restored",
    )
}

/// A purged tenant's roles and objects, recreated by the create path's SQL with the
/// original passwords (sealed in the registry), then its archive restored into them.
async fn rebuild(
    p: &Platform,
    t: &Tenant,
    off: &Offboarding,
    archive: &backup::Backup,
    manifest: &backup::Manifest,
) -> Result<()> {
    let slug = &t.name;
    let mut client = p.pool.get().await?;
    let plan = service::find_plan(&client.transaction().await?, &t.plan).await?;
    let limits = service::limits(p, &plan, t.db_quota_bytes);
    let verifier = verifier_of(p, &tenants::sealed_credentials(&client, t.id).await?).await?;
    let login_sql = crate::isolation::create_login_role(&slug.login_role(), &verifier, &limits);
    let users = users::sealed(&client, t.id).await?;
    let mut sql = match t.isolation {
        Isolation::Schema => SchemaPerTenant.create_sql(&Provision {
            slug,
            password_verifier: &verifier,
            limits: &limits,
            template_sql: &p.template.full_sql(),
            grant_owner_to_creator: !p.caps.superuser,
        }),
        Isolation::Shared => {
            shared::create_sql(slug, &t.id.to_string(), &login_sql, !p.caps.superuser)
        }
        Isolation::Database => database::roles_sql(slug, &verifier, &limits, !p.caps.superuser),
    };
    let mut logins = vec![slug.login_role()];
    for u in users {
        let (user, sealed) = (u.db_user, u.credentials);
        let group = slug.group_role(u.role);
        let v = verifier_of(p, &sealed).await?;
        sql.push_str(&format!(
            "CREATE ROLE {user} LOGIN PASSWORD {} IN ROLE {group};\n",
            Literal(&v)
        ));
        if let Some(schema) = &t.schema {
            sql.push_str(&format!("ALTER ROLE {user} SET search_path = {schema};\n"));
        }
        sql.push_str(&limits.sql(&user));
        if !p.caps.superuser {
            sql.push_str(&format!("GRANT {user} TO CURRENT_USER;\n"));
        }
        if t.isolation == Isolation::Shared {
            sql.push_str(&shared::map_role_sql(&user, &t.id.to_string()));
        }
        logins.push(user);
    }
    // Logins that were off before the delete (a suspended tenant's) stay off.
    for login in logins
        .iter()
        .filter(|l| !off.disabled_roles.iter().any(|d| d == l.as_str()))
    {
        sql.push_str(&format!("ALTER ROLE {login} NOLOGIN;\n"));
    }
    let tx = client.transaction().await?;
    tx.batch_execute(&sql).await?;
    let mut all: Vec<String> = slug
        .fixed_roles()
        .iter()
        .map(|r| r.as_str().to_string())
        .collect();
    all.extend(logins.iter().skip(1).map(|l| l.as_str().to_string()));
    hardening::check(&tx, &all).await?;
    tx.commit().await?;
    if t.isolation == Isolation::Database {
        let template = database::template_db(&p.endpoint.database);
        client
            .batch_execute(&database::clone_sql(
                slug,
                &template,
                plan.quotas.max_connections,
            ))
            .await?;
        let db = backup::connect_to(p, slug.schema().as_str()).await?;
        db.batch_execute(&format!(
            "BEGIN;\n{}\nCOMMIT;",
            database::configure_sql(slug)
        ))
        .await?;
        hardening::check_client(&db, &all).await?;
    }
    drop(client);
    restore::load_into(p, t, archive, manifest, None).await?;
    Ok(())
}

async fn verifier_of(p: &Platform, sealed: &[u8]) -> Result<String> {
    let password = service::open_password(p, sealed)?;
    Ok(tokio::task::spawn_blocking(move || {
        postgres_protocol::password::scram_sha_256(password.expose_secret().as_bytes())
    })
    .await
    .expect("computing a SCRAM verifier does not panic"))
}

/// After a failed rebuild: back to purged, nothing left in the catalog.
async fn undo_rebuild(p: &Platform, t: &Tenant) {
    let result: Result<()> = async {
        let mut client = p.pool.get().await?;
        let tx = client.transaction().await?;
        drop_objects(p, &tx, t).await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(tenant.name = %t.name, error = %e, "could not clean up after a failed restore from the archive");
    }
}

/// Removes a tenant entirely, registry row included (a restore into a new tenant
/// that failed halfway).
pub(crate) async fn drop_for_good(p: &Platform, t: &Tenant) -> Result<()> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    drop_objects(p, &tx, t).await?;
    tenants::delete(&tx, t.id).await?;
    tx.commit().await?;
    Ok(())
}

/// The worker's part: purges deleted tenants past their date, puts back the logins
/// of deletes whose process died before the final backup, and frees the names of
/// purged tenants whose archive expired. Returns (purged, rolled back, freed).
pub async fn run_due(p: &Platform) -> Result<(usize, usize, usize)> {
    let client = p.pool.get().await?;
    let due = records::due_purges(&client, 20).await?;
    let mut purged = 0;
    for id in due {
        match purge(p, id, "worker").await {
            Ok(_) => purged += 1,
            Err(e) => {
                tracing::warn!(tenant.id = %id, error = %e, "purge failed; retrying at the next round")
            }
        }
    }
    let rolled_back = roll_back_dead_deletes(p).await?;
    let freed = free_names(p).await?;
    Ok((purged, rolled_back, freed))
}

/// A `pending` delete whose name lock nobody holds lost its process: logins back.
async fn roll_back_dead_deletes(p: &Platform) -> Result<usize> {
    let client = p.pool.get().await?;
    let pending = records::pending(&client).await?;
    drop(client);
    let mut n = 0;
    for id in pending {
        let mut client = p.pool.get().await?;
        let tx = client.transaction().await?;
        let Some(t) = tenants::find_for_update(&tx, &id.to_string()).await? else {
            continue;
        };
        let slug = &t.name;
        let free: bool = tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
                &[&slug.lock_key()],
            )
            .await?
            .get(0);
        let Some(off) = records::find(&tx, id)
            .await?
            .filter(|o| free && o.state == "pending")
        else {
            continue;
        };
        suspension::restore(
            &tx,
            &off.disabled_roles,
            &off.disabled_memberships,
            p.caps.superuser,
        )
        .await?;
        records::delete(&tx, id).await?;
        audit::record(
            &tx,
            &audit::Entry {
                actor: "worker",
                action: "tenant_restored",
                tenant_id: Some(id),
                tenant_name: Some(&t.name),
                operation_id: None,
                details: serde_json::json!({"reason": "the delete's process died before its final backup"}),
            },
        )
        .await?;
        tx.commit().await?;
        n += 1;
    }
    Ok(n)
}

/// Purged tenants without a live archive leave the registry; their name is free.
async fn free_names(p: &Platform) -> Result<usize> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let gone = tenants::claim_released_names(&tx).await?;
    for (id, name) in &gone {
        let (id, name) = (*id, name.as_str());
        tenants::delete(&tx, id).await?;
        audit::record(
            &tx,
            &audit::Entry {
                actor: "worker",
                action: "tenant_name_released",
                tenant_id: Some(id),
                tenant_name: Some(name),
                operation_id: None,
                details: serde_json::json!({"reason": "the archive expired"}),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(gone.len())
}
