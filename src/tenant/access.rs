//! Turning a tenant's database access off and on again: the login roles lose LOGIN,
//! their sessions end; later exactly the roles that could log in get it back.

use deadpool_postgres::GenericClient;

use super::Tenant;
use crate::pg::Ident;

/// Sets NOLOGIN on every login role of the tenant that can log in now, and returns
/// those roles, so [`enable`] can restore exactly them. Call [`end_sessions`] after the
/// transaction commits: before that, a terminated client could log in again.
pub async fn disable(c: &impl GenericClient, t: &Tenant) -> crate::store::Result<Vec<String>> {
    let logins = login_roles(c, t).await?;
    Ok(disable_roles(c, &logins).await?)
}

/// [`disable`] for logins named by the caller: on a tenant's own server, where the
/// registry (its users) is not (docs/servers.md).
pub async fn disable_roles(
    c: &impl GenericClient,
    logins: &[Ident],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let can_login: Vec<Ident> = c
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY($1) AND rolcanlogin ORDER BY rolname",
            &[&logins],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    for role in &can_login {
        c.batch_execute(&format!("ALTER ROLE {role} NOLOGIN"))
            .await?;
    }
    Ok(can_login.iter().map(|r| r.as_str().to_string()).collect())
}

/// Every login role of a tenant: its own, then its users'.
pub async fn login_roles(c: &impl GenericClient, t: &Tenant) -> crate::store::Result<Vec<Ident>> {
    let mut logins = vec![t.role.clone()];
    logins.extend(
        crate::store::users::list(c, t.id)
            .await?
            .into_iter()
            .map(|u| u.db_user),
    );
    Ok(logins)
}

/// Gives LOGIN back to the roles [`disable`] returned (those that still exist).
pub async fn enable(c: &impl GenericClient, roles: &[String]) -> Result<(), tokio_postgres::Error> {
    let existing: Vec<Ident> = c
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY($1)",
            &[&roles],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    for role in &existing {
        c.batch_execute(&format!("ALTER ROLE {role} LOGIN")).await?;
    }
    Ok(())
}

/// Ends every session of these roles (other than our own).
pub async fn end_sessions(
    c: &impl GenericClient,
    roles: &[impl AsRef<str>],
) -> Result<u64, tokio_postgres::Error> {
    let roles: Vec<&str> = roles.iter().map(AsRef::as_ref).collect();
    let rows = c
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE usename = ANY($1) AND pid <> pg_backend_pid()",
            &[&roles],
        )
        .await?;
    Ok(rows.len() as u64)
}
