//! The shared pool (row-level security) at start, and the catalog reads its SQL needs.

use deadpool_postgres::GenericClient;

use super::service::Error;
use crate::isolation::shared as sql;
use crate::pg::Ident;
use crate::platform::Platform;

type Result<T, E = Error> = std::result::Result<T, E>;

/// Any constant; serialises pool builds between servers starting together.
const POOL_LOCK: i64 = 0x6265_7271_706f_6f6c; // "berqpool"

/// The pool's tables (the template's), from the catalog.
pub async fn pool_tables(c: &impl GenericClient) -> Result<Vec<String>> {
    let rows = c
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 AND tablename <> 'members' ORDER BY 1",
            &[&sql::POOL_SCHEMA],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Builds the pool schema at the current template if it is not there yet.
pub async fn ensure_pool(p: &Platform) -> Result<()> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&POOL_LOCK])
        .await?;
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
    for role in sql::pool_roles() {
        let present = tx
            .query_opt(
                "SELECT 1 FROM pg_roles WHERE rolname = $1",
                &[&role.as_str()],
            )
            .await?
            .is_some();
        if !present {
            tx.batch_execute(&format!("CREATE ROLE {role} NOLOGIN"))
                .await?;
        }
    }
    if !p.caps.superuser {
        let owner = Ident::new(sql::POOL_OWNER).expect("static name");
        tx.batch_execute(&format!("GRANT {owner} TO CURRENT_USER"))
            .await?;
    }
    tx.batch_execute(&sql::build_head_sql(&p.template.full_sql()))
        .await?;
    let tables = pool_tables(&tx).await?;
    let rows = tx
        .query(
            "SELECT c.conrelid::regclass::text, c.conname::text,
                    ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, ord)
                           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.ord)
               FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
              WHERE n.nspname = $1 AND c.contype = 'u'",
            &[&sql::POOL_SCHEMA],
        )
        .await?;
    let uniques: Vec<(String, String, Vec<String>)> = rows
        .iter()
        .map(|r| {
            let table: String = r.get(0);
            // regclass prints schema-qualified names outside the search path.
            let table = table
                .rsplit('.')
                .next()
                .unwrap_or(&table)
                .trim_matches('"')
                .to_string();
            (table, r.get(1), r.get(2))
        })
        .collect();
    tx.batch_execute(&sql::build_tail_sql(&tables, &uniques))
        .await?;
    tx.execute(
        "INSERT INTO berqenas.template_database (name, version, checksum) VALUES ('shared-pool', $1, $2)
         ON CONFLICT (name) DO UPDATE SET version = $1, checksum = $2",
        &[&p.template.latest_version(), &p.template.checksum()],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(tables = tables.len(), "built the shared tenant pool");
    Ok(())
}
