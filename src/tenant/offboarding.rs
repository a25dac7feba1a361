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

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::service::{self, existing_roles, Error, Result};
use super::{state, suspension, Isolation, Status, Tenant};
use crate::audit;
use crate::isolation::{database, schema::SchemaPerTenant, shared, Provision, Strategy};
use crate::pg::{hardening, Ident, Literal};
use crate::platform::Platform;
use crate::store::offboarding::{self as records, Offboarding};
use crate::store::outbox::data::{BackupCompleted, TenantDeleted, TenantPurged, TenantRestored};
use crate::store::{backups, outbox, plans, tenants, users};

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

/// Logins off (as a suspension: outside roles' memberships in them revoked too) and
/// the delete recorded as `pending`, inside the caller's transaction (the tenant
/// locked). Returns what was cut, for [`uncut`] if the delete does not complete.
pub async fn cut_locked(
    tx: &Transaction<'_>,
    tenant: &Tenant,
    retention_days: i64,
    superuser: bool,
    actor: &str,
) -> Result<suspension::Cut> {
    state::check(&tenant.name, tenant.status, Status::Deleted, "delete")
        .map_err(Error::Rejected)?;
    let cut = suspension::cut(tx, tenant, superuser).await?;
    records::insert_pending(
        tx,
        tenant.id,
        tenant.status,
        &cut.roles,
        &cut.memberships,
        retention_days as i32,
        actor,
    )
    .await?;
    Ok(cut)
}

/// Undoes [`cut_locked`] of a delete that did not complete: the logins and memberships
/// back, the pending record gone. Nothing if the record is not pending (the delete
/// completed, or there is none).
pub async fn uncut(tx: &Transaction<'_>, tenant: Uuid, superuser: bool) -> Result<()> {
    let Some(off) = records::find(tx, tenant).await? else {
        return Ok(());
    };
    if off.state != "pending" {
        return Ok(());
    }
    suspension::restore(
        tx,
        &off.disabled_roles,
        &off.disabled_memberships,
        superuser,
    )
    .await?;
    records::delete(tx, tenant).await?;
    Ok(())
}

/// The archive's expiry a delete gives its final backup before the delete completes
/// (the completion sets the same date from the purge date): a delete that never
/// completes leaves a backup that still expires.
pub async fn provisional_archive_expiry(
    c: &impl GenericClient,
    tenant: &Tenant,
    retention_days: i64,
) -> Result<DateTime<Utc>> {
    let plan_retention = plans::find(c, &tenant.plan)
        .await?
        .map_or(0, |plan| plan.quotas.max_data_retention_days);
    Ok(Utc::now() + chrono::Duration::days(retention_days + i64::from(plan_retention)))
}

/// The delete's last change, inside the caller's transaction: `deleted`, with its purge
/// date, and the archive kept past it.
pub async fn mark_deleted_locked(
    tx: &Transaction<'_>,
    tenant: &Tenant,
    archive: Uuid,
    op: Uuid,
    actor: &str,
) -> Result<Tenant> {
    let plan = service::find_plan(tx, &tenant.plan).await?;
    let off = records::find(tx, tenant.id)
        .await?
        .ok_or_else(|| Error::conflict("invalid_state", "the delete was not begun"))?;
    let (purge_after, archive_expires) = records::mark_deleted(
        tx,
        tenant.id,
        off.previous_status,
        archive,
        plan.quotas.max_data_retention_days,
    )
    .await?;
    backups::set_expiry(tx, archive, Some(archive_expires)).await?;
    let deleted = tenants::set_status(tx, tenant.id, Status::Deleted).await?;
    // The final backup is announced with the delete: a delete that is undone discards
    // it, and says nothing of either.
    if let Some((b, _)) = backups::find(tx, archive).await? {
        outbox::emit(
            tx,
            tenant.id,
            tenant.name.as_str(),
            &BackupCompleted::of(&b),
        )
        .await?;
    }
    outbox::emit(
        tx,
        tenant.id,
        tenant.name.as_str(),
        &TenantDeleted {
            previous_status: off.previous_status,
            purge_after,
            final_backup_id: archive,
            archive_expires_at: archive_expires,
        },
    )
    .await?;
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "tenant_soft_deleted",
            tenant_id: Some(tenant.id),
            tenant_name: Some(&tenant.name),
            operation_id: Some(op),
            details: serde_json::json!({
                "previous_status": off.previous_status.as_str(), "disabled_roles": off.disabled_roles,
                "purge_after": purge_after, "final_backup_id": archive, "archive_expires_at": archive_expires,
            }),
        },
    )
    .await?;
    tracing::info!(tenant.name = %tenant.name, %purge_after, "tenant deleted (restorable until the purge)");
    Ok(deleted)
}

