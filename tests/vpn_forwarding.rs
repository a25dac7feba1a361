//! Issue 18 item 1 (network rules per server): the host firewall berqenas renders
//! for the VPN interface, applied with the real `nft -f` in network namespaces that
//! stand for the VPN's three places, and checked by real connections:
//!
//! - `hub`: berqenas's host. Its `wg-berqenas` (a veth here: this kernel has no
//!   WireGuard, and the tunnel's own work is WireGuard's) holds each tenant subnet's
//!   server address; `up0` leads to the servers. It forwards, and runs the ruleset.
//! - `peer`: a VPN peer at the second address of a tenant's subnet.
//! - the test's own namespace: pg2's PostgreSQL listens on `10.231.0.1` there, and
//!   routes the VPN pool back through the hub, as docs/servers.md asks of an operator.
//!
//! A tenant on pg2 logs in from its peer through the hub with its own password; its
//! subnet reaches nothing else there; a tenant on `default` (not forwarded) does not
//! reach pg2 at all; the host's own ports answer a tenant's subnet on the PostgreSQL
//! and API ports only; a suspended tenant is cut off at the next render. Each refusal
//! is checked to be the firewall's (a dropped SYN, a timeout) and each is first seen
//! open with no ruleset loaded, so none holds by accident of the setup.

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;

use std::process::Command;
use std::sync::Arc;

