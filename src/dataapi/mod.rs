//! The tenant data API (`POST /api/v1/query`): one SQL statement, run as the tenant's
//! own login role (so its schema search path, its database, or its row-level security
//! identity apply, exactly as for a direct connection), in a transaction with the
//! tenant's statement timeout, returning at most `row_limit` rows as JSON.
//!
//! Why the tenant's own login, not the control role with `SET ROLE`: a `SET ROLE` in
//! the tenant's SQL (or a `RESET ROLE`) would leave the tenant's identity. Logged in as
//! its own role, the statement can never be more than the tenant.
//!
//! Memory: a result is bounded while PostgreSQL sends it, by a byte budget on each
//! connection's socket and one across all requests ([`budget`]), never buffered whole
//! first.

pub mod budget;
pub mod pools;
pub mod socket;
pub mod statement;
pub mod values;

use crate::secrets::ExposeSecret;
use std::time::Instant;

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use budget::{Held, Metering, Trip};
pub use pools::DataApiConfig;
use pools::{ConnError, Object, Pools};

use crate::platform::Platform;
use crate::quota::Quotas;
use crate::tenant::Tenant;

/// `POST /api/v1/query`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// One SQL statement; `$1`, `$2`... for parameters.
    pub sql: String,
    /// The parameters, as JSON: strings, numbers, booleans, null, arrays (for array
    /// parameters) and objects (for json/jsonb). PostgreSQL reads each as text of the
    /// parameter's type.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub params: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Column {
    pub name: String,
    /// The PostgreSQL type name.
    #[serde(rename = "type")]
    pub type_name: String,
}

/// Rows as arrays in column order. `row_count` is the number of rows returned, or for
/// a statement returning no rows (INSERT, UPDATE, DELETE without RETURNING) the rows
/// it affected.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueryResult {
    pub columns: Vec<Column>,
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<serde_json::Value>>,
    pub row_count: u64,
    /// More rows than the row limit: the rest were not returned.
    pub truncated: bool,
}

/// A result, holding its share of the data API's result memory until it is dropped:
/// keep it until the response body has been serialised.
pub struct Answer {
    pub result: QueryResult,
    _memory: Held,
}

/// Why a statement did not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The request is wrong (400): a syntax error, unknown table, bad parameter...
    #[error("{message}")]
    Invalid {
        code: &'static str,
        message: String,
        field: Option<&'static str>,
    },
    /// PostgreSQL refused it for lack of privilege (403, SQLSTATE 42501).
    #[error("{0}")]
    PermissionDenied(String),
    /// It ran past the tenant's statement timeout (504, SQLSTATE 57014).
    #[error("{0}")]
    Timeout(String),
    /// A realtime quota refused an event (429; SQLSTATE 53400 from
    /// `berqenas_realtime.admit`, whose hint says when to retry).
    #[error("{message}")]
    Limited {
        message: String,
        retry_after_secs: u64,
    },
    /// The rows to return hold more than `MAX_RESULT_BYTES` (413).
    #[error("{0}")]
    TooLarge(String),
    /// No connection could be had, or it was closed (503).
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl QueryError {
    fn invalid(code: &'static str, field: Option<&'static str>, message: String) -> Self {
        Self::Invalid {
            code,
            message,
            field,
        }
    }
}

impl From<Trip> for QueryError {
    fn from(trip: Trip) -> Self {
        match trip {
            Trip::TooLarge => too_large(),
            Trip::Busy => busy_memory(),
        }
    }
}

fn too_large() -> QueryError {
    QueryError::TooLarge("result larger than 16 MiB; select fewer rows or columns".into())
}

fn busy_memory() -> QueryError {
    QueryError::Unavailable {
        code: "data_api_busy",
        message: "the data API's memory for results is in use; retry shortly".into(),
    }
}

