//! `berqenas tenant network|firewall|vpn`, and the serve flags of network access.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::tenant_path;
use super::{output, ClientArgs, NameArgs};

/// How `berqenas serve` enforces network access (docs/network.md).
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// The range tenants' VPN subnets are cut from, e.g. 10.64.0.0/10 (16,384 /24s)
    /// or an IPv6 ULA range like fd42:1::/48 [default: 10.50.0.0/16]
    #[arg(long, env = "BERQENAS_VPN_POOL", value_parser = pool_range)]
    pub vpn_pool: Option<ipnet::IpNet>,
    /// The prefix length of each tenant's subnet [default: 24 in IPv4, 64 in IPv6]
    #[arg(long, env = "BERQENAS_VPN_SUBNET_PREFIX")]
    pub vpn_subnet_prefix: Option<u8>,
    /// The pg_hba.conf of an external server that berqenas runs beside and may write
    /// (the embedded cluster's is always berqenas's).
    #[arg(long, env = "BERQENAS_PG_HBA_FILE")]
    pub pg_hba_file: Option<PathBuf>,
    /// Proxies whose X-Forwarded-For the data API believes (comma-separated ranges).
    #[arg(long, env = "BERQENAS_TRUSTED_PROXIES", value_delimiter = ',', value_parser = pool_range)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Apply the rendered WireGuard and nftables files to this interface (needs
    /// CAP_NET_ADMIN); without it they are only rendered into <data-dir>/network.
    #[arg(long, env = "BERQENAS_VPN_INTERFACE")]
    pub vpn_interface: Option<String>,
    /// The WireGuard endpoint peers are given [default: <postgres host>:51820]
    #[arg(long, env = "BERQENAS_VPN_ENDPOINT")]
    pub vpn_endpoint: Option<String>,
}

fn pool_range(s: &str) -> Result<ipnet::IpNet, String> {
    crate::network::cidr::parse("range", s).map_err(|p| p.message)
}

