//! The realtime gate of database-mode tenants: their events are inserted in their own
//! database, where the control database's `berqenas_realtime.admit` cannot be
//! reached, so a gate there (`store::realtime_gate`) counts them against a copy of the
//! tenant's limits. The copy is made when the database is configured, after every
//! quota or plan change ([`follow`]), and by the quota round ([`super::upkeep`]),
//! which also mirrors the counts into the control database.

use crate::platform::Platform;
use crate::store::tenants::{Isolation, Tenant};

/// A connection to the tenant's database on its server, as the control role: a
/// database-mode tenant's own, or (schema mode on a server other than `default`) the
/// database its schema lives in there.
pub async fn connect(p: &Platform, t: &Tenant) -> Result<tokio_postgres::Client, Error> {
    Ok(crate::pg::connect(&config_of(p, t).await?).await?)
}

/// How [`connect`] reaches the tenant's database.
pub async fn config_of(p: &Platform, t: &Tenant) -> Result<tokio_postgres::Config, Error> {
    let mut config = p.view_of(&t.server).await?.config;
    config.dbname(t.database.as_str());
    Ok(config)
}

/// Whether the tenant's events live outside the control database: in its own
/// database, or on another server.
pub fn elsewhere(t: &Tenant) -> bool {
    t.isolation == Isolation::Database || t.server != crate::store::servers::DEFAULT
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] crate::pg::PgError),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    View(#[from] crate::platform::ViewError),
}

/// Copies the tenant's realtime limits in force into its database's gate (database
/// mode; nothing to do in the others, whose gate reads the control database).
pub async fn sync(p: &Platform, t: &Tenant) -> Result<(), Error> {
    if t.isolation != Isolation::Database {
        return Ok(());
    }
    let q = {
        let c = p.pool.get().await?;
        crate::store::found(crate::store::quotas::effective(&c, t.id).await?)?
    };
    let db = connect(p, t).await?;
    crate::store::realtime_gate::sync(
        &db,
        q.realtime_events_per_minute,
        q.realtime_events_per_hour,
    )
    .await?;
    Ok(())
}

/// After a committed quota or plan change: the copy follows at once. A failure (or a
/// stop right after the commit) leaves the old limits there until the next quota
/// round copies them again.
pub async fn follow(p: &Platform, t: &Tenant) {
    if let Err(e) = sync(p, t).await {
        tracing::warn!(tenant.name = %t.name, error = %e,
            "copying realtime limits into the tenant's database failed; the quota round retries");
    }
}
