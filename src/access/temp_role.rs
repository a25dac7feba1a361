//! A login role that exists for one piece of work on one tenant (a restore, a template
//! migration) and is a member of that tenant's owner role and nothing else.
//!
//! Why a role of its own, and not the control role with `SET ROLE <owner>`: any code
//! the tenant can reach (a trigger on its table, a function or operator in its schema
//! that shadows `pg_catalog`'s, a column default, a CHECK constraint, an index
//! expression, a function carried in a dump) runs in the session that touches the
//! tenant's objects, and can `RESET ROLE` (or `SET SESSION AUTHORIZATION`) back to the
//! session's login role. So the login role itself must hold no more than the tenant's
//! owner: `RESET ROLE` then leads back to this role, which cannot create roles, has no
//! superuser or other tenant's rights, and is dropped (with anything it owns and any
//! membership in it it handed out) when the work is done. Its random password expires
//! within the hour. The step that creates it declares it first (a scratch object of
//! its operation, `Object::scratch("role", name, database)`), so however the operation
//! ends, or wherever its process dies, the engine drops it.

use super::Result;
use crate::pg::conn::Conn;
use crate::pg::{Ident, Literal};
use crate::platform::Platform;
use crate::secrets::{random_bytes, random_token};
use crate::secrets::{ExposeSecret, SecretString};
use chrono::Utc;

/// How the role reaches the database it works in.
pub enum Reach<'a> {
    /// The control database (schema and shared modes), through the tenants' connect role.
    ControlDatabase,
    /// Another database: CONNECT granted on it.
    Database(&'a Ident),
}

pub struct TempRole {
    pub name: Ident,
    password: SecretString,
}

impl std::fmt::Debug for TempRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TempRole({})", self.name.as_str())
    }
}

impl TempRole {
    /// A fresh name, `berqenas_<purpose>_<12 hex digits>`, for the caller to declare
    /// before [`TempRole::create`].
    pub fn new_name(purpose: &str) -> Ident {
        Ident::new(format!(
            "berqenas_{purpose}_{}",
            hex::encode(random_bytes::<6>())
        ))
        .expect("purposes are short static words")
    }

    /// The database a role of this reach works in (what its declaration names).
    pub fn database<'r>(p: &'r Platform, reach: &'r Reach<'_>) -> &'r str {
        match reach {
            Reach::ControlDatabase => p.endpoint.database.as_str(),
            Reach::Database(db) => db.as_str(),
        }
    }

    /// Creates the role `name` (declared by the caller), a member of the roles in
    /// `member_of` (the tenant's owner, and the role that lets a session report its
    /// work), in one transaction.
    pub async fn create(
        p: &Platform,
        name: Ident,
        member_of: &[&Ident],
        reach: Reach<'_>,
    ) -> Result<Self> {
        Self::create_limited(p, name, member_of, reach, 4).await
    }

    /// [`TempRole::create`] with at most `connections` sessions at once.
    pub async fn create_limited(
        p: &Platform,
        name: Ident,
        member_of: &[&Ident],
        reach: Reach<'_>,
        connections: u8,
    ) -> Result<Self> {
        let password = SecretString::from(random_token());
        // The embedded cluster's control sessions come in through its private socket,
        // which trusts local logins (the socket directory is the postgres user's own):
        // no password to derive a SCRAM verifier for (a millisecond of CPU per role).
        let verifier = match p.embedded {
            true => None,
            false => Some(crate::secrets::verifier_of(password.clone()).await),
        };
        let login = verifier
            .as_ref()
            .map(|v| format!(" PASSWORD {}", Literal(v)))
            .unwrap_or_default();
        let until = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        // NOINHERIT would make the owner's rights need a SET ROLE, which code of the
        // tenant's could undo; INHERIT (the default) makes them the session's own.
        let mut sql = format!(
            "CREATE ROLE {name} LOGIN{login} CONNECTION LIMIT {connections} VALID UNTIL {}",
            Literal(&until)
        );
        if !member_of.is_empty() {
            let roles: Vec<String> = member_of.iter().map(|r| r.to_string()).collect();
            sql.push_str(&format!(" IN ROLE {}", roles.join(", ")));
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
            // A non-superuser control role reads what the role made through membership.
            sql.push_str(&format!("GRANT {name} TO CURRENT_USER;\n"));
        }
        let mut c = p.pool.get().await?;
        let tx = c.transaction().await?;
        tx.batch_execute(&sql).await?;
        tx.commit().await?;
        Ok(Self { name, password })
    }

    /// The statement that takes away any password the role has, its own or one code
    /// of a tenant's set (a role may change its own password): for a role whose one
    /// session is open already (see `super::worker`). `PASSWORD NULL`, not the role's
    /// own verifier again: PostgreSQL checks every password given to `ALTER ROLE`
    /// against the empty one, which for a SCRAM verifier is its 4,096 rounds of
    /// PBKDF2, a fifth of the server's CPU in a template migration at 10,000 tenants
    /// (docs/scale.md).
    pub fn clear_password_sql(&self) -> String {
        format!("ALTER ROLE {} PASSWORD NULL;", self.name)
    }

    /// How a tool connects as this role to `conn`'s server and database.
    pub fn conn(&self, conn: &Conn) -> Conn {
        conn.as_role(self.name.as_str(), &self.password)
    }

    /// A session as this role in `database` of the platform's server.
    pub async fn connect(&self, p: &Platform, database: &str) -> Result<tokio_postgres::Client> {
        let mut config = p.config.clone();
        config
            .user(self.name.as_str())
            .password(self.password.expose_secret())
            .dbname(database)
            .application_name("berqenas-tenant-session");
        Ok(crate::pg::connect(&config).await?)
    }

    /// Drops the role and whatever it owns or was granted, and every membership in it
    /// it handed out. `databases`: other databases it may own objects in (dropped
    /// databases need no cleaning).
    pub async fn drop(self, p: &Platform, databases: &[&str]) -> Result<()> {
        let name = &self.name;
        let cleanup = format!("DROP OWNED BY {name}");
        for db in databases {
            let mut config = p.config.clone();
            config.dbname(*db);
            let c = crate::pg::connect(&config).await?;
            c.batch_execute(&cleanup).await?;
        }
        let c = p.pool.get().await?;
        c.batch_execute(&format!(
            "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = {};\n{cleanup};\nDROP ROLE IF EXISTS {name};",
            Literal(name.as_str())
        ))
        .await?;
        Ok(())
    }
}
