//! Issue 18 items 1 and 3 together: a tenant's firewall rules follow it when it moves
//! between servers. Each server's pg_hba.conf has the lines of the tenants that live
//! there (docs/network.md "Tenants on other servers"); a move changes where the tenant
//! lives, so the move renders them again before the tenant's logins come back on the
//! target: there, a connection from an address its rules do not allow is refused at
//! once, one from the allowed address let in; the server it left no longer lists it.
//! Both kinds of move: `tenant.move` (schema mode, pg2 -> pg3) and
//! `tenant.move.shared` (out of pg3's pool into database mode on pg2).

mod common;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;
#[path = "support/from_address.rs"]
mod from_address;
#[path = "support/moving.rs"]
mod moving;

use berqenas::pg::cluster::Cluster;
use common::{unique, TestApp};
use extra_cluster::{on, register_server};
use moving::move_to_end;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Connects with the tenant's password to `database` at `port`, from the local
/// address `from`.
async fn connect_from(
    credentials: &Value,
    port: u16,
    database: &str,
    from: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    // Its user and password, at the port and database given (a config's `port` adds
    // one to its list: a fresh config has only that one).
    let dsn: tokio_postgres::Config = credentials["dsn"].as_str().unwrap().parse().unwrap();
    let mut config = tokio_postgres::Config::new();
    config
        .user(dsn.get_user().unwrap())
        .password(dsn.get_password().unwrap())
        .dbname(database)
        .port(port);
    from_address::connect(&config, from).await
}

fn refused_by_hba(r: Result<tokio_postgres::Client, tokio_postgres::Error>, what: &str) {
    let Err(e) = r else {
        panic!("{what}: the connection was let in");
    };
    from_address::refused_by_hba(&e);
}

const OPERATOR_LINE: &str = "host all all 127.0.0.0/8 scram-sha-256 # the operator's";

/// Registers a cluster as `name`, its pg_hba.conf opened to the loopback range by its
/// operator: only berqenas's lines narrow it.
async fn server(app: &TestApp, name: &str) -> Cluster {
    let c = register_server(app, name, &format!("netmv-{name}"), json!({})).await;
    let hba = c.pgdata().join("pg_hba.conf");
    let mut file = std::fs::read_to_string(&hba).unwrap();
    file.push_str(OPERATOR_LINE);
    file.push('\n');
    std::fs::write(&hba, &file).unwrap();
    on(&c, "postgres")
        .await
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    c
}

/// Moves `name` with `body` to its end; the tenant afterwards.
async fn moved(app: &TestApp, name: &str, body: Value) -> Value {
    move_to_end(app, name, body).await;
    app.call(Method::GET, &format!("/api/v1/tenants/{name}"), None)
        .await
        .1
}

fn hba(c: &Cluster) -> String {
    std::fs::read_to_string(c.pgdata().join("pg_hba.conf")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_rules_follow_a_tenant_to_another_server() {
    let mut p = common::platform(16).await;
    let mut settings: berqenas::network::Settings = (*p.network).clone();
    settings.files_dir = common::scratch_dir("netmv-files");
    p.network = std::sync::Arc::new(settings);
    let app = TestApp::serve(p).await;
    let (pg2, pg3) = (server(&app, "pg2").await, server(&app, "pg3").await);

    // A schema-mode tenant on pg2 held to one address.
    let name = unique("fwm");
    let t = app
        .create_with(json!({"name": name, "server": "pg2", "isolation": "schema"}))
        .await;
    let creds = t["credentials"].clone();
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/firewall"),
            Some(json!({"cidr": "127.0.0.7/32", "service": "postgres"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    refused_by_hba(
        connect_from(&creds, pg2.port(), "postgres", "127.0.0.9").await,
        "on pg2 from elsewhere",
    );

    // Moved to pg3: its rule holds there when the move ends, and pg2 drops its lines.
    let after = moved(&app, &name, json!({"to_server": "pg3", "grace": "0"})).await;
    assert_eq!(after["server"], "pg3", "{after}");
    refused_by_hba(
        connect_from(&creds, pg3.port(), "postgres", "127.0.0.9").await,
        "on pg3 from elsewhere, after the move",
    );
    connect_from(&creds, pg3.port(), "postgres", "127.0.0.7")
        .await
        .expect("on pg3 from the allowed address");
    let stem = format!("tenant_{}", name.replace('-', "_"));
    assert!(hba(&pg3).contains(&stem), "{}", hba(&pg3));
    assert!(!hba(&pg2).contains(&stem), "{}", hba(&pg2));

    // Into pg3's pool, then out of it into database mode on pg2: the same.
    let after = moved(&app, &name, json!({"to_isolation": "shared", "grace": "0"})).await;
    assert_eq!(after["isolation"], "shared", "{after}");
    refused_by_hba(
        connect_from(&creds, pg3.port(), "postgres", "127.0.0.9").await,
        "in pg3's pool from elsewhere",
    );
    let after = moved(
        &app,
        &name,
        json!({"to_server": "pg2", "to_isolation": "database", "grace": "0"}),
    )
    .await;
    assert_eq!(
        (&after["server"], &after["isolation"]),
        (&json!("pg2"), &json!("database")),
        "{after}"
    );
    refused_by_hba(
        connect_from(&creds, pg2.port(), &stem, "127.0.0.9").await,
        "on pg2 in database mode from elsewhere, after the move",
    );
    connect_from(&creds, pg2.port(), &stem, "127.0.0.7")
        .await
        .expect("on pg2 from the allowed address");
    assert!(!hba(&pg3).contains(&stem), "{}", hba(&pg3));
}
