//! Correctness of what keeps latency flat with many tenants (issue 17 item 3), at a
//! few hundred tenants: the tenant list's keyset pages hand out every tenant exactly
//! once, and the disk round's batched measurement (many schemas per statement) gives
//! the same numbers as measuring each schema on its own, also when a tenant holds a
//! lock that makes its batch fall back, and a round leaves out only the schemas whose
//! size cannot have moved. The figures at 10,000 tenants are in
//! `cargo bench --bench onboarding -- scale`.

mod common;

use std::collections::{HashMap, HashSet};

use berqenas::tenant::service::CreateTenant;
use common::{superuser, unique, TestApp};
use reqwest::{Method, StatusCode};
use uuid::Uuid;

/// More than one measuring batch (500 schemas) with what other tests make.
const TENANTS: usize = 520;

/// Creates `n` schema-mode tenants named `{prefix}-{i}` through the create workflow,
/// 8 at a time; their names.
async fn fleet(rt: &berqenas::workflows::Runtime, prefix: &str, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    for chunk in names.chunks(8) {
        let calls = chunk.iter().map(|name| async move {
            let req: CreateTenant =
                serde_json::from_value(serde_json::json!({"name": name})).unwrap();
            berqenas::workflows::create::create(rt, &req, None, "test")
                .await
                .unwrap()
        });
        futures::future::join_all(calls).await;
    }
    names
}

/// The per-schema size, as the round measured it before batching.
const ONE: &str = "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = $1 AND c.relkind IN ('r', 'm', 'S')";

#[tokio::test]
async fn pages_and_batched_measurement_at_hundreds_of_tenants() {
    let rt = common::runtime(common::platform(16).await).await;
    let app = TestApp::over(rt.clone()).await;
    let prefix = unique("sc");
    let names = fleet(&rt, &prefix, TENANTS).await;
    let pg = superuser().await;

    // Keyset pages: every tenant exactly once, in id order, whatever the page size.
    for limit in [1000, 37] {
        let mut seen: Vec<String> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/tenants?limit={limit}&cursor={c}"),
                None => format!("/api/v1/tenants?limit={limit}"),
            };
            let (status, page) = app.call(Method::GET, &path, None).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let tenants = page["tenants"].as_array().unwrap();
            assert!(tenants.len() <= limit, "a page holds at most limit");
            let ids: Vec<Uuid> = tenants
                .iter()
                .map(|t| t["id"].as_str().unwrap().parse().unwrap())
                .collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "pages are in id order");
            seen.extend(
                tenants
                    .iter()
                    .map(|t| t["name"].as_str().unwrap().to_string()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => {
                    assert_eq!(
                        c,
                        ids.last().unwrap().to_string(),
                        "the cursor is the last id"
                    );
                    cursor = Some(c.to_string());
                }
                None => break,
            }
        }
        let unique_seen: HashSet<&String> = seen.iter().collect();
        assert_eq!(
            unique_seen.len(),
            seen.len(),
            "no tenant listed twice (limit {limit})"
        );
        for n in &names {
            assert!(
                unique_seen.contains(n),
                "{n} missing from the pages (limit {limit})"
            );
        }
        // Other tests of this binary may create tenants meanwhile; none here does, so
        // the walk saw the whole registry.
        let total: i64 = pg
            .query_one("SELECT count(*) FROM berqenas.tenants", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            seen.len() as i64,
            total,
            "the walk saw every tenant (limit {limit})"
        );
    }

    let rows = pg
        .query(
            "SELECT id, name, schema_name::text FROM berqenas.tenants WHERE starts_with(name, $1 || '-')",
            &[&prefix],
        )
        .await
        .unwrap();
    let ids: HashMap<Uuid, String> = rows.iter().map(|r| (r.get(0), r.get(2))).collect();
    let schema_of: HashMap<String, String> = rows.iter().map(|r| (r.get(1), r.get(2))).collect();
    assert_eq!(ids.len(), TENANTS);

    // A few tenants hold data, so the sizes differ from tenant to tenant. Vacuumed
    // (free space and visibility maps made) with autovacuum off, so no size moves
    // between the two measurements.
    for (i, name) in names.iter().take(5).enumerate() {
        let table = format!("\"{}\".user_activity", schema_of[name]);
        pg.batch_execute(&format!(
            "ALTER TABLE {table} SET (autovacuum_enabled = false, toast.autovacuum_enabled = false);
             INSERT INTO {table} (user_id, action)
             SELECT 'u', repeat('x', 200) FROM generate_series(1, {})",
            500 * (i + 1)
        ))
        .await
        .unwrap();
        pg.batch_execute(&format!("VACUUM {table}")).await.unwrap();
    }
    let mut expected: HashMap<Uuid, i64> = HashMap::new();
    for (id, schema) in &ids {
        expected.insert(*id, pg.query_one(ONE, &[schema]).await.unwrap().get(0));
    }
    let distinct: HashSet<i64> = expected.values().copied().collect();
    assert!(
        distinct.len() > 1,
        "the data made sizes differ: {distinct:?}"
    );

    let measured: HashMap<Uuid, i64> = berqenas::quota::disk::measure(&rt, None)
        .await
        .unwrap()
        .into_iter()
        .collect();
    for (id, bytes) in &expected {
        assert_eq!(measured.get(id), Some(bytes), "tenant {} ({})", id, ids[id]);
    }

    // A tenant holding its table locked: its batch falls back to one schema at a
    // time; it alone is left out, every other tenant measured the same. (Changed
    // first, by an index more: a round measures only what may have moved.)
    let locked_name = &names[7];
    let locked = pg
        .query_one(
            "SELECT id FROM berqenas.tenants WHERE name = $1",
            &[locked_name],
        )
        .await
        .unwrap()
        .get::<_, Uuid>(0);
    pg.batch_execute(&format!(
        "CREATE INDEX ON \"{}\".user_activity (action)",
        schema_of[locked_name]
    ))
    .await
    .unwrap();
    expected.insert(
        locked,
        pg.query_one(ONE, &[&schema_of[locked_name]])
            .await
            .unwrap()
            .get(0),
    );
    let holder = superuser().await;
    holder
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE \"{}\".user_activity IN ACCESS EXCLUSIVE MODE",
            schema_of[locked_name]
        ))
        .await
        .unwrap();
    let measured: HashMap<Uuid, i64> = berqenas::quota::disk::measure(&rt, None)
        .await
        .unwrap()
        .into_iter()
        .collect();
    holder.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        !measured.contains_key(&locked),
        "the locked tenant is left out"
    );
    for (id, bytes) in expected.iter().filter(|(id, _)| **id != locked) {
        assert_eq!(measured.get(id), Some(bytes), "tenant {} ({})", id, ids[id]);
    }

    // Measuring the one tenant on request still answers its size.
    let one = berqenas::quota::disk::measure(&rt, Some(locked))
        .await
        .unwrap();
    assert_eq!(one, vec![(locked, expected[&locked])]);
}

