//! WireGuard: key pairs, the address of a new peer in its tenant's subnet, the
//! server's configuration (`wg syncconf` format) and a peer's `wg-quick` file. The
//! server holds the first address of each tenant subnet; peers get the next ones.

use std::fmt::Write as _;
use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};

use super::hba::live;
use crate::store::network::Restricted;

/// A new key pair: (private, public), base64 as `wg genkey` / `wg pubkey` write them.
pub fn keypair() -> (SecretString, String) {
    let secret = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
    let public = x25519_dalek::PublicKey::from(&secret);
    (
        SecretString::from(B64.encode(secret.to_bytes())),
        B64.encode(public.as_bytes()),
    )
}

/// The public key of a base64 private key.
pub fn public_of(private: &SecretString) -> Option<String> {
    let bytes: [u8; 32] = B64.decode(private.expose_secret()).ok()?.try_into().ok()?;
    let secret = x25519_dalek::StaticSecret::from(bytes);
    Some(B64.encode(x25519_dalek::PublicKey::from(&secret).as_bytes()))
}

/// Whether `key` is a WireGuard public key (32 bytes, base64).
pub fn valid_public_key(key: &str) -> bool {
    key.len() == 44 && B64.decode(key).is_ok_and(|b| b.len() == 32)
}

fn nth(subnet: &IpNet, n: u128) -> IpAddr {
    match subnet.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + n as u32).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + n).into()),
    }
}

/// The server's own address in a tenant's subnet.
pub fn server_address(subnet: &IpNet) -> IpAddr {
    nth(subnet, 1)
}

/// The lowest address of the subnet that neither the server nor a peer holds.
pub fn next_peer_address(subnet: &IpNet, used: &[String]) -> Option<IpAddr> {
    let used: std::collections::HashSet<IpAddr> =
        used.iter().filter_map(|u| u.parse().ok()).collect();
    let size: u128 = 1u128 << u32::from(subnet.max_prefix_len() - subnet.prefix_len()).min(32);
    (2..size.saturating_sub(1))
        .map(|n| nth(subnet, n))
        .find(|a| !used.contains(a))
}

fn host_prefix(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// The server's file, ready for `wg syncconf`: every peer of every live tenant (a
/// suspended or deleted tenant's peers are left out, so they are disabled).
pub fn server_config(private: &SecretString, listen_port: u16, tenants: &[Restricted]) -> String {
    let mut out = format!(
        "# rendered by berqenas from the registry; apply with: wg syncconf <interface> <this file>\n\
         [Interface]\nPrivateKey = {}\nListenPort = {listen_port}\n",
        private.expose_secret()
    );
    for t in tenants.iter().filter(|t| live(&t.status)) {
        for p in &t.peers {
            let Ok(addr) = p.address.parse::<IpAddr>() else {
                continue;
            };
            let _ = write!(
                out,
                "\n# tenant {} peer {}\n[Peer]\nPublicKey = {}\nAllowedIPs = {addr}/{}\n",
                t.name,
                p.name.replace('\n', " "),
                p.public_key,
                host_prefix(&addr)
            );
        }
    }
    out
}

/// A peer's `wg-quick` file: its address, and the server as its only peer, reachable
/// only at the server's address in the tenant's subnet. `private`: the generated key,
/// or a placeholder when the client brought its own key pair.
pub fn client_config(
    private: Option<&SecretString>,
    address: IpAddr,
    subnet: &IpNet,
    server_public: &str,
    endpoint: &str,
    tenant_server: Option<&super::reach::Reach>,
) -> String {
    let server = server_address(subnet);
    let mut allowed = vec![format!("{server}/{}", host_prefix(&server))];
    // A tenant on another server: that server's PostgreSQL through the tunnel too.
    if let Some(reach) = tenant_server {
        allowed.extend(
            reach
                .addrs
                .iter()
                .filter(|a| a.is_ipv4() == server.is_ipv4())
                .map(|a| format!("{a}/{}", host_prefix(a))),
        );
    }
    format!(
        "[Interface]\nPrivateKey = {}\nAddress = {address}/{}\n\n[Peer]\nPublicKey = {server_public}\nEndpoint = {endpoint}\nAllowedIPs = {}\nPersistentKeepalive = 25\n",
        private.map(|p| p.expose_secret().to_string()).unwrap_or_else(|| "<the private key of the public key you sent>".into()),
        host_prefix(&address),
        allowed.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_addresses() {
        let (private, public) = keypair();
        assert_eq!(public_of(&private).as_deref(), Some(public.as_str()));
        assert!(valid_public_key(&public));
        assert!(!valid_public_key("not a key"));
        let subnet: IpNet = "10.50.3.0/24".parse().unwrap();
        assert_eq!(server_address(&subnet).to_string(), "10.50.3.1");
        assert_eq!(
            next_peer_address(&subnet, &[]).unwrap().to_string(),
            "10.50.3.2"
        );
        let used = vec!["10.50.3.2".to_string()];
        assert_eq!(
            next_peer_address(&subnet, &used).unwrap().to_string(),
            "10.50.3.3"
        );
        let tiny: IpNet = "10.50.3.0/30".parse().unwrap();
        assert_eq!(next_peer_address(&tiny, &["10.50.3.2".into()]), None);
    }
}