use berqenas::network::{Settings, VpnPool};
use common::{unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const POOL: &str = "10.232.0.0/16";
/// pg2's address on the link to the hub (the hub's end is `.2`).
const PG2_ADDR: &str = "10.231.0.1";
const VPN_IFACE: &str = "wg-berqenas";

fn run(args: &[&str]) -> std::process::Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The namespaces and links; removed on drop, also when the test fails.
struct Net {
    hub: String,
    peer: String,
    uplink: String,
}

impl Net {
    fn new() -> Self {
        let id = std::process::id() % 100_000;
        let net = Net {
            hub: format!("bq-hub-{id}"),
            peer: format!("bq-peer-{id}"),
            uplink: format!("bqup{id}"),
        };
        for ns in [&net.hub, &net.peer] {
            let out = Command::new("ip").args(["netns", "add", ns]).output();
            let ok = out.as_ref().is_ok_and(|o| o.status.success());
            assert!(
                ok,
                "creating a network namespace needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), as .ci/run has: {out:?}"
            );
        }
        // This namespace <-> hub.
        run(&[
            "ip",
            "link",
            "add",
            &net.uplink,
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            &net.hub,
        ]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{PG2_ADDR}/24"),
            "dev",
            &net.uplink,
        ]);
        run(&["ip", "link", "set", &net.uplink, "up"]);
        net.hub(&["ip", "addr", "add", "10.231.0.2/24", "dev", "up0"]);
        net.hub(&["ip", "link", "set", "up0", "up"]);
        net.hub(&["ip", "link", "set", "lo", "up"]);
        net.hub(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        // Hub <-> peer: the hub's end is the VPN interface the ruleset names.
        net.hub(&[
            "ip", "link", "add", VPN_IFACE, "type", "veth", "peer", "name", "tun0", "netns",
            &net.peer,
        ]);
        net.hub(&["ip", "link", "set", VPN_IFACE, "up"]);
        net.peer(&["ip", "link", "set", "tun0", "up"]);
        net.peer(&["ip", "link", "set", "lo", "up"]);
        // The VPN pool routed back through the hub (the operator's step).
        run(&[
            "ip",
            "route",
            "add",
            POOL,
            "via",
            "10.231.0.2",
            "dev",
            &net.uplink,
        ]);
        net
    }

    fn hub(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["ip", "netns", "exec", &self.hub];
        all.extend_from_slice(args);
        run(&all)
    }

    fn peer(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["ip", "netns", "exec", &self.peer];
        all.extend_from_slice(args);
        run(&all)
    }

    /// A subnet's server address on the hub's VPN interface.
    fn serve_subnet(&self, subnet: &str) {
        let prefix = subnet.split('/').nth(1).unwrap();
        self.hub(&[
            "ip",
            "addr",
            "add",
            &format!("{}/{prefix}", nth(subnet, 1)),
            "dev",
            VPN_IFACE,
        ]);
    }

    /// The peer moves to the second address of `subnet`, its route through the hub.
    fn peer_in(&self, subnet: &str) {
        let prefix = subnet.split('/').nth(1).unwrap();
        self.peer(&["ip", "addr", "flush", "dev", "tun0"]);
        self.peer(&[
            "ip",
            "addr",
            "add",
            &format!("{}/{prefix}", nth(subnet, 2)),
            "dev",
            "tun0",
        ]);
        self.peer(&["ip", "route", "replace", "default", "via", &nth(subnet, 1)]);
    }

    /// Loads a ruleset on the hub, or (`None`) removes berqenas's table.
    fn firewall(&self, file: Option<&std::path::Path>) {
        match file {
            Some(f) => {
                self.hub(&["nft", "-f", f.to_str().unwrap()]);
            }
            None => {
                let _ = Command::new("ip")
                    .args([
                        "netns", "exec", &self.hub, "nft", "delete", "table", "inet", "berqenas",
                    ])
                    .output();
            }
        }
    }

    /// A TCP connection from the peer to `addr:port`.
    fn reach(&self, addr: &str, port: u16) -> Reach {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.peer, "timeout", "2", "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/{addr}/{port}"))
            .output()
            .unwrap();
        match out.status.code() {
            Some(0) => Reach::Open,
            Some(124) => Reach::Dropped,
            _ if String::from_utf8_lossy(&out.stderr).contains("refused") => Reach::Refused,
            _ => panic!("{addr}:{port}: {out:?}"),
        }
    }

    /// `SELECT current_user` from the peer with `credentials`, by the real psql.
    fn login(&self, psql: &std::path::Path, credentials: &Value) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.peer])
            .arg(psql)
            .args(["-XAtc", "SELECT current_user"])
            .arg(format!(
                "host={} port={} dbname={} user={}",
                credentials["host"].as_str().unwrap(),
                credentials["port"],
                credentials["database"].as_str().unwrap(),
                credentials["user"].as_str().unwrap()
            ))
            .env("PGPASSWORD", credentials["password"].as_str().unwrap())
            .env("PGCONNECT_TIMEOUT", "3")
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The pair goes with either end; the route with the link.
        let _ = Command::new("ip")
            .args(["link", "del", &self.uplink])
            .output();
        for ns in [&self.hub, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

#[derive(Debug, PartialEq)]
enum Reach {
    Open,
    /// Answered with a reset: the packet was let through, nothing listens.
    Refused,
    /// No answer: the firewall dropped it.
    Dropped,
}

fn nth(subnet: &str, n: u32) -> String {
    let net: ipnet::Ipv4Net = subnet.parse().unwrap();
    std::net::Ipv4Addr::from(u32::from(net.network()) + n).to_string()
}

async fn vpn_on(app: &TestApp, name: &str) -> String {
    let (s, b) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/tenants/{name}"),
            Some(json!({"vpn_enabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["vpn_subnet"].as_str().expect("a subnet").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_firewall_forwards_a_tenants_vpn_subnet_to_its_server_only() {
    let net = Net::new();
    let (pg2, url) = extra_cluster::start_cluster_on(
        "vpnfwd-pg2",
        "pg2-Pa55-word",
        &format!("{PG2_ADDR},127.0.0.1"),
    )
    .await;
    // The operator lets berqenas in over pg2's address on the link, and leaves the
    // tenants' lines to berqenas.
    let hba = pg2.pgdata().join("pg_hba.conf");
    let mut lines = std::fs::read_to_string(&hba).unwrap();
    lines.push_str(&format!("host all all {PG2_ADDR}/32 scram-sha-256\n"));
    std::fs::write(&hba, lines).unwrap();
    extra_cluster::on(&pg2, "postgres")
        .await
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();

    let mut p = common::platform(16).await;
    let files = common::scratch_dir("vpnfwd-files");
    let mut settings: Settings = (*p.network).clone();
    settings.pool = VpnPool::new(POOL.parse().unwrap(), None).unwrap();
    settings.files_dir = files.clone();
    let (pg_port, api_port) = (settings.postgres_port, settings.api_port);
    p.network = Arc::new(settings);
    let app = TestApp::serve(p).await;
    extra_cluster::add_server(&app, "pg2", &url, json!({})).await;

    let there = unique("fwd-there");
    let t = app
        .create_with(json!({"name": there, "server": "pg2", "isolation": "schema"}))
        .await;
    let there_subnet = vpn_on(&app, &there).await;
    let here = unique("fwd-here");
    app.create_with(json!({"name": here, "isolation": "schema"}))
        .await;
    let here_subnet = vpn_on(&app, &here).await;
    for subnet in [&there_subnet, &here_subnet] {
        net.serve_subnet(subnet);
    }
    let nft = files.join("berqenas.nft");
    let rendered = std::fs::read_to_string(&nft).unwrap();
    assert!(
        rendered.contains(&format!(
            "ip saddr {there_subnet} ip daddr {PG2_ADDR} tcp dport {}",
            pg2.port()
        )),
        "{rendered}"
    );
    let psql = pg2
        .binaries()
        .client("psql")
        .expect("psql beside the server binaries");
    let other = std::net::TcpListener::bind((PG2_ADDR, 0)).unwrap();
    let other_port = other.local_addr().unwrap().port();

    // With no ruleset loaded, every path is open: what follows is the ruleset's doing.
    net.firewall(None);
    net.peer_in(&there_subnet);
    assert_eq!(net.reach(PG2_ADDR, other_port), Reach::Open);
    assert_eq!(net.reach(&nth(&there_subnet, 1), 9), Reach::Refused);
    net.peer_in(&here_subnet);
    assert_eq!(net.reach(PG2_ADDR, pg2.port()), Reach::Open);

    net.firewall(Some(&nft));
    // The tenant on pg2, from its peer: in with its own password, through the hub;
    // pg2 sees the peer's own address (no masquerade), which its pg_hba.conf lets in.
    net.peer_in(&there_subnet);
    assert_eq!(t["credentials"]["host"], PG2_ADDR, "{t}");
    let user = net
        .login(&psql, &t["credentials"])
        .expect("logs in from its peer");
    assert_eq!(user, t["credentials"]["user"].as_str().unwrap());
    // Nothing else on that host, and on berqenas's host the two ports only.
    assert_eq!(net.reach(PG2_ADDR, other_port), Reach::Dropped);
    assert_eq!(net.reach(&nth(&there_subnet, 1), pg_port), Reach::Refused);
    assert_eq!(net.reach(&nth(&there_subnet, 1), api_port), Reach::Refused);
    assert_eq!(net.reach(&nth(&there_subnet, 1), 9), Reach::Dropped);
    // Nor another tenant's server address.
    assert_eq!(net.reach(&nth(&here_subnet, 1), pg_port), Reach::Dropped);

    // The tenant on `default` is not forwarded to pg2 at all.
    net.peer_in(&here_subnet);
    assert_eq!(net.reach(PG2_ADDR, pg2.port()), Reach::Dropped);
    assert_eq!(net.reach(&nth(&here_subnet, 1), pg_port), Reach::Refused);

    // Suspended: the next render leaves its subnet out; applied, the peer is cut off.
    app.lifecycle(&there, "suspend").await;
    let rendered = std::fs::read_to_string(&nft).unwrap();
    assert!(!rendered.contains(&there_subnet), "{rendered}");
    net.firewall(Some(&nft));
    net.peer_in(&there_subnet);
    assert_eq!(net.reach(PG2_ADDR, pg2.port()), Reach::Dropped);
    app.lifecycle(&there, "resume").await;
    net.firewall(Some(&nft));
    let user = net
        .login(&psql, &t["credentials"])
        .expect("in again once resumed");
    assert_eq!(user, t["credentials"]["user"].as_str().unwrap());
    drop(other);
}
