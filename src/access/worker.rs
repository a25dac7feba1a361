//! A throw-away login role and its one session, lent to one tenant after another: a
//! template migration's schema-mode tenants share their server's database, so a new
//! role and a new session for each (SCRAM, a backend, a drop) would cost more than the
//! tenant's DDL.
//!
//! The argument of [`super::temp_role`] must still hold for each tenant: the session's
//! login role holds no more than the owner role of the tenant it is lent to. So the
//! role is a member of one tenant's owner at a time (the grant moves in one
//! transaction), and whatever code of the last tenant's could have left behind is
//! looked for before the next lending, from the catalogs:
//!
//! - the session's own state (settings, `SET ROLE`, temporary tables, prepared
//!   statements, listeners, advisory locks) ends after each tenant (`DISCARD ALL`
//!   but its cached plans: `REST`);
//! - a membership in the role handed out (some PostgreSQL releases let a role's own
//!   session `GRANT` it; the 15 the tests run refuses, `tests/attacks/workers.rs`), a
//!   membership it was given, anything it owns or was granted, or a default of its own
//!   (`ALTER ROLE ... SET`): any of these and the role is retired, dropped with all of
//!   it, and a fresh one takes its place;
//! - a password it set for itself: every lending takes the role's password away (its
//!   one session is open, and it never logs in again), and the role takes one session
//!   at most, which is berqenas's, while it lives.
//!
//! Tenant roles cannot hand out a membership in it (none has ADMIN on it or
//! CREATEROLE), and its own session, the only one that ever could, is idle while the
//! catalogs are read: nothing can appear between the check and the grant.

use super::temp_role::{Reach, TempRole};
use super::Result;
use crate::pg::Ident;
use crate::platform::Platform;

/// What `DISCARD ALL` does but `DISCARD PLANS`: the plans cached for berqenas's own
/// statements in the session (the function that records a migrated tenant, the
/// audit chain's trigger) are kept for the next tenant, not made again for each. A
/// plan of a tenant's function is no state of the session's it could leave for the
/// next tenant: PostgreSQL replans on any change to what it used, and by search_path.
/// `pg_catalog.` so that a function of the tenant's cannot stand in for it.
const REST: &str = "CLOSE ALL; RESET SESSION AUTHORIZATION; RESET ALL; RESET ROLE; \
                    DEALLOCATE ALL; UNLISTEN *; SELECT pg_catalog.pg_advisory_unlock_all(); \
                    DISCARD TEMP; DISCARD SEQUENCES;";

/// What a lending finds on the role named `$1` that berqenas did not give it, as a
/// list (empty: nothing); `$2`: the names of the roles it may be a member of.
/// Prepared once per control connection: planned anew for each tenant, its text was
/// 0.4 ms of the server's CPU (EXPLAIN on 60,000 roles), a run of the prepared plan
/// 0.05 ms. It runs with sequential scans off (see [`Worker::lend`]): `roleid` in
/// `pg_auth_members` is skewed (the connect role has a member for every tenant's
/// login), so a plan that does not know the role estimates a third of the table for
/// it and reads all of it, 13 ms a check at 10,000 tenants (run 18's `auto_explain`,
/// docs/scale.md; it was run 13's 113.8 s). With them off, each probe is by index
/// whatever the statistics say. Whether the role has a member is a count, not an
/// `EXISTS`: an `EXISTS` is costed to its first row, and with a third of the table
/// estimated for the role, reading the other index (`member`, `roleid`, the smaller)
/// whole looked as cheap, so the plan read all 100,000 memberships to find none,
/// 1.3 to 2.7 ms a check (`pg_stat_statements`, template migrations at 10,000
/// tenants; docs/scale.md). A count is costed whole, and by `roleid` first it reads
/// only the role's. (The `DO` block it once was compiled at every call: a tenth of the
/// server's CPU in a template migration at 10,000 tenants.)
const CHECK: &str = "SELECT pg_catalog.concat_ws(', ',
        CASE WHEN (SELECT pg_catalog.count(*) FROM pg_catalog.pg_auth_members m
                    WHERE m.roleid = w.r AND m.member <> w.me) > 0
             THEN 'a member' END,
        CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_auth_members m
                           WHERE m.member = w.r AND m.roleid <> ALL (w.allowed))
             THEN 'a membership berqenas did not give' END,
        CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_shdepend d
                           WHERE d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
                             AND d.refobjid = w.r)
             THEN 'an object it owns or a privilege granted to it' END,
        CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_db_role_setting s
                           WHERE s.setdatabase = 0 AND s.setrole = w.r)
               OR EXISTS (SELECT FROM pg_catalog.pg_database d
                            JOIN pg_catalog.pg_db_role_setting s
                              ON s.setdatabase = d.oid AND s.setrole = w.r)
             THEN 'a setting of its own' END)
  FROM (SELECT (SELECT a.oid FROM pg_catalog.pg_roles a WHERE a.rolname = $1) AS r,
               (SELECT a.oid FROM pg_catalog.pg_roles a WHERE a.rolname = current_user) AS me,
               ARRAY(SELECT a.oid FROM pg_catalog.pg_roles a WHERE a.rolname = ANY ($2)) AS allowed) w";

/// A lending checked and not yet granted (see [`Worker::check`]).
#[must_use]
pub struct Lending {
    sql: String,
    owner: Ident,
}

