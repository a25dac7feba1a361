//! `pg::logical`, the replication a tenant move is built on, between two real
//! clusters: the copy, changes made while it runs, the check that the target has
//! applied everything up to a source position, sequences, and the clean-up leaving no
//! publication, slot or subscription on either side. Every call twice: a step retried
//! after a crash finds its work done.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berqenas::pg::cluster::{Cluster, ClusterOptions};
use berqenas::pg::logical::{self, Link, Tables};
use berqenas::pg::Ident;
use common::{unique, ScratchDir};

/// A second throw-away cluster, stopped when the test ends (also when it fails).
struct Target {
    cluster: Cluster,
    _dir: ScratchDir,
}

impl Target {
    async fn start() -> Self {
        let dir = ScratchDir::new("logical-target");
        let mut opts = ClusterOptions::new(dir.to_path_buf());
        opts.ephemeral = true;
        let cluster = tokio::task::spawn_blocking(move || Cluster::ensure(&opts))
            .await
            .unwrap()
            .expect("a second cluster");
        Self { cluster, _dir: dir }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.cluster.stop_immediately();
    }
}

async fn connect(dsn: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c
}

const DDL: &str = "CREATE SCHEMA acme;
    CREATE TABLE acme.items (id bigserial PRIMARY KEY, v text NOT NULL);
    CREATE TABLE acme.notes (id int PRIMARY KEY, body jsonb);
    CREATE TABLE public.elsewhere (id int PRIMARY KEY);";

/// Rows and a checksum of each table of `acme`.
async fn digest(c: &tokio_postgres::Client) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for sql in [
        "SELECT count(*), coalesce(md5(string_agg(id::text || v, ',' ORDER BY id)), '') FROM acme.items",
        "SELECT count(*), coalesce(md5(string_agg(id::text || body::text, ',' ORDER BY id)), '') FROM acme.notes",
    ] {
        let r = c.query_one(sql, &[]).await.unwrap();
        out.push((r.get(0), r.get(1)));
    }
    out
}

