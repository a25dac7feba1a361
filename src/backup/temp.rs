//! Throw-away places a restore runs in: a login role that exists for one restore, and
//! a scratch database. Both are registered as scratch objects before they are created
//! (see [`super::scratch`]): a process killed while they exist leaves them to the sweeper.
//!
//! Why a role of its own: `pg_restore --role=X` only runs `SET ROLE X`, and any
//! function the dump carries (a CHECK constraint, a default, an index expression) can
//! `RESET ROLE` back to the session user. So the session user itself must hold no
//! more than the tenant's owner role: this one is a member of the owner and nothing
//! else, with a random password that expires within the hour (a crash cannot leave a
//! usable login behind).

use chrono::Utc;
use deadpool_postgres::GenericClient;

use super::scratch::{Kind, Lease};
use super::{dump::Conn, Result};
use crate::pg::{Ident, Literal};
use crate::platform::Platform;
use crate::secrets::{random_bytes, random_token};

/// How the role reaches the database it restores into.
pub enum Reach<'a> {
    /// The control database (schema and shared modes), through the tenants' connect role.
    ControlDatabase,
    /// Another database: CONNECT granted on it.
    Database(&'a Ident),
}

pub struct TempRole {
    pub name: Ident,
    password: String,
    lease: Lease,
}

impl TempRole {
    /// Creates the role, a member of `member_of` (the tenant's owner) if given.
    pub async fn create(
        p: &Platform,
        c: &impl GenericClient,
        member_of: Option<&Ident>,
        reach: Reach<'_>,
    ) -> Result<Self> {
        let name = Ident::new(format!(
            "berqenas_restore_{}",
            hex::encode(random_bytes::<6>())
        ))
        .expect("fits");
        let password = random_token();
        let pw = password.clone();
        let verifier = tokio::task::spawn_blocking(move || {
            postgres_protocol::password::scram_sha_256(pw.as_bytes())
        })
        .await
        .expect("computing a SCRAM verifier does not panic");
        let until = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let reached = match &reach {
            Reach::ControlDatabase => p.endpoint.database.as_str(),
            Reach::Database(db) => db.as_str(),
        };
        let lease = Lease::register(&p.pool, Kind::Role, name.as_str(), Some(reached)).await?;
        let mut sql = format!(
            "CREATE ROLE {name} LOGIN PASSWORD {} CONNECTION LIMIT 4 VALID UNTIL {}",
            Literal(&verifier),
            Literal(&until)
        );
        if let Some(owner) = member_of {
            sql.push_str(&format!(" IN ROLE {owner}"));
        }
        sql.push_str(";\n");
        match reach {
            Reach::ControlDatabase => sql.push_str(&format!(
                "GRANT {} TO {name};\n",
                crate::pg::hardening::connect_role()
            )),
            Reach::Database(db) => {
                sql.push_str(&format!("GRANT CONNECT ON DATABASE {db} TO {name};\n"))
            }
        }
        if !p.caps.superuser {
            // A non-superuser control role reads what the role restored through membership.
            sql.push_str(&format!("GRANT {name} TO CURRENT_USER;\n"));
        }
        c.batch_execute(&sql).await?;
        Ok(Self {
            name,
            password,
            lease,
        })
    }

    /// How a tool connects as this role to `conn`'s server and database.
    pub fn conn(&self, conn: &Conn) -> Conn {
        conn.as_role(self.name.as_str(), &self.password)
    }

    /// Drops the role and whatever it owns or was granted. `databases`: other databases
    /// it may own objects in (dropped databases need no cleaning).
    pub async fn drop(self, p: &Platform, databases: &[&str]) -> Result<()> {
        let name = &self.name;
        let cleanup = format!("DROP OWNED BY {name}");
        for db in databases {
            let c = super::connect_to(p, db).await?;
            c.batch_execute(&cleanup).await?;
        }
        let c = p.pool.get().await?;
        c.batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {};\n{cleanup};\nDROP ROLE IF EXISTS {name};",
            Literal(name.as_str())
        ))
        .await?;
        self.lease.release().await?;
        Ok(())
    }
}

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
