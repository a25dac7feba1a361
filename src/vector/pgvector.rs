//! The pgvector backend: the tenant's vectors in a table of its own database (database
//! mode: `public.berqenas_vectors`) or schema (schema mode:
//! `<schema>.berqenas_vectors`), owned by the tenant's owner role, with a `vector`
//! column and an HNSW index. pgvector's HNSW index needs a fixed dimension, so the
//! column takes its dimension, and the index is built, with the first upsert (as
//! Chroma fixes a collection's dimension with its first records).
//!
//! Shared mode: one table for all shared tenants under row-level security
//! ([`super::pgvector_shared`]).
//!
//! Debian has no pgvector package for PostgreSQL 15: tests/pgvector.rs runs these on
//! a PostgreSQL 16 with pgvector (the binaries PyPI's `pgserver` ships; .ci/run
//! fetches them) and says it skips where it has none.

use serde_json::Value;
use tokio_postgres::Config;

use super::pgvector_shared as shared;
use super::{Backend, BoxFuture, Error, Target};
use super::{QueryRequest, QueryResult, UpsertRequest, UpsertResult};
use crate::pg::Ident;
use crate::problem::{Kind, Problem};
use crate::store::tenants::Isolation;

const TABLE: &str = "berqenas_vectors";

/// pgvector in the servers berqenas manages (connecting as its control role): `default`,
/// or the server a [`Target`] names ([`Target::reach`]).
pub struct Pgvector {
    config: Config,
}

impl Pgvector {
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    /// The table's schema: the tenant's own (schema mode) or `public` of its own
    /// database (database mode).
    fn schema(t: &Target) -> Result<Ident, Error> {
        let name = match (t.isolation, &t.schema) {
            (Isolation::Database, _) => "public",
            (Isolation::Schema, Some(s)) => s.as_str(),
            _ => {
                return Err(Error::Rejected(Problem::new(
                    Kind::Unprocessable,
                    "vector_store_unsupported",
                    "this pgvector store is made in database and schema mode",
                )))
            }
        };
        Ident::new(name).map_err(|e| Error::Backend(e.to_string()))
    }

    fn table(t: &Target) -> Result<String, Error> {
        let schema = Self::schema(t)?;
        let table = Ident::new(TABLE).map_err(|e| Error::Backend(e.to_string()))?;
        Ok(format!("{schema}.{table}"))
    }

    async fn connect(&self, t: &Target) -> Result<tokio_postgres::Client, Error> {
        // The tenant's server, or the one this backend was made for (`default`).
        let mut config = t
            .server_config
            .clone()
            .unwrap_or_else(|| self.config.clone());
        config.dbname(&t.database);
        crate::pg::connect(&config)
            .await
            .map_err(|e| Error::NotConnected(e.to_string()))
    }

    /// The column's dimension (`None` until the first upsert fixed it).
    async fn dimension(
        c: &impl tokio_postgres::GenericClient,
        table: &str,
    ) -> Result<Option<usize>, Error> {
        let row = c
            .query_one(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = $1::text::regclass AND attname = 'embedding'",
                &[&table],
            )
            .await?;
        let typmod: i32 = row.get(0);
        Ok((typmod > 0).then_some(typmod as usize))
    }
}

