//! A database-mode member's work inside its database at a claim, done before the
//! one-transaction create renames the database (`workflows::create_one`): `ALTER
//! DATABASE ... RENAME` needs nobody in the database, and a session can only be in a
//! database by its committed name, so this runs under the member's name, while the
//! create's transaction holds the member's pool row.
//!
//! If the create then fails or dies before its commit, the member goes back to the
//! pool with its schema already named for that tenant and the plan's limits in its
//! gate: nothing outside the member's database can see either, and the next claim
//! finds the schema by its owner (the member's owner role) and renames it again.
//!
//! The session is one opened ahead ([`hold`], `workflows::warm_pool_holds`) when the
//! server holds one in the member's database, else a new one ([`open`]).

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use super::service::Result;
use super::Slug;
use crate::isolation::warm;
use crate::pg::{self, closing::Closing};
use crate::platform::Platform;
use crate::store;

/// A session in the member's database (its own name), for [`prepare`]; closed with
/// [`Closing::close`], which returns once the server is out of the database.
pub async fn open(p: &Platform, member: &Slug) -> Result<Closing> {
    Ok(pg::closing::connect(&in_member(p, member)).await?)
}

/// The control role's connection settings, in the member's database.
fn in_member(p: &Platform, member: &Slug) -> tokio_postgres::Config {
    let mut config = p.config.clone();
    config.dbname(member.schema().as_str());
    config
}

/// A session opened ahead in the member's database for the claim that will take it,
/// named [`warm::HOLD_APPLICATION`] (so that a claim or a recycle elsewhere can end
/// it), with the catalog rows a claim's work reads already in its caches: a new
/// backend reads them at its first use.
pub async fn hold(p: &Platform, member: &Slug) -> Result<Closing> {
    let mut config = in_member(p, member);
    config.application_name(warm::HOLD_APPLICATION);
    let session = pg::closing::connect(&config).await?;
    // A member made before members had their gate has no table to read: it is
    // installed at the claim.
    let _ = session.client.batch_execute(WARM_UP).await;
    Ok(session)
}

/// What a claim's work reads first: the gate's row and its index, a schema by name.
const WARM_UP: &str = "SELECT FROM pg_catalog.pg_namespace WHERE nspname = 'tenant_';\n\
     SELECT FROM berqenas_realtime.limits WHERE one;";

/// Sent first in each batch of a claim's work: its session is no longer one held
/// ahead, which the rename ends (and [`left`] does not wait for).
const CLAIMING: &str = "SET application_name = 'berqenas';\n";

/// The member's schema renamed to the tenant's and the gate given the plan's realtime
/// limits (per minute, per hour), in one implicit transaction: what a claim changes
/// inside the database (its grants, owners and default privileges name roles by OID,
/// and follow the roles' renames).
pub async fn prepare(
    db: &tokio_postgres::Client,
    member: &Slug,
    tenant: &Slug,
    (per_minute, per_hour): (i32, i32),
) -> Result<()> {
    let rename = format!("{CLAIMING}{}", warm::rename_schema_sql(member, tenant));
    let set = store::realtime_gate::set_limits(db, &rename, per_minute, per_hour).await;
    let Err(store::Error::Db(e)) = &set else {
        return Ok(set?);
    };
    match e.code() {
        // Renamed by a claim that did not commit.
        Some(c) if *c == SqlState::INVALID_SCHEMA_NAME => {
            let current: String = db
                .query_one(
                    "SELECT n.nspname FROM pg_catalog.pg_namespace n \
                     JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner \
                     WHERE r.rolname = $1 AND n.nspname LIKE 'tenant\\_%'",
                    &[&member.owner_role().as_str()],
                )
                .await?
                .get(0);
            let from = pg::Ident::new(current)?;
            let rename = format!(
                "{CLAIMING}ALTER SCHEMA {from} RENAME TO {};",
                tenant.schema()
            );
            store::realtime_gate::set_limits(db, &rename, per_minute, per_hour).await?;
        }
        // A member made before members had their gate.
        Some(c) if *c == SqlState::UNDEFINED_TABLE => {
            store::realtime_gate::install(db).await?;
            store::realtime_gate::set_limits(db, &rename, per_minute, per_hour).await?;
        }
        _ => set?,
    }
    Ok(())
}

/// Returns once PostgreSQL's activity view shows no session in the member's database
/// but those held ahead (never, after [`POLLS`] readings that still show one; the
/// rename ends those: `warm::rename_database_sql`)
/// (polled on `c`, each time afresh: a transaction keeps its first reading of the view
/// until `pg_stat_clear_snapshot()`). A backend leaves the view a few steps of its exit
/// before it leaves the process array that `ALTER DATABASE ... RENAME` reads, and
/// sooner than its socket ends (`pg::closing`).
pub async fn left(c: &impl GenericClient, member: &Slug) -> Result<()> {
    let (clear, count) = tokio::try_join!(
        c.prepare_cached("SELECT pg_catalog.pg_stat_clear_snapshot()"),
        c.prepare_cached(
            "SELECT count(*) FROM pg_catalog.pg_stat_activity \
              WHERE datname = $1 AND application_name IS DISTINCT FROM $2"
        ),
    )?;
    let database = member.schema();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&database.as_str(), &warm::HOLD_APPLICATION];
    // A round trip each; a backend that takes longer than this many is left to the
    // end of its socket (`pg::closing::Closing::close`).
    for _ in 0..POLLS {
        let (_, n) = tokio::try_join!(c.execute(&clear, &[]), c.query_one(&count, &params))?;
        if n.get::<_, i64>(0) == 0 {
            return Ok(());
        }
    }
    std::future::pending().await
}

const POLLS: usize = 100;
