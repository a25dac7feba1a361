//! Where a step may point: `http` or `https`, a host, no credentials in the URL, and
//! (unless the server allows it: `--onboarding-allow-private`) no loopback, private,
//! link-local or otherwise internal address, so a registration cannot turn berqenas
//! into a way into the operator's own network.

use std::net::IpAddr;

use super::{invalid, Error};

/// Whether an address is one a public endpoint never has.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                // 100.64.0.0/10, carrier-grade NAT
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
        }
    }
}

/// Checks a step's URL (`field` names it in the refusal); resolves its host.
pub async fn check(raw: &str, field: &str, allow_private: bool) -> Result<(), Error> {
    let url = url::Url::parse(raw)
        .map_err(|e| invalid(field, format!("{field} is not a URL ({e}): {raw:?}")))?;
    if !["http", "https"].contains(&url.scheme()) {
        return Err(invalid(
            field,
            format!(
                "{field} must be http:// or https://, got {:?}",
                url.scheme()
            ),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            field,
            format!("{field} must not carry credentials: the call is signed instead"),
        ));
    }
    let Some(host) = url.host_str() else {
        return Err(invalid(field, format!("{field} names no host")));
    };
    if allow_private {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<IpAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(a) => a.map(|a| a.ip()).collect(),
        Err(_) => {
            return Err(invalid(
                field,
                format!("{field}: the host {host:?} does not resolve"),
            ))
        }
    };
    if addrs.is_empty() || addrs.iter().any(|a| is_private(*a)) {
        return Err(invalid(
            field,
            format!("{field}: {host:?} is a loopback, private or link-local address; the server refuses those unless started with --onboarding-allow-private"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_private() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "100.64.1.1",
            "0.0.0.0",
        ] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_naming_the_field() {
        for bad in [
            "not a url",
            "ftp://example.com/x",
            "https://user:pw@example.com/",
            "http://127.0.0.1:9/hook",
            "http://localhost/x",
            "http://[::1]/x",
        ] {
            match check(bad, "url", false).await {
                Err(Error::Rejected(p)) => assert_eq!(p.field.as_deref(), Some("url"), "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(check("http://127.0.0.1:9/hook", "url", true).await.is_ok());
    }
}
