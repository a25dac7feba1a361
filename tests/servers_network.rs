//! Issue 18 item 1 (network rules per server): firewall rules of a tenant on a second
//! server are enforced by that server's own pg_hba.conf, which berqenas reads and
//! writes over SQL. A rule holds at once there (a session from an address it no
//! longer allows is ended, a new one refused, one from the allowed range let in); a
//! user added later is held to the same rules there; the operator's lines are kept
//! and the previous file is left beside it; a bad range is refused naming the field
//! with the file unchanged; removing the rules opens the tenant again. VPN turned on
//! for a tenant there: pg2 lets it in from its subnet only, a peer's file routes pg2
//! through the tunnel and the host firewall forwards the subnet to pg2's PostgreSQL;
//! turned off, the subnet's lines leave pg2's file. Clients bind the 127.x.y.z address
//! they come from.

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;
#[path = "support/from_address.rs"]
mod from_address;

use std::sync::Arc;

use berqenas::network::{Settings, VpnPool};
use common::{unique, TestApp};
use extra_cluster::{on, register_pg2};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Connects with `credentials` from the local address `from`.
async fn connect_from(
    credentials: &Value,
    from: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let config: tokio_postgres::Config = credentials["dsn"].as_str().unwrap().parse().unwrap();
    from_address::connect(&config, from).await
}

fn refused_by_hba(r: Result<tokio_postgres::Client, tokio_postgres::Error>) {
    let Err(e) = r else {
        panic!("the connection was let in");
    };
    from_address::refused_by_hba(&e);
}

