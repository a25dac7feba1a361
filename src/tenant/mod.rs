//! The tenant domain: names, sizes, the registry record and its store.

pub mod access;
pub mod api_keys;
pub mod create;
pub mod credentials;
pub mod database_claim;
pub mod database_mode;
pub mod integrity;
pub mod lifecycle;
pub mod moving;
pub mod moving_catch_up;
pub mod moving_mode;
pub mod moving_pools;
pub mod moving_shared;
pub mod offboarding;
pub mod placed;
pub mod placed_members;
pub use crate::names::roles;
pub mod service;
pub mod shared_mode;
pub mod size;
pub use crate::names::slug;
pub mod invitations;
pub mod state;
pub mod suspension;
pub mod users;

pub use crate::store::tenants::record::{AccessMode, Isolation, Plan, Status, Tenant};
pub use slug::Slug;

/// The registry's SQL, where `ops` (the operation engine's work in progress) still
/// looks for it.
pub use crate::store::tenants as store;

/// Every role of every tenant still in PostgreSQL (purged ones have none): owner,
/// login and default group roles, and the tenants' users.
pub async fn all_roles(
    c: &impl deadpool_postgres::GenericClient,
) -> crate::store::Result<Vec<String>> {
    let mut roles: Vec<String> = crate::store::tenants::names_with_roles(c)
        .await?
        .iter()
        .flat_map(|s| s.fixed_roles())
        .map(|r| r.as_str().to_string())
        .collect();
    roles.extend(
        crate::store::users::all_db_users(c)
            .await?
            .iter()
            .map(|u| u.as_str().to_string()),
    );
    Ok(roles)
}
