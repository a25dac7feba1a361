//! Where a VPN peer of a tenant on another server (docs/servers.md) is let through to:
//! that server's PostgreSQL, at the addresses its registered host resolves to. The
//! WireGuard interface is on berqenas's host; the nftables file forwards the
//! tenant's subnet to those addresses and port only ([`super::nft`]), and the peer's
//! file routes them through the tunnel ([`super::vpn::client_config`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use deadpool_postgres::GenericClient;

use crate::store::network::Restricted;
use crate::store::servers::{self, DEFAULT};

/// How long one server's name may take to resolve; past it, its tenants' peers are
/// not forwarded until the next render (logged).
const RESOLVE: Duration = Duration::from_secs(2);

/// A server's PostgreSQL as a peer reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub addrs: Vec<IpAddr>,
    pub port: u16,
}

/// The servers other than `default` that a tenant with a VPN subnet lives on, each
/// resolved (all at once). One that does not resolve is left out, logged.
pub async fn of_tenants(
    c: &impl GenericClient,
    tenants: &[Restricted],
) -> crate::store::Result<BTreeMap<String, Reach>> {
    let mut names: Vec<&str> = tenants
        .iter()
        .filter(|t| t.server != DEFAULT && t.vpn_subnet.is_some())
        .map(|t| t.server.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    resolve_all(servers::endpoints(c, &names).await?).await
}

/// The one server `name` (`None` for `default`, or when it does not resolve).
pub async fn of_server(c: &impl GenericClient, name: &str) -> crate::store::Result<Option<Reach>> {
    if name == DEFAULT {
        return Ok(None);
    }
    Ok(resolve_all(servers::endpoints(c, &[name]).await?)
        .await?
        .remove(name))
}

async fn resolve_all(
    endpoints: Vec<(String, String, i32)>,
) -> crate::store::Result<BTreeMap<String, Reach>> {
    let looked = futures_util::future::join_all(endpoints.into_iter().map(
        |(name, host, port)| async move {
            let port = u16::try_from(port).unwrap_or(5432);
            let found = tokio::time::timeout(RESOLVE, tokio::net::lookup_host((host.as_str(), port))).await;
            match found {
                Ok(Ok(addrs)) => {
                    let mut addrs: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
                    addrs.sort_unstable();
                    addrs.dedup();
                    Some((name, Reach { addrs, port }))
                }
                Ok(Err(e)) => {
                    tracing::warn!(server = %name, host = %host, error = %e, "a server's host does not resolve: its tenants' VPN peers are not forwarded to it");
                    None
                }
                Err(_) => {
                    tracing::warn!(server = %name, host = %host, "resolving a server's host timed out: its tenants' VPN peers are not forwarded to it");
                    None
                }
            }
        },
    ))
    .await;
    Ok(looked.into_iter().flatten().collect())
}