/// `[1,2,3]`: pgvector's text form of a vector.
pub(super) fn literal(e: &[f32]) -> String {
    let parts: Vec<String> = e.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// A record whose dimension is not the collection's.
pub(super) fn mismatch(d: usize, dim: usize) -> Error {
    Error::Rejected(Problem::bad_field(
        "embeddings",
        format!(
            "dimension mismatch: the collection's embeddings have {d} numbers, these have {dim}"
        ),
    ))
}

fn available_refusal() -> Error {
    Error::Rejected(Problem::new(
        Kind::Unprocessable,
        "pgvector_unavailable",
        "the PostgreSQL server has no pgvector extension (pg_available_extensions has no `vector`)",
    ))
}

impl Backend for Pgvector {
    fn name(&self) -> &'static str {
        "pgvector"
    }

    fn collection(&self, t: &Target) -> Result<String, Error> {
        if t.isolation == Isolation::Shared {
            return Ok(shared::COLLECTION.to_string());
        }
        Ok(format!("{}.{TABLE}", Self::schema(t)?.as_str()))
    }

    fn create<'a>(&'a self, t: &'a Target) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut c = self.connect(t).await?;
            let available = c
                .query_opt(
                    "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'",
                    &[],
                )
                .await?;
            if available.is_none() {
                return Err(available_refusal());
            }
            if t.isolation == Isolation::Shared {
                c.batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
                    .await?;
                return shared::create(&mut c, t.tenant_id).await;
            }
            let table = Self::table(t)?;
            let owner =
                Ident::new(t.owner_role.as_str()).map_err(|e| Error::Backend(e.to_string()))?;
            let tx = c.transaction().await?;
            tx.batch_execute(&format!(
                "CREATE EXTENSION IF NOT EXISTS vector;
                 CREATE TABLE IF NOT EXISTS {table} (
                     id        text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 256),
                     embedding vector NOT NULL,
                     metadata  jsonb,
                     document  text);
                 ALTER TABLE {table} OWNER TO {owner};"
            ))
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn delete<'a>(&'a self, t: &'a Target) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if t.isolation == Isolation::Shared {
                let mut c = self.connect(t).await?;
                return shared::delete(&mut c, t.tenant_id).await;
            }
            let table = Self::table(t)?;
            let c = match self.connect(t).await {
                Ok(c) => c,
                // The tenant's database is gone (a purge dropped it first): so is the table.
                Err(_) if t.isolation == Isolation::Database => return Ok(()),
                Err(e) => return Err(e),
            };
            c.batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
                .await?;
            Ok(())
        })
    }

    fn exists<'a>(&'a self, t: &'a Target) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let c = self.connect(t).await?;
            if t.isolation == Isolation::Shared {
                return shared::exists(&c, t.tenant_id).await;
            }
            let table = Self::table(t)?;
            let row = c
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
                .await?;
            Ok(row.get(0))
        })
    }

    fn upsert<'a>(&'a self, t: &'a Target, r: &'a UpsertRequest) -> BoxFuture<'a, UpsertResult> {
        Box::pin(async move {
            let mut c = self.connect(t).await?;
            if t.isolation == Isolation::Shared {
                return shared::upsert(&mut c, t.tenant_id, r).await;
            }
            let table = Self::table(t)?;
            let dim = r.embeddings[0].len();
            let tx = c.transaction().await?;
            // One upsert at a time fixes the dimension and builds the index.
            tx.execute(
                &format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"),
                &[],
            )
            .await?;
            match Self::dimension(&tx, &table).await? {
                Some(d) if d != dim => return Err(mismatch(d, dim)),
                Some(_) => {}
                None => {
                    tx.batch_execute(&format!(
                        "ALTER TABLE {table} ALTER COLUMN embedding TYPE vector({dim});
                         CREATE INDEX IF NOT EXISTS berqenas_vectors_hnsw ON {table} USING hnsw (embedding vector_l2_ops);"
                    ))
                    .await?;
                }
            }
            let embeddings: Vec<String> = r.embeddings.iter().map(|e| literal(e)).collect();
            let n = r.ids.len();
            let metadatas: Vec<Option<Value>> = match &r.metadatas {
                Some(m) => m.iter().map(|m| m.clone().map(Value::Object)).collect(),
                None => vec![None; n],
            };
            let documents: Vec<Option<String>> =
                r.documents.clone().unwrap_or_else(|| vec![None; n]);
            tx.execute(
                &format!(
                    "INSERT INTO {table} (id, embedding, metadata, document)
                     SELECT i, e::vector, m, d FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[]) AS u(i, e, m, d)
                     ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding,
                         metadata = EXCLUDED.metadata, document = EXCLUDED.document"
                ),
                &[&r.ids, &embeddings, &metadatas, &documents],
            )
            .await?;
            tx.commit().await?;
            Ok(UpsertResult { upserted: n })
        })
    }

    fn query<'a>(&'a self, t: &'a Target, q: &'a QueryRequest) -> BoxFuture<'a, QueryResult> {
        Box::pin(async move {
            let mut c = self.connect(t).await?;
            if t.isolation == Isolation::Shared {
                return shared::query(&mut c, t.tenant_id, q).await;
            }
            let table = Self::table(t)?;
            if let Some(d) = Self::dimension(&c, &table).await? {
                let dim = q.embeddings[0].len();
                if d != dim {
                    return Err(mismatch(d, dim));
                }
            }
            let sql = format!(
                "SELECT id, (embedding <-> $1::text::vector)::float8, metadata, document
                   FROM {table} ORDER BY embedding <-> $1::text::vector LIMIT $2"
            );
            let limit = i64::from(q.n_results());
            let mut results = Vec::with_capacity(q.embeddings.len());
            for e in &q.embeddings {
                let rows = c.query(&sql, &[&literal(e), &limit]).await?;
                results.push(
                    rows.iter()
                        .map(|r| super::records::Match {
                            id: r.get(0),
                            distance: r.get(1),
                            metadata: r.get(2),
                            document: r.get(3),
                        })
                        .collect(),
                );
            }
            Ok(QueryResult { results })
        })
    }
}