/// PostgreSQL's error, told to the tenant: it is about the tenant's own statement.
fn sql_error(e: tokio_postgres::Error) -> QueryError {
    let Some(db) = e.as_db_error() else {
        if statement::is_copy_reply(&e) {
            return statement::copy_refused();
        }
        if e.is_closed() {
            return QueryError::Unavailable {
                code: "connection_closed",
                message: "the connection to the database closed; retry".into(),
            };
        }
        return QueryError::Internal(Box::new(e));
    };
    let code = db.code().code();
    let message = format!("{} (SQLSTATE {code})", db.message());
    match code {
        "42501" => QueryError::PermissionDenied(message),
        "57014" => QueryError::Timeout(message),
        "53400" if db.hint().is_some_and(|h| h.starts_with("retry_after=")) => {
            QueryError::Limited {
                retry_after_secs: db
                    .hint()
                    .and_then(|h| h.strip_prefix("retry_after="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1),
                message: db.message().to_string(),
            }
        }
        "53300" => QueryError::Unavailable {
            code: "tenant_connection_limit",
            message,
        },
        c if c.starts_with("08") || c.starts_with("57P") => QueryError::Unavailable {
            code: "connection_closed",
            message,
        },
        c if c.starts_with("XX") || c.starts_with("58") => QueryError::Internal(Box::new(e)),
        _ => QueryError::invalid("sql_error", None, message),
    }
}

/// The data API: connection pools and the row limit.
pub struct DataApi {
    pools: Pools,
}

impl Default for DataApi {
    fn default() -> Self {
        Self::new(DataApiConfig::default())
    }
}

/// The most cell data (as PostgreSQL sends it) one response carries: past it the
/// request fails with 413 rather than buffer and serialise an unbounded result.
pub const MAX_RESULT_BYTES: usize = 16 << 20;

/// What a request's byte budget allows beyond [`MAX_RESULT_BYTES`] for any statement:
/// the session reset's rows, and rows already on their way when the row limit is
/// reached. (The framing of the rows themselves is added per statement.)
const BUDGET_SLACK: usize = 1 << 20;

/// The result memory a request holds from its start (waiting for it if need be): a
/// result that fits never takes more while it arrives, where it cannot wait.
const RESERVED_PER_REQUEST: usize = 1 << 20;

/// The protocol's framing of `rows` rows of `columns` columns beyond their cells: the
/// message tag and length (5 bytes), column count (2) and each cell's length (4).
fn row_framing(rows: usize, columns: usize) -> usize {
    rows.saturating_mul(columns.saturating_mul(4).saturating_add(7))
}

/// Holds a request's connection. Dropped while the connection is still dirty (the
/// request was cancelled, e.g. its client went away, or its reset failed), it cleans
/// it in the background at once, so an abandoned transaction neither holds its locks
/// until the connection is next used nor is ever committed; a connection that cannot
/// be cleaned is closed. (The pool's recycle checks again before any reuse.)
struct Lease(Option<Object>);

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut conn) = self.0.take() else {
            return;
        };
        if !conn.dirty {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            if let Err(e) = conn.clean().await {
                tracing::debug!(error = %e, "closing a data API connection left dirty");
                drop(Object::take(conn));
            }
        });
    }
}

/// Whether a request failed on a COPY's reply (the safety net of
/// [`statement::check`]): its connection is out of step and must be closed.
fn out_of_step(result: &Result<QueryResult, QueryError>) -> bool {
    matches!(result, Err(QueryError::Invalid { code, .. }) if *code == statement::UNSUPPORTED)
}

impl DataApi {
    pub fn new(config: DataApiConfig) -> Self {
        Self {
            pools: Pools::new(config),
        }
    }

    pub fn config(&self) -> &DataApiConfig {
        self.pools.config()
    }

    /// Bytes of result memory no request holds now.
    pub fn memory_available(&self) -> usize {
        self.pools.memory().available()
    }

    /// (open connections, tenant pools)
    pub fn stats(&self) -> (usize, usize) {
        self.pools.stats()
    }

    pub fn reap(&self) {
        self.pools.reap()
    }

    /// A connection as the tenant's login role. A pool made before the password
    /// changed (a rotation) fails to log in: it is forgotten and made again, once.
    async fn connection(&self, p: &Platform, t: &Tenant, q: &Quotas) -> Result<Object, QueryError> {
        match self.connection_once(p, t, q).await {
            Err(QueryError::Invalid {
                code: "login_failed",
                ..
            }) => self.connection_once(p, t, q).await,
            other => other,
        }
    }

