//! Everything a request needs, built once at start: the control-plane pool, the
//! server's secret key, what the connected role may do, the tenant template, and
//! the address tenants connect to.

use deadpool_postgres::Pool;

use crate::pg::Capabilities;
use crate::secrets::SecretKey;
use crate::template::Template;

/// Where tenants reach PostgreSQL (what goes into the credentials we hand out).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub database: String,
}

#[derive(Clone)]
pub struct Platform {
    pub pool: Pool,
    /// How to reach the server; with another database name, its other databases.
    pub config: tokio_postgres::Config,
    pub key: SecretKey,
    pub caps: Capabilities,
    pub template: Template,
    pub endpoint: Endpoint,
    /// Whether berqenas runs the PostgreSQL cluster itself.
    pub embedded: bool,
    /// Where backups are kept.
    pub backups: crate::backup::store::Store,
    /// How network access is enforced (pg_hba.conf, the VPN files).
    pub network: std::sync::Arc<crate::network::Settings>,
    /// PgBouncer in front of the tenants, if any (docs/deploy.md#pgbouncer).
    pub pgbouncer: crate::pg::pgbouncer::PgBouncer,
    /// Onboarding steps may point at loopback and private addresses
    /// (`--onboarding-allow-private`; tests).
    pub onboarding_allow_private: bool,
    /// The address clients and onboarding steps reach this server at (`--public-url`,
    /// no trailing slash): invitation links and steps' `callback_url` start with it.
    /// `None` (library use without `serve`): links are relative paths and steps get
    /// only `callback_path`.
    pub public_url: Option<String>,
    /// Invitation links and the checks of sign-in providers.
    pub sign_in: SignIn,
    /// The vector store backend tenants' collections are made in (`--vector-url`,
    /// `--vector-backend`); `None`: a create asking for one is refused.
    pub vectors: Option<std::sync::Arc<dyn crate::vector::Backend>>,
    /// The PostgreSQL servers tenants live on (docs/servers.md); `pool`, `config` and
    /// `endpoint` above are its `default` one.
    pub fleet: crate::fleet::Fleet,
}

impl Platform {
    /// This platform as seen from another server: its pool, config, endpoint and
    /// role capabilities in place of `default`'s. Only for the tenant objects made
    /// there: the control tables stay on `default` (`self.pool`), so a function
    /// given a view must not read or write them.
    pub fn on(&self, server: &crate::fleet::Server) -> Platform {
        Platform {
            pool: server.pool.clone(),
            config: server.config.clone(),
            endpoint: server.endpoint.clone(),
            caps: server.caps,
            // Another server is reached by its URL, never through the embedded
            // cluster's trusted socket: its throw-away roles need passwords.
            embedded: self.embedded && server.name == crate::store::servers::DEFAULT,
            ..self.clone()
        }
    }

    /// The control database's pool, from any view: a view on another server
    /// ([`Platform::on`]) has that server's pool in `pool`, while the registry stays
    /// in the control database on `default`.
    pub fn control(&self) -> Pool {
        self.fleet.default_server().pool.clone()
    }

    /// The platform as seen from `server` ([`Platform::on`]), opened on first use.
    pub async fn view_of(&self, server: &str) -> Result<Platform, ViewError> {
        let s = match self.fleet.cached(server) {
            Some(s) => s,
            None => {
                let c = self.control().get().await?;
                self.fleet.server(&c, &self.key, server).await?
            }
        };
        Ok(self.on(&s))
    }

    /// Where the tenants of `server` connect (`default`'s endpoint for `default`,
    /// and for a server this process has not opened yet: callers open it first).
    pub fn endpoint_of(&self, server: &str) -> Endpoint {
        self.fleet
            .endpoint(server)
            .unwrap_or_else(|| self.endpoint.clone())
    }
}

/// `--invitation-ttl`, `--auth-allow-private`.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// How long an invitation link works.
    pub invitation_ttl: std::time::Duration,
    /// An OIDC issuer's discovery document and keys may be fetched from loopback and
    /// private addresses (tests).
    pub auth_allow_private: bool,
}

/// Seven days: seed 001's invitation email has no expiry; a week is the usual one.
pub const DEFAULT_INVITATION_TTL: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 3600);

impl Default for SignIn {
    fn default() -> Self {
        Self {
            invitation_ttl: DEFAULT_INVITATION_TTL,
            auth_allow_private: false,
        }
    }
}

/// Why [`Platform::view_of`] could not open a server.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    Fleet(#[from] crate::fleet::Error),
    #[error("pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}
