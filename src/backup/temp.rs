//! Throw-away places a restore runs in: a scratch database or schema, registered as
//! scratch objects before they are created (see [`super::scratch`]): a process killed
//! while they exist leaves them to the sweeper. The throw-away login role a restore
//! runs as is [`crate::access::TempRole`].

use super::scratch::{Kind, Lease};
use super::Result;
use crate::pg::Ident;
use crate::platform::Platform;
use crate::secrets::random_bytes;

/// A scratch database for one restore, dropped (with its sessions) afterwards.
pub struct ScratchDb {
    pub name: Ident,
    lease: Lease,
}

impl ScratchDb {
    pub async fn create(p: &Platform, purpose: &str) -> Result<Self> {
        let name = Ident::new(format!(
            "berqenas_{purpose}_{}",
            hex::encode(random_bytes::<6>())
        ))
        .expect("fits");
        let lease = Lease::register(&p.pool, Kind::Database, name.as_str(), None).await?;
        let c = p.pool.get().await?;
        c.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
            .await?;
        c.batch_execute(&format!(
            "REVOKE CONNECT, TEMPORARY ON DATABASE {name} FROM PUBLIC"
        ))
        .await?;
        Ok(Self { name, lease })
    }

    /// Drops the database and unregisters it. Until this value is dropped its lease
    /// is still renewed (the row is gone; renewing it changes nothing).
    pub async fn drop(&self, p: &Platform) -> Result<()> {
        let c = p.pool.get().await?;
        c.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await?;
        super::scratch::forget_by_id(&**c, self.lease.id()).await?;
        Ok(())
    }
}

/// A scratch schema (shared-mode rows on their way into or out of an archive),
/// registered before the caller creates it.
pub struct ScratchSchema {
    pub name: Ident,
    database: String,
    lease: Lease,
}

impl ScratchSchema {
    /// Registers `name` in `database`; the caller creates it next.
    pub async fn register(p: &Platform, name: &Ident, database: &str) -> Result<Self> {
        let lease = Lease::register(&p.pool, Kind::Schema, name.as_str(), Some(database)).await?;
        Ok(Self {
            name: name.clone(),
            database: database.to_string(),
            lease,
        })
    }

    /// Unregisters it, after the caller dropped it.
    pub async fn release(self) -> Result<()> {
        Ok(self.lease.release().await?)
    }

    /// Drops it (if still there) and unregisters it.
    pub async fn drop(self, p: &Platform) -> Result<()> {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        if self.database == p.endpoint.database {
            p.pool.get().await?.batch_execute(&sql).await?;
        } else {
            super::connect_to(p, &self.database)
                .await?
                .batch_execute(&sql)
                .await?;
        }
        self.release().await
    }
}
