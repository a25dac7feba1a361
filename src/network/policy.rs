//! What a tenant's access mode and allow rules mean for each service: the ranges a
//! client may come from, or anywhere.
//!
//! | mode | database | data API |
//! |---|---|---|
//! | `public` | anywhere, or only its `postgres`/`all` rules if it has any | anywhere, or only its `api`/`all` rules if it has any |
//! | `hybrid` | its VPN subnet and its `postgres`/`all` rules | as `public` |
//! | `vpn-only` | its VPN subnet and its `postgres`/`all` rules | its VPN subnet and its `api`/`all` rules |

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Postgres,
    Api,
    All,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Postgres => "postgres",
            Service::Api => "api",
            Service::All => "all",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Service::Postgres, Service::Api, Service::All]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// Whether a rule for `self` opens `service`.
    pub fn covers(self, service: Service) -> bool {
        self == Service::All || self == service
    }
}

/// The ranges `service` may be reached from, or `None` for anywhere. `rules` are the
/// tenant's (range, service) pairs; ranges that do not parse are ignored (the
/// registry only holds canonical ones).
pub fn allowed<'a>(
    vpn_enabled: bool,
    public_api: bool,
    subnet: Option<&str>,
    rules: impl IntoIterator<Item = (&'a str, Service)>,
    service: Service,
) -> Option<Vec<IpNet>> {
    let mut ranges: Vec<IpNet> = rules
        .into_iter()
        .filter(|(_, s)| s.covers(service))
        .filter_map(|(c, _)| c.parse().ok())
        .collect();
    let vpn_bound = vpn_enabled && (service == Service::Postgres || !public_api);
    if vpn_bound {
        ranges.extend(subnet.and_then(|s| s.parse::<IpNet>().ok()));
        return Some(ranges);
    }
    (!ranges.is_empty()).then_some(ranges)
}

/// Whether `addr` may reach a service that `ranges` (from [`allowed`]) guard.
pub fn admits(ranges: &Option<Vec<IpNet>>, addr: IpAddr) -> bool {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    };
    match ranges {
        None => true,
        Some(r) => r.iter().any(|n| n.contains(&addr)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        let sub = Some("10.50.1.0/24");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // public, no rules: anywhere for both.
        assert_eq!(allowed(false, true, None, [], Service::Postgres), None);
        // hybrid: database from the subnet only; API anywhere.
        let db = allowed(true, true, sub, [], Service::Postgres);
        assert!(admits(&db, ip("10.50.1.9")) && !admits(&db, ip("127.0.0.1")));
        assert_eq!(allowed(true, true, sub, [], Service::Api), None);
        // vpn-only: API from the subnet and api rules.
        let api = allowed(
            true,
            false,
            sub,
            [("203.0.113.0/24", Service::Api)],
            Service::Api,
        );
        assert!(admits(&api, ip("203.0.113.4")) && admits(&api, ip("10.50.1.2")));
        assert!(!admits(&api, ip("198.51.100.1")));
        // public with a postgres rule: narrowed for the database, not the API.
        let rules = [("198.51.100.0/24", Service::Postgres)];
        assert!(allowed(false, true, None, rules, Service::Api).is_none());
        assert!(!admits(
            &allowed(false, true, None, rules, Service::Postgres),
            ip("10.0.0.1")
        ));
        assert!(admits(
            &Some(vec!["127.0.0.1/32".parse().unwrap()]),
            ip("::ffff:127.0.0.1")
        ));
    }
}