impl NetworkArgs {
    pub fn options(self) -> anyhow::Result<crate::server::NetworkOptions> {
        let vpn_pool = match (self.vpn_pool, self.vpn_subnet_prefix) {
            (None, None) => None,
            (net, prefix) => Some(
                crate::network::VpnPool::new(
                    net.unwrap_or_else(|| crate::network::VpnPool::default().net),
                    prefix,
                )
                .map_err(anyhow::Error::msg)?,
            ),
        };
        Ok(crate::server::NetworkOptions {
            vpn_pool,
            pg_hba_file: self.pg_hba_file,
            trusted_proxies: self.trusted_proxies,
            vpn_interface: self.vpn_interface,
            vpn_endpoint: self.vpn_endpoint,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum FirewallCommand {
    /// Allow a range to reach the tenant's database, data API, or both.
    Allow(AllowArgs),
    /// List the tenant's allow rules.
    List(NameArgs),
    /// Remove a rule (by its id, from `firewall list`).
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub struct AllowArgs {
    /// Tenant name or id.
    pub name: String,
    /// A range (203.0.113.0/24) or one address.
    pub cidr: String,
    /// What the range may reach: postgres, api or all.
    #[arg(long, default_value = "all", value_parser = ["postgres", "api", "all"])]
    pub service: String,
    #[arg(long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Tenant name or id.
    pub name: String,
    /// The rule's id, or a peer's id or name.
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum VpnCommand {
    /// The tenant's WireGuard peers.
    #[command(subcommand)]
    Peer(PeerCommand),
}

#[derive(Debug, Subcommand)]
pub enum PeerCommand {
    /// Add a peer; prints its wg-quick file (with a new private key unless
    /// --public-key is given) this once.
    Add(PeerAddArgs),
    /// List the tenant's peers.
    List(NameArgs),
    /// Revoke a peer (by id or name).
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub struct PeerAddArgs {
    /// Tenant name or id.
    pub tenant: String,
    /// The peer's name (a device, a site).
    #[arg(long)]
    pub name: String,
    /// The peer's own WireGuard public key; without it a key pair is generated.
    #[arg(long)]
    pub public_key: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn rules_table(rules: &Value) {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header(vec!["CIDR", "SERVICE", "DESCRIPTION", "ID"]);
    for r in rules.as_array().into_iter().flatten() {
        table.add_row(vec![
            r["cidr"].as_str().unwrap_or_default(),
            r["service"].as_str().unwrap_or_default(),
            r["description"].as_str().unwrap_or_default(),
            r["id"].as_str().unwrap_or_default(),
        ]);
    }
    println!("{table}");
}

fn peers_table(peers: &Value) {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header(vec!["NAME", "ADDRESS", "PUBLIC KEY", "ID"]);
    for p in peers.as_array().into_iter().flatten() {
        table.add_row(vec![
            p["name"].as_str().unwrap_or_default(),
            p["address"].as_str().unwrap_or_default(),
            p["public_key"].as_str().unwrap_or_default(),
            p["id"].as_str().unwrap_or_default(),
        ]);
    }
    println!("{table}");
}

pub async fn network(a: NameArgs) -> anyhow::Result<ExitCode> {
    let res = a
        .client
        .client()
        .call::<(), Value>(Method::GET, &tenant_path(&a.name, "/network"), None, &[])
        .await;
    output::finish(res, a.client.output, |v| {
        let list = |v: &Value| match v.as_array() {
            None => "anywhere".to_string(),
            Some(a) if a.is_empty() => "nowhere".to_string(),
            Some(a) => a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        };
        println!("tenant:       {}", v["tenant"].as_str().unwrap_or_default());
        println!(
            "access mode:  {}",
            v["access_mode"].as_str().unwrap_or_default()
        );
        println!("vpn subnet:   {}", v["vpn_subnet"].as_str().unwrap_or("-"));
        println!("database from: {}", list(&v["database_from"]));
        println!("data API from: {}", list(&v["api_from"]));
        println!(
            "postgres:     {}",
            v["postgres_enforcement"].as_str().unwrap_or_default()
        );
        println!(
            "vpn:          {}",
            v["vpn_enforcement"].as_str().unwrap_or_default()
        );
        println!("\nfirewall rules:");
        rules_table(&v["rules"]);
        println!("\nvpn peers:");
        peers_table(&v["peers"]);
    })
}

pub async fn firewall(cmd: FirewallCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FirewallCommand::Allow(a) => {
            let body = json!({"cidr": a.cidr, "service": a.service, "description": a.description});
            let res = a
                .client
                .client()
                .call::<_, Value>(
                    Method::POST,
                    &tenant_path(&a.name, "/firewall"),
                    Some(&body),
                    &[],
                )
                .await;
            output::finish(res, a.client.output, |v| rules_table(&v["rules"]))
        }
        FirewallCommand::List(a) => {
            let res = a
                .client
                .client()
                .call::<(), Value>(Method::GET, &tenant_path(&a.name, "/firewall"), None, &[])
                .await;
            output::finish(res, a.client.output, |v| rules_table(&v["rules"]))
        }
        FirewallCommand::Remove(a) => {
            let path = tenant_path(&a.name, &format!("/firewall/{}", seg(&a.id)));
            let res = a
                .client
                .client()
                .call::<(), Value>(Method::DELETE, &path, None, &[])
                .await;
            output::finish(res, a.client.output, |v| rules_table(&v["rules"]))
        }
    }
}

pub async fn vpn(cmd: VpnCommand) -> anyhow::Result<ExitCode> {
    let VpnCommand::Peer(cmd) = cmd;
    match cmd {
        PeerCommand::Add(a) => {
            let body = json!({"name": a.name, "public_key": a.public_key});
            let res = a
                .client
                .client()
                .call::<_, Value>(
                    Method::POST,
                    &tenant_path(&a.tenant, "/vpn/peers"),
                    Some(&body),
                    &[],
                )
                .await;
            output::finish(res, a.client.output, |v| {
                println!(
                    "# peer {} at {}; this file is shown once (save it as wg-{}.conf, then: wg-quick up ./wg-{}.conf)",
                    v["name"].as_str().unwrap_or_default(),
                    v["address"].as_str().unwrap_or_default(),
                    a.tenant,
                    a.tenant
                );
                print!("{}", v["config"].as_str().unwrap_or_default());
            })
        }
        PeerCommand::List(a) => {
            let res = a
                .client
                .client()
                .call::<(), Value>(Method::GET, &tenant_path(&a.name, "/vpn/peers"), None, &[])
                .await;
            output::finish(res, a.client.output, |v| peers_table(&v["peers"]))
        }
        PeerCommand::Remove(a) => {
            let path = tenant_path(&a.name, &format!("/vpn/peers/{}", seg(&a.id)));
            let res = a
                .client
                .client()
                .call::<(), Value>(Method::DELETE, &path, None, &[])
                .await;
            output::finish(res, a.client.output, |v| {
                println!(
                    "revoked peer {} ({})",
                    v["name"].as_str().unwrap_or_default(),
                    v["address"].as_str().unwrap_or_default()
                )
            })
        }
    }
}
