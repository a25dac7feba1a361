//! Sessions held ahead in database-mode members' databases
//! (`workflows::warm_pool_holds`): a claim takes its member's, and every claim ends
//! the ones another server holds in its member's database before the database is
//! renamed.

use std::sync::Arc;

use berqenas::integrations::{self, NewStep, When};
use berqenas::isolation::warm::HOLD_APPLICATION;
use berqenas::workflows::warm_pool::Pace;
use berqenas::workflows::warm_pool_holds::top_up;

use super::database::database_oid;
use super::receiver::Receiver;
use super::*;

fn database_only(n: i64) -> Targets {
    Targets {
        schema: 0,
        database: n,
        shared: 0,
    }
}

/// A session as another berqenas server holds one ahead in `database`.
async fn held_elsewhere(o: &Own, database: &str) -> tokio_postgres::Client {
    let mut config = o.db.config.clone();
    config.dbname(database).application_name(HOLD_APPLICATION);
    berqenas::pg::connect(&config).await.unwrap()
}

/// The `application_name` of each session in `database`.
async fn sessions_in(pg: &tokio_postgres::Client, database: &str) -> Vec<String> {
    pg.batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .unwrap();
    pg.query(
        "SELECT application_name FROM pg_stat_activity WHERE datname = $1 ORDER BY 1",
        &[&database],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The member a claim takes next (the oldest), as a database name.
async fn next_member(pg: &tokio_postgres::Client) -> String {
    let key: String = pg
        .query_one(
            "SELECT key FROM berqenas.warm_pool WHERE isolation = 'database' ORDER BY created_at LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    format!("tenant_wp__{key}")
}

/// A claim in one transaction takes the session held in its member's database (no
/// new one), ends the one another server holds there, and leaves nobody in the
/// tenant's database; the other member's session stays held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_takes_its_members_held_session_and_ends_another_servers() {
    let o = own("hold", berqenas::template::Template::builtin()).await;
    berqenas::tenant::database_mode::ensure_template(&o.rt.platform)
        .await
        .unwrap();
    assert_eq!(fill(&o.rt, database_only(2)).await.made, 2);
    assert_eq!(top_up(&o.rt, 2, Pace::Now).await.unwrap(), 2);
    assert_eq!(o.rt.holds.count(), 2);
    let (_, status) = o.app.call(Method::GET, "/api/v1/status", None).await;
    assert_eq!(status["warm_pool_sessions"], 2, "{status}");
    // Again: both are held already.
    assert_eq!(top_up(&o.rt, 2, Pace::Now).await.unwrap(), 0);
    let member = next_member(&o.pg).await;
    let oid = database_oid(&o.pg, &member).await.unwrap();
    let elsewhere = held_elsewhere(&o, &member).await;
    assert_eq!(
        sessions_in(&o.pg, &member).await,
        [HOLD_APPLICATION, HOLD_APPLICATION]
    );

    let name = common::unique("dbhold");
    let started = std::time::Instant::now();
    o.app.create_in(&name, "database").await;
    let database = format!("tenant_{}", name.replace('-', "_"));
    assert_eq!(
        database_oid(&o.pg, &database).await,
        Some(oid),
        "not a claim"
    );
    // Ended, not waited out (a rename waits 5 s for a session, then refuses).
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    assert_eq!(
        o.rt.holds.taken(),
        1,
        "the claim opened a session of its own"
    );
    assert_eq!(o.rt.holds.count(), 1);
    assert!(sessions_in(&o.pg, &database).await.is_empty());
    let ended = elsewhere.simple_query("SELECT 1").await;
    assert!(ended.is_err(), "another server's held session lives on");
    // The other member's session is still held, and the next claim takes it.
    let next = common::unique("dbhold");
    o.app.create_in(&next, "database").await;
    assert_eq!(o.rt.holds.taken(), 2);
    assert_eq!(o.rt.holds.count(), 0);
}

/// A claim in steps (an onboarding step runs) renames its member's database in its
/// `register` step: it ends the sessions held there first, this server's and
/// another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_in_steps_ends_the_sessions_held_in_its_member() {
    let o = own("holdsteps", berqenas::template::Template::builtin()).await;
    berqenas::tenant::database_mode::ensure_template(&o.rt.platform)
        .await
        .unwrap();
    let plan = common::unique("holdplan").replace('-', "_");
    common::plan_like_free(&o.pg, &plan, "").await;
    let rx = Receiver::start(Arc::new(|_| (200, None))).await;
    let mut p = o.rt.platform.clone();
    p.onboarding_allow_private = true;
    let step = format!("{plan}_git");
    integrations::register(
        &p,
        &NewStep {
            name: step.clone(),
            url: rx.url.clone(),
            when: When {
                plan: Some(plan.clone()),
                isolation: None,
            },
            timeout: Some("10s".into()),
            compensate_url: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(fill(&o.rt, database_only(1)).await.made, 1);
    assert_eq!(top_up(&o.rt, 1, Pace::Now).await.unwrap(), 1);
    let member = next_member(&o.pg).await;
    let oid = database_oid(&o.pg, &member).await.unwrap();
    let elsewhere = held_elsewhere(&o, &member).await;

    let name = common::unique("dbholdst");
    o.app
        .create_with(json!({"name": name, "isolation": "database", "plan": plan}))
        .await;
    let database = format!("tenant_{}", name.replace('-', "_"));
    assert_eq!(
        database_oid(&o.pg, &database).await,
        Some(oid),
        "not a claim"
    );
    assert!(elsewhere.simple_query("SELECT 1").await.is_err());
    assert_eq!(o.rt.holds.taken(), 0, "a claim in steps takes no session");
    assert_eq!(rx.got.lock().unwrap().len(), 1);
}
