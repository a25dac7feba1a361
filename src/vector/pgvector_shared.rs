//! pgvector in shared mode: every shared tenant's vectors in one table of the pool
//! schema (`berqenas_shared.berqenas_vectors`), under the same forced row-level
//! security as the pool's other tables, so a tenant's own login role sees only its
//! rows.
//!
//! One column cannot have a dimension per tenant, so the column is an unsized
//! `vector` and each tenant gets a partial HNSW index over
//! `embedding::vector(<its dimension>)` for its own rows, built with its first upsert
//! (as Chroma fixes a collection's dimension with its first records). The dimensions
//! are in `berqenas_vector_dims`, which no tenant role can read; a tenant's row there
//! is its "collection": made by the create, removed by the purge.
//!
//! Every write runs as the pool's owner (its maintenance policy), like the pool's
//! other maintenance, so a control role that is not a superuser can do it.

use serde_json::Value;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::pgvector::{literal, mismatch};
use super::records::Match;
use super::{Error, QueryRequest, QueryResult, UpsertRequest, UpsertResult};
use crate::isolation::shared::{pool_role, POOL_LOGIN, POOL_OWNER, POOL_SCHEMA};
use crate::names::DefaultRole;
use crate::pg::{Ident, Literal};

/// The shared table, as the tenant JSON names it.
pub const COLLECTION: &str = "berqenas_shared.berqenas_vectors";

fn ident(s: &str) -> Ident {
    Ident::new(s).expect("static names are valid identifiers")
}

fn table() -> String {
    format!("{}.berqenas_vectors", ident(POOL_SCHEMA))
}

fn dims() -> String {
    format!("{}.berqenas_vector_dims", ident(POOL_SCHEMA))
}

/// The tenant's partial index: its id without dashes fits the 63 bytes.
fn index(tenant: Uuid) -> Ident {
    ident(&format!("berqenas_vectors_hnsw_{}", tenant.simple()))
}

/// Makes the shared table (once per server) and the tenant's row in the dimensions
/// table. Idempotent. `c` has the extension already.
pub async fn create(c: &mut tokio_postgres::Client, tenant: Uuid) -> Result<(), Error> {
    let (schema, owner) = (ident(POOL_SCHEMA), ident(POOL_OWNER));
    let (login, admin) = (ident(POOL_LOGIN), pool_role(DefaultRole::TenantAdmin));
    let auditor = pool_role(DefaultRole::Auditor);
    let (table, dims) = (table(), dims());
    let tx = c.transaction().await?;
    // Two first creates at once would both try to make the table.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('berqenas_vectors_shared'))",
        &[],
    )
    .await?;
    let made: bool = tx
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await?
        .get(0);
    if !made {
        tx.batch_execute(&format!(
            "SET LOCAL ROLE {owner};
             CREATE TABLE {table} (
                 tenant_id uuid NOT NULL DEFAULT {schema}.current_tenant(),
                 id        text NOT NULL CHECK (length(id) BETWEEN 1 AND 256),
                 embedding vector NOT NULL,
                 metadata  jsonb,
                 document  text,
                 PRIMARY KEY (tenant_id, id));
             ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
             ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant_isolation ON {table}
                 USING (tenant_id = {schema}.current_tenant())
                 WITH CHECK (tenant_id = {schema}.current_tenant());
             CREATE POLICY maintenance ON {table} TO {owner} USING (true) WITH CHECK (true);
             CREATE TABLE {dims} (tenant_id uuid PRIMARY KEY, dimension int);
             GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {login}, {admin};
             GRANT SELECT ON {table} TO {auditor};
             RESET ROLE;"
        ))
        .await?;
    }
    tx.batch_execute(&format!(
        "SET LOCAL ROLE {owner};
         INSERT INTO {dims} (tenant_id) VALUES ({}::uuid) ON CONFLICT DO NOTHING;",
        Literal(&tenant.to_string())
    ))
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes the tenant's vectors, its index and its dimensions row. Idempotent.
pub async fn delete(c: &mut tokio_postgres::Client, tenant: Uuid) -> Result<(), Error> {
    if !exists_table(c).await? {
        return Ok(());
    }
    let owner = ident(POOL_OWNER);
    let (table, dims, id) = (table(), dims(), tenant.to_string());
    let tx = c.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL ROLE {owner};
         DROP INDEX IF EXISTS {schema}.{index};
         DELETE FROM {table} WHERE tenant_id = {id}::uuid;
         DELETE FROM {dims} WHERE tenant_id = {id}::uuid;",
        schema = ident(POOL_SCHEMA),
        index = index(tenant),
        id = Literal(&id),
    ))
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn exists_table(c: &impl GenericClient) -> Result<bool, Error> {
    Ok(
        c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&dims()])
            .await?
            .get(0),
    )
}

