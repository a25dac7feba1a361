//! L3: who may reach a tenant, and from where. A tenant's access mode (from its VPN
//! and public-API flags), its VPN subnet, its firewall allow rules and its WireGuard
//! peers are registry rows; this domain turns them into what enforces them:
//! PostgreSQL's own `pg_hba.conf` ([`hba`]), the data API's check of the client
//! address ([`policy`]), and the VPN server's WireGuard and nftables files ([`vpn`],
//! [`nft`]). Rendering is a pure function of the registry: [`enforce`] renders,
//! checks and applies it, and is safe to run again at any time.

pub mod cidr;
pub mod enforce;
pub mod hba;
pub mod nft;
pub mod policy;
pub mod pool;
pub mod reach;
pub mod remote;
pub mod rules;
pub mod vpn;

use std::path::PathBuf;

use ipnet::IpNet;

pub use policy::Service;
pub use pool::VpnPool;

/// How this server enforces network access, from its options.
#[derive(Debug, Clone)]
pub struct Settings {
    pub pool: VpnPool,
    /// The pg_hba.conf berqenas owns (the embedded cluster's, or `--pg-hba-file`);
    /// `None`: database rules are recorded but not enforced, and `status` says so.
    pub hba_file: Option<PathBuf>,
    /// Where the WireGuard and nftables files are rendered (`<data-dir>/network`).
    pub files_dir: PathBuf,
    /// With `--vpn-interface`, the rendered files are applied to that interface.
    pub vpn_interface: Option<String>,
    /// The WireGuard endpoint clients are given (`host:port`).
    pub vpn_endpoint: String,
    /// The ports a tenant's VPN subnet may reach on this host.
    pub postgres_port: u16,
    pub api_port: u16,
    /// Peers whose `X-Forwarded-For` is believed (`--trusted-proxies`).
    pub trusted_proxies: Vec<IpNet>,
}

impl Settings {
    pub fn new(hba_file: Option<PathBuf>, files_dir: PathBuf, postgres_port: u16) -> Self {
        Self {
            pool: VpnPool::default(),
            hba_file,
            files_dir,
            vpn_interface: None,
            vpn_endpoint: "127.0.0.1:51820".into(),
            postgres_port,
            api_port: 8080,
            trusted_proxies: Vec::new(),
        }
    }
}

/// How network enforcement fails.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the rendered pg_hba.conf has errors (the previous file was put back): {0}")]
    Invalid(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no control-plane connection: {0}")]
    Pool(String),
    #[error("applying the VPN configuration failed: {0}")]
    Apply(String),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

impl Error {
    fn io(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.display().to_string();
        move |source| Self::Io { what, path, source }
    }
}

/// A change of the network registry that is refused (bad input, a full pool), or a
/// store failure.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{}", .0.message)]
    Rejected(crate::problem::Problem),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

impl From<crate::problem::Problem> for Refusal {
    fn from(p: crate::problem::Problem) -> Self {
        Self::Rejected(p)
    }
}
