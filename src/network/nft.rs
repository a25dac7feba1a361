//! The host firewall for the VPN interface, as one nftables file that replaces the
//! `inet berqenas` table atomically (`nft -f`): each live tenant's subnet reaches only
//! the server's address in that subnet, on the PostgreSQL and API ports. Nothing from
//! the interface is forwarded, so no tenant reaches another tenant's subnet, except a
//! tenant on another server's subnet to that server's PostgreSQL (its addresses and
//! port, [`super::reach`]), and the answers back.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ipnet::IpNet;

use super::hba::live;
use super::reach::Reach;
use super::vpn::server_address;
use crate::store::network::Restricted;

pub fn render(
    interface: &str,
    postgres_port: u16,
    api_port: u16,
    tenants: &[Restricted],
    servers: &BTreeMap<String, Reach>,
) -> String {
    let iface = interface.replace(['"', '\n'], "");
    let mut out = String::from(
        "#!/usr/sbin/nft -f\n# rendered by berqenas from the registry; apply with: nft -f <this file>\n\
         table inet berqenas\ndelete table inet berqenas\n\ntable inet berqenas {\n",
    );
    let _ = write!(
        out,
        "\tchain input {{\n\t\ttype filter hook input priority filter; policy accept;\n\t\tiifname != \"{iface}\" accept\n"
    );
    for t in tenants.iter().filter(|t| live(&t.status)) {
        let Some(subnet) = t
            .vpn_subnet
            .as_deref()
            .and_then(|s| s.parse::<IpNet>().ok())
        else {
            continue;
        };
        let family = if subnet.addr().is_ipv4() { "ip" } else { "ip6" };
        let _ = writeln!(
            out,
            "\t\t{family} saddr {subnet} {family} daddr {} tcp dport {{ {postgres_port}, {api_port} }} accept comment \"tenant {}\"",
            server_address(&subnet),
            t.name
        );
    }
    let _ = write!(
        out,
        "\t\tdrop\n\t}}\n\n\tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n"
    );
    let forwards = forward_rules(&iface, tenants, servers);
    for rule in &forwards {
        let _ = writeln!(out, "\t\t{rule}");
    }
    if !forwards.is_empty() {
        let _ = writeln!(
            out,
            "\t\toifname \"{iface}\" ct state established,related accept"
        );
    }
    let _ = write!(
        out,
        "\t\tiifname \"{iface}\" drop\n\t\toifname \"{iface}\" drop\n\t}}\n}}\n"
    );
    out
}

/// For each live tenant on another server with a subnet: its subnet let through to
/// each address of that server of the subnet's family, on its port.
fn forward_rules(
    iface: &str,
    tenants: &[Restricted],
    servers: &BTreeMap<String, Reach>,
) -> Vec<String> {
    let mut out = Vec::new();
    for t in tenants.iter().filter(|t| live(&t.status)) {
        let (Some(subnet), Some(reach)) = (
            t.vpn_subnet
                .as_deref()
                .and_then(|s| s.parse::<IpNet>().ok()),
            servers.get(&t.server),
        ) else {
            continue;
        };
        let v4 = subnet.addr().is_ipv4();
        let family = if v4 { "ip" } else { "ip6" };
        for addr in reach.addrs.iter().filter(|a| a.is_ipv4() == v4) {
            out.push(format!(
                "iifname \"{iface}\" {family} saddr {subnet} {family} daddr {addr} tcp dport {} accept comment \"tenant {} on {}\"",
                reach.port, t.name, t.server
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, server: &str, subnet: &str) -> Restricted {
        Restricted {
            id: uuid::Uuid::nil(),
            name: name.into(),
            server: server.into(),
            status: "active".into(),
            vpn_enabled: true,
            public_api: false,
            vpn_subnet: Some(subnet.into()),
            logins: vec![],
            rules: vec![],
            peers: vec![],
        }
    }

    #[test]
    fn a_tenant_on_another_server_is_forwarded_to_its_postgresql_only() {
        let tenants = [
            tenant("here", "default", "10.50.1.0/24"),
            tenant("there", "pg2", "10.50.2.0/24"),
            tenant("lost", "pg3", "10.50.3.0/24"),
        ];
        let reach = Reach {
            addrs: vec!["192.0.2.7".parse().unwrap(), "2001:db8::7".parse().unwrap()],
            port: 6543,
        };
        let servers = BTreeMap::from([("pg2".to_string(), reach)]);
        let out = render("wg0", 5432, 8080, &tenants, &servers);
        let forward = out.split("chain forward").nth(1).unwrap();
        assert!(forward.contains(
            "iifname \"wg0\" ip saddr 10.50.2.0/24 ip daddr 192.0.2.7 tcp dport 6543 accept comment \"tenant there on pg2\""
        ));
        // Of the subnet's family only; none for `default`'s tenant or an unresolved server.
        assert!(!forward.contains("2001:db8::7"));
        assert!(!forward.contains("10.50.1.0/24") && !forward.contains("10.50.3.0/24"));
        assert!(forward.contains("oifname \"wg0\" ct state established,related accept"));
        let accept = forward.find("accept comment").unwrap();
        assert!(accept < forward.find("iifname \"wg0\" drop").unwrap());

        let none = render("wg0", 5432, 8080, &tenants[..1], &BTreeMap::new());
        assert!(!none.contains("ct state"), "{none}");
    }
}
