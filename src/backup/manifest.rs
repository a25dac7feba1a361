//! A backup's manifest: what it holds and how to check it, stored beside the object
//! (so an archive describes itself) and in the `backups` row. Per-table row counts
//! and checksums are what `verify` compares a scratch restore with.

use tokio_postgres::GenericClient;

use crate::pg::Ident;
pub use crate::store::backups::{ChecksumMethod, Encryption, Manifest, TableStat};

pub const FORMAT: u32 = 1;

/// Settings that fix how rows print as text, so a checksum taken at backup time and
/// one taken after a restore agree. Row security off: reading a table must never run
/// a tenant's policy functions (it errors instead, for a non-superuser).
pub const STABLE_TEXT: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; \
     SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex'; \
     SET row_security = off;";

/// Row counts and checksums of every table in `schema`, on a connection to its
/// database on which [`STABLE_TEXT`] ran. `expected`: the manifest's tables, whose
/// methods are used again (verify); without it (a backup, on a connection inside its
/// snapshot's transaction) each table gets the faster method its column types allow.
pub async fn table_stats(
    c: &impl GenericClient,
    schema: &str,
    expected: Option<&[TableStat]>,
) -> Result<Vec<TableStat>, tokio_postgres::Error> {
    let tables: Vec<String> = c
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1",
            &[&schema],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let schema = Ident::new(schema).expect("catalog names are valid");
    let mut stats = Vec::with_capacity(tables.len());
    for table in tables {
        let qualified = format!(
            "{schema}.{}",
            Ident::new(table.clone()).expect("catalog names are valid")
        );
        let (row, method) = match expected {
            Some(expected) => {
                let method = expected
                    .iter()
                    .find(|t| t.table == table)
                    .map_or(ChecksumMethod::Text, |t| t.method);
                (c.query_one(&method.sql(&qualified), &[]).await?, method)
            }
            None => {
                // A column type without a hash function makes the faster query fail;
                // the savepoint keeps the snapshot's transaction usable.
                c.batch_execute("SAVEPOINT checksum").await?;
                match c
                    .query_one(&ChecksumMethod::Record.sql(&qualified), &[])
                    .await
                {
                    Ok(row) => {
                        c.batch_execute("RELEASE SAVEPOINT checksum").await?;
                        (row, ChecksumMethod::Record)
                    }
                    Err(e)
                        if e.code()
                            == Some(&tokio_postgres::error::SqlState::UNDEFINED_FUNCTION) =>
                    {
                        c.batch_execute("ROLLBACK TO SAVEPOINT checksum").await?;
                        let text = ChecksumMethod::Text;
                        (c.query_one(&text.sql(&qualified), &[]).await?, text)
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        stats.push(TableStat {
            table,
            rows: row.get(0),
            checksum: row.get(1),
            method,
        });
    }
    Ok(stats)
}

/// `major.minor` of the connected server.
pub async fn server_version(c: &impl GenericClient) -> Result<String, tokio_postgres::Error> {
    Ok(c.query_one("SHOW server_version", &[]).await?.get(0))
}
