//! L3 fleet: the PostgreSQL servers tenants live on. Each registered server gets a
//! pool, a connection config and the endpoint its tenants connect to; `default` is
//! the server berqenas started with (the control database stays there). What a server
//! is checked for before it is added ([`check`]), and which server a new tenant goes
//! to ([`placement`]). The registry rows are the store's (`store::servers`).

pub mod check;
pub mod placement;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::config::Host;
use tokio_postgres::Config;

use crate::pg::{self, Capabilities};
use crate::platform::Endpoint;
use crate::secrets::{ExposeSecret, SecretKey, SecretString};
use crate::store::servers::{self as store, ServerRow, DEFAULT};

/// Connections per non-default server: tenant objects are made there, the control
/// plane's own work stays on `default`.
pub const SERVER_POOL_SIZE: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no server named {0:?}")]
    NotFound(String),
    /// It cannot be reached; the reason is PostgreSQL's (no secret in it).
    #[error("server {name:?} is down: {reason}")]
    Down { name: String, reason: String },
    #[error("the stored URL of server {0:?} does not open with this secret key")]
    Sealed(String),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Pg(#[from] pg::PgError),
}

/// One server: how berqenas reaches it, and where its tenants connect.
pub struct Server {
    pub name: String,
    /// The control role's connection (search path pinned); another database name
    /// reaches its other databases.
    pub config: Config,
    pub pool: Pool,
    pub endpoint: Endpoint,
    pub caps: Capabilities,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Server({} at {}:{}/{})",
            self.name, self.endpoint.host, self.endpoint.port, self.endpoint.database
        )
    }
}

/// The servers this process has opened, by name. Cheap to clone (shared).
#[derive(Clone)]
pub struct Fleet {
    default: Arc<Server>,
    others: Arc<RwLock<HashMap<String, Arc<Server>>>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fleet({:?})", self.default)
    }
}

/// Where a URL points (host, port, database), for the endpoint its tenants get.
pub fn endpoint_of(config: &Config) -> Endpoint {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    Endpoint {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        database: config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres")
            .to_string(),
    }
}

/// A server's URL, opened from its sealed form.
pub fn open_url(key: &SecretKey, row: &ServerRow) -> Result<SecretString, Error> {
    let sealed = row
        .url_sealed
        .as_deref()
        .ok_or_else(|| Error::Sealed(row.name.clone()))?;
    let plain = key
        .open(sealed)
        .map_err(|_| Error::Sealed(row.name.clone()))?;
    String::from_utf8(plain)
        .map(SecretString::from)
        .map_err(|_| Error::Sealed(row.name.clone()))
}

impl Fleet {
    /// A fleet of one: the server berqenas started with.
    pub fn new(config: Config, pool: Pool, endpoint: Endpoint, caps: Capabilities) -> Self {
        Self {
            default: Arc::new(Server {
                name: DEFAULT.to_string(),
                config,
                pool,
                endpoint,
                caps,
            }),
            others: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    pub fn default_server(&self) -> Arc<Server> {
        self.default.clone()
    }

    /// A server this process has opened already.
    pub fn cached(&self, name: &str) -> Option<Arc<Server>> {
        if name == DEFAULT {
            return Some(self.default.clone());
        }
        self.others.read().expect("fleet lock").get(name).cloned()
    }

    /// The endpoint tenants of `name` connect to, if this process has opened it.
    pub fn endpoint(&self, name: &str) -> Option<Endpoint> {
        self.cached(name).map(|s| s.endpoint.clone())
    }

    /// A server by name: opened once (its URL unsealed, its role's capabilities read),
    /// then kept. Another instance may have added it: the registry is read on a miss.
    pub async fn server(
        &self,
        control: &impl GenericClient,
        key: &SecretKey,
        name: &str,
    ) -> Result<Arc<Server>, Error> {
        if let Some(s) = self.cached(name) {
            return Ok(s);
        }
        let row = store::find(control, name)
            .await?
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let url = open_url(key, &row)?;
        let server = open(&row.name, &url).await?;
        // A server added by an older release has no shared realtime trigger functions
        // yet, and a create or migration there may need them (template 0003).
        install_realtime_triggers(&server).await?;
        let server = Arc::new(server);
        self.others
            .write()
            .expect("fleet lock")
            .insert(row.name.clone(), server.clone());
        Ok(server)
    }

    /// Keeps a server opened by its add.
    pub fn insert(&self, server: Server) {
        self.others
            .write()
            .expect("fleet lock")
            .insert(server.name.clone(), Arc::new(server));
    }

    /// Forgets a removed server (its pool closes with its last user).
    pub fn forget(&self, name: &str) {
        if let Some(s) = self.others.write().expect("fleet lock").remove(name) {
            s.pool.close();
        }
    }
}

async fn install_realtime_triggers(server: &Server) -> Result<(), Error> {
    let down = |reason: String| Error::Down {
        name: server.name.clone(),
        reason,
    };
    let c = server
        .pool
        .get()
        .await
        .map_err(|e| down(check::reason(&pg::PgError::Pool(e))))?;
    c.batch_execute(crate::isolation::realtime_triggers::INSTALL_SQL)
        .await
        .map_err(|e| down(check::reason(&pg::PgError::Db(e))))
}

/// Opens a server from its URL: one connection to read what the role may do, then a
/// pool (lazy: it connects on first use).
pub async fn open(name: &str, url: &SecretString) -> Result<Server, Error> {
    let mut config = pg::parse_config(url.expose_secret())?;
    let endpoint = endpoint_of(&config);
    pg::control_session_options(&mut config);
    let client = pg::connect(&config).await.map_err(|e| Error::Down {
        name: name.to_string(),
        reason: check::reason(&e),
    })?;
    let caps = Capabilities::probe(&client).await?;
    drop(client);
    let pool = pg::pool(config.clone(), SERVER_POOL_SIZE)?;
    Ok(Server {
        name: name.to_string(),
        config,
        pool,
        endpoint,
        caps,
    })
}
