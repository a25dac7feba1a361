//! The host firewall for the VPN interface, as one nftables file that replaces the
//! `inet berqenas` table atomically (`nft -f`): each live tenant's subnet reaches only
//! the server's address in that subnet, on the PostgreSQL and API ports; nothing from
//! the interface is forwarded, so no tenant reaches another tenant's subnet.

use std::fmt::Write as _;

use ipnet::IpNet;

use super::hba::live;
use super::vpn::server_address;
use crate::store::network::Restricted;

pub fn render(
    interface: &str,
    postgres_port: u16,
    api_port: u16,
    tenants: &[Restricted],
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
        "\t\tdrop\n\t}}\n\n\tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tiifname \"{iface}\" drop\n\t\toifname \"{iface}\" drop\n\t}}\n}}\n"
    );
    out
}