/// The tenant as a delete answers it: with what the delete recorded.
pub async fn describe(c: &impl GenericClient, id: Uuid) -> Result<Tenant> {
    Ok(tenants::get(c, id).await?)
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
            let tables = crate::isolation::pool_catalog::pool_tables(&**tx).await?;
            for table in tables.iter().rev() {
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

/// Whether a deleted tenant can be purged (the caller holds its lock): it is
/// `deleted` and its final backup succeeded. Returns the archive's id.
pub async fn purgeable(tx: &Transaction<'_>, tenant: &Tenant) -> Result<Uuid> {
    state::check(&tenant.name, tenant.status, Status::Purged, "purge").map_err(Error::Rejected)?;
    let archive = match records::find(tx, tenant.id)
        .await?
        .and_then(|o| o.final_backup_id)
    {
        Some(id) => backups::find(tx, id).await?.map(|(b, _)| b),
        None => None,
    };
    match archive {
        Some(b) if b.status == crate::store::backups::BackupStatus::Succeeded => Ok(b.id),
        _ => Err(Error::conflict(
            "no_archive",
            format!(
                "tenant {} has no usable final backup: it is not purged",
                tenant.name
            ),
        )),
    }
}

/// The purge's last change, inside the caller's transaction: what the tenant has in
/// PostgreSQL dropped ([`drop_objects`]), `purged`; its registry row, credentials, keys
/// and archive kept.
pub async fn purge_locked(
    p: &Platform,
    tx: &Transaction<'_>,
    tenant: &Tenant,
    op: Uuid,
    actor: &str,
) -> Result<Tenant> {
    let dropped = drop_objects(p, tx, tenant).await?;
    record_purged(tx, tenant, &dropped, op, actor).await
}

/// The registry's half of a purge (`purged`, the event, the audit row naming the
/// roles dropped), in the caller's control transaction: for a tenant on another
/// server, whose objects [`drop_objects`] dropped there (docs/servers.md).
pub async fn record_purged(
    tx: &Transaction<'_>,
    tenant: &Tenant,
    dropped: &[String],
    op: Uuid,
    actor: &str,
) -> Result<Tenant> {
    let archive = records::find(tx, tenant.id)
        .await?
        .and_then(|o| o.final_backup_id);
    let purged = tenants::set_status(tx, tenant.id, Status::Purged).await?;
    records::mark_purged(tx, tenant.id).await?;
    outbox::emit(
        tx,
        tenant.id,
        tenant.name.as_str(),
        &TenantPurged {
            archive_id: archive,
        },
    )
    .await?;
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "tenant_purged",
            tenant_id: Some(tenant.id),
            tenant_name: Some(&tenant.name),
            operation_id: Some(op),
            details: serde_json::json!({"dropped_roles": dropped, "archive": archive}),
        },
    )
    .await?;
    tracing::info!(tenant.name = %tenant.name, "tenant purged; its archive is kept");
    Ok(purged)
}

