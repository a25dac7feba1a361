//! The shared pool (row-level security) at start, and the catalog reads its SQL needs.

use deadpool_postgres::GenericClient;

use super::service::Error;
use crate::isolation::shared as sql;
use crate::pg::Ident;
use crate::platform::Platform;

type Result<T, E = Error> = std::result::Result<T, E>;

/// Any constant; serialises pool builds between servers starting together.
const POOL_LOCK: i64 = 0x6265_7271_706f_6f6c; // "berqpool"

/// Builds the pool schema at the current template if it is not there yet.
pub async fn ensure_pool(p: &Platform) -> Result<()> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    lock_pool(&tx).await?;
    let exists = tx
        .query_opt(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            &[&sql::POOL_SCHEMA],
        )
        .await?
        .is_some();
    if exists {
        return Ok(());
    }
    let tables = build(&tx, p).await?;
    set_pool_version(&tx, p.template.latest_version(), &p.template.checksum()).await?;
    tx.commit().await?;
    tracing::info!(tables = tables.len(), "built the shared tenant pool");
    Ok(())
}

/// The pool on a server other than `default` (docs/servers.md), in that server's own
/// database: built at this process's template the first time a shared-mode tenant is
/// made there, with its quota guard reading that server's flags (the registry is not
/// there). Its version is the marker on its schema, which its build and every
/// migration of it set with their DDL. Returns that version.
pub async fn ensure_pool_on(view: &Platform) -> Result<i32> {
    let mut client = view.pool.get().await?;
    if let Some(v) = pool_version_on(&client).await? {
        return Ok(v);
    }
    let tx = client.transaction().await?;
    lock_pool(&tx).await?;
    if let Some(v) = pool_version_on(&tx).await? {
        return Ok(v);
    }
    let tables = build(&tx, view).await?;
    crate::isolation::quota_guard::ensure_guard(&tx, crate::isolation::quota_guard::Flags::Local)
        .await?;
    let version = view.template.latest_version();
    tx.batch_execute(&mark_sql(version)).await?;
    tx.commit().await?;
    tracing::info!(
        tables = tables.len(),
        version,
        "built the shared tenant pool on a server"
    );
    Ok(version)
}

/// The pool's roles and tables at `p`'s template, in the caller's transaction, which
/// holds the pool's lock; returns the tables it made shared.
async fn build(tx: &deadpool_postgres::Transaction<'_>, p: &Platform) -> Result<Vec<String>> {
    for role in sql::pool_roles() {
        tx.batch_execute(&crate::pg::ensure_nologin_role_sql(&role))
            .await?;
    }
    if !p.caps.superuser {
        let owner = Ident::new(sql::POOL_OWNER).expect("static name");
        tx.batch_execute(&format!("GRANT {owner} TO CURRENT_USER"))
            .await?;
    }
    tx.batch_execute(&sql::build_head_sql(&p.template.full_sql()))
        .await?;
    tenantize(tx).await
}

/// Holds the pool's build lock until the transaction ends: a migration of the pool
/// on another server and its build (or another migration) never interleave.
pub async fn lock_pool(c: &impl GenericClient) -> Result<()> {
    c.execute("SELECT pg_advisory_xact_lock($1)", &[&POOL_LOCK])
        .await?;
    Ok(())
}

/// Holds the pool's lock, shared, until the transaction ends (a create's member rows:
/// no migration of the pool meanwhile); returns the version its marker says.
pub async fn share_pool(c: &impl GenericClient) -> Result<i32> {
    c.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&POOL_LOCK])
        .await?;
    Ok(pool_version_on(c).await?.unwrap_or(0))
}

/// Marks the pool's schema with the template version its tables are at.
pub fn mark_sql(version: i32) -> String {
    let schema = Ident::new(sql::POOL_SCHEMA).expect("static name");
    format!(
        "COMMENT ON SCHEMA {schema} IS {};",
        crate::pg::Literal(&format!("{}{version}", crate::template::VERSION_MARKER))
    )
}

/// What the pool schema's marker says on a server other than `default` (`None`: no
/// pool there).
pub async fn pool_version_on(c: &impl GenericClient) -> Result<Option<i32>> {
    let row = c
        .query_opt(
            "SELECT substring(pg_catalog.obj_description(n.oid, 'pg_namespace') FROM $2)::int
               FROM pg_catalog.pg_namespace n WHERE n.nspname = $1",
            &[
                &sql::POOL_SCHEMA,
                &format!("^{}(\\d+)$", crate::template::VERSION_MARKER),
            ],
        )
        .await?;
    match row {
        None => Ok(None),
        // A schema of that name without a marker is not one berqenas built (a build
        // commits with its marker): it reads as version 0.
        Some(r) => Ok(Some(r.get::<_, Option<i32>>(0).unwrap_or(0))),
    }
}

