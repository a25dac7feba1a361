//! Warm pool members on a server other than `default` (docs/warm_pool.md): made
//! there by `warm_pool.refill.placed`, given their password when they are published,
//! renamed to a tenant's names by a placed create's `provision` step, and dropped by
//! [`super::placed::unmake`] like any tenant there. Each change on the server is one
//! transaction there (a database-mode member's clone cannot be in one: each part is
//! found and kept when run again); the pool rows are the control database's. A
//! shared-mode member is its roles and their member rows in that server's pool (built
//! there by the first member if it is not), mapped to the member's id until a claim
//! maps them to the tenant's.

use uuid::Uuid;

use super::database_mode::{self, Registered};
use super::placed::roles_exist;
use super::service::{self, Error};
use super::{shared_mode, Isolation, Slug};
use crate::isolation::shared;
use crate::isolation::warm::{self, Mode};
use crate::pg::hardening;
use crate::platform::Platform;

type Result<T, E = Error> = std::result::Result<T, E>;

/// The member as a create of its mode makes a tenant, everything NOLOGIN, on the
/// server `view` sees (`server`): schema mode, its roles and schema with the template
/// applied, in one transaction there; shared mode, its roles and their member rows
/// (mapped to `id`, the member's) in the server's pool, built first if it is not;
/// database mode, its roles (one transaction), then its database cloned from that
/// server's template database and configured as a tenant's. Runs again after a
/// crash: what was made is found and kept.
pub async fn make(
    control: &Platform,
    view: &Platform,
    server: &str,
    (member, id): (&Slug, Uuid),
    isolation: Isolation,
) -> Result<()> {
    let mode = Mode::from(isolation);
    if mode == Mode::Shared {
        shared_mode::ensure_pool_on(view).await?;
    }
    if !roles_exist(view, member).await? {
        let sql = warm::member_sql(
            mode,
            member,
            &id.to_string(),
            &view.template.full_sql(),
            !view.caps.superuser,
        );
        let mut c = view.pool.get().await?;
        let tx = c.transaction().await?;
        if mode == Mode::Shared {
            // No migration of the pool between the member rows and their commit.
            shared_mode::share_pool(&tx).await?;
        }
        tx.batch_execute(&sql).await?;
        // The least-privilege check a create runs: a claim changes no privilege.
        hardening::check(&tx, &member.fixed_role_names()).await?;
        tx.commit().await?;
    }
    if mode == Mode::Database {
        if !database_mode::database_exists(view, member).await? {
            database_mode::clone_member_on(control, view, server, member).await?;
        }
        database_mode::configure_member(view, member).await?;
    }
    Ok(())
}

/// The member's login role given its password (still NOLOGIN): the refill pays the
/// server's check of it, not the claim. Run again, it sets the password again.
pub async fn set_password(view: &Platform, member: &Slug, verifier: &str) -> Result<()> {
    view.pool
        .get()
        .await?
        .batch_execute(&warm::member_password_sql(member, verifier))
        .await?;
    Ok(())
}

/// The claim on the server: the member's schema (or database) and roles renamed to
/// the tenant's, its login role given LOGIN, the plan's limits and `search_path`, in
/// one transaction there (a create's order, so the catalog reads as a tenant made from
/// scratch). In database mode the schema inside is renamed and the realtime gate's
/// limits set by the caller after this (`database_mode::configure_claimed`). Runs
/// again after a crash: tenant roles there mean the rename committed (the caller
/// checked, before it declared the claim, that none were). In shared mode the member
/// rows are mapped to the tenant's id as well, under the pool's lock (shared), whose
/// version it returns (the tenant's, as a create there from scratch records it).
pub async fn claim(
    control: &Platform,
    view: &Platform,
    slug: &Slug,
    member_key: &str,
    isolation: Isolation,
    registered: &Registered,
) -> Result<Option<i32>> {
    let mode = Mode::from(isolation);
    let member = Slug::warm_member(member_key).ok_or_else(|| {
        Error::Rejected(crate::problem::Problem::bad_field(
            "key",
            "not a warm pool key",
        ))
    })?;
    let sql = match roles_exist(view, slug).await? {
        true => None,
        false => {
            let plan = {
                let mut c = control.pool.get().await?;
                let tx = c.transaction().await?;
                service::find_plan(&tx, &registered.plan).await?
            };
            let limits = service::limits(view, &plan, registered.db_quota_bytes);
            // A placed member always has its password (given when it is published).
            let mut sql = warm::claim_sql(mode, &member, slug, None, &limits);
            if mode == Mode::Shared {
                let id = registered.tenant_id.to_string();
                sql.push_str(&shared::rekey_members_sql(&slug.fixed_roles(), &id));
            }
            Some(sql)
        }
    };
    let mut c = view.pool.get().await?;
    let tx = c.transaction().await?;
    let pool_version = match mode {
        Mode::Shared => Some(shared_mode::share_pool(&tx).await?),
        _ => None,
    };
    if let Some(sql) = sql {
        tx.batch_execute(&sql)
            .await
            .map_err(|e| service::taken(e, slug))?;
    }
    tx.commit().await?;
    Ok(pool_version)
}
