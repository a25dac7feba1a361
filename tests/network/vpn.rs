//! WireGuard peers and their files, checked with the real tools; the CLI's network
//! commands.

use std::sync::Arc;

use berqenas::network::{Settings, VpnPool};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::app;
use super::common::{self, unique, TestApp};

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