/// The row in `template_database` that records the pool's template version.
pub const POOL_ROW: &str = "shared-pool";

/// The template version the pool's tables are at (0 before the pool exists).
pub async fn pool_version(c: &impl GenericClient) -> Result<i32> {
    Ok(crate::store::templates::version(c, POOL_ROW, false)
        .await?
        .unwrap_or(0))
}

/// Like [`pool_version`], holding the row until the transaction ends, so two
/// migrations of the pool (or a migration and a new tenant) never interleave.
pub async fn lock_pool_version(c: &impl GenericClient) -> Result<i32> {
    Ok(crate::store::templates::version(c, POOL_ROW, true)
        .await?
        .unwrap_or(0))
}

pub async fn set_pool_version(c: &impl GenericClient, version: i32, checksum: &str) -> Result<()> {
    Ok(crate::store::templates::set_built(c, POOL_ROW, version, checksum).await?)
}

/// Makes whatever the template just created in the pool fit for sharing: tables
/// without `tenant_id` get it, with row-level security and the pool roles' grants;
/// unique constraints and unique indexes become unique per tenant. Returns the tables
/// it converted. Runs at the first build and after every template migration.
pub async fn tenantize(c: &impl GenericClient) -> Result<Vec<String>> {
    let new_tables: Vec<String> = c
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname <> 'members'
                AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                                 WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
              ORDER BY 1",
            &[&sql::POOL_SCHEMA],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Unique constraints that do not start with tenant_id (all of them on new tables).
    let rows = c
        .query(
            "SELECT t.relname::text, k.conname::text,
                    ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, ord)
                           JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.ord)
               FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid
               JOIN pg_namespace n ON n.oid = k.connamespace
              WHERE n.nspname = $1 AND k.contype = 'u'
                AND k.conkey[1] IS DISTINCT FROM (SELECT a.attnum FROM pg_attribute a
                                                  WHERE a.attrelid = k.conrelid AND a.attname = 'tenant_id')",
            &[&sql::POOL_SCHEMA],
        )
        .await?;
    let uniques: Vec<(String, String, Vec<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    // Unique indexes made with CREATE UNIQUE INDEX rather than a constraint.
    let indexes = c
        .query(
            "SELECT ci.relname::text, pg_get_indexdef(i.indexrelid)
               FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid
               JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
              WHERE n.nspname = $1 AND i.indisunique AND NOT i.indisprimary
                AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
                AND i.indkey[0] IS DISTINCT FROM (SELECT a.attnum FROM pg_attribute a
                                                  WHERE a.attrelid = i.indrelid AND a.attname = 'tenant_id')",
            &[&sql::POOL_SCHEMA],
        )
        .await?;
    let mut rewrites = String::new();
    for r in &indexes {
        let (name, def): (String, String) = (r.get(0), r.get(1));
        let Some(per_tenant) = def
            .split_once(" USING btree (")
            .map(|(head, tail)| format!("{head} USING btree (tenant_id, {tail}"))
        else {
            return Err(Error::Rejected(crate::problem::Problem::new(
                crate::problem::Kind::Unprocessable,
                "unsupported_in_shared_mode",
                format!("unique index {name} in the shared pool is not a btree index; it cannot be made unique per tenant"),
            )));
        };
        let name = Ident::new(name).expect("catalog names are valid");
        let schema = Ident::new(sql::POOL_SCHEMA).expect("static name");
        rewrites.push_str(&format!("DROP INDEX {schema}.{name};\n{per_tenant};\n"));
    }
    if new_tables.is_empty() && uniques.is_empty() && rewrites.is_empty() {
        return Ok(new_tables);
    }
    c.batch_execute(&sql::build_tail_sql(&new_tables, &uniques))
        .await?;
    if !rewrites.is_empty() {
        let owner = Ident::new(sql::POOL_OWNER).expect("static name");
        c.batch_execute(&format!("SET LOCAL ROLE {owner};\n{rewrites}RESET ROLE;"))
            .await?;
    }
    Ok(new_tables)
}
