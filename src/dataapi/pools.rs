//! Connections for the data API: a small pool per tenant, logged in as that tenant's
//! login role, created on first use, under one global cap on open connections.
//!
//! Every open connection holds a permit of one semaphore (the global cap). When the
//! cap is reached, idle connections of other tenants are closed to make room; pools
//! shrink on their own when idle, and the map of pools is bounded (least recently used
//! goes first). So however many tenants use the API, it holds at most the cap.
//!
//! Each connection's socket is opened here and wrapped in the connection's byte
//! budget ([`super::budget`]) before tokio-postgres logs in over it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use postgres_protocol::escape::escape_identifier;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio_postgres::{NoTls, SimpleQueryMessage};
use uuid::Uuid;

use super::budget::{Budget, Metered, ResultMemory};
use super::socket::{self, Targets};

/// Limits of the data API's connection use.
#[derive(Debug, Clone)]
pub struct DataApiConfig {
    /// Open connections across all tenants.
    pub max_connections: usize,
    /// Open connections per tenant (also never more than its `max_connections` quota).
    pub per_tenant: usize,
    /// A connection unused this long is closed.
    pub idle: Duration,
    /// Per-tenant pools held at once.
    pub max_pools: usize,
    /// How long a request waits for a connection.
    pub acquire_timeout: Duration,
    /// Rows returned at most; more are cut off with `truncated: true`.
    pub row_limit: usize,
    /// Bytes of results all requests together may hold, from the moment PostgreSQL
    /// sends them until the response is serialised (see [`super::budget`]).
    pub result_memory: usize,
}

