//! Shared mode: a tenant's rows are copied into a scratch schema of plain tables
//! (berqenas's own definitions, without `tenant_id`), and `pg_dump` archives that
//! schema. A restore brings the archive back into a scratch schema and moves the rows
//! into the pool in one transaction. The archive carries no tenant-defined code: shared
//! tenants cannot create objects, and the scratch tables have no constraints, defaults
//! or triggers.

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::Result;
use crate::isolation::pool_catalog::{foreign_keys, pool_tables, PoolTable};
use crate::isolation::shared::{POOL_OWNER, POOL_SCHEMA};
use crate::pg::{Ident, Literal};
use crate::platform::Platform;

/// The scratch schema a shared-mode backup's rows pass through.
pub fn scratch_schema(backup_id: Uuid) -> Ident {
    Ident::new(format!("berqenas_backup_{}", backup_id.simple())).expect("fits")
}

fn ident(s: &str) -> Ident {
    Ident::new(s).expect("catalog names are valid")
}

/// Copies the tenant's rows into a new scratch schema (committed, for pg_dump).
pub async fn copy_out(
    p: &Platform,
    t: &crate::store::tenants::Tenant,
    scratch: &Ident,
) -> Result<()> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let pool = ident(POOL_SCHEMA);
    let mut sql =
        format!("CREATE SCHEMA {scratch};\nREVOKE ALL ON SCHEMA {scratch} FROM PUBLIC;\n");
    for table in pool_tables(&*tx).await? {
        let name = ident(&table.name);
        sql.push_str(&format!(
            "CREATE UNLOGGED TABLE {scratch}.{name} AS SELECT {} FROM {pool}.{name} WHERE tenant_id = {}::uuid;\n",
            table.column_list(),
            Literal(&t.id.to_string())
        ));
    }
    tx.batch_execute(&sql).await?;
    tx.commit().await?;
    Ok(())
}

/// Replaces `tenant_id`'s rows in the pool by those in `scratch`, in the caller's
/// transaction. With `new_ids`, single-column uuid primary keys get fresh values (and
/// the foreign keys pointing at them follow), for a copy beside the original.
pub async fn move_in(
    c: &impl GenericClient,
    scratch: &Ident,
    tenant_id: Uuid,
    new_ids: bool,
) -> Result<()> {
    let tables = pool_tables(c).await?;
    let pool = ident(POOL_SCHEMA);
    let owner = ident(POOL_OWNER);
    let tenant = Literal(&tenant_id.to_string()).to_string();
    let mut sql = String::new();
    if new_ids {
        sql.push_str(&remap_sql(c, scratch).await?);
    }
    // The pool owner's maintenance policy lets it see and write every tenant's rows.
    sql.push_str(&format!(
        "GRANT USAGE ON SCHEMA {scratch} TO {owner};\nGRANT SELECT ON ALL TABLES IN SCHEMA {scratch} TO {owner};\nSET LOCAL ROLE {owner};\n"
    ));
    for t in tables.iter().rev() {
        sql.push_str(&format!(
            "DELETE FROM {pool}.{} WHERE tenant_id = {tenant}::uuid;\n",
            ident(&t.name)
        ));
    }
    // The archive may predate template migrations of the pool: it fills the tables and
    // columns it has; columns added since take their defaults.
    let archived: BTreeMap<String, Vec<String>> = c
        .query(
            "SELECT c.relname::text, array_agg(a.attname::text ORDER BY a.attnum)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              WHERE n.nspname = $1 AND c.relkind = 'r'
              GROUP BY 1",
            &[&scratch.as_str()],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for t in &tables {
        let Some(have) = archived.get(&t.name) else {
            continue;
        };
        let common = PoolTable {
            name: t.name.clone(),
            columns: t
                .columns
                .iter()
                .filter(|c| have.contains(c))
                .cloned()
                .collect(),
        };
        if common.columns.is_empty() {
            continue;
        }
        let cols = common.column_list();
        sql.push_str(&format!(
            "INSERT INTO {pool}.{name} ({cols}, tenant_id) SELECT {cols}, {tenant}::uuid FROM {scratch}.{name};\n",
            name = ident(&t.name)
        ));
    }
    sql.push_str("RESET ROLE;\n");
    c.batch_execute(&sql).await?;
    Ok(())
}

/// New uuid primary keys in the scratch tables, foreign keys updated to match.
async fn remap_sql(c: &impl GenericClient, scratch: &Ident) -> Result<String> {
    let pks = c
        .query(
            "SELECT cl.relname::text, a.attname::text
               FROM pg_constraint k JOIN pg_class cl ON cl.oid = k.conrelid
               JOIN pg_namespace n ON n.oid = cl.relnamespace
               JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
              WHERE k.contype = 'p' AND n.nspname = $1 AND array_length(k.conkey, 1) = 1
                AND a.atttypid = 'uuid'::regtype",
            &[&POOL_SCHEMA],
        )
        .await?;
    let fks = foreign_keys(c).await?;
    let mut sql = String::new();
    for r in &pks {
        let (table, pk): (String, String) = (r.get(0), r.get(1));
        let (t, k) = (ident(&table), ident(&pk));
        let map = ident(&format!("map_{table}"));
        sql.push_str(&format!(
            "CREATE TEMP TABLE {map} ON COMMIT DROP AS SELECT {k} AS old, gen_random_uuid() AS new FROM {scratch}.{t};\n"
        ));
        for fk in fks
            .iter()
            .filter(|f| f.parent == table && f.parent_column.as_deref() == Some(&pk))
        {
            if let Some(col) = &fk.column {
                let (child, col) = (ident(&fk.child), ident(col));
                sql.push_str(&format!(
                    "UPDATE {scratch}.{child} AS c SET {col} = m.new FROM {map} AS m WHERE c.{col} = m.old;\n"
                ));
            }
        }
        sql.push_str(&format!(
            "UPDATE {scratch}.{t} AS c SET {k} = m.new FROM {map} AS m WHERE c.{k} = m.old;\n"
        ));
    }
    Ok(sql)
}
