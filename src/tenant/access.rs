//! Turning a tenant's database access off and on again: the login roles lose LOGIN,
//! their sessions end; later exactly the roles that could log in get it back.

use deadpool_postgres::GenericClient;

use super::{store, Tenant};
use crate::pg::Ident;

/// Sets NOLOGIN on every login role of the tenant that can log in now, and returns
/// those roles, so [`enable`] can restore exactly them. Call [`end_sessions`] after the
/// transaction commits: before that, a terminated client could log in again.
pub async fn disable(
    c: &impl GenericClient,
    t: &Tenant,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let logins = store::login_roles(c, t).await?;
    let can_login: Vec<String> = c
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY($1) AND rolcanlogin ORDER BY rolname",
            &[&logins],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for role in &can_login {
        let role = Ident::new(role.clone()).expect("registry holds valid names");
        c.batch_execute(&format!("ALTER ROLE {role} NOLOGIN"))
            .await?;
    }
    Ok(can_login)
}

/// Gives LOGIN back to the roles [`disable`] returned (those that still exist).
pub async fn enable(c: &impl GenericClient, roles: &[String]) -> Result<(), tokio_postgres::Error> {
    let existing: Vec<String> = c
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY($1)",
            &[&roles],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for role in &existing {
        let role = Ident::new(role.clone()).expect("registry holds valid names");
        c.batch_execute(&format!("ALTER ROLE {role} LOGIN")).await?;
    }
    Ok(())
}

/// Ends every session of these roles (other than our own).
pub async fn end_sessions(
    c: &impl GenericClient,
    roles: &[String],
) -> Result<u64, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE usename = ANY($1) AND pid <> pg_backend_pid()",
            &[&roles],
        )
        .await?;
    Ok(rows.len() as u64)
}
