//! The shared pool's quota guard: restrictive row-security policies on every pool
//! table that refuse a blocked tenant's INSERT and UPDATE.

use deadpool_postgres::GenericClient;

use super::shared as pool;
use crate::pg::Ident;

fn ident(s: &str) -> Ident {
    Ident::new(s.to_string()).expect("catalog names are valid")
}

/// Any constant; serialises adding the guard to the pool's tables.
const GUARD_LOCK: i64 = 0x6265_7271_6775_6172; // "berqguar"

/// Whether the guard function exists, and the pool tables without its policies.
async fn guard_state(c: &impl GenericClient) -> Result<(bool, Vec<String>), tokio_postgres::Error> {
    let has_fn = c
        .query_opt(
            "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = $1 AND p.proname = 'writes_blocked'",
            &[&pool::POOL_SCHEMA],
        )
        .await?
        .is_some();
    let missing: Vec<String> = c
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname <> 'members'
                AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'quota_block_insert')",
            &[&pool::POOL_SCHEMA],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok((has_fn, missing))
}

/// Shared mode cannot revoke a privilege from one tenant: the privileges belong to the
/// pool roles every tenant shares. So each pool table carries two restrictive row
/// security policies that refuse INSERT and UPDATE (SQLSTATE 42501, as a revoked
/// privilege would) while the tenant's `disk_usage.writes_blocked` is set. A tenant
/// can read that flag only through this function, and change it not at all.
pub async fn ensure_shared_guard(c: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    ensure_guard(c, Flags::Registry).await
}

/// Where the guard reads whether a tenant's writes are blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flags {
    /// The registry's `disk_usage` (the pool on `default`, in the control database).
    Registry,
    /// A table of the pool's own server, [`LOCAL_FLAGS`] (a pool on another server,
    /// where the registry is not): the quota round writes it there.
    Local,
}

/// The table of tenants whose writes are blocked, on a server other than `default`:
/// the control role's, in a schema PUBLIC cannot use.
pub const LOCAL_FLAGS: &str = "berqenas_quota.blocked";

fn flag_sql(flags: Flags) -> String {
    match flags {
        Flags::Registry => "SELECT coalesce((SELECT writes_blocked FROM berqenas.disk_usage WHERE tenant_id = $1), false)".into(),
        Flags::Local => format!("SELECT EXISTS (SELECT 1 FROM {LOCAL_FLAGS} WHERE tenant_id = $1)"),
    }
}

/// Sets or clears a tenant's block in [`LOCAL_FLAGS`] (its server's pool reads it).
pub async fn set_local_block(
    c: &impl GenericClient,
    tenant: uuid::Uuid,
    blocked: bool,
) -> Result<(), tokio_postgres::Error> {
    ensure_guard(c, Flags::Local).await?;
    let sql = match blocked {
        true => format!("INSERT INTO {LOCAL_FLAGS} (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING"),
        false => format!("DELETE FROM {LOCAL_FLAGS} WHERE tenant_id = $1"),
    };
    c.execute(&sql, &[&tenant]).await?;
    Ok(())
}