/// What a restore of a deleted or purged tenant starts from (the caller holds its
/// lock): its offboarding record, which a 409 refuses when there is nothing to
/// restore.
pub async fn restorable(tx: &Transaction<'_>, tenant: &Tenant) -> Result<Offboarding> {
    let off = match tenant.status {
        Status::Deleted | Status::Purged => records::find(tx, tenant.id).await?,
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
    state::check(&tenant.name, tenant.status, off.previous_status, "restore")
        .map_err(Error::Rejected)?;
    Ok(off)
}

/// A deleted tenant back as it was, inside the caller's transaction.
pub async fn undelete_locked(
    tx: &Transaction<'_>,
    tenant: &Tenant,
    off: &Offboarding,
    superuser: bool,
    op: Uuid,
    actor: &str,
) -> Result<Tenant> {
    suspension::restore(
        tx,
        &off.disabled_roles,
        &off.disabled_memberships,
        superuser,
    )
    .await?;
    finish_restore(
        tx,
        tenant,
        off,
        op,
        actor,
        serde_json::json!({"from": tenant.status.as_str(), "to": off.previous_status.as_str()}),
    )
    .await
}

/// The restore's last change: the status the tenant had, the record gone, the audit.
pub async fn finish_restore(
    tx: &Transaction<'_>,
    tenant: &Tenant,
    off: &Offboarding,
    op: Uuid,
    actor: &str,
    details: serde_json::Value,
) -> Result<Tenant> {
    let restored = tenants::set_status(tx, tenant.id, off.previous_status).await?;
    records::delete(tx, tenant.id).await?;
    outbox::emit(
        tx,
        tenant.id,
        tenant.name.as_str(),
        &TenantRestored {
            from: tenant.status,
            status: restored.status,
            archive_id: (tenant.status == Status::Purged)
                .then_some(off.final_backup_id)
                .flatten(),
        },
    )
    .await?;
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "tenant_restored",
            tenant_id: Some(tenant.id),
            tenant_name: Some(&tenant.name),
            operation_id: Some(op),
            details,
        },
    )
    .await?;
    tracing::info!(tenant.name = %tenant.name, status = restored.status.as_str(), "tenant restored");
    Ok(restored)
}

/// 409 for a purged tenant whose archive is gone.
pub fn archive_gone() -> Error {
    Error::conflict(
        "archive_expired",
        "the tenant is purged and its archive no longer exists: it cannot be restored",
    )
}

/// A purged tenant's roles (and in schema and shared modes its schema or pool rows'
/// mapping), recreated by the create path's SQL with the original passwords (sealed
/// in the registry), inside the caller's transaction. Logins that were off before
/// the delete (a suspended tenant's) stay off. Database mode: the database is the
/// caller's next step ([`super::database_mode::clone`], then `configure`).
pub async fn rebuild_roles(
    p: &Platform,
    tx: &Transaction<'_>,
    t: &Tenant,
    off: &Offboarding,
) -> Result<()> {
    let (sql, all) = rebuild_sql(p, tx, t, off).await?;
    tx.batch_execute(&sql).await?;
    hardening::check(tx, &all).await?;
    Ok(())
}

/// [`rebuild_roles`]' SQL and the roles it makes (for the hardening check), read from
/// the registry in `tx`; `p` is the platform as seen from the server the roles go to
/// (another server's for a tenant there: the caller runs it there).
pub async fn rebuild_sql(
    p: &Platform,
    tx: &Transaction<'_>,
    t: &Tenant,
    off: &Offboarding,
) -> Result<(String, Vec<String>)> {
    let slug = &t.name;
    let plan = service::find_plan(tx, &t.plan).await?;
    let limits = service::limits(p, &plan, t.db_quota_bytes);
    let verifier = verifier_of(p, &tenants::sealed_credentials(tx, t.id).await?).await?;
    let login_sql = crate::isolation::create_login_role(&slug.login_role(), &verifier, &limits);
    let users = users::sealed(tx, t.id).await?;
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
    for login in logins
        .iter()
        .filter(|l| !off.disabled_roles.iter().any(|d| d == l.as_str()))
    {
        sql.push_str(&format!("ALTER ROLE {login} NOLOGIN;\n"));
    }
    let mut all: Vec<String> = slug.fixed_role_names();
    all.extend(logins.iter().skip(1).map(|l| l.as_str().to_string()));
    Ok((sql, all))
}

async fn verifier_of(p: &Platform, sealed: &[u8]) -> Result<String> {
    let password = service::open_password(p, sealed)?;
    Ok(crate::secrets::verifier_of(password).await)
}

/// A purged tenant whose archive expired leaves the registry, inside the caller's
/// transaction (the tenant locked): its name is free.
pub async fn release_name_locked(tx: &Transaction<'_>, tenant: &Tenant, op: Uuid) -> Result<()> {
    if tenant.status != Status::Purged {
        return Err(Error::conflict(
            "invalid_state",
            format!("tenant {} is not purged", tenant.name),
        ));
    }
    tenants::delete(tx, tenant.id).await?;
    audit::record(
        tx,
        &audit::Entry {
            actor: "worker",
            action: "tenant_name_released",
            tenant_id: Some(tenant.id),
            tenant_name: Some(&tenant.name),
            operation_id: Some(op),
            details: serde_json::json!({"reason": "the archive expired"}),
        },
    )
    .await?;
    Ok(())
}
