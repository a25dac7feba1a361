//! The realtime gate of database-mode tenants: their events are inserted in their own
//! database, where the control database's `berqenas_realtime.admit` cannot be
//! reached, so a gate there (`store::realtime_gate`) counts them against a copy of the
//! tenant's limits. The copy is made when the database is configured, after every
//! quota or plan change ([`follow`]), and by the quota round ([`super::upkeep`]),
//! which also mirrors the counts into the control database.

use crate::platform::Platform;
use crate::store::tenants::{Isolation, Tenant};

/// A connection to a database-mode tenant's database, as the control role.
pub async fn connect(
    p: &Platform,
    t: &Tenant,
) -> Result<tokio_postgres::Client, crate::pg::PgError> {
    let mut config = p.config.clone();
    config.dbname(t.database.as_str());
    crate::pg::connect(&config).await
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] crate::pg::PgError),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
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
