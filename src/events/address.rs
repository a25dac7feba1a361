//! Where a webhook may be sent: not to this machine or the operator's private network
//! (loopback, link-local, private, unspecified addresses), unless the server runs with
//! `--webhook-allow-private`. Checked when an endpoint is saved and again at every
//! delivery, by the resolver the relay's HTTP client connects through, so a name that
//! resolves elsewhere later (DNS rebinding) is refused then too.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Whether `ip` is one a webhook is never sent to by default.
pub fn is_refused(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_refused(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_refused(v4),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                    || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
            }
        },
    }
}

fn v4_refused(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
}

/// Why a host was refused, for the error the caller shows (never an internal detail).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{host} resolves to {ip}, a loopback, link-local, private or unspecified address (allowed only with serve --webhook-allow-private)")]
    Private { host: String, ip: IpAddr },
    #[error("{host} does not resolve: {reason}")]
    Unresolvable { host: String, reason: String },
}

/// Resolves `host` (a name or an IP literal) and checks every address it has.
pub async fn check(host: &str, port: u16, allow_private: bool) -> Result<Vec<SocketAddr>, Refused> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Refused::Unresolvable {
                host: host.to_string(),
                reason: e.to_string(),
            })?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(Refused::Unresolvable {
            host: host.to_string(),
            reason: "no address".into(),
        });
    }
    if !allow_private {
        if let Some(a) = addrs.iter().find(|a| is_refused(a.ip())) {
            return Err(Refused::Private {
                host: host.to_string(),
                ip: a.ip(),
            });
        }
    }
    Ok(addrs)
}

/// The relay's resolver: a name's addresses, refused when one is private (so the
/// connection can only go to an address that was checked).
#[derive(Debug, Clone, Copy)]
pub struct Resolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private;
        Box::pin(async move {
            let addrs = check(name.as_str(), 0, allow).await?;
            let it: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

/// Whether an IP literal in a URL is refused (names go through [`Resolver`]).
pub fn literal_refused(host: &url::Host<&str>, allow_private: bool) -> Option<IpAddr> {
    let ip = match host {
        url::Host::Ipv4(v4) => IpAddr::V4(*v4),
        url::Host::Ipv6(v6) => IpAddr::V6(*v6),
        url::Host::Domain(_) => return None,
    };
    (!allow_private && is_refused(ip)).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_unspecified_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_refused(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert!(!is_refused(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn names_are_checked_after_resolving() {
        assert!(matches!(
            check("localhost", 80, false).await,
            Err(Refused::Private { .. })
        ));
        assert!(check("localhost", 80, true).await.is_ok());
        assert!(matches!(
            check("[::1]", 80, false).await,
            Err(Refused::Private { .. })
        ));
    }
}