impl Lending {
    /// The grant, then the `COMMIT` of the check's transaction.
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

pub struct Worker {
    role: TempRole,
    session: tokio_postgres::Client,
    /// Memberships every lending keeps (the database's connect role, the role that
    /// lets a session report its work).
    always: Vec<Ident>,
    /// The tenant owner it is a member of now.
    lent_to: Option<Ident>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Worker({})", self.role.name.as_str())
    }
}

/// What a lending found instead of a clean role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tainted {
    /// The tenant owner it was lent to last.
    pub after: Option<String>,
    /// What was found, for the log.
    pub found: String,
}

impl Worker {
    /// Makes the role `name` (declared by the caller: see [`TempRole`]) in `p`'s own
    /// database, reached through its connect role, a member of `always` too, and opens
    /// its session.
    pub async fn start(p: &Platform, name: Ident, always: &[&Ident]) -> Result<Self> {
        let role = TempRole::create_limited(p, name, always, Reach::ControlDatabase, 1).await?;
        let session = match role.connect(p, &p.endpoint.database).await {
            Ok(s) => s,
            Err(e) => {
                let _ = role.drop(p, &[]).await;
                return Err(e);
            }
        };
        let mut always: Vec<Ident> = always.iter().map(|r| (*r).clone()).collect();
        always.push(crate::pg::hardening::connect_role());
        Ok(Self {
            role,
            session,
            always,
            lent_to: None,
        })
    }

    pub fn name(&self) -> &Ident {
        &self.role.name
    }

    /// The session, lent to the last [`Worker::lend`]'s tenant.
    pub fn session(&self) -> &tokio_postgres::Client {
        &self.session
    }

    /// Lends the session to the tenant of `owner`: checks the role is as clean as it was
    /// made, then moves its membership from the last tenant's owner to `owner` and takes
    /// its password away, in one transaction. `Ok(Err(_))`: tainted; nothing was
    /// granted, and the caller retires it.
    pub async fn lend(&mut self, p: &Platform, owner: &Ident) -> Result<Result<(), Tainted>> {
        let c = p.pool.get().await?;
        let lending = match self.check(&c, owner).await? {
            Ok(l) => l,
            Err(tainted) => return Ok(Err(tainted)),
        };
        if let Err(e) = c.batch_execute(lending.sql()).await {
            let _ = c.batch_execute("ROLLBACK").await;
            return Err(e.into());
        }
        self.lent(lending);
        Ok(Ok(()))
    }

    /// A lending's first half, on `c` (a connection to the database the role was made
    /// in): in a transaction begun there, in one round trip with it, checks the role is
    /// as clean as it was made. `Ok(Ok(_))`: clean, and the transaction is left open
    /// for [`Lending::sql`], which the caller sends next on `c` (pipelined with what
    /// follows, if it likes), then [`Worker::lent`] once that succeeded. Otherwise the
    /// transaction is rolled back.
    pub async fn check(
        &self,
        c: &impl deadpool_postgres::GenericClient,
        owner: &Ident,
    ) -> Result<Result<Lending, Tainted>> {
        let mut allowed: Vec<&str> = self.always.iter().map(Ident::as_str).collect();
        allowed.extend(self.lent_to.iter().map(Ident::as_str));
        let name = &self.role.name;
        let check = c.prepare_cached(CHECK).await?;
        // The check and the grant in one transaction, the first two statements
        // pipelined (one round trip). The grant, lost in a server crash, only leaves a
        // role that the run's end (or the engine, for a run a crash ended) drops
        // anyway: no flush to wait for.
        let (begun, checked) = futures_util::future::join(
            c.batch_execute(
                "BEGIN; SET LOCAL synchronous_commit = off; SET LOCAL enable_seqscan = off",
            ),
            c.query_one(&check, &[&name.as_str(), &allowed]),
        )
        .await;
        let found = match begun.and(checked) {
            Ok(row) => row.get::<_, String>(0),
            Err(e) => {
                // Never hand the pool a session inside a failed transaction.
                let _ = c.batch_execute("ROLLBACK").await;
                return Err(e.into());
            }
        };
        if !found.is_empty() {
            c.batch_execute("ROLLBACK").await?;
            return Ok(Err(Tainted {
                after: self.lent_to.as_ref().map(|r| r.to_string()),
                found,
            }));
        }
        let mut sql = String::new();
        if let Some(last) = &self.lent_to {
            sql.push_str(&format!("REVOKE {last} FROM {name};\n"));
        }
        sql.push_str(&format!("GRANT {owner} TO {name};\n"));
        sql.push_str(&self.role.clear_password_sql());
        sql.push_str("\nCOMMIT;");
        Ok(Ok(Lending {
            sql,
            owner: owner.clone(),
        }))
    }

    /// A lending's [`Lending::sql`] succeeded: the role is the tenant's now.
    pub fn lent(&mut self, lending: Lending) {
        self.lent_to = Some(lending.owner);
    }

    /// What [`Worker::rest`] sends, for a caller that pipelines it after the tenant's
    /// work on the session (an error in it, and the caller retires the worker).
    pub fn rest_sql() -> &'static str {
        REST
    }

    /// After a tenant's work: the session's own state goes (`REST`). An error here
    /// (the session is gone, or in a transaction) and the caller retires it.
    pub async fn rest(&self) -> Result<()> {
        self.session.batch_execute(REST).await?;
        Ok(())
    }

    /// Ends the session and drops the role with whatever it owns or handed out.
    pub async fn retire(self, p: &Platform) -> Result<()> {
        drop(self.session);
        self.role.drop(p, &[]).await
    }
}