#[tokio::test]
async fn a_schema_is_copied_while_written_to_and_nothing_is_left_behind() {
    let source = common::database().await.cluster.clone().expect("embedded");
    let target = Target::start().await;
    let db = unique("lr").replace('-', "_");
    let admin = common::superuser().await;
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let src = connect(&source.superuser_dsn(&db)).await;
    src.batch_execute(DDL).await.unwrap();
    src.batch_execute(
        "INSERT INTO acme.items (v) SELECT 'row ' || g FROM generate_series(1, 2000) g;
         INSERT INTO acme.notes SELECT g, jsonb_build_object('n', g) FROM generate_series(1, 500) g;
         INSERT INTO public.elsewhere VALUES (1);",
    )
    .await
    .unwrap();
    connect(&target.cluster.superuser_dsn("postgres"))
        .await
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let dst = connect(&target.cluster.superuser_dsn(&db)).await;
    dst.batch_execute(DDL).await.unwrap();

    let link = Link::of(uuid::Uuid::now_v7());
    let schema = Ident::new("acme").unwrap();
    for _ in 0..2 {
        logical::publish(&src, &link, Tables::Schema(&schema))
            .await
            .unwrap();
        logical::subscribe(&dst, &link, &source.superuser_dsn(&db))
            .await
            .unwrap();
    }

    // A client keeps writing while the copy runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let dsn = source.superuser_dsn(&db);
        tokio::spawn(async move {
            let c = connect(&dsn).await;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                c.execute(
                    "INSERT INTO acme.items (v) VALUES ('live ' || $1::text)",
                    &[&n.to_string()],
                )
                .await
                .unwrap();
                c.execute(
                    "UPDATE acme.notes SET body = body || '{\"seen\": true}' WHERE id = $1",
                    &[&(n % 500 + 1)],
                )
                .await
                .unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let p = logical::progress(&dst, &link).await.unwrap();
        assert_eq!(p.tables, 2, "the schema's two tables, not public's");
        if p.done() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "copy not done: {p:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(written > 0);

    // Writes stopped: once the target has applied up to here, it has everything.
    let at = logical::position(&src).await.unwrap();
    assert!(
        logical::wait_applied(&src, &link, &at, Duration::from_secs(30))
            .await
            .unwrap(),
        "the target applied up to {at}"
    );
    assert!(logical::lag_bytes(&src, &link).await.unwrap().is_some());
    assert_eq!(digest(&dst).await, digest(&src).await);
    let elsewhere = dst
        .query_one("SELECT count(*) FROM public.elsewhere", &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(elsewhere, 0, "only the published schema is copied");

    // Sequences are not replicated: copied, the next id follows the source's.
    let copied = logical::copy_sequences(&src, &dst, Some(&schema))
        .await
        .unwrap();
    assert_eq!(copied, 1);
    let last: i64 = src
        .query_one("SELECT max(id) FROM acme.items", &[])
        .await
        .unwrap()
        .get(0);
    let next: i64 = dst
        .query_one("SELECT nextval('acme.items_id_seq')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, last + 1);

    for _ in 0..2 {
        logical::unsubscribe(&dst, &src, &link).await.unwrap();
        logical::unpublish(&src, &link).await.unwrap();
    }
    let subs: i64 = dst
        .query_one(
            "SELECT count(*) FROM pg_subscription WHERE subname = $1",
            &[&link.name()],
        )
        .await
        .unwrap()
        .get(0);
    let slots: i64 = src
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&link.name()],
        )
        .await
        .unwrap()
        .get(0);
    let pubs: i64 = src
        .query_one(
            "SELECT count(*) FROM pg_publication WHERE pubname = $1",
            &[&link.name()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        (subs, slots, pubs),
        (0, 0, 0),
        "nothing left on either side"
    );
    drop(src);
    admin
        .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await
        .unwrap();
}

/// Database mode, and source and target on one cluster (a mode move on one server):
/// every table of the database, through a slot made apart from the subscription.
#[tokio::test]
async fn a_whole_database_is_copied_within_one_cluster() {
    let cluster = common::database().await.cluster.clone().expect("embedded");
    let (from, to) = (
        unique("lr-from").replace('-', "_"),
        unique("lr-to").replace('-', "_"),
    );
    let admin = common::superuser().await;
    for db in [&from, &to] {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
    }
    let src = connect(&cluster.superuser_dsn(&from)).await;
    let dst = connect(&cluster.superuser_dsn(&to)).await;
    for c in [&src, &dst] {
        c.batch_execute(DDL).await.unwrap();
    }
    src.batch_execute(
        "INSERT INTO acme.items (v) SELECT 'row ' || g FROM generate_series(1, 300) g;
         INSERT INTO public.elsewhere SELECT generate_series(1, 7);",
    )
    .await
    .unwrap();
    let link = Link::of(uuid::Uuid::now_v7());
    logical::publish(&src, &link, Tables::All).await.unwrap();
    logical::subscribe(&dst, &link, &cluster.superuser_dsn(&from))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !logical::progress(&dst, &link).await.unwrap().done() {
        assert!(std::time::Instant::now() < deadline, "copy not done");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(logical::progress(&dst, &link).await.unwrap().tables, 3);
    src.batch_execute("INSERT INTO public.elsewhere VALUES (8)")
        .await
        .unwrap();
    let at = logical::position(&src).await.unwrap();
    assert!(
        logical::wait_applied(&src, &link, &at, Duration::from_secs(30))
            .await
            .unwrap()
    );
    assert_eq!(digest(&dst).await, digest(&src).await);
    let elsewhere: i64 = dst
        .query_one("SELECT count(*) FROM public.elsewhere", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(elsewhere, 8);
    assert_eq!(logical::copy_sequences(&src, &dst, None).await.unwrap(), 1);
    logical::unsubscribe(&dst, &src, &link).await.unwrap();
    logical::unpublish(&src, &link).await.unwrap();
    drop((src, dst));
    for db in [&from, &to] {
        admin
            .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
            .await
            .unwrap();
    }
}
