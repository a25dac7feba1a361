//! Network access, enforced by PostgreSQL's own pg_hba.conf and by the data API, from
//! real source addresses: every 127.x.y.z address is local here, so the VPN pool is
//! 127.50.0.0/16 and clients bind the address they come from.

#[path = "../common/mod.rs"]
mod common;
#[path = "../support/from_address.rs"]
mod from_address;
mod subnets;
mod vpn;

use std::net::IpAddr;
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
    from_address::connect(&config, from).await
}

fn refused_by_hba(e: tokio_postgres::Error) {
    from_address::refused_by_hba(&e);
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
    assert_eq!(body["error"]["code"], "vpn_only", "{body}");

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
    // An api rule narrows the data API of a public tenant, and says which rule refused.
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/firewall"),
            Some(json!({"cidr": "127.61.0.0/16", "service": "api"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key = created["api_key"].as_str().unwrap();
    let (status, body) = me_from(&app, key, "127.0.0.1").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "firewall_rules", "{body}");
    assert_eq!(me_from(&app, key, "127.61.3.4").await.0, StatusCode::OK);
    connect_from(&created, "127.0.0.1")
        .await
        .expect("an api rule leaves the database open");
    let audit = common::audit_actions(&name).await;
    assert_eq!(
        audit
            .iter()
            .filter(|a| *a == "network.firewall_changed")
            .count(),
        3,
        "{audit:?}"
    );
}

#[tokio::test]
async fn bad_ranges_are_refused_by_field_and_change_nothing() {
    let app = app().await;
    let name = unique("fwbad");
    app.create(&name).await;
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
