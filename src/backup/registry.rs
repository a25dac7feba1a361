//! Where a backup's objects live in the backup store (its rows are in
//! [`crate::store::backups`]).

use uuid::Uuid;

/// Where a backup's object lives in the store.
pub fn object_key(tenant_id: Uuid, id: Uuid) -> String {
    format!("{tenant_id}/{id}.bqb")
}

pub fn manifest_key(tenant_id: Uuid, id: Uuid) -> String {
    format!("{tenant_id}/{id}.manifest.json")
}