    async fn connection_once(
        &self,
        p: &Platform,
        t: &Tenant,
        q: &Quotas,
    ) -> Result<Object, QueryError> {
        let size = self
            .config()
            .per_tenant
            .min(q.max_connections.max(1) as usize);
        let place = (t.server.as_str(), t.database.as_str());
        let pool = match self.pools.existing(t.id, size, place) {
            Some(pool) => pool,
            None => {
                let client = p.pool.get().await.map_err(|e| QueryError::Unavailable {
                    code: "database_unavailable",
                    message: format!("the database is unavailable; retry later ({e})"),
                })?;
                let sealed = crate::store::tenants::sealed_credentials(&client, t.id)
                    .await
                    .map_err(|e| QueryError::Internal(Box::new(e)))?;
                // The server the tenant lives on (docs/servers.md).
                let server = p
                    .fleet
                    .server(&client, &p.key, &t.server)
                    .await
                    .map_err(|e| QueryError::Unavailable {
                        code: "database_unavailable",
                        message: format!(
                            "the tenant's server {:?} is unavailable; retry later ({e})",
                            t.server
                        ),
                    })?;
                drop(client);
                let password = crate::tenant::service::open_password(p, &sealed)
                    .map_err(|e| QueryError::Internal(Box::new(e)))?;
                let mut config = server.config.clone();
                // The tenant's session: its role's own settings, none of the control
                // plane's connection options (its pinned search path).
                config
                    .user(t.role.as_str())
                    .password(password.expose_secret())
                    .dbname(t.database.as_str())
                    .options("")
                    .application_name("berqenas-data-api");
                self.pools.insert(t.id, config, size, place)
            }
        };
        pool.get().await.map_err(|e| match e {
            deadpool::managed::PoolError::Backend(ConnError::Pg(e)) => {
                if e.as_db_error()
                    .is_some_and(|d| d.code().code().starts_with("28"))
                {
                    // The password changed since the pool was made: start over.
                    self.pools.forget(t.id);
                    return QueryError::invalid(
                        "login_failed",
                        None,
                        "the tenant's login was refused; its credentials changed".into(),
                    );
                }
                sql_error(e)
            }
            deadpool::managed::PoolError::Backend(ConnError::Busy(n)) => QueryError::Unavailable {
                code: "data_api_busy",
                message: format!("all {n} data API connections are busy; retry shortly"),
            },
            _ => QueryError::Unavailable {
                code: "data_api_busy",
                message: "no data API connection became free in time; retry shortly".into(),
            },
        })
    }

    /// Runs one statement for the tenant; see the module doc.
    pub async fn execute(
        &self,
        p: &Platform,
        t: &Tenant,
        q: &Quotas,
        req: &QueryRequest,
    ) -> Result<Answer, QueryError> {
        statement::check(req)?;
        let started = Instant::now();
        // Memory first, then a connection: no connection is held while waiting.
        let reserved = self
            .pools
            .memory()
            .reserve(RESERVED_PER_REQUEST, self.config().acquire_timeout)
            .await
            .ok_or_else(busy_memory)?;
        let mut lease = Lease(Some(self.connection(p, t, q).await?));
        let conn = lease.0.as_mut().expect("held until the lease drops");
        // Until the reset below succeeds: whatever happens to this request, the
        // connection is rolled back and reset before it is used again.
        conn.dirty = true;
        let metering = conn.budget.begin(MAX_RESULT_BYTES + BUDGET_SLACK, reserved);
        let c = &conn.client;
        let begin = format!(
            "BEGIN; SET LOCAL statement_timeout = {}",
            q.statement_timeout_ms
        );
        // One round trip: the transaction starts while the statement is parsed.
        let (begun, prepared) = tokio::join!(c.batch_execute(&begin), c.prepare(&req.sql));
        // A type outside tokio-postgres's built-in list was looked up with a statement
        // the client keeps: the reset must find it still there.
        let looked_up = matches!(&prepared, Ok(stmt) if values::looked_up(stmt));
        let mut result = match (begun, prepared) {
            (Err(e), _) | (Ok(()), Err(e)) => Err(sql_error(e)),
            (Ok(()), Ok(stmt)) => self.run(c, &stmt, req, &metering).await,
        };
        // A tripped budget broke the connection on purpose; a COPY's reply left it out
        // of step with its server. Neither is reset or used again: the statement is
        // cancelled and the connection closed (dropped dirty).
        if metering.tripped().is_some() || out_of_step(&result) {
            conn.cancel().await;
            drop(lease.0.take().map(Object::take));
        } else {
            // The transaction ends, and the session is reset: two queries, so that a
            // failed COMMIT (a deferred constraint) cannot skip the reset, pipelined in
            // one round trip. A failed reset leaves the connection dirty: it is cleaned
            // or closed.
            let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
            let known = conn.own_statements.max(usize::from(looked_up));
            let (ended, reset) = tokio::join!(c.batch_execute(end), pools::reset(c, known));
            if let (Err(e), true) = (ended, result.is_ok()) {
                result = Err(sql_error(e));
            }
            match reset {
                Ok(own) => {
                    conn.own_statements = own;
                    conn.dirty = false;
                }
                Err(e) => tracing::debug!(error = %e, "data API session reset failed"),
            }
        }
        // A budget that tripped, during the statement or while rows past the row limit
        // drained before COMMIT, is why the request failed.
        if let (Some(trip), Err(_)) = (metering.tripped(), &result) {
            result = Err(trip.into());
        }
        let outcome = match &result {
            Ok(_) => "ok",
            Err(QueryError::Timeout(_)) => "timeout",
            Err(_) => "error",
        };
        crate::metrics::query_finished(
            t.isolation.as_str(),
            outcome,
            started.elapsed().as_secs_f64(),
        );
        result.map(|result| Answer {
            result,
            _memory: metering.finish(),
        })
    }

