//! Warm pool members on a server other than `default` (docs/warm_pool.md): made
//! there by `warm_pool.refill.placed`, given their password when they are published,
//! renamed to a tenant's names by a placed create's `provision` step, and dropped by
//! [`super::placed::unmake`] like any tenant there. Each change on the server is one
//! transaction there (a database-mode member's clone cannot be in one: each part is
//! found and kept when run again); the pool rows are the control database's.

use super::database_mode::{self, Registered};
use super::placed::roles_exist;
use super::service::{self, Error};
use super::{Isolation, Slug};
use crate::isolation::warm::{self, Mode};
use crate::pg::hardening;
use crate::platform::Platform;

type Result<T, E = Error> = std::result::Result<T, E>;

/// The warm pool's mode of an isolation mode a server other than `default` pools.
fn mode_of(isolation: Isolation) -> Result<Mode> {
    match isolation {
        Isolation::Schema => Ok(Mode::Schema),
        Isolation::Database => Ok(Mode::Database),
        Isolation::Shared => Err(Error::Rejected(crate::problem::Problem::bad_field(
            "isolation",
            "shared mode has no warm pool on servers other than \"default\"",
        ))),
    }
}

/// The member as a create of its mode makes a tenant, everything NOLOGIN, on the
/// server `view` sees (`server`): schema mode, its roles and schema with the template
/// applied, in one transaction there; database mode, its roles (one transaction),
/// then its database cloned from that server's template database and configured as
/// a tenant's. Runs again after a crash: what was made is found and kept.
pub async fn make(
    control: &Platform,
    view: &Platform,
    server: &str,
    member: &Slug,
    isolation: Isolation,
) -> Result<()> {
    let mode = mode_of(isolation)?;
    if !roles_exist(view, member).await? {
        let sql = warm::member_sql(
            mode,
            member,
            "",
            &view.template.full_sql(),
            !view.caps.superuser,
        );
        let mut c = view.pool.get().await?;
        let tx = c.transaction().await?;
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
/// checked, before it declared the claim, that none were).
pub async fn claim(
    control: &Platform,
    view: &Platform,
    slug: &Slug,
    member_key: &str,
    isolation: Isolation,
    registered: &Registered,
) -> Result<()> {
    let mode = mode_of(isolation)?;
    let member = Slug::warm_member(member_key).ok_or_else(|| {
        Error::Rejected(crate::problem::Problem::bad_field(
            "key",
            "not a warm pool key",
        ))
    })?;
    if !roles_exist(view, slug).await? {
        let plan = {
            let mut c = control.pool.get().await?;
            let tx = c.transaction().await?;
            service::find_plan(&tx, &registered.plan).await?
        };
        let limits = service::limits(view, &plan, registered.db_quota_bytes);
        // A placed member always has its password (given when it is published).
        let sql = warm::claim_sql(mode, &member, slug, None, &limits);
        let mut c = view.pool.get().await?;
        let tx = c.transaction().await?;
        tx.batch_execute(&sql)
            .await
            .map_err(|e| service::taken(e, slug))?;
        tx.commit().await?;
    }
    Ok(())
}
