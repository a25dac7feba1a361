//! Scrape targets for Prometheus's HTTP service discovery (`http_sd_configs`): the
//! berqenas instances whose `/metrics` carry every tenant's series. One target group,
//! never one per tenant: each tenant's series are labelled `tenant` already, and a
//! group per tenant would scrape the same endpoint once per tenant.

use serde::Serialize;
use utoipa::ToSchema;

/// One HTTP SD target group (`[{"targets": [...], "labels": {...}}]`).
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetGroup {
    /// `host:port` of each berqenas instance.
    pub targets: Vec<String>,
    /// `__metrics_path__` (Prometheus's own label for the path) and `service`.
    #[schema(value_type = Object)]
    pub labels: std::collections::BTreeMap<&'static str, String>,
}

/// The groups for these instance addresses (none: an empty list, which Prometheus
/// reads as "no targets").
pub fn render(addresses: &[String]) -> Vec<TargetGroup> {
    if addresses.is_empty() {
        return Vec::new();
    }
    vec![TargetGroup {
        targets: addresses.to_vec(),
        labels: [
            ("__metrics_path__", "/metrics".to_string()),
            ("service", "berqenas".to_string()),
        ]
        .into_iter()
        .collect(),
    }]
}

/// Whether `text` is a `host:port` Prometheus can scrape (a host name or an IP
/// address, IPv6 in brackets, and a port).
pub fn valid_address(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_group_in_the_http_sd_shape() {
        let v = serde_json::to_value(render(&["10.0.0.1:8080".into()])).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"targets": ["10.0.0.1:8080"],
                "labels": {"__metrics_path__": "/metrics", "service": "berqenas"}}])
        );
        assert_eq!(
            serde_json::to_value(render(&[])).unwrap(),
            serde_json::json!([])
        );
    }

    #[test]
    fn addresses() {
        for ok in ["berqenas:8080", "127.0.0.1:1", "[::1]:9000", "a.b-c.d:443"] {
            assert!(valid_address(ok), "{ok}");
        }
        for bad in [
            "berqenas", ":80", "h:0", "h:99999", "h/x:80", "[zz]:80", "a b:1",
        ] {
            assert!(!valid_address(bad), "{bad}");
        }
    }
}
