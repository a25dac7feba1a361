//! The audit trail: one row per change, written in the same transaction as the change.
//! The rows form a hash chain (linked by a trigger, see migration 0007); [`chain`]
//! verifies it, [`query`] reads it. Its SQL is in [`crate::store::audit`].

pub mod chain;
pub mod query;

use deadpool_postgres::GenericClient;

pub use crate::store::audit::Entry;

/// Appends a row inside the caller's transaction. The chain trigger takes the chain's
/// lock until that transaction ends, so call this as the transaction's last change.
pub async fn record(c: &impl GenericClient, e: &Entry<'_>) -> crate::store::Result<()> {
    crate::store::audit::append(c, e).await
}