impl Default for DataApiConfig {
    fn default() -> Self {
        Self {
            max_connections: 64,
            per_tenant: 4,
            idle: Duration::from_secs(30),
            max_pools: 1000,
            acquire_timeout: Duration::from_secs(5),
            row_limit: 1000,
            result_memory: 256 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("all {0} data API connections are in use")]
    Busy(usize),
    #[error("cannot reach the database: {0}")]
    Socket(#[source] std::io::Error),
    #[error(transparent)]
    Pg(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Clean(#[from] CleanError),
}

/// Why a connection left dirty could not be made clean (it is then closed).
#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error("resetting the session failed: {0}")]
    Reset(#[from] ResetError),
    #[error("resetting the session timed out")]
    TimedOut,
}

/// Why a session reset failed.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    /// The tenant's SQL deallocated statements the client had prepared and cached (for
    /// its type lookups): the client would fail on them, so the connection must go.
    #[error("the client's cached prepared statements were deallocated")]
    StatementsDropped,
}

/// Undoes whatever a request changed in the session (settings, role, listeners,
/// cursors, temporary tables, advisory locks), so the next request starts clean, and
/// lists the session's prepared statements for [`reset`] to deallocate the tenant's.
/// Its own batch, sent after the transaction ended (a failed COMMIT cannot skip it).
/// Not `DISCARD ALL` nor `DEALLOCATE ALL`: they would also drop the statements
/// tokio-postgres prepared for its type lookups and keeps for the connection's life
/// (it would then fail on the next enum or domain it meets). `pg_catalog.` so that a
/// function or view of the tenant's cannot stand in for it.
pub const RESET: &str = "RESET ALL; RESET ROLE; UNLISTEN *; CLOSE ALL; DISCARD TEMP; \
                         SELECT pg_catalog.pg_advisory_unlock_all(); \
                         SELECT name, from_sql FROM pg_catalog.pg_prepared_statements";

/// Runs [`RESET`], then deallocates the statements the tenant's SQL prepared
/// (`PREPARE`, `from_sql`), by name, in a second round trip only when there are any.
/// `known` is how many statements the client itself had prepared after the last reset
/// (those of its type lookups); returns how many it has now. Fewer means the tenant
/// deallocated some: [`ResetError::StatementsDropped`].
pub async fn reset(client: &tokio_postgres::Client, known: usize) -> Result<usize, ResetError> {
    let mut own = 0;
    let mut deallocate = String::new();
    for message in client.simple_query(RESET).await? {
        // The reset's rows: the advisory unlock's (one column), then the statements.
        let SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        if row.len() != 2 {
            continue;
        }
        match (row.get(0), row.get(1)) {
            (Some(name), Some("t")) => {
                deallocate.push_str("DEALLOCATE ");
                deallocate.push_str(&escape_identifier(name));
                deallocate.push(';');
            }
            _ => own += 1,
        }
    }
    if !deallocate.is_empty() {
        client.batch_execute(&deallocate).await?;
    }
    if own < known {
        return Err(ResetError::StatementsDropped);
    }
    Ok(own)
}

/// How long the clean-up of a connection a request left behind may take before the
/// connection is closed instead.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(2);

/// An open connection as the tenant's login role, holding its permit.
pub struct Conn {
    pub client: tokio_postgres::Client,
    /// A request began on it and did not finish its reset (it was cancelled, e.g. the
    /// client went away, or the reset failed): it may hold an open or aborted
    /// transaction, which must never be committed by the next request. Dropped dirty,
    /// its socket is closed at once (see `Drop`).
    pub dirty: bool,
    /// The byte budget its socket charges (see [`super::budget`]).
    pub budget: Arc<Budget>,
    /// Statements the client prepared for itself (type lookups) as of the last reset.
    pub own_statements: usize,
    targets: Arc<Targets>,
    /// The task driving the connection (tokio-postgres's `Connection`).
    task: AbortHandle,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // A clean connection ends gracefully when its client is dropped. A dirty one
        // may be out of step with its server (say, left in COPY FROM STDIN) and then
        // would wait for an answer forever, holding its backend: its socket is closed.
        if self.dirty {
            self.task.abort();
        }
    }
}

impl Conn {
    /// Makes a dirty connection clean: rolls back (after whatever statement it still
    /// runs) and resets the session. An error, or taking over 2 s, means the caller
    /// must close it: then its running statement, if any, is cancelled first (only
    /// then: a cancel arrives asynchronously, and could hit a later request's query).
    pub async fn clean(&mut self) -> Result<(), CleanError> {
        if !self.dirty {
            return Ok(());
        }
        let (c, known) = (&self.client, self.own_statements);
        let done = tokio::time::timeout(CLEANUP_TIMEOUT, async {
            c.batch_execute("ROLLBACK").await?;
            reset(c, known).await
        })
        .await;
        let err = match done {
            Ok(Ok(own)) => {
                self.own_statements = own;
                self.dirty = false;
                return Ok(());
            }
            Ok(Err(e)) => CleanError::Reset(e),
            Err(_) => CleanError::TimedOut,
        };
        self.cancel().await;
        Err(err)
    }

    /// Asks PostgreSQL to cancel whatever the connection runs, for a connection about
    /// to be closed (on a connection kept, a late cancel could hit the next request).
    /// Best effort, within the clean-up timeout.
    pub async fn cancel(&self) {
        let token = self.client.cancel_token();
        match tokio::time::timeout(CLEANUP_TIMEOUT, socket::cancel(&self.targets, &token)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "cancelling a data API statement failed"),
            Err(_) => tracing::debug!("cancelling a data API statement timed out"),
        }
    }
}

pub struct TenantManager {
    config: tokio_postgres::Config,
    targets: Arc<Targets>,
    tenant: Uuid,
    shared: Weak<Shared>,
}

impl managed::Manager for TenantManager {
    type Type = Conn;
    type Error = ConnError;

    async fn create(&self) -> Result<Conn, ConnError> {
        let shared = self.shared.upgrade().ok_or(ConnError::Busy(0))?;
        let permit = shared.permit(self.tenant).await?;
        // The socket is ours, so that the budget sees every byte before tokio-postgres.
        let socket = self.targets.connect().await.map_err(ConnError::Socket)?;
        let budget = Budget::new(shared.memory.clone());
        let (client, conn) = self
            .config
            .connect_raw(Metered::new(socket, budget.clone()), NoTls)
            .await?;
        let task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "data API connection closed");
            }
        });
        Ok(Conn {
            client,
            dirty: false,
            budget,
            own_statements: 0,
            targets: self.targets.clone(),
            task: task.abort_handle(),
            _permit: permit,
        })
    }

    async fn recycle(&self, conn: &mut Conn, _: &Metrics) -> RecycleResult<ConnError> {
        if conn.client.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        // Never hand out a connection with a previous request's transaction.
        conn.clean()
            .await
            .map_err(|e| RecycleError::Backend(e.into()))
    }
}

pub type TenantPool = managed::Pool<TenantManager>;
pub type Object = managed::Object<TenantManager>;

struct Entry {
    pool: TenantPool,
    size: usize,
    last_used: Instant,
    /// Where its connections go (server, database): a move changes it.
    place: (String, String),
}

