//! Per-tenant vector stores (docs/vector-store.md): one [`Backend`] trait, two
//! backends. [`chroma`] keeps each tenant's vectors in a Chroma collection of its own,
//! over Chroma's HTTP API; [`pgvector`] keeps them in a table with a `vector` column
//! and an HNSW index inside the tenant's own database or schema. Which one a server
//! uses is decided at start (`--vector-url`, `--vector-backend`).
//!
//! Creating and deleting a tenant's collection are idempotent (an existing one is
//! fine, a missing one is fine), so the operation engine can retry and compensate
//! them after a crash. The collection's name is a function of the tenant's id alone,
//! so it can be journaled before anything is created, and no tenant can name another
//! tenant's collection: every call takes the tenant from its API key.

pub mod chroma;
pub mod pgvector;
pub mod pgvector_shared;
pub mod records;

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

use crate::problem::{Kind, Problem};
use crate::store::tenants::Isolation;

pub use records::{QueryRequest, QueryResult, UpsertRequest, UpsertResult};

/// What a backend call returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// The tenant whose collection a call is about, as far as a backend needs to know it.
#[derive(Debug, Clone)]
pub struct Target {
    pub tenant_id: Uuid,
    pub isolation: Isolation,
    /// The database holding the tenant's data.
    pub database: String,
    /// The tenant's schema (schema mode).
    pub schema: Option<String>,
    /// The role owning the tenant's objects (pgvector: the table's owner).
    pub owner_role: String,
    /// The server the tenant lives on (docs/servers.md).
    pub server: String,
    /// How to reach that server when it is not `default` (pgvector connects there; an
    /// external backend ignores it): set by [`Target::reach`].
    pub server_config: Option<tokio_postgres::Config>,
}

impl Target {
    pub fn of(t: &crate::store::tenants::Tenant) -> Self {
        Self {
            tenant_id: t.id,
            isolation: t.isolation,
            database: t.database.as_str().to_string(),
            schema: t.schema.as_ref().map(|s| s.as_str().to_string()),
            owner_role: t.owner_role.as_str().to_string(),
            server: t.server.clone(),
            server_config: None,
        }
    }

    /// With the connection of its server when that is not `default` (opened on first
    /// use); one that cannot be reached is a [`Error::NotConnected`].
    pub async fn reach(mut self, p: &crate::platform::Platform) -> Result<Self, Error> {
        if self.server != crate::store::servers::DEFAULT && self.server_config.is_none() {
            let view = p
                .view_of(&self.server)
                .await
                .map_err(|e| Error::NotConnected(format!("server {:?}: {e}", self.server)))?;
            self.server_config = Some(view.config);
        }
        Ok(self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is wrong (a field, a dimension the collection refuses): a 4xx.
    #[error("{}", .0.message)]
    Rejected(Problem),
    /// The backend could not be connected to: nothing was sent, so nothing was made.
    #[error("could not connect to the vector store: {0}")]
    NotConnected(String),
    /// The backend did not answer (timed out, the connection broke): whether the
    /// request took effect is unknown; retrying may work.
    #[error("the vector store did not answer: {0}")]
    Unreachable(String),
    /// The backend answered with an error of its own.
    #[error("the vector store failed: {0}")]
    Backend(String),
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

impl Error {
    /// The answer a client gets: the cause stays in the log (a 5xx body never carries
    /// internal text).
    pub fn problem(&self) -> Problem {
        match self {
            Error::Rejected(p) => p.clone(),
            Error::NotConnected(_) | Error::Unreachable(_) => Problem::new(
                Kind::Unavailable,
                "vector_store_unavailable",
                "the vector store did not answer; retry later",
            ),
            Error::Backend(_) | Error::Postgres(_) => Problem::new(
                Kind::BadGateway,
                "vector_store_failed",
                "the vector store failed; the server log has the details",
            ),
        }
    }
}

/// A vector store backend. Every method is about one tenant's own collection.
pub trait Backend: Send + Sync {
    /// `chroma` or `pgvector` (shown on the tenant as `vector_store.backend`).
    fn name(&self) -> &'static str;

    /// The collection (Chroma) or `schema.table` (pgvector) that holds the tenant's
    /// vectors: known before anything is created, so it can be journaled first.
    fn collection(&self, t: &Target) -> Result<String, Error>;

    /// Creates the tenant's collection; one that exists already is fine.
    fn create<'a>(&'a self, t: &'a Target) -> BoxFuture<'a, ()>;

    /// Deletes the tenant's collection and its vectors; a missing one is fine.
    fn delete<'a>(&'a self, t: &'a Target) -> BoxFuture<'a, ()>;

    /// Whether the tenant's collection exists.
    fn exists<'a>(&'a self, t: &'a Target) -> BoxFuture<'a, bool>;

    /// Adds records, or replaces those whose ids exist. `r` is validated.
    fn upsert<'a>(&'a self, t: &'a Target, r: &'a UpsertRequest) -> BoxFuture<'a, UpsertResult>;

    /// The nearest records to each query embedding. `q` is validated.
    fn query<'a>(&'a self, t: &'a Target, q: &'a QueryRequest) -> BoxFuture<'a, QueryResult>;
}

/// The tenant's collection name in Chroma: the seed's `tenant_<id>` (the id, not the
/// name: a name may be reused after a purge, an id never is).
pub fn collection_name(tenant_id: Uuid) -> String {
    format!("tenant_{tenant_id}")
}

/// A create asked for a vector store on a server that has none configured.
pub fn not_configured() -> Problem {
    let mut p = Problem::new(
        Kind::Unprocessable,
        "vector_store_not_configured",
        "vector_store: this server has no vector store configured (start it with --vector-url for Chroma, or --vector-backend pgvector)",
    );
    p.field = Some("vector_store".into());
    p
}

/// The backend a server runs with: `--vector-backend` (`chroma`, `pgvector`), Chroma
/// when only `--vector-url` is given, none when neither is.
pub fn from_options(
    url: Option<&str>,
    backend: Option<&str>,
    config: &tokio_postgres::Config,
) -> Result<Option<std::sync::Arc<dyn Backend>>, String> {
    match (backend, url) {
        (None, None) => Ok(None),
        (None | Some("chroma"), Some(url)) => {
            Ok(Some(std::sync::Arc::new(chroma::Chroma::new(url)?)))
        }
        (Some("chroma"), None) => Err("--vector-backend chroma needs --vector-url".into()),
        (Some("pgvector"), None) => Ok(Some(std::sync::Arc::new(pgvector::Pgvector::new(
            config.clone(),
        )))),
        (Some("pgvector"), Some(_)) => Err(
            "--vector-url is Chroma's address: leave it out with --vector-backend pgvector".into(),
        ),
        (Some(other), _) => Err(format!(
            "--vector-backend must be chroma or pgvector, got {other:?}"
        )),
    }
}
