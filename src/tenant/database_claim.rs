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
    let mut config = p.config.clone();
    config.dbname(member.schema().as_str());
    Ok(pg::closing::connect(&config).await?)
}

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
    let rename = warm::rename_schema_sql(member, tenant);
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
            let rename = format!("ALTER SCHEMA {from} RENAME TO {};", tenant.schema());
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
