//! Extra throw-away clusters, for the tests that need several PostgreSQL servers
//! (servers, moves, lifecycle on another server): each with a password on its
//! superuser so berqenas can reach it over TCP as a registered server, all stopped at
//! exit (their directories go with common's scratch root).

use std::sync::Mutex;

use berqenas::pg::cluster::{Cluster, ClusterOptions};

use crate::common::scratch_dir;

static EXTRA: Mutex<Vec<Cluster>> = Mutex::new(Vec::new());

extern "C" fn stop_extra() {
    if let Ok(list) = EXTRA.lock() {
        for c in list.iter() {
            c.stop_immediately();
        }
    }
}

/// Starts a cluster whose superuser has `password`; returns it and the URL that
/// reaches it over TCP.
pub async fn start_cluster(label: &str, password: &str) -> (Cluster, String) {
    start_cluster_on(label, password, "127.0.0.1").await
}

/// [`start_cluster`] listening on `listen_addresses` (PostgreSQL's list; the URL
/// names the first).
pub async fn start_cluster_on(
    label: &str,
    password: &str,
    listen_addresses: &str,
) -> (Cluster, String) {
    let dir = scratch_dir(label);
    let mut opts = ClusterOptions::new(&dir);
    opts.ephemeral = true;
    opts.listen_addresses = listen_addresses.into();
    let cluster = tokio::task::spawn_blocking(move || Cluster::ensure(&opts))
        .await
        .unwrap()
        .expect("starting an extra cluster");
    {
        let mut list = EXTRA.lock().unwrap();
        if list.is_empty() {
            unsafe { libc::atexit(stop_extra) };
        }
        list.push(cluster.clone());
    }
    on(&cluster, "postgres")
        .await
        .batch_execute(&format!(
            "ALTER ROLE {} PASSWORD '{password}'",
            berqenas::pg::cluster::SUPERUSER
        ))
        .await
        .unwrap();
    let host = listen_addresses.split(',').next().unwrap_or("127.0.0.1");
    let url = format!(
        "postgresql://{}:{password}@{host}:{}/postgres",
        berqenas::pg::cluster::SUPERUSER,
        cluster.port()
    );
    (cluster, url)
}

/// A superuser session on an extra cluster (over its socket).
pub async fn on(cluster: &Cluster, db: &str) -> tokio_postgres::Client {
    berqenas::pg::connect(&berqenas::pg::parse_config(&cluster.superuser_dsn(db)).unwrap())
        .await
        .unwrap()
}

/// Starts a cluster (`label`) and registers it with `app` as the server `pg2`.
#[allow(dead_code)] // not every test registers its cluster this way
pub async fn register_pg2(app: &crate::common::TestApp, label: &str) -> Cluster {
    register_server(app, "pg2", label, serde_json::json!({})).await
}

/// Starts a cluster (`label`) and registers it with `app` as the server `name`, with
/// the add's other fields `more` (e.g. `{"draining": true}`).
#[allow(dead_code)] // not every test registers its cluster this way
pub async fn register_server(
    app: &crate::common::TestApp,
    name: &str,
    label: &str,
    more: serde_json::Value,
) -> Cluster {
    let (cluster, url) = start_cluster(label, &format!("{name}-Pa55-word")).await;
    add_server(app, name, &url, more).await;
    cluster
}

/// Registers the server at `url` with `app` as `name` (`POST /api/v1/servers`), with
/// the add's other fields `more`; it must be added.
#[allow(dead_code)]
pub async fn add_server(
    app: &crate::common::TestApp,
    name: &str,
    url: &str,
    more: serde_json::Value,
) {
    let mut add = serde_json::json!({"name": name, "url": url});
    if let (Some(add), Some(more)) = (add.as_object_mut(), more.as_object()) {
        add.extend(more.clone());
    }
    let (s, b) = app
        .call(reqwest::Method::POST, "/api/v1/servers", Some(add))
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{b}");
}

/// `sql`'s one number, for one text argument.
#[allow(dead_code)]
pub async fn count(c: &tokio_postgres::Client, sql: &str, arg: &str) -> i64 {
    c.query_one(sql, &[&arg]).await.unwrap().get(0)
}

/// What a tenant has on a cluster: the roles, schemas (of the database `c` is
/// connected to) and databases whose names start with `stem`.
#[allow(dead_code)]
pub async fn footprint(c: &tokio_postgres::Client, stem: &str) -> (i64, i64, i64) {
    let like = format!("{}%", stem.replace('_', "\\_"));
    (
        count(
            c,
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE $1",
            &like,
        )
        .await,
        count(
            c,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1",
            &like,
        )
        .await,
        count(
            c,
            "SELECT count(*) FROM pg_database WHERE datname LIKE $1",
            &like,
        )
        .await,
    )
}
