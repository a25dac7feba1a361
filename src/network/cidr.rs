//! Address ranges as users type them, read strictly: one range, canonical (no host
//! bits), with a valid prefix length. A bare address is the range of that one address.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::problem::Problem;

/// Parses the value of `field`; every refusal names the field and what to send.
pub fn parse(field: &str, text: &str) -> Result<IpNet, Problem> {
    let bad = |why: String| Problem::bad_field(field, format!("{field}: {why}"));
    if text.is_empty() {
        return Err(bad(
            "must not be empty; give a range like 203.0.113.0/24".into()
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '/')))
    {
        return Err(bad(format!(
            "{:?} contains {c:?}; give one range like 203.0.113.0/24",
            text
        )));
    }
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| bad(format!("{text:?} is not an IPv4 or IPv6 range")))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(p) if p <= max => p,
            _ => {
                return Err(bad(format!(
                    "/{p} is not a prefix length of an {} range (0 to {max})",
                    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
                )))
            }
        },
    };
    let net = IpNet::new(addr, prefix).expect("prefix checked");
    if net.trunc() != net {
        return Err(bad(format!(
            "{text} has host bits set; the range is {}",
            net.trunc()
        )));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_ranges_only() {
        assert_eq!(
            parse("cidr", "10.1.2.0/24").unwrap().to_string(),
            "10.1.2.0/24"
        );
        assert_eq!(
            parse("cidr", "203.0.113.7").unwrap().to_string(),
            "203.0.113.7/32"
        );
        assert_eq!(parse("cidr", "fd00::/8").unwrap().to_string(), "fd00::/8");
        let e = parse("cidr", "10.1.2.3/24").unwrap_err();
        assert!(e.message.contains("10.1.2.0/24"), "{}", e.message);
        assert_eq!(e.field.as_deref(), Some("cidr"));
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.0/8\n",
            "10.0.0.0/8,10.1.0.0/16",
            "host",
            "::/129",
            "10.0.0.0/",
        ] {
            let e = parse("cidr", bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("cidr"), "{bad:?}");
        }
    }
}