/// A round measures only the schema-mode tenants whose size may have moved since it
/// last measured them (`quota::disk::unchanged`): untouched, a tenant keeps its size
/// unmeasured; a new relation, an open transaction of the tenant's own session, or a
/// session of its whose counts may not be reported yet, and it is measured.
#[tokio::test]
async fn a_round_leaves_out_only_schemas_that_cannot_have_moved() {
    let rt = common::runtime(common::platform(8).await).await;
    let app = TestApp::over(rt.clone()).await;
    let pg = superuser().await;
    let still = app.create(&unique("still")).await;
    let busy = app.create(&unique("busy")).await;
    let id = |t: &serde_json::Value| t["id"].as_str().unwrap().parse::<Uuid>().unwrap();
    let table =
        |t: &serde_json::Value| format!("\"{}\".user_activity", t["schema"].as_str().unwrap());
    let round = || async {
        berqenas::quota::disk::measure(&rt, None)
            .await
            .unwrap()
            .into_iter()
            .collect::<HashMap<Uuid, i64>>()
    };
    let first = round().await;
    let still_bytes = first[&id(&still)];

    // Its table locked by someone else: a measurement would wait out the lock and
    // leave the tenant out; untouched, it is not measured and keeps its size.
    let holder = superuser().await;
    holder
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            table(&still)
        ))
        .await
        .unwrap();
    let second = round().await;
    holder.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(second.get(&id(&still)), Some(&still_bytes));

    // A relation more: measured at once.
    pg.batch_execute(&format!("CREATE INDEX ON {} (action)", table(&still)))
        .await
        .unwrap();
    let third = round().await;
    assert!(third[&id(&still)] > still_bytes, "{third:?}");

    // The tenant's own session, its table grown in a transaction still open: no count
    // moved yet, and it is measured.
    let session = common::connect_as(&busy["credentials"]).await;
    let insert = format!(
        "INSERT INTO {} (user_id, action) SELECT 'u', repeat('x', 200) FROM generate_series(1, 2000)",
        table(&busy)
    );
    session
        .batch_execute(&format!("BEGIN; {insert}"))
        .await
        .unwrap();
    let fourth = round().await;
    assert!(
        fourth[&id(&busy)] > first[&id(&busy)],
        "an open transaction's growth"
    );
    // Committed, and again at once: the second commit's counts wait for the session to
    // be idle a while; it was active just now, and it is measured.
    session
        .batch_execute(&format!("COMMIT; {insert}"))
        .await
        .unwrap();
    let fifth = round().await;
    assert!(
        fifth[&id(&busy)] > fourth[&id(&busy)],
        "a recent session's writes"
    );
}

