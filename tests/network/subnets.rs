//! Subnets: never overlapping, kept across suspension, freed by a purge or when VPN is
//! turned off, and a full pool refused.

use std::sync::Arc;

use berqenas::network::{Settings, VpnPool};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::common::{self, unique, TestApp};
use super::{app, app_in, connect_from, hba_file, peer_address, refused_by_hba};

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

    // Soft delete revokes; restore gives it back; a purge frees subnet and peers.
    let (status, body) = app
        .call(Method::DELETE, &format!("/api/v1/tenants/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    refused_by_hba(
        connect_from(&created, &inside)
            .await
            .expect_err("deleted: refused"),
    );
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/restore"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["vpn_subnet"],
        subnet.as_str(),
        "a restored tenant keeps its subnet"
    );
    connect_from(&created, &inside)
        .await
        .expect("restored: allowed again");
    let (status, body) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{name}?purge=now"),
            Some(json!({"confirm": name})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    assert_eq!(t_status(&app, &name).await, "purged", "{body}");
    let pg = common::superuser().await;
    let row = pg
        .query_one("SELECT vpn_subnet::text, (SELECT count(*) FROM berqenas.vpn_peers p WHERE p.tenant_id = t.id) FROM berqenas.tenants t WHERE name = $1", &[&name])
        .await
        .unwrap();
    let (sub, peers): (Option<String>, i64) = (row.get(0), row.get(1));
    assert_eq!(sub, None, "purge frees the subnet");
    assert_eq!(peers, 0);
    assert!(!hba_file().await.contains(&format!("# tenant {name} ")));
}

async fn t_status(app: &TestApp, name: &str) -> String {
    let (_, t) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await;
    t["status"].as_str().unwrap_or_default().to_string()
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