/// [`ensure_shared_guard`], its function reading `flags`.
pub async fn ensure_guard(
    c: &impl GenericClient,
    flags: Flags,
) -> Result<(), tokio_postgres::Error> {
    let (schema, owner) = (ident(pool::POOL_SCHEMA), ident(pool::POOL_OWNER));
    if let (true, missing) = guard_state(c).await? {
        if missing.is_empty() {
            return Ok(());
        }
    }
    c.execute("SELECT pg_advisory_xact_lock($1)", &[&GUARD_LOCK])
        .await?;
    let (has_fn, missing) = guard_state(c).await?;
    let mut sql = String::new();
    if !has_fn {
        let users: Vec<String> = pool::pool_roles()
            .iter()
            .filter(|r| r.as_str() != pool::POOL_OWNER)
            .map(|r| r.to_string())
            .collect();
        if flags == Flags::Local {
            sql.push_str(&format!(
                "CREATE SCHEMA IF NOT EXISTS berqenas_quota;\n\
                 REVOKE ALL ON SCHEMA berqenas_quota FROM PUBLIC;\n\
                 CREATE TABLE IF NOT EXISTS {LOCAL_FLAGS} (tenant_id uuid PRIMARY KEY);\n"
            ));
        }
        // Owned by the control role, which can read the flags; fixed SQL with a
        // pinned search path, taking a tenant id and telling only whether it is blocked.
        sql.push_str(&format!(
            "CREATE FUNCTION {schema}.writes_blocked(uuid) RETURNS boolean\n\
                 LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog\n\
                 AS $$ {} $$;\n\
             REVOKE ALL ON FUNCTION {schema}.writes_blocked(uuid) FROM PUBLIC;\n\
             GRANT EXECUTE ON FUNCTION {schema}.writes_blocked(uuid) TO {};\n",
            flag_sql(flags),
            users.join(", ")
        ));
    }
    let tenants = guarded_roles();
    for table in missing {
        let t = Ident::new(table).expect("catalog names are identifiers");
        let blocked = format!("NOT {schema}.writes_blocked({schema}.current_tenant())");
        sql.push_str(&format!(
            "SET LOCAL ROLE {owner};\n\
             CREATE POLICY quota_block_insert ON {schema}.{t} AS RESTRICTIVE FOR INSERT TO {tenants} WITH CHECK ({blocked});\n\
             CREATE POLICY quota_block_update ON {schema}.{t} AS RESTRICTIVE FOR UPDATE TO {tenants} USING (true) WITH CHECK ({blocked});\n\
             RESET ROLE;\n"
        ));
    }
    c.batch_execute(&sql).await
}

/// The roles the guard's policies apply to: the pool roles tenants are members of.
/// Not PUBLIC: the pool's owner (restores, purges) and the control role must never be
/// held back by a tenant's block.
fn guarded_roles() -> String {
    pool::pool_roles()
        .iter()
        .filter(|r| r.as_str() != pool::POOL_OWNER)
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Guards installed by releases that applied them to PUBLIC are narrowed to the
/// tenants' pool roles, so a restore (as the pool's owner) works again after any
/// tenant was ever blocked. Runs at start.
pub async fn repair_shared_guard(c: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    let public: Vec<(String, String)> = c
        .query(
            "SELECT c.relname::text, p.polname::text FROM pg_policy p
               JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND p.polname IN ('quota_block_insert', 'quota_block_update')
                AND p.polroles = '{0}'",
            &[&pool::POOL_SCHEMA],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if public.is_empty() {
        return Ok(());
    }
    let (schema, owner) = (ident(pool::POOL_SCHEMA), ident(pool::POOL_OWNER));
    let mut sql = format!("SET ROLE {owner};\n");
    for (table, policy) in &public {
        let (t, p) = (
            Ident::new(table.clone()).expect("catalog names are identifiers"),
            Ident::new(policy.clone()).expect("catalog names are identifiers"),
        );
        sql.push_str(&format!(
            "ALTER POLICY {p} ON {schema}.{t} TO {};\n",
            guarded_roles()
        ));
    }
    sql.push_str("RESET ROLE;\n");
    c.batch_execute(&sql).await?;
    tracing::info!(
        policies = public.len(),
        "narrowed the shared pool's quota guard to the tenants' roles"
    );
    Ok(())
}

/// After the pool gained tables (a template migration): if the guard is installed,
/// the new tables get its policies too, so a blocked tenant cannot write there.
pub async fn extend_shared_guard(c: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    match guard_state(c).await? {
        // The function is there: `flags` only names what it reads.
        (true, missing) if !missing.is_empty() => ensure_guard(c, Flags::Registry).await,
        _ => Ok(()),
    }
}