/// What the tenant's own sessions do is not all that moves a schema's size: writes
/// committed by another role move the statistics' counts, and a TRUNCATE or a
/// VACUUM FULL gives the table a new file (and its TOAST table one too). Each is
/// measured in the next round after it.
#[tokio::test]
async fn a_round_measures_what_other_roles_changed() {
    let rt = common::runtime(common::platform(8).await).await;
    let app = TestApp::over(rt.clone()).await;
    let pg = superuser().await;
    let tenant = app.create(&unique("others")).await;
    let id: Uuid = tenant["id"].as_str().unwrap().parse().unwrap();
    let table = format!("\"{}\".user_activity", tenant["schema"].as_str().unwrap());
    let size = || async {
        berqenas::quota::disk::measure(&rt, None)
            .await
            .unwrap()
            .into_iter()
            .find(|(t, _)| *t == id)
            .map(|(_, bytes)| bytes)
            .unwrap()
    };
    // Rows written by the superuser (then `and_then`), in one transaction whose counts
    // are reported at its commit.
    let write = |and_then: &str| {
        format!(
            "BEGIN; INSERT INTO {table} (user_id, action)
                    SELECT 'u', repeat('x', 200) FROM generate_series(1, 2000);
             {and_then} SELECT pg_catalog.pg_stat_force_next_flush(); COMMIT"
        )
    };
    let empty = size().await;
    assert_eq!(size().await, empty, "nothing moved");

    pg.batch_execute(&write("")).await.unwrap();
    let written = size().await;
    assert!(written > empty, "another role's rows: {written} vs {empty}");

    // A new file, the counts unchanged.
    pg.batch_execute(&format!("TRUNCATE {table}"))
        .await
        .unwrap();
    let truncated = size().await;
    assert!(truncated < written, "a TRUNCATE: {truncated} vs {written}");

    // Rows again, then deleted and the table rewritten: smaller after the rewrite.
    pg.batch_execute(&write(&format!("DELETE FROM {table};")))
        .await
        .unwrap();
    let deleted = size().await;
    assert!(deleted > truncated, "dead rows: {deleted} vs {truncated}");
    pg.batch_execute(&format!("VACUUM FULL {table}"))
        .await
        .unwrap();
    let rewritten = size().await;
    assert!(
        rewritten < deleted,
        "a VACUUM FULL: {rewritten} vs {deleted}"
    );
}

/// Control sessions resolve names in `pg_catalog` only and never JIT-compile (the
/// role check's statements at 60,000 roles crossed `jit_above_cost`: 10 ms each).
#[tokio::test]
async fn control_sessions_pin_their_search_path_and_do_not_jit() {
    let rt = common::runtime(common::platform(8).await).await;
    let c = rt.platform.pool.get().await.unwrap();
    let r = c
        .query_one(
            "SELECT pg_catalog.current_setting('search_path'), pg_catalog.current_setting('jit')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, String>(1)),
        ("pg_catalog,pg_temp".to_string(), "off".to_string())
    );
}

/// A transaction begun by hand on a pooled connection (a migration unit's, pipelined
/// with its `BEGIN`) and abandoned, as when the unit's task is aborted between a
/// request and its answer, never goes back to the pool open: the connection is closed
/// and its locks go with it.
#[tokio::test]
async fn an_abandoned_open_transaction_never_goes_back_to_the_pool() {
    use berqenas::pg::open_transaction::OpenTransaction;
    let rt = common::runtime(common::platform(8).await).await;
    let pool = &rt.platform.pool;
    // Taken first, so it is not the connection abandoned below.
    let checker = pool.get().await.unwrap();
    let key = i64::from_le_bytes(Uuid::new_v4().as_bytes()[..8].try_into().unwrap());
    let open = OpenTransaction::new(pool.get().await.unwrap());
    open.client()
        .batch_execute(&format!(
            "BEGIN; SELECT pg_catalog.pg_advisory_xact_lock({key})"
        ))
        .await
        .unwrap();
    drop(open);
    let mut free = false;
    for _ in 0..100 {
        free = checker
            .query_one("SELECT pg_catalog.pg_try_advisory_xact_lock($1)", &[&key])
            .await
            .unwrap()
            .get(0);
        if free {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(free, "the abandoned transaction still holds its lock");
    let mut held = Vec::new();
    for _ in 0..pool.status().max_size - 1 {
        let c = pool.get().await.unwrap();
        // A savepoint is refused outside a transaction block only.
        let e = c.batch_execute("SAVEPOINT probe").await.err();
        assert_eq!(
            e.as_ref().and_then(|e| e.code()),
            Some(&tokio_postgres::error::SqlState::NO_ACTIVE_SQL_TRANSACTION),
            "the pool handed out a connection inside a transaction"
        );
        held.push(c);
    }
}
