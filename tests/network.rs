//! Network access, enforced by PostgreSQL's own pg_hba.conf and by the data API, from
//! real source addresses: every 127.x.y.z address is local here, so the VPN pool is
//! 127.50.0.0/16 and clients bind the address they come from.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use berqenas::network::{Settings, VpnPool};
use common::{unique, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// An app whose VPN pool is inside 127.0.0.0/8, so tests can come from its subnets.
async fn app() -> TestApp {
    app_in().await.0
}

/// [`app`], and the directory its VPN files are rendered in.
async fn app_in() -> (TestApp, std::path::PathBuf) {
    let mut p = common::platform(16).await;
    let mut s: Settings = (*p.network).clone();
    s.pool = VpnPool::new("127.50.0.0/16".parse().unwrap(), None).unwrap();
    s.files_dir = common::scratch_dir("network");
    let dir = s.files_dir.clone();
    p.network = Arc::new(s);
    (TestApp::serve(p).await, dir)
}

/// Connects as the tenant from `from`, as a client at that address would.
async fn connect_from(
    created: &Value,
    from: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let creds = &created["credentials"];
    let config: tokio_postgres::Config = creds["dsn"].as_str().unwrap().parse().unwrap();
    let port = config.get_ports()[0];
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let stream = socket
        .connect(SocketAddr::new("127.0.0.1".parse().unwrap(), port))
        .await
        .unwrap();
    let (client, conn) = config.connect_raw(stream, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

fn refused_by_hba(e: tokio_postgres::Error) {
    let code = e.as_db_error().map(|d| d.code().code().to_string());
    assert_eq!(code.as_deref(), Some("28000"), "{e}");
}

/// The `/api/v1/me` status for the tenant's key, from `from`.
async fn me_from(app: &TestApp, key: &str, from: &str) -> (StatusCode, Value) {
    let http = reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let res = http
        .get(format!("{}/api/v1/me", app.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The first host of the subnet after the server's: where a peer would be.
fn peer_address(subnet: &str) -> String {
    let net: ipnet::Ipv4Net = subnet.parse().unwrap();
    let base = u32::from(net.network());
    std::net::Ipv4Addr::from(base + 2).to_string()
}

async fn hba_file() -> String {
    let db = common::database().await;
    let pgdata = db.cluster.as_ref().unwrap().pgdata().to_path_buf();
    std::fs::read_to_string(pgdata.join("pg_hba.conf")).unwrap()
}

async fn hba_errors() -> i64 {
    common::superuser()
        .await
        .query_one(
            "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn vpn_only_reaches_database_and_api_only_from_its_subnet() {
    let app = app().await;
    let name = unique("vpno");
    let created = app
        .create_with(json!({"name": name, "vpn_enabled": true, "public_api": false}))
        .await;
    let subnet = created["vpn_subnet"].as_str().unwrap().to_string();
    assert!(
        subnet.starts_with("127.50.") && subnet.ends_with("/24"),
        "{subnet}"
    );
    let inside = peer_address(&subnet);

    let c = connect_from(&created, &inside)
        .await
        .expect("from its subnet");
    assert_eq!(
        c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
    refused_by_hba(
        connect_from(&created, "127.0.0.1")
            .await
            .expect_err("refused from 127.0.0.1"),
    );

    let key = created["api_key"].as_str().unwrap();
    assert_eq!(me_from(&app, key, &inside).await.0, StatusCode::OK);
    let (status, body) = me_from(&app, key, "127.0.0.1").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "network_not_allowed", "{body}");

    let (status, view) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/network"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["access_mode"], "vpn-only");
    assert_eq!(view["vpn_subnet"], subnet.as_str());
    assert!(
        view["postgres_enforcement"]
            .as_str()
            .unwrap()
            .starts_with("enforced"),
        "{view}"
    );
    assert_eq!(hba_errors().await, 0);
}

#[tokio::test]
async fn hybrid_allows_the_api_from_anywhere_but_not_the_database() {
    let app = app().await;
    let name = unique("hyb");
    let created = app
        .create_with(json!({"name": name, "vpn_enabled": true, "public_api": true}))
        .await;
    let key = created["api_key"].as_str().unwrap();
    assert_eq!(me_from(&app, key, "127.0.0.1").await.0, StatusCode::OK);
    refused_by_hba(
        connect_from(&created, "127.0.0.1")
            .await
            .expect_err("database refused"),
    );
    let subnet = created["vpn_subnet"].as_str().unwrap();
    connect_from(&created, &peer_address(subnet))
        .await
        .expect("from its subnet");
}

#[tokio::test]
async fn a_rule_holds_at_once_and_its_removal_ends_sessions_it_no_longer_allows() {
    let app = app().await;
    let name = unique("fw");
    let created = app.create(&name).await;
    // Public and no rules: anywhere local.
    let old = connect_from(&created, "127.0.0.1").await.expect("public");

    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/firewall"),
            Some(json!({"cidr": "127.61.0.0/16", "service": "postgres", "description": "office"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["rule"]["id"].as_str().unwrap().to_string();
    // In force when the call returns: the old session from 127.0.0.1 is ended, a new
    // one from there refused, one from the allowed range let in.
    assert!(
        old.query_one("SELECT 1", &[]).await.is_err(),
        "session from a range no longer allowed must end"
    );
    refused_by_hba(
        connect_from(&created, "127.0.0.1")
            .await
            .expect_err("refused"),
    );
    let kept = connect_from(&created, "127.61.3.4")
        .await
        .expect("allowed range");
    // The data API is not narrowed by a postgres rule.
    assert_eq!(
        me_from(&app, created["api_key"].as_str().unwrap(), "127.0.0.1")
            .await
            .0,
        StatusCode::OK
    );

    let (status, body) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}/firewall/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rules"], json!([]));
    connect_from(&created, "127.0.0.1")
        .await
        .expect("public again");
    kept.query_one("SELECT 1", &[])
        .await
        .expect("a session still allowed stays");
    let audit = common::audit_actions(&name).await;
    assert_eq!(
        audit
            .iter()
            .filter(|a| *a == "network.firewall_changed")
            .count(),
        2,
        "{audit:?}"
    );
}

#[tokio::test]
async fn bad_ranges_are_refused_by_field_and_change_nothing() {
    let app = app().await;
    let name = unique("fwbad");
    app.create(&name).await;
    let before_file = hba_file().await;
    for (body, field, needle) in [
        (json!({"cidr": "10.1.2.3/24"}), "cidr", "10.1.2.0/24"),
        (json!({"cidr": "10.0.0.0/33"}), "cidr", "/33"),
        (
            json!({"cidr": "10.0.0.0/8\nhost all all all trust"}),
            "cidr",
            "contains",
        ),
        (
            json!({"cidr": "10.0.0.0/8,10.1.0.0/16"}),
            "cidr",
            "contains",
        ),
        (json!({"cidr": ""}), "cidr", "empty"),
        (
            json!({"cidr": "10.0.0.0/8", "service": "ssh"}),
            "service",
            "ssh",
        ),
    ] {
        let (status, resp) = app
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{name}/firewall"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {resp}");
        assert_eq!(resp["error"]["field"], field, "{resp}");
        assert!(
            resp["error"]["message"].as_str().unwrap().contains(needle),
            "{resp}"
        );
    }
    let (status, resp) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/firewall"),
            Some(json!({"rules": [{"cidr": "127.62.0.0/16"}, {"cidr": "127.62.0.1/16"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert_eq!(resp["error"]["field"], "rules[1].cidr", "{resp}");
    let (_, rules) = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{name}/firewall"),
            None,
        )
        .await;
    assert_eq!(rules["rules"], json!([]), "nothing recorded");
    assert!(!common::audit_actions(&name)
        .await
        .iter()
        .any(|a| a.starts_with("network.")));
    // Other tests render concurrently: only this tenant's lines are this test's.
    assert!(!hba_file().await.contains(&format!("# tenant {name} ")));
    assert!(!before_file.contains(&format!("# tenant {name} ")));
    assert_eq!(hba_errors().await, 0);
}

#[tokio::test]
async fn concurrent_rule_changes_leave_a_file_that_matches_the_registry() {
    let app = Arc::new(app().await);
    let name = unique("fwmany");
    let created = app.create(&name).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100u32 {
        let (app, name) = (app.clone(), name.clone());
        set.spawn(async move {
            let cidr = format!("127.{}.{}.0/24", 70 + i / 250, i % 250);
            let (status, body) = app
                .call(
                    Method::POST,
                    &format!("/api/v1/tenants/{name}/firewall"),
                    Some(json!({"cidr": cidr, "service": "postgres"})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let file = hba_file().await;
    let pg = common::superuser().await;
    let registry: Vec<String> = pg
        .query(
            "SELECT r.cidr::text FROM berqenas.firewall_rules r JOIN berqenas.tenants t ON t.id = r.tenant_id WHERE t.name = $1 ORDER BY r.cidr",
            &[&name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(registry.len(), 100);
    let role = created["role"].as_str().unwrap();
    let mut lines: Vec<String> = file
        .lines()
        .filter(|l| {
            l.starts_with("host")
                && l.contains(&format!("\"{role}\""))
                && l.ends_with("scram-sha-256")
        })
        .map(|l| l.split_whitespace().nth(3).unwrap().to_string())
        .collect();
    lines.sort();
    let mut expected = registry.clone();
    expected.sort();
    assert_eq!(lines, expected);
    assert_eq!(hba_errors().await, 0);
    connect_from(&created, "127.70.5.9")
        .await
        .expect("a rule of the batch holds");
}

#[tokio::test]
async fn subnets_never_overlap_under_concurrent_creates() {
    let app = Arc::new(app().await);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let app = app.clone();
        set.spawn(async move {
            let v = app
                .create_with(
                    json!({"name": unique("vpnc"), "vpn_enabled": true, "public_api": true}),
                )
                .await;
            v["vpn_subnet"].as_str().unwrap().to_string()
        });
    }
    let mut subnets = Vec::new();
    while let Some(r) = set.join_next().await {
        subnets.push(r.unwrap());
    }
    let nets: Vec<ipnet::IpNet> = subnets.iter().map(|s| s.parse().unwrap()).collect();
    for (i, a) in nets.iter().enumerate() {
        for b in &nets[i + 1..] {
            assert!(!a.contains(b) && !b.contains(a), "{a} overlaps {b}");
        }
    }
}

#[tokio::test]
async fn suspend_revokes_resume_restores_and_purge_frees_the_subnet() {
    let (app, dir) = app_in().await;
    let name = unique("vpnlife");
    let created = app
        .create_with(json!({"name": name, "vpn_enabled": true, "public_api": true}))
        .await;
    let subnet = created["vpn_subnet"].as_str().unwrap().to_string();
    let inside = peer_address(&subnet);
    let (status, peer) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/vpn/peers"),
            Some(json!({"name": "laptop"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{peer}");
    assert!(
        peer["config"].as_str().unwrap().contains("PrivateKey = "),
        "{peer}"
    );
    assert_eq!(peer["address"], inside.as_str());

    let session = connect_from(&created, &inside).await.expect("active");
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/suspend"),
            Some(json!({"reason": "billing"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(session.query_one("SELECT 1", &[]).await.is_err());
    let file = hba_file().await;
    let section: Vec<&str> = file
        .lines()
        .skip_while(|l| !l.starts_with(&format!("# tenant {name} ")))
        .skip(1)
        .take_while(|l| l.starts_with("host"))
        .collect();
    assert_eq!(section, Vec::<&str>::new(), "suspended: no allow line");
    let role = created["role"].as_str().unwrap();
    assert!(
        file.lines()
            .any(|l| l.ends_with(" all reject") && l.contains(&format!("\"{role}\""))),
        "suspended: rejected from anywhere"
    );
    let wg = std::fs::read_to_string(dir.join("wg-berqenas.conf")).unwrap_or_default();
    assert!(
        !wg.contains(&format!("tenant {name} peer")),
        "a suspended tenant's peers are disabled"
    );

    let (status, _) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/resume"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    connect_from(&created, &inside)
        .await
        .expect("resumed: allowed again");
    let (_, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(t["vpn_subnet"], subnet.as_str(), "the subnet is kept");

    let (status, body) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}?purge=now"),
            Some(json!({"confirm": name})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let pg = common::superuser().await;
    let row = pg
        .query_one("SELECT vpn_subnet::text, (SELECT count(*) FROM berqenas.vpn_peers p WHERE p.tenant_id = t.id) FROM berqenas.tenants t WHERE name = $1", &[&name])
        .await
        .unwrap();
    let (sub, peers): (Option<String>, i64) = (row.get(0), row.get(1));
    if body["status"] == "purged" || t_status(&app, &name).await == "purged" {
        assert_eq!(sub, None, "purge frees the subnet");
        assert_eq!(peers, 0);
    }
}

async fn t_status(app: &TestApp, name: &str) -> String {
    let (_, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    t["status"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn peers_get_working_keys_and_the_rendered_files_pass_the_real_tools() {
    let mut p = common::platform(8).await;
    let dir = common::scratch_dir("vpnfiles");
    let mut s: Settings = (*p.network).clone();
    s.pool = VpnPool::new("127.52.0.0/16".parse().unwrap(), None).unwrap();
    s.files_dir = dir.clone();
    p.network = Arc::new(s);
    let app = TestApp::serve(p).await;
    let name = unique("peers");
    app.create_with(json!({"name": name, "vpn_enabled": true, "public_api": false}))
        .await;
    let (status, peer) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/vpn/peers"),
            Some(json!({"name": "laptop"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{peer}");
    let config = peer["config"].as_str().unwrap();
    let private = config
        .lines()
        .find_map(|l| l.strip_prefix("PrivateKey = "))
        .unwrap();
    let wg_file = std::fs::read_to_string(dir.join("wg-berqenas.conf")).unwrap();
    assert!(wg_file.contains(&format!(
        "PublicKey = {}",
        peer["public_key"].as_str().unwrap()
    )));
    assert!(!format!("{peer}").contains("sealed"), "{peer}");

    // A second peer with its own key pair gets no private key back.
    let (status, own) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/vpn/peers"),
            Some(json!({"name": "router", "public_key": peer["public_key"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{own}");
    assert!(!own["config"].as_str().unwrap().contains(private));
    let (status, dup) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/vpn/peers"),
            Some(json!({"name": "laptop"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{dup}");

    if let Ok(out) = std::process::Command::new("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{private}\n").as_bytes())?;
            child.wait_with_output()
        })
    {
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            peer["public_key"].as_str().unwrap(),
            "wg pubkey agrees"
        );
    } else {
        panic!("wireguard-tools (wg) is not installed: .ci/run installs it");
    }
    let nft = dir.join("berqenas.nft");
    assert!(std::fs::read_to_string(&nft)
        .unwrap()
        .contains(&format!("tenant {name}")));
    match std::process::Command::new("nft")
        .args(["-c", "-f"])
        .arg(&nft)
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            // Checking needs netlink, which a container without CAP_NET_ADMIN refuses.
            assert!(
                err.contains("Operation not permitted") || err.contains("netlink"),
                "nft -c refused the ruleset: {err}"
            );
            eprintln!("nft -c -f could not run here: {err}");
        }
        Err(e) => panic!("nftables (nft) is not installed: {e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_exhausted_pool_is_a_409_that_says_so() {
    let mut p = common::platform(4).await;
    let mut s: Settings = (*p.network).clone();
    // Two /30s in a /29.
    s.pool = VpnPool::new("127.53.0.0/29".parse().unwrap(), Some(30)).unwrap();
    s.files_dir = common::scratch_dir("vpnfull");
    p.network = Arc::new(s);
    let app = TestApp::serve(p).await;
    for _ in 0..2 {
        app.create_with(json!({"name": unique("full"), "vpn_enabled": true}))
            .await;
    }
    let name = unique("full");
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": name, "vpn_enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "vpn_pool_exhausted");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("127.53.0.0/29"));
    assert!(
        common::footprint(&common::superuser().await, &name)
            .await
            .is_empty(),
        "nothing left behind"
    );
}

#[tokio::test]
async fn the_tenants_users_are_held_to_the_same_rules() {
    let app = app().await;
    let name = unique("vpnusers");
    let created = app
        .create_with(json!({"name": name, "vpn_enabled": true, "public_api": false}))
        .await;
    let inside = peer_address(created["vpn_subnet"].as_str().unwrap());
    let (status, user) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/users"),
            Some(json!({"email": "dev@example.com", "role": "developer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let as_user = json!({"credentials": user["credentials"]});
    refused_by_hba(
        connect_from(&as_user, "127.0.0.1")
            .await
            .expect_err("the user's role from outside the subnet"),
    );
    connect_from(&as_user, &inside)
        .await
        .expect("the user from the subnet");
}

#[tokio::test]
async fn turning_vpn_on_and_off_allocates_and_frees_the_subnet() {
    let app = app().await;
    let name = unique("vpnflip");
    let created = app.create(&name).await;
    assert_eq!(created["vpn_subnet"], Value::Null);
    connect_from(&created, "127.0.0.1").await.expect("public");
    let path = format!("/api/v1/tenants/{name}");
    let (status, on) = app
        .call(Method::PATCH, &path, Some(json!({"vpn_enabled": true})))
        .await;
    assert_eq!(status, StatusCode::OK, "{on}");
    let subnet = on["vpn_subnet"].as_str().expect("a subnet").to_string();
    refused_by_hba(
        connect_from(&created, "127.0.0.1")
            .await
            .expect_err("hybrid now"),
    );
    connect_from(&created, &peer_address(&subnet))
        .await
        .expect("from the subnet");
    let (status, off) = app
        .call(Method::PATCH, &path, Some(json!({"vpn_enabled": false})))
        .await;
    assert_eq!(status, StatusCode::OK, "{off}");
    assert_eq!(off["vpn_subnet"], Value::Null);
    assert_eq!(off["access_mode"], "public");
    connect_from(&created, "127.0.0.1")
        .await
        .expect("public again");
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let mut p = common::platform(8).await;
    let mut s: Settings = (*p.network).clone();
    s.pool = VpnPool::new("127.54.0.0/16".parse().unwrap(), None).unwrap();
    s.files_dir = common::scratch_dir("proxies");
    s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    p.network = Arc::new(s);
    let app = TestApp::serve(p).await;
    let created = app
        .create_with(json!({"name": unique("proxied"), "vpn_enabled": true, "public_api": false}))
        .await;
    let key = created["api_key"].as_str().unwrap();
    let inside = peer_address(created["vpn_subnet"].as_str().unwrap());
    let me = |from: &'static str, xff: Option<String>| {
        let (url, key) = (app.url.clone(), key.to_string());
        async move {
            let http = reqwest::Client::builder()
                .local_address(from.parse::<IpAddr>().unwrap())
                .build()
                .unwrap();
            let mut req = http.get(format!("{url}/api/v1/me")).bearer_auth(key);
            if let Some(x) = xff {
                req = req.header("x-forwarded-for", x);
            }
            req.send().await.unwrap().status()
        }
    };
    // Through the trusted proxy, the client's own address decides.
    assert_eq!(me("127.0.0.1", Some(inside.clone())).await, StatusCode::OK);
    assert_eq!(
        me("127.0.0.1", Some("127.9.9.9".into())).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(me("127.0.0.1", None).await, StatusCode::FORBIDDEN);
    // From anyone else, the header is the client's claim and is ignored.
    assert_eq!(me("127.9.9.9", Some(inside)).await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_cli_shows_and_changes_a_tenants_network() {
    let app = app().await;
    let name = unique("netcli");
    app.create_with(json!({"name": name, "vpn_enabled": true, "public_api": true}))
        .await;
    let out = common::cli(
        &app,
        &[
            "tenant",
            "firewall",
            "allow",
            &name,
            "127.65.0.0/16",
            "--service",
            "postgres",
            "-o",
            "json",
        ],
    )
    .await;
    let v = common::stdout_json(&out);
    assert_eq!(v["rule"]["cidr"], "127.65.0.0/16");
    let out = common::cli(
        &app,
        &["tenant", "firewall", "allow", &name, "127.65.0.1/16"],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("127.65.0.0/16") && err.contains("host bits"),
        "{err}"
    );
    let out = common::cli(
        &app,
        &["tenant", "vpn", "peer", "add", &name, "--name", "laptop"],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("[Interface]")
            && text.contains("PrivateKey = ")
            && text.contains("Endpoint = "),
        "{text}"
    );
    let v =
        common::stdout_json(&common::cli(&app, &["tenant", "network", &name, "-o", "json"]).await);
    assert_eq!(v["access_mode"], "hybrid");
    assert_eq!(v["peers"][0]["name"], "laptop");
    assert_eq!(v["rules"][0]["service"], "postgres");
    assert!(
        v["database_from"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "127.65.0.0/16"),
        "{v}"
    );
    assert_eq!(v["api_from"], Value::Null, "hybrid: the API from anywhere");
    let out = common::cli(&app, &["tenant", "network", &name]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("hybrid") && text.contains("laptop") && text.contains("127.65.0.0/16"),
        "{text}"
    );
    let id = v["rules"][0]["id"].as_str().unwrap();
    let v = common::stdout_json(
        &common::cli(
            &app,
            &["tenant", "firewall", "remove", &name, id, "-o", "json"],
        )
        .await,
    );
    assert_eq!(v["rules"], json!([]));
    let v = common::stdout_json(
        &common::cli(
            &app,
            &[
                "tenant", "vpn", "peer", "remove", &name, "laptop", "-o", "json",
            ],
        )
        .await,
    );
    assert_eq!(v["name"], "laptop");
}