pub(crate) struct Shared {
    config: DataApiConfig,
    permits: Arc<Semaphore>,
    /// The result memory all connections' budgets draw on.
    memory: ResultMemory,
    pools: Mutex<HashMap<Uuid, Entry>>,
}

impl Shared {
    fn pools(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A permit for one more connection. At the cap, other tenants' idle connections
    /// are closed to make room (again every 50 ms while waiting, as busy ones come
    /// back idle), until the acquire timeout.
    async fn permit(&self, tenant: Uuid) -> Result<OwnedSemaphorePermit, ConnError> {
        let deadline = Instant::now() + self.config.acquire_timeout;
        loop {
            if let Ok(p) = self.permits.clone().try_acquire_owned() {
                return Ok(p);
            }
            self.close_idle_except(tenant);
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50));
            if wait.is_zero() {
                return Err(ConnError::Busy(self.config.max_connections));
            }
            if let Ok(Ok(p)) =
                tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await
            {
                return Ok(p);
            }
        }
    }

    fn close_idle_except(&self, tenant: Uuid) {
        let others: Vec<TenantPool> = self
            .pools()
            .iter()
            .filter(|(id, _)| **id != tenant)
            .map(|(_, e)| e.pool.clone())
            .collect();
        for pool in others {
            pool.retain(|_, _| false);
        }
    }
}

/// The data API's connections (see the module doc).
pub struct Pools {
    shared: Arc<Shared>,
}

impl Pools {
    pub fn new(config: DataApiConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                permits: Arc::new(Semaphore::new(config.max_connections.max(1))),
                memory: ResultMemory::new(config.result_memory),
                config,
                pools: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn config(&self) -> &DataApiConfig {
        &self.shared.config
    }

    /// The result memory all requests draw on.
    pub fn memory(&self) -> &ResultMemory {
        &self.shared.memory
    }

    /// The tenant's pool if it has one for where the tenant is (`place`: server,
    /// database), resized to `size` if that changed. One made before the tenant moved
    /// (another server or database) is forgotten.
    pub fn existing(&self, tenant: Uuid, size: usize, place: (&str, &str)) -> Option<TenantPool> {
        let mut pools = self.shared.pools();
        let e = pools.get_mut(&tenant)?;
        if (e.place.0.as_str(), e.place.1.as_str()) != place {
            pools.remove(&tenant);
            return None;
        }
        if e.size != size {
            e.pool.resize(size);
            e.size = size;
        }
        e.last_used = Instant::now();
        Some(e.pool.clone())
    }

    /// Makes (or returns, if another request just made it) the tenant's pool.
    pub fn insert(
        &self,
        tenant: Uuid,
        config: tokio_postgres::Config,
        size: usize,
        place: (&str, &str),
    ) -> TenantPool {
        let mut pools = self.shared.pools();
        if let Some(e) = pools.get(&tenant) {
            return e.pool.clone();
        }
        if pools.len() >= self.shared.config.max_pools {
            if let Some(oldest) = pools
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(id, _)| *id)
            {
                pools.remove(&oldest);
            }
        }
        let manager = TenantManager {
            targets: Arc::new(Targets::from_config(&config)),
            config,
            tenant,
            shared: Arc::downgrade(&self.shared),
        };
        let pool = TenantPool::builder(manager)
            .max_size(size)
            .wait_timeout(Some(self.shared.config.acquire_timeout))
            .create_timeout(Some(self.shared.config.acquire_timeout * 2))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a pool with a runtime and timeouts builds");
        pools.insert(
            tenant,
            Entry {
                pool: pool.clone(),
                size,
                last_used: Instant::now(),
                place: (place.0.to_string(), place.1.to_string()),
            },
        );
        pool
    }

    /// Forgets a tenant's pool (its credentials changed, or it is gone).
    pub fn forget(&self, tenant: Uuid) {
        self.shared.pools().remove(&tenant);
    }

    /// Closes connections idle past the limit and drops pools left empty for long.
    pub fn reap(&self) {
        let idle = self.shared.config.idle;
        let mut pools = self.shared.pools();
        for e in pools.values() {
            e.pool.retain(|_, m| m.last_used() < idle);
        }
        pools.retain(|_, e| e.pool.status().size > 0 || e.last_used.elapsed() < idle * 10);
    }

    /// (open connections, pools held)
    pub fn stats(&self) -> (usize, usize) {
        let open =
            self.shared.config.max_connections.max(1) - self.shared.permits.available_permits();
        (open, self.shared.pools().len())
    }
}
