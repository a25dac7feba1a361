//! Moving a tenant between isolation modes (docs/moves.md "Between isolation modes"):
//! the parts of a `tenant.move` with `to_isolation` that differ from a move in the
//! tenant's own mode (`moving`). The target is made as a create in the new mode makes
//! it, then filled with the source schema's definition:
//!
//! - database mode: the database cloned from the target server's template database
//!   and configured exactly as `tenant.create.database` does it (owner, CONNECT and
//!   TEMP for the tenant's roles only, the realtime gate), then the template's copy
//!   of the tenant schema replaced by the source schema's `pg_dump`;
//! - schema mode: the source database's tenant schema (`pg_dump --schema=...`) made
//!   in the target server's own database.
//!
//! Then the roles' reach follows the mode ([`grant_reach`]): schema mode reaches the
//! server's database through `berqenas_tenant_connect`/`berqenas_tenant_temp`
//! (isolation::schema), database mode only its own database. Every part is
//! idempotent: a step runs again after a crash.

use super::moving::{dump_into, Result};
use super::{database_mode, Isolation, Slug};
use crate::names::roles::DefaultRole;
use crate::pg::{hardening, Ident};
use crate::platform::Platform;

/// The tenant's database on the target, made as a database-mode create makes it,
/// holding the source schema's definition (from `src_db` on `src`). Runs again
/// harmlessly until the copy starts (the schema is replaced in one transaction).
pub async fn make_database(
    src: &Platform,
    src_db: &str,
    dst: &Platform,
    slug: &Slug,
    connection_limit: i32,
) -> Result<()> {
    if !database_mode::database_exists(dst, slug)
        .await
        .map_err(made)?
    {
        database_mode::clone(dst, slug, connection_limit)
            .await
            .map_err(made)?;
    }
    // Renames the template's schema, hands its objects to the tenant's owner, grants
    // CONNECT/TEMP to the tenant's roles alone, syncs the realtime gate, checks.
    database_mode::configure(dst, slug).await.map_err(made)?;
    // The template's tables give way to the source's (the tenant may have changed
    // them and added its own): dropped and made again from the dump, in one
    // transaction, so a crash leaves one or the other.
    let schema = slug.schema();
    dump_into(
        src,
        src_db,
        &[format!("--schema={schema}")],
        dst,
        schema.as_str(),
        true,
        &format!("DROP SCHEMA IF EXISTS {schema} CASCADE;\n"),
    )
    .await
}

/// The tenant schema of the source database `src_db` made in the target server's
/// database `dst_db`, unless it is there already.
pub async fn make_schema(
    src: &Platform,
    src_db: &str,
    dst: &Platform,
    dst_db: &str,
    slug: &Slug,
) -> Result<()> {
    if super::moving::data_exists(dst, slug, Isolation::Schema).await? {
        return Ok(());
    }
    let schema = slug.schema();
    dump_into(
        src,
        src_db,
        &[format!("--schema={schema}")],
        dst,
        dst_db,
        true,
        "",
    )
    .await
}

/// The tenant's roles that reach a database (its login and group roles; the owner
/// never logs in).
fn reaching(slug: &Slug) -> Vec<Ident> {
    std::iter::once(slug.login_role())
        .chain(DefaultRole::ALL.iter().map(|r| slug.group_role(*r)))
        .collect()
}

/// The roles' reach of the server's own database as `mode` has it: schema mode,
/// members of the roles holding CONNECT and TEMP there (as isolation::schema grants
/// them); database mode, not (its own database grants them CONNECT and TEMP).
/// Idempotent.
pub async fn grant_reach(view: &Platform, slug: &Slug, mode: Isolation) -> Result<()> {
    let roles = reaching(slug)
        .iter()
        .map(Ident::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let (connect, temp) = (hardening::connect_role(), hardening::temp_role());
    let sql = match mode {
        Isolation::Database => format!("REVOKE {connect}, {temp} FROM {roles};"),
        _ => format!("GRANT {connect}, {temp} TO {roles};"),
    };
    view.pool.get().await?.batch_execute(&sql).await?;
    Ok(())
}

/// After a move out of database mode on the same server, before the logins come
/// back: the source database (kept for the grace) no longer lets the tenant's roles
/// in, so a client still holding the old DSN is refused at connect ("permission
/// denied for database") instead of reaching the stale copy, where a write would be
/// lost when the copy is dropped. Idempotent.
pub async fn close_source_database(
    view: &Platform,
    database: &str,
    roles: &[String],
) -> Result<()> {
    let db = Ident::new(database)
        .map_err(|e| made(super::service::Error::invalid("database", e.to_string())))?;
    let roles = roles
        .iter()
        .map(|r| Ident::new(r.as_str()).map(|r| r.to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| made(super::service::Error::invalid("roles", e.to_string())))?
        .join(", ");
    view.pool
        .get()
        .await?
        .batch_execute(&format!(
            "REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM {roles};"
        ))
        .await?;
    Ok(())
}

fn made(e: super::service::Error) -> super::moving::Error {
    super::moving::Error::Tool {
        program: "database mode".into(),
        detail: e.to_string(),
    }
}
