//! Warm pool members on a server other than `default` (docs/warm_pool.md): made
//! there by `warm_pool.refill.placed`, given their password when they are published,
//! renamed to a tenant's names by a placed create's `provision` step, and dropped by
//! [`super::placed::unmake`] like any tenant there. Each change on the server is one
//! transaction there; the pool rows are the control database's (the workflow's).
//!
//! Schema mode only: the database-mode and shared pools are on `default`.

use super::database_mode::Registered;
use super::placed::roles_exist;
use super::service::{self, Error};
use super::Slug;
use crate::isolation::warm::{self, Mode};
use crate::pg::hardening;
use crate::platform::Platform;

type Result<T, E = Error> = std::result::Result<T, E>;

/// The member's roles and schema with the template applied, everything NOLOGIN, on
/// the server `view` sees, in one transaction there. Runs again after a crash: a
/// member whose roles are there was made whole (one transaction).
pub async fn make(view: &Platform, member: &Slug) -> Result<()> {
    if roles_exist(view, member).await? {
        return Ok(());
    }
    let sql = warm::member_sql(
        Mode::Schema,
        member,
        "",
        &view.template.full_sql(),
        !view.caps.superuser,
    );
    let mut c = view.pool.get().await?;
    let tx = c.transaction().await?;
    tx.batch_execute(&sql).await?;
    // The least-privilege check a create runs, run here: a claim changes no privilege.
    hardening::check(&tx, &member.fixed_role_names()).await?;
    tx.commit().await?;
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

/// The claim on the server: the member's schema and roles renamed to the tenant's,
/// its login role given LOGIN, the plan's limits and `search_path`, in one
/// transaction there (a create's order, so the catalog reads as a tenant made from
/// scratch). Runs again after a crash: tenant roles there mean it committed (the
/// caller checked, before it declared the claim, that none were).
pub async fn claim(
    control: &Platform,
    view: &Platform,
    slug: &Slug,
    member: &Slug,
    registered: &Registered,
) -> Result<()> {
    if roles_exist(view, slug).await? {
        return Ok(());
    }
    let plan = {
        let mut c = control.pool.get().await?;
        let tx = c.transaction().await?;
        service::find_plan(&tx, &registered.plan).await?
    };
    let limits = service::limits(view, &plan, registered.db_quota_bytes);
    // A placed member always has its password (given when it is published).
    let sql = warm::claim_sql(Mode::Schema, member, slug, None, &limits);
    let mut c = view.pool.get().await?;
    let tx = c.transaction().await?;
    tx.batch_execute(&sql)
        .await
        .map_err(|e| service::taken(e, slug))?;
    tx.commit().await?;
    Ok(())
}
