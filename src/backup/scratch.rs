//! The registry of scratch objects (`berqenas.scratch_objects`): every throw-away
//! role, database, schema or file is registered, committed, before it is created, and
//! unregistered after it is dropped. While a [`Lease`] lives its row's lease is renewed;
//! a process killed mid-work stops renewing, and [`super::sweep`] removes what it left.

use std::path::Path;

use deadpool_postgres::Pool;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::ops::lease::{Keeper, Renewal};

/// What a scratch object is, as the registry spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Role,
    Database,
    /// A schema in some database (the row names which).
    Schema,
    /// A file, by absolute path.
    File,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Role, Kind::Database, Kind::Schema, Kind::File];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Role => "role",
            Kind::Database => "database",
            Kind::Schema => "schema",
            Kind::File => "file",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("a scratch file must be named by an absolute path, not {0:?}")]
    RelativePath(String),
}

impl From<Error> for super::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Db(e) => Self::Db(e),
            Error::Pool(e) => Self::Pool(e),
            Error::RelativePath(p) => Self::Store(std::io::Error::other(format!(
                "a scratch file must be named by an absolute path, not {p:?}"
            ))),
        }
    }
}

/// A registered scratch object, its lease renewed until this is released or dropped.
/// Dropped without [`Lease::release`] (an error path, a panic), the row's lease
/// lapses and the sweeper drops the object: nothing is leaked for good.
pub struct Lease {
    id: Uuid,
    pool: Pool,
    _keeper: Keeper,
}

impl Lease {
    /// Registers (and commits) the object before the caller creates it.
    ///
    /// Names are unique to their user: random, or used only under a lock (a restore of
    /// one shared-mode backup). So a row of the same kind and name is a dead process's,
    /// and is taken over; its object is the one about to be created again.
    pub async fn register(
        pool: &Pool,
        kind: Kind,
        name: &str,
        database: Option<&str>,
    ) -> Result<Self, Error> {
        let mut c = pool.get().await?;
        let tx = c.transaction().await?;
        let lease = Self::register_in(&*tx, pool, kind, name, database).await?;
        tx.commit().await?;
        Ok(lease)
    }

    /// Registers inside the caller's transaction, for an object that transaction
    /// creates too (a role): both commit, or neither, in one round of commits.
    pub async fn register_in(
        tx: &impl GenericClient,
        pool: &Pool,
        kind: Kind,
        name: &str,
        database: Option<&str>,
    ) -> Result<Self, Error> {
        if kind == Kind::File && !name.starts_with('/') {
            return Err(Error::RelativePath(name.to_string()));
        }
        let id = Uuid::now_v7();
        // Waits for a sweeper that holds the old row: it finishes its drop first.
        tx.execute(
            "DELETE FROM berqenas.scratch_objects
              WHERE kind = $1 AND name = $2 AND database IS NOT DISTINCT FROM $3",
            &[&kind.as_str(), &name, &database],
        )
        .await?;
        tx.execute(
            "INSERT INTO berqenas.scratch_objects (id, kind, name, database, lease_until)
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
            &[
                &id,
                &kind.as_str(),
                &name,
                &database,
                &crate::ops::lease_secs(),
            ],
        )
        .await?;
        Ok(Self {
            id,
            pool: pool.clone(),
            _keeper: Keeper::start(pool.clone(), Renewal::SCRATCH, id),
        })
    }

    /// Registers a file (its path made absolute first).
    pub async fn register_file(pool: &Pool, path: &Path) -> Result<Self, Error> {
        let path = std::path::absolute(path)
            .map_err(|_| Error::RelativePath(path.display().to_string()))?;
        Self::register(pool, Kind::File, &path.to_string_lossy(), None).await
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Unregisters the object, after the caller dropped it.
    pub async fn release(self) -> Result<(), Error> {
        let c = self.pool.get().await?;
        forget(&**c, self.id).await?;
        Ok(())
    }

    /// [`Lease::release`] where there is no await (a `Drop`): in the background if a
    /// runtime is there; else the lease lapses and the sweeper deletes the row.
    pub fn release_later(self) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = self.release().await {
                    tracing::debug!(error = %e, "could not unregister a scratch object; the sweeper will");
                }
            });
        }
    }
}

/// Unregisters by id (for an owner that keeps its [`Lease`] a little longer).
pub async fn forget_by_id(c: &impl GenericClient, id: Uuid) -> Result<(), tokio_postgres::Error> {
    forget(c, id).await
}

async fn forget(c: &impl GenericClient, id: Uuid) -> Result<(), tokio_postgres::Error> {
    c.execute("DELETE FROM berqenas.scratch_objects WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

/// A registry row whose lease lapsed, held (row-locked) by the sweeper.
#[derive(Debug, Clone)]
pub struct Lapsed {
    pub id: Uuid,
    pub kind: Kind,
    pub name: String,
    pub database: Option<String>,
}

/// Locks the next lapsed row not in `skip` (databases first: roles may own objects in
/// them; files last), in the caller's transaction. Another server's sweeper skips it
/// while the transaction lasts; a live owner's renewal waits for it.
pub async fn claim_next(
    c: &impl GenericClient,
    skip: &[Uuid],
) -> Result<Option<Lapsed>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT id, kind, name, database FROM berqenas.scratch_objects
              WHERE lease_until < now() AND id <> ALL($1)
              ORDER BY array_position(ARRAY['database', 'schema', 'role', 'file'], kind), created_at
              LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[&skip],
        )
        .await?;
    Ok(row.and_then(|r| {
        let kind: String = r.get(1);
        Some(Lapsed {
            id: r.get(0),
            kind: Kind::parse(&kind)?,
            name: r.get(2),
            database: r.get(3),
        })
    }))
}

/// Deletes a swept row, in the claiming transaction.
pub async fn delete(c: &impl GenericClient, id: Uuid) -> Result<(), tokio_postgres::Error> {
    forget(c, id).await
}

/// Throw-away restore roles made before this registry existed: `berqenas_restore_`
/// and 12 hex digits (the only name `TempRole` makes), with no row, whose login
/// expired (`VALID UNTIL`, an hour after creation) are dead. They get a lapsed row, so
/// the sweeper removes them the usual way. Returns how many it adopted.
pub async fn adopt_expired_restore_roles(
    c: &impl GenericClient,
) -> Result<u64, tokio_postgres::Error> {
    c.execute(
        "INSERT INTO berqenas.scratch_objects (id, kind, name, lease_until)
         SELECT gen_random_uuid(), 'role', r.rolname, now() - interval '1 second'
           FROM pg_roles r
          WHERE r.rolname ~ '^berqenas_restore_[0-9a-f]{12}$'
            AND r.rolvaliduntil < now()
            AND NOT EXISTS (SELECT 1 FROM berqenas.scratch_objects s
                             WHERE s.kind = 'role' AND s.name = r.rolname)",
        &[],
    )
    .await
}