    async fn run(
        &self,
        c: &tokio_postgres::Client,
        stmt: &tokio_postgres::Statement,
        req: &QueryRequest,
        metering: &Metering,
    ) -> Result<QueryResult, QueryError> {
        if stmt.params().len() != req.params.len() {
            return Err(QueryError::invalid(
                "invalid_field",
                Some("params"),
                format!(
                    "the statement takes {} parameter(s), params has {}",
                    stmt.params().len(),
                    req.params.len()
                ),
            ));
        }
        let columns: Vec<Column> = stmt
            .columns()
            .iter()
            .map(|col| Column {
                name: col.name().to_string(),
                type_name: col.type_().name().to_string(),
            })
            .collect();
        if let Some(col) = stmt
            .columns()
            .iter()
            .find(|col| !values::supported(col.type_()))
        {
            return Err(QueryError::invalid(
                "unsupported_type",
                Some("sql"),
                format!(
                    "column {:?} has type {}, which the data API does not return; cast it, e.g. {}::text",
                    col.name(),
                    col.type_().name(),
                    col.name()
                ),
            ));
        }
        let params: Vec<values::TextParam> = req
            .params
            .iter()
            .zip(stmt.params())
            .map(|(v, ty)| values::param(v, ty))
            .collect();
        let limit = self.config().row_limit;
        // The rows' framing, for as many rows as may be read (one past the limit).
        metering.extend(row_framing(limit.saturating_add(1), columns.len()));
        let stream = c.query_raw(stmt, params.iter()).await.map_err(sql_error)?;
        futures_util::pin_mut!(stream);
        let mut rows = Vec::new();
        let mut truncated = false;
        let mut bytes = 0usize;
        while let Some(row) = stream.try_next().await.map_err(sql_error)? {
            if rows.len() == limit {
                truncated = true;
                break;
            }
            // Measured before decoding, so an oversized row is never copied into JSON.
            for i in 0..row.len() {
                let values::RawLen(n) = row
                    .try_get(i)
                    .map_err(|e| QueryError::Internal(Box::new(e)))?;
                bytes = bytes.saturating_add(n);
            }
            if bytes > MAX_RESULT_BYTES {
                return Err(too_large());
            }
            let mut out = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                let cell: values::Cell = row
                    .try_get(i)
                    .map_err(|e| QueryError::Internal(Box::new(e)))?;
                out.push(cell.0);
            }
            rows.push(out);
        }
        // Rows after these (past the row limit) are dropped as they arrive.
        metering.stop_keeping();
        let row_count = if columns.is_empty() && !truncated {
            stream.rows_affected().unwrap_or(0)
        } else {
            rows.len() as u64
        };
        Ok(QueryResult {
            columns,
            rows,
            row_count,
            truncated,
        })
    }
}
