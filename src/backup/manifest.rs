//! A backup's manifest: what it holds and how to check it, stored beside the object
//! (so an archive describes itself) and in the `backups` row. Per-table row counts
//! and checksums are what `verify` compares a scratch restore with.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::pg::Ident;
use crate::store::tenants::Isolation;

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant: String,
    pub mode: Isolation,
    pub template_version: i32,
    pub server_version: String,
    pub created_at: DateTime<Utc>,
    /// The database the dump was taken from.
    pub database: String,
    /// The schema the archive holds: the tenant's, or for shared mode the scratch
    /// schema its rows were copied into.
    pub schema: String,
    /// Bytes of the stored object (ciphertext when encrypted).
    pub size_bytes: i64,
    /// SHA-256 of the stored object, hex.
    pub sha256: String,
    pub encryption: Option<Encryption>,
    pub tables: Vec<TableStat>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Encryption {
    /// `AES-256-GCM, 1 MiB chunks` (see `backup::crypt`).
    pub algorithm: String,
    /// The backup's data key, sealed under the server's secret key (base64).
    pub data_key: String,
}

/// One table's row count and an order-independent checksum of its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TableStat {
    pub table: String,
    pub rows: i64,
    pub checksum: String,
    /// How the checksum was taken (a manifest without it used `text`).
    #[serde(default)]
    pub method: ChecksumMethod,
}

/// Both sum a 64-bit hash of every row, so row order does not matter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumMethod {
    /// `hash_record_extended`: each column hashed by its type's own hash function, no
    /// text conversion (about twice as fast); needs a hash function for every column's
    /// type.
    Record,
    /// `hashtextextended` of the row as text ([`STABLE_TEXT`] fixes the text): works
    /// for every type.
    #[default]
    Text,
}

impl ChecksumMethod {
    fn sql(self, table: &str) -> String {
        let hash = match self {
            ChecksumMethod::Record => "hash_record_extended(r.*, 0)",
            // `ROW(r.*)`: a column named `r` cannot shadow the whole-row reference.
            ChecksumMethod::Text => "hashtextextended(ROW(r.*)::text, 0)",
        };
        format!("SELECT count(*), coalesce(sum({hash}), 0)::text FROM ONLY {table} AS r")
    }
}

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