const OPERATOR_LINE: &str = "host all all 127.0.0.0/8 scram-sha-256 # the operator's";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_rules_of_a_tenant_on_another_server_hold_there() {
    // VPN subnets from a loopback range: a client binding one of its addresses
    // stands for a VPN peer.
    let mut p = common::platform(16).await;
    let files = common::scratch_dir("net-pg2-files");
    let mut settings: Settings = (*p.network).clone();
    settings.pool = VpnPool::new("127.53.0.0/16".parse().unwrap(), None).unwrap();
    settings.files_dir = files.clone();
    p.network = Arc::new(settings);
    let app = TestApp::serve(p).await;
    let pg2 = register_pg2(&app, "net-pg2").await;
    let pg2_admin = on(&pg2, "postgres").await;
    // The operator opens the loopback range on pg2: only berqenas's lines narrow it.
    let hba_path = pg2.pgdata().join("pg_hba.conf");
    let mut operator = std::fs::read_to_string(&hba_path).unwrap();
    operator.push_str(OPERATOR_LINE);
    operator.push('\n');
    std::fs::write(&hba_path, &operator).unwrap();
    pg2_admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();

    let name = unique("fwp");
    let created = app
        .create_with(json!({"name": name, "server": "pg2", "isolation": "schema"}))
        .await;
    let creds = created["credentials"].clone();
    let old = connect_from(&creds, "127.0.0.9")
        .await
        .expect("no rules yet: anywhere local");

    // --- bad input: refused naming the field; pg2's file unchanged ---
    let before = std::fs::read_to_string(&hba_path).unwrap();
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/firewall"),
            Some(json!({"cidr": "127.0.0.300/32", "service": "postgres"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["field"], "cidr", "{b}");
    assert_eq!(std::fs::read_to_string(&hba_path).unwrap(), before);

    // --- a rule holds on pg2 when the call returns ---
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/firewall"),
            Some(json!({"cidr": "127.0.0.7/32", "service": "postgres", "description": "office"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["rule"]["id"].as_str().unwrap().to_string();
    assert!(
        old.query_one("SELECT 1", &[]).await.is_err(),
        "the session from an address no longer allowed was ended on pg2"
    );
    refused_by_hba(connect_from(&creds, "127.0.0.9").await);
    let kept = connect_from(&creds, "127.0.0.7")
        .await
        .expect("from the allowed address");
    let file = std::fs::read_to_string(&hba_path).unwrap();
    assert!(file.contains("# BEGIN berqenas tenant rules"), "{file}");
    assert!(file.contains("127.0.0.7/32"), "{file}");
    assert!(
        file.contains(OPERATOR_LINE),
        "the operator's line is kept: {file}"
    );
    assert!(file.find("# END berqenas").unwrap() < file.find(OPERATOR_LINE).unwrap());
    let previous = std::fs::read_to_string(pg2.pgdata().join("pg_hba.conf.berqenas-previous"))
        .expect("the previous file is kept beside it");
    assert_eq!(previous, before);
    let errors: i64 = pg2_admin
        .query_one(
            "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(errors, 0);

    // --- a user added afterwards is held to the same rules on pg2 ---
    let (s, ada) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/users"),
            Some(json!({"email": "ada@example.com", "role": "developer"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ada}");
    refused_by_hba(connect_from(&ada["credentials"], "127.0.0.9").await);
    connect_from(&ada["credentials"], "127.0.0.7")
        .await
        .expect("the user from the allowed address");

    // --- the rule removed: open again, the kept session stays ---
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}/firewall/{id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    connect_from(&creds, "127.0.0.9")
        .await
        .expect("no rules: anywhere local again");
    kept.query_one("SELECT 1", &[])
        .await
        .expect("a session still allowed stays");
    let file = std::fs::read_to_string(&hba_path).unwrap();
    assert!(!file.contains("127.0.0.7/32"), "{file}");
    assert!(file.contains(OPERATOR_LINE));

    // --- a shared-mode tenant there (pg2's pool, in the same database): its own rules ---
    let pooled = app
        .create_with(json!({"name": unique("fwq"), "server": "pg2", "isolation": "shared"}))
        .await;
    let (s, b) = app
        .call(
            Method::POST,
            &format!(
                "/api/v1/tenants/{}/firewall",
                pooled["name"].as_str().unwrap()
            ),
            Some(json!({"cidr": "127.0.0.8/32", "service": "postgres"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    refused_by_hba(connect_from(&pooled["credentials"], "127.0.0.9").await);
    connect_from(&pooled["credentials"], "127.0.0.8")
        .await
        .expect("the shared-mode tenant from its allowed address");
    connect_from(&creds, "127.0.0.9")
        .await
        .expect("its rule does not hold the other tenant");

    // --- VPN turned on for a tenant there: pg2 lets it in from its subnet only ---
    let vname = unique("vpnp");
    let v = app
        .create_with(json!({"name": vname, "server": "pg2", "isolation": "schema"}))
        .await;
    let vcreds = v["credentials"].clone();
    let (s, b) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/tenants/{vname}"),
            Some(json!({"vpn_enabled": true, "public_api": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let subnet = b["vpn_subnet"].as_str().expect("a subnet").to_string();
    assert!(subnet.starts_with("127.53."), "{b}");
    let peer_at = peer_address(&subnet);
    connect_from(&vcreds, &peer_at)
        .await
        .expect("from its VPN subnet, on pg2");
    refused_by_hba(connect_from(&vcreds, "127.0.0.9").await);
    assert!(std::fs::read_to_string(&hba_path)
        .unwrap()
        .contains(&subnet));

    // A peer's file routes pg2 through the tunnel; the host firewall forwards the
    // subnet to pg2's PostgreSQL only.
    let (s, peer) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{vname}/vpn/peers"),
            Some(json!({"name": "laptop"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{peer}");
    let config = peer["config"].as_str().unwrap();
    let allowed = config
        .lines()
        .find_map(|l| l.strip_prefix("AllowedIPs = "))
        .unwrap();
    assert!(allowed.contains("127.0.0.1/32"), "{config}");
    let nft = std::fs::read_to_string(files.join("berqenas.nft")).unwrap();
    let forward = format!(
        "ip saddr {subnet} ip daddr 127.0.0.1 tcp dport {} accept comment \"tenant {vname} on pg2\"",
        pg2.port()
    );
    assert!(nft.contains(&forward), "{nft}");
    nft_accepts(&files.join("berqenas.nft"));

    // --- VPN off: the subnet's lines leave pg2's file, its peers go, open again ---
    let (s, b) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/tenants/{vname}"),
            Some(json!({"vpn_enabled": false, "public_api": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["vpn_subnet"].is_null(), "{b}");
    assert!(!std::fs::read_to_string(&hba_path)
        .unwrap()
        .contains(&subnet));
    connect_from(&vcreds, "127.0.0.9")
        .await
        .expect("no VPN, no rules: anywhere local again on pg2");
    let nft = std::fs::read_to_string(files.join("berqenas.nft")).unwrap();
    assert!(!nft.contains(&subnet), "{nft}");
    let (s, peers) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{vname}/vpn/peers"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{peers}");
    assert_eq!(peers["peers"].as_array().map(Vec::len), Some(0), "{peers}");
}

/// The first peer's address in a VPN subnet (the server holds the first one).
fn peer_address(subnet: &str) -> String {
    let net: ipnet::Ipv4Net = subnet.parse().unwrap();
    std::net::Ipv4Addr::from(u32::from(net.network()) + 2).to_string()
}

/// `nft -c -f` parses the ruleset (where netlink lets it check at all).
fn nft_accepts(file: &std::path::Path) {
    let out = std::process::Command::new("nft")
        .args(["-c", "-f"])
        .arg(file)
        .output()
        .expect("nftables (nft) is installed: .ci/run installs it");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.contains("Operation not permitted") || err.contains("netlink"),
        "nft -c refused the ruleset: {err}"
    );
}