/// Whether the tenant's collection (its dimensions row) exists.
pub async fn exists(c: &impl GenericClient, tenant: Uuid) -> Result<bool, Error> {
    if !exists_table(c).await? {
        return Ok(false);
    }
    Ok(c.query_opt(
        &format!("SELECT 1 FROM {} WHERE tenant_id = $1", dims()),
        &[&tenant],
    )
    .await?
    .is_some())
}

/// The tenant's dimension, `None` until its first upsert (`Err` if it has no
/// collection).
async fn dimension(
    c: &impl GenericClient,
    tenant: Uuid,
    lock: bool,
) -> Result<Option<usize>, Error> {
    let lock = if lock { "FOR UPDATE" } else { "" };
    let row = c
        .query_opt(
            &format!(
                "SELECT dimension FROM {} WHERE tenant_id = $1 {lock}",
                dims()
            ),
            &[&tenant],
        )
        .await?
        .ok_or_else(|| {
            Error::Backend(format!("tenant {tenant} has no shared vector collection"))
        })?;
    Ok(row.get::<_, Option<i32>>(0).map(|d| d as usize))
}

pub async fn upsert(
    c: &mut tokio_postgres::Client,
    tenant: Uuid,
    r: &UpsertRequest,
) -> Result<UpsertResult, Error> {
    let owner = ident(POOL_OWNER);
    let (table, dims, id) = (table(), dims(), tenant.to_string());
    let dim = r.embeddings[0].len();
    let tx = c.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL ROLE {owner}")).await?;
    // The row lock makes one upsert at a time fix the dimension and build the index.
    match dimension(&tx, tenant, true).await? {
        Some(d) if d != dim => return Err(mismatch(d, dim)),
        Some(_) => {}
        None => {
            tx.batch_execute(&format!(
                "CREATE INDEX IF NOT EXISTS {index} ON {table}
                     USING hnsw ((embedding::vector({dim})) vector_l2_ops)
                     WHERE tenant_id = {lit}::uuid;
                 UPDATE {dims} SET dimension = {dim} WHERE tenant_id = {lit}::uuid;",
                index = index(tenant),
                lit = Literal(&id),
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
    let documents: Vec<Option<String>> = r.documents.clone().unwrap_or_else(|| vec![None; n]);
    tx.execute(
        &format!(
            "INSERT INTO {table} (tenant_id, id, embedding, metadata, document)
             SELECT $5, i, e::vector, m, d FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[]) AS u(i, e, m, d)
             ON CONFLICT (tenant_id, id) DO UPDATE SET embedding = EXCLUDED.embedding,
                 metadata = EXCLUDED.metadata, document = EXCLUDED.document"
        ),
        &[&r.ids, &embeddings, &metadatas, &documents, &tenant],
    )
    .await?;
    tx.commit().await?;
    Ok(UpsertResult { upserted: n })
}

pub async fn query(
    c: &mut tokio_postgres::Client,
    tenant: Uuid,
    q: &QueryRequest,
) -> Result<QueryResult, Error> {
    let dim = q.embeddings[0].len();
    let Some(d) = dimension(&*c, tenant, false).await? else {
        // Nothing upserted yet: no neighbours.
        return Ok(QueryResult {
            results: vec![Vec::new(); q.embeddings.len()],
        });
    };
    if d != dim {
        return Err(mismatch(d, dim));
    }
    // The tenant's id as a literal and the same cast as its index's, so the planner
    // can match the partial index.
    let sql = format!(
        "SELECT id, (embedding::vector({d}) <-> $1::text::vector({d}))::float8, metadata, document
           FROM {table} WHERE tenant_id = {lit}::uuid
          ORDER BY embedding::vector({d}) <-> $1::text::vector({d}) LIMIT $2",
        table = table(),
        lit = Literal(&tenant.to_string()),
    );
    let limit = i64::from(q.n_results());
    let tx = c.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL ROLE {}", ident(POOL_OWNER)))
        .await?;
    let mut results = Vec::with_capacity(q.embeddings.len());
    for e in &q.embeddings {
        let rows = tx.query(&sql, &[&literal(e), &limit]).await?;
        results.push(
            rows.iter()
                .map(|r| Match {
                    id: r.get(0),
                    distance: r.get(1),
                    metadata: r.get(2),
                    document: r.get(3),
                })
                .collect(),
        );
    }
    tx.commit().await?;
    Ok(QueryResult { results })
}
