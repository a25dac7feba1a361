//! `kill -9` between writing pg_hba.conf and reloading it: after the restart, the file
//! matches the registry and PostgreSQL enforces it.

mod common;
#[path = "support/process.rs"]
mod process;

use std::net::SocketAddr;

use common::scratch_dir;
use process::{superuser_in, Cleanup, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const POOL: (&str, &str) = ("BERQENAS_VPN_POOL", "127.55.0.0/16");

async fn connect_from(
    dsn: &str,
    from: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let config: tokio_postgres::Config = dsn.parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let stream = socket
        .connect(SocketAddr::new(
            "127.0.0.1".parse().unwrap(),
            config.get_ports()[0],
        ))
        .await
        .unwrap();
    let (client, conn) = config.connect_raw(stream, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

#[tokio::test]
async fn sigkill_between_writing_and_reloading_pg_hba_is_put_right_at_restart() {
    let dir = scratch_dir("netcrash");
    let _cleanup = Cleanup(dir.clone());
    let mut server = Server::start(&dir, &[POOL]).await;
    let (s, created) = server
        .post(
            "/api/v1/tenants",
            Some(json!({"name": "netcrash", "vpn_enabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let dsn = created["credentials"]["dsn"].as_str().unwrap().to_string();
    assert!(
        connect_from(&dsn, "127.66.0.5").await.is_err(),
        "not allowed yet"
    );
    server.stop().await;

    let server = Server::start(
        &dir,
        &[POOL, ("BERQENAS_FAILPOINT", "network.enforce.written")],
    )
    .await;
    server
        .killed_by(
            "network.enforce.written",
            Method::POST,
            "/api/v1/tenants/netcrash/firewall",
            Some(json!({"cidr": "127.66.0.0/16", "service": "postgres"})),
        )
        .await;
    // Written, never reloaded: PostgreSQL still runs the old rules.
    let file = std::fs::read_to_string(dir.join("pgdata/pg_hba.conf")).unwrap();
    assert!(
        file.contains("127.66.0.0/16"),
        "the kill came after the write"
    );
    assert!(
        connect_from(&dsn, "127.66.0.5").await.is_err(),
        "not reloaded before the kill"
    );

    let mut server = Server::start(&dir, &[POOL]).await;
    let pg = superuser_in(&dir, None).await;
    let rules: i64 = pg
        .query_one("SELECT count(*) FROM berqenas.firewall_rules", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rules, 1, "the rule was committed before the kill");
    let errors: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(errors, 0);
    connect_from(&dsn, "127.66.0.5")
        .await
        .expect("the restart reloaded the rendered rules");
    let (_, ops): (StatusCode, Value) = server
        .call(Method::GET, "/api/v1/tenants/netcrash/network", None)
        .await
        .unwrap();
    assert_eq!(ops["rules"][0]["cidr"], "127.66.0.0/16", "{ops}");
    server.stop().await;
}
