//! An advisory lock for long work (a disk round, a role check), held by a session of
//! its own that runs nothing else, and released when it is dropped (the session ends,
//! however the work ends).
//!
//! Not a transaction-level lock in an open transaction: a transaction left open as
//! long as the work (9 s for a process's first disk round at 10,000 tenants) holds
//! back the server's xmin horizon as long, so every row updated meanwhile keeps each
//! of its dead versions, and a row updated once per tenant (the audit chain's head,
//! in a template migration) grows a chain each later update walks (docs/scale.md).

use tokio_postgres::Config;

use super::PgError;

pub struct SessionLock {
    _session: tokio_postgres::Client,
}

impl SessionLock {
    /// The lock `key` on the server `config` reaches, or `None` when another session
    /// holds it.
    pub async fn try_take(
        config: &Config,
        purpose: &str,
        key: i64,
    ) -> Result<Option<Self>, PgError> {
        let session = connect(config, purpose).await?;
        let held: bool = session
            .query_one("SELECT pg_catalog.pg_try_advisory_lock($1)", &[&key])
            .await?
            .get(0);
        Ok(held.then_some(Self { _session: session }))
    }

    /// The lock `key`, once whoever holds it lets it go.
    pub async fn take(config: &Config, purpose: &str, key: i64) -> Result<Self, PgError> {
        let session = connect(config, purpose).await?;
        session
            .execute("SELECT pg_catalog.pg_advisory_lock($1)", &[&key])
            .await?;
        Ok(Self { _session: session })
    }
}

async fn connect(config: &Config, purpose: &str) -> Result<tokio_postgres::Client, PgError> {
    let mut config = config.clone();
    config.application_name(purpose);
    super::connect(&config).await
}
