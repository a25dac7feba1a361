//! The shared pool's tables as the catalog has them: their columns, and the order
//! their foreign keys impose (what copies of a tenant's rows, and deletes of them,
//! go by).

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::{Error, GenericClient};

use super::shared::POOL_SCHEMA;
use crate::pg::Ident;

fn ident(s: &str) -> Ident {
    Ident::new(s).expect("catalog names are valid")
}

/// A pool table: its name and columns other than `tenant_id`, in column order.
pub struct PoolTable {
    pub name: String,
    pub columns: Vec<String>,
}

impl PoolTable {
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| ident(c).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The pool's tables, parents before the tables whose foreign keys point at them.
pub async fn pool_tables(c: &impl GenericClient) -> Result<Vec<PoolTable>, Error> {
    let rows = c
        .query(
            "SELECT c.relname::text, array_agg(a.attname::text ORDER BY a.attnum)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                                  AND a.attname <> 'tenant_id'
              WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname <> 'members'
              GROUP BY 1 ORDER BY 1",
            &[&POOL_SCHEMA],
        )
        .await?;
    let mut tables: BTreeMap<String, PoolTable> = rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            (
                name.clone(),
                PoolTable {
                    name,
                    columns: r.get(1),
                },
            )
        })
        .collect();
    let edges = foreign_keys(c).await?;
    let mut order = Vec::new();
    let mut placed = BTreeSet::new();
    while !tables.is_empty() {
        let ready: Vec<String> = tables
            .keys()
            .filter(|t| {
                edges.iter().all(|fk| {
                    fk.child != **t
                        || fk.parent == **t
                        || placed.contains(&fk.parent)
                        || !tables.contains_key(&fk.parent)
                })
            })
            .cloned()
            .collect();
        // A cycle cannot be ordered: take the rest as they come.
        let next = if ready.is_empty() {
            tables.keys().cloned().collect()
        } else {
            ready
        };
        for t in next {
            placed.insert(t.clone());
            order.push(tables.remove(&t).expect("present"));
        }
    }
    Ok(order)
}

pub struct ForeignKey {
    pub child: String,
    pub column: Option<String>,
    pub parent: String,
    pub parent_column: Option<String>,
}

/// Foreign keys between pool tables (the column pair when single-column).
pub async fn foreign_keys(c: &impl GenericClient) -> Result<Vec<ForeignKey>, Error> {
    let rows = c
        .query(
            "SELECT cl.relname::text, pl.relname::text,
                    CASE WHEN array_length(k.conkey, 1) = 1 THEN
                        (SELECT attname::text FROM pg_attribute WHERE attrelid = k.conrelid AND attnum = k.conkey[1]) END,
                    CASE WHEN array_length(k.confkey, 1) = 1 THEN
                        (SELECT attname::text FROM pg_attribute WHERE attrelid = k.confrelid AND attnum = k.confkey[1]) END
               FROM pg_constraint k
               JOIN pg_class cl ON cl.oid = k.conrelid JOIN pg_class pl ON pl.oid = k.confrelid
               JOIN pg_namespace n ON n.oid = cl.relnamespace
              WHERE k.contype = 'f' AND n.nspname = $1",
            &[&POOL_SCHEMA],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ForeignKey {
            child: r.get(0),
            parent: r.get(1),
            column: r.get(2),
            parent_column: r.get(3),
        })
        .collect())
}

/// The pool's table names (the template's), from the catalog.
pub async fn table_names(c: &impl GenericClient) -> Result<Vec<String>, Error> {
    let rows = c
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 AND tablename <> 'members' ORDER BY 1",
            &[&POOL_SCHEMA],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
