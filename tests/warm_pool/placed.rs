//! The warm pool of a server other than `default` (schema and database mode): members
//! made on that server, claimed by creates placed there (and only by them), recycled
//! when stale, left alone while the server drains or its connections are all in use,
//! and dropped when the server is removed.

use super::*;
use extra_cluster::{count, on, register_pg2, register_server};

/// The schema-mode pool rows of `server`.
async fn keys_on(pg: &tokio_postgres::Client, server: &str) -> BTreeSet<String> {
    keys_of(pg, server, "schema").await
}

/// The pool rows of `server` in `mode`.
async fn keys_of(pg: &tokio_postgres::Client, server: &str, mode: &str) -> BTreeSet<String> {
    pg.query(
        "SELECT key FROM berqenas.warm_pool WHERE server = $1 AND isolation = $2",
        &[&server, &mode],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The members' schemas on a cluster (by key).
async fn member_schemas(c: &tokio_postgres::Client) -> BTreeSet<String> {
    c.query(
        "SELECT substr(nspname, 12) FROM pg_namespace WHERE starts_with(nspname, 'tenant_wp__')",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn databases(c: &tokio_postgres::Client, name: String) -> i64 {
    count(
        c,
        "SELECT count(*) FROM pg_database WHERE datname = $1",
        &name,
    )
    .await
}

/// The realtime gate's limits inside a tenant's database.
async fn gate(c: &tokio_postgres::Client) -> String {
    c.query_one(
        "SELECT to_jsonb(l) - 'synced_at' FROM berqenas_realtime.limits l",
        &[],
    )
    .await
    .map(|r| r.get::<_, Value>(0).to_string())
    .unwrap()
}

async fn roles_like(c: &tokio_postgres::Client, prefix: &str) -> i64 {
    count(
        c,
        "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)",
        prefix,
    )
    .await
}

/// A tenant created on pg2 by name, in `isolation`.
async fn create_on_pg2(app: &TestApp, name: &str, isolation: &str) -> Value {
    let body = json!({"name": name, "server": "pg2", "isolation": isolation, "public_api": true});
    let (s, v) = app.call(Method::POST, "/api/v1/tenants", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

/// The tenant `answer` names logs in on `cluster` with the credentials handed out
/// and writes a row there.
async fn writes_on(answer: &Value, cluster: &berqenas::pg::cluster::Cluster) {
    let tenant = common::connect_as(&answer["credentials"]).await;
    tenant
        .batch_execute("INSERT INTO applications (name, team, created_by) VALUES ('a', 'b', 'c')")
        .await
        .unwrap();
    let port: i32 = tenant
        .query_one("SELECT inet_server_port()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        port,
        i32::from(cluster.port()),
        "logged in elsewhere than pg2"
    );
}

/// The catalogs of `scratch` and `claimed` on pg2 (`inside`: their own databases, in
/// database mode) read the same; returns the scratch one's.
async fn same_catalog(
    pg: &tokio_postgres::Client,
    (pg2, scratch_db, claimed_db): (
        &tokio_postgres::Client,
        Option<&tokio_postgres::Client>,
        Option<&tokio_postgres::Client>,
    ),
    scratch: &str,
    claimed: &str,
) -> Vec<String> {
    let a = catalog_at(pg, Some(pg2), scratch_db, scratch).await;
    let b = catalog_at(pg, Some(pg2), claimed_db, claimed).await;
    let only_scratch: Vec<&String> = a.iter().filter(|l| !b.contains(l)).collect();
    let only_claimed: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
    assert!(
        only_scratch.is_empty() && only_claimed.is_empty(),
        "the catalogs differ\nonly from scratch: {only_scratch:#?}\nonly claimed: {only_claimed:#?}"
    );
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_other_than_default_has_its_own_pool() {
    let o = own("placed", berqenas::template::Template::builtin()).await;
    let cluster = register_pg2(&o.app, "wp-pg2").await;
    let pg2 = on(&cluster, "postgres").await;
    let scratch = common::unique("wpscr2");
    create_on_pg2(&o.app, &scratch, "schema").await;

    // A round fills default's pool and pg2's, each to the target.
    let round = fill(&o.rt, targets(2, 0)).await;
    assert_eq!(round.made, 4, "{round:?}");
    let members = keys_on(&o.pg, "pg2").await;
    assert_eq!(members.len(), 2);
    assert_eq!(keys_on(&o.pg, "default").await.len(), 2);
    assert_eq!(
        member_schemas(&pg2).await,
        members,
        "pg2's members are on pg2"
    );
    for key in &members {
        assert!(
            !member_schemas(&o.pg).await.contains(key),
            "a pg2 member on default"
        );
        let stem = format!("tenant_wp__{key}_");
        assert_eq!(roles_like(&pg2, &stem).await, 6);
        let (password, login): (Option<String>, bool) = pg2
            .query_one(
                "SELECT rolpassword, rolcanlogin FROM pg_authid WHERE rolname = $1",
                &[&format!("{stem}user")],
            )
            .await
            .map(|r| (r.get(0), r.get(1)))
            .unwrap();
        assert!(!login, "a member logs in");
        assert!(password.is_some_and(|p| p.starts_with("SCRAM-SHA-256$")));
    }
    // The server's JSON counts them apart from its tenants.
    let (_, info) = o.app.call(Method::GET, "/api/v1/servers/pg2", None).await;
    assert_eq!(
        (&info["tenants"], &info["warm_pool_members"]),
        (&json!(1), &json!(2)),
        "{info}"
    );
    // A second round makes nothing: both pools are full.
    assert_eq!(fill(&o.rt, targets(2, 0)).await.made, 0);
    let (_, status) = o.app.call(Method::GET, "/api/v1/status", None).await;
    let on_pg2: Vec<&Value> = status["warm_pool"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["server"] == "pg2")
        .collect();
    assert_eq!(on_pg2.len(), 1, "{status}");
    assert_eq!(on_pg2[0]["members"], 2);
    assert_eq!(on_pg2[0]["isolation"], "schema");

    // A create on default claims default's member, never pg2's.
    o.app.create_in(&common::unique("wpdef"), "schema").await;
    assert_eq!(keys_on(&o.pg, "pg2").await, members);

    // A create placed on pg2 claims the oldest of pg2's members.
    let claimed = common::unique("wpclm2");
    let answer = create_on_pg2(&o.app, &claimed, "schema").await;
    assert_eq!(answer["server"], "pg2");
    let left = keys_on(&o.pg, "pg2").await;
    assert_eq!(left.len(), 1);
    let taken = members.difference(&left).next().unwrap().clone();
    assert!(!member_schemas(&pg2).await.contains(&taken));
    assert_eq!(roles_like(&pg2, &format!("tenant_wp__{taken}_")).await, 0);
    // It logs in on pg2 with the credentials handed out (the member's password).
    writes_on(&answer, &cluster).await;
    // It reads the same as the tenant made from scratch there.
    let a = same_catalog(&o.pg, (&pg2, None, None), &scratch, &claimed).await;
    assert!(a.len() > 20, "too little compared: {a:#?}");
    assert!(
        a.iter().any(|l| l.starts_with("relation: applications")),
        "the diff did not read pg2: {a:#?}"
    );

    // A stale member (another template version) is never claimed, and the next round
    // drops it on pg2 and makes a current one.
    let stale = left.iter().next().unwrap().clone();
    o.pg.execute(
        "UPDATE berqenas.warm_pool SET template_version = -1 WHERE key = $1",
        &[&stale],
    )
    .await
    .unwrap();
    let fresh = common::unique("wpfresh");
    create_on_pg2(&o.app, &fresh, "schema").await;
    assert!(
        keys_on(&o.pg, "pg2").await.contains(&stale),
        "a stale member was claimed"
    );
    let round = fill(&o.rt, targets(1, 0)).await;
    assert_eq!((round.recycled, round.made), (1, 1), "{round:?}");
    assert!(!member_schemas(&pg2).await.contains(&stale));
    assert_eq!(roles_like(&pg2, &format!("tenant_wp__{stale}_")).await, 0);
    assert_eq!(member_schemas(&pg2).await, keys_on(&o.pg, "pg2").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_draining_server_is_not_refilled_and_a_removed_one_leaves_no_member() {
    let o = own("placed_rm", berqenas::template::Template::builtin()).await;
    let cluster = register_server(&o.app, "pg3", "wp-pg3", json!({"draining": true})).await;
    let pg3 = on(&cluster, "postgres").await;
    assert_eq!(fill(&o.rt, targets(1, 0)).await.made, 1, "default's only");
    assert!(
        keys_on(&o.pg, "pg3").await.is_empty(),
        "a draining server refilled"
    );
    let (s, v) = o
        .app
        .call(
            Method::PATCH,
            "/api/v1/servers/pg3",
            Some(json!({"draining": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(fill(&o.rt, targets(2, 0)).await.made, 3);
    assert_eq!(member_schemas(&pg3).await.len(), 2);
    // A member a refill publishes after the remove dropped them (the remove without its
    // `before_remove`, as that race leaves it): 409 naming the members, nothing gone.
    match berqenas::workflows::servers::remove(&o.rt.platform, "pg3", "test").await {
        Err(berqenas::workflows::servers::Error::Rejected(p)) => {
            assert_eq!(p.code, "server_not_empty", "{p:?}");
            assert!(p.message.contains("2 warm pool member(s)"), "{p:?}");
        }
        other => panic!("a server holding members was removed: {other:?}"),
    }
    let (s, v) = o.app.call(Method::GET, "/api/v1/servers/pg3", None).await;
    assert_eq!(s, StatusCode::OK, "the refused remove took the server: {v}");
    assert_eq!(member_schemas(&pg3).await.len(), 2);
    assert_eq!(keys_on(&o.pg, "pg3").await.len(), 2);
    // Removing it (no tenant there) drops its members first.
    let (s, v) = o
        .app
        .call(Method::DELETE, "/api/v1/servers/pg3", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(member_schemas(&pg3).await.is_empty());
    assert_eq!(roles_like(&pg3, "tenant_wp__").await, 0);
    assert!(keys_on(&o.pg, "pg3").await.is_empty());
    // default's pool is untouched.
    assert_eq!(keys_on(&o.pg, "default").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_whose_connections_are_all_in_use_is_not_refilled_until_they_are_free() {
    let o = own("placed_busy", berqenas::template::Template::builtin()).await;
    let cluster = register_server(&o.app, "pg4", "wp-pg4", json!({})).await;
    // Every connection of berqenas's pool to pg4 taken, as a burst of creates there
    // would take them.
    let server = berqenas::workflows::servers::opened(&o.rt.platform, "pg4")
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..server.pool.status().max_size {
        held.push(server.pool.get().await.unwrap());
    }
    assert_eq!(fill(&o.rt, targets(1, 0)).await.made, 1, "default's only");
    assert!(
        keys_on(&o.pg, "pg4").await.is_empty(),
        "refilled while busy"
    );
    // Not even tried (a refill there would wait for a connection, then fail).
    let tried: i64 =
        o.pg.query_one(
            "SELECT count(*) FROM berqenas.operations WHERE kind = 'warm_pool.refill.placed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tried, 0, "a refill of the busy server began");
    drop(held);
    assert_eq!(fill(&o.rt, targets(1, 0)).await.made, 1, "pg4's, once free");
    assert_eq!(keys_on(&o.pg, "pg4").await.len(), 1);
    assert_eq!(
        member_schemas(&on(&cluster, "postgres").await).await.len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_mode_claim_on_another_server_renames_a_database_cloned_there() {
    let o = own("placed_db", berqenas::template::Template::builtin()).await;
    berqenas::tenant::database_mode::ensure_template(&o.rt.platform)
        .await
        .unwrap();
    let cluster = register_pg2(&o.app, "wp-pg2db").await;
    let pg2 = on(&cluster, "postgres").await;
    let scratch = common::unique("wpdbscr");
    create_on_pg2(&o.app, &scratch, "database").await;
    let db_targets = Targets {
        schema: 0,
        database: 1,
        shared: 0,
    };
    assert_eq!(fill(&o.rt, db_targets).await.made, 2, "default's and pg2's");
    let members = keys_of(&o.pg, "pg2", "database").await;
    assert_eq!(members.len(), 1);
    let key = members.iter().next().unwrap().clone();
    let member_db = format!("tenant_wp__{key}");
    assert_eq!(
        databases(&pg2, member_db.clone()).await,
        1,
        "not cloned on pg2"
    );
    assert_eq!(
        databases(&o.pg, member_db.clone()).await,
        0,
        "cloned on default"
    );
    assert_eq!(roles_like(&pg2, &format!("{member_db}_")).await, 6);

    let claimed = common::unique("wpdbclm");
    let answer = create_on_pg2(&o.app, &claimed, "database").await;
    assert!(
        keys_of(&o.pg, "pg2", "database").await.is_empty(),
        "not claimed"
    );
    assert_eq!(databases(&pg2, member_db.clone()).await, 0);
    assert_eq!(roles_like(&pg2, &format!("{member_db}_")).await, 0);
    let tenant_db = format!("tenant_{}", claimed.replace('-', "_"));
    assert_eq!(databases(&pg2, tenant_db.clone()).await, 1);
    writes_on(&answer, &cluster).await;
    let scratch_db = on(&cluster, &format!("tenant_{}", scratch.replace('-', "_"))).await;
    let claimed_db = on(&cluster, &tenant_db).await;
    let a = same_catalog(
        &o.pg,
        (&pg2, Some(&scratch_db), Some(&claimed_db)),
        &scratch,
        &claimed,
    )
    .await;
    assert!(
        a.iter().any(|l| l.starts_with("relation: applications")),
        "the diff did not read the tenant's database: {a:#?}"
    );
    // The realtime gate inside has the plan's limits, as a tenant made there has.
    assert_eq!(gate(&scratch_db).await, gate(&claimed_db).await);
}

/// The shared pool's member rows on `c` of roles named `stem_...`, by tenant id.
async fn member_rows(c: &tokio_postgres::Client, stem: &str) -> Vec<(String, i64)> {
    c.query(
        "SELECT tenant_id::text, count(*) FROM berqenas_shared.members
          WHERE starts_with(role, $1 || '_') GROUP BY 1",
        &[&stem],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_mode_claim_on_another_server_maps_the_members_rows_to_the_tenant() {
    let o = own("placed_sh", berqenas::template::Template::builtin()).await;
    let cluster = register_pg2(&o.app, "wp-pg2sh").await;
    let pg2 = on(&cluster, "postgres").await;
    let shared_targets = targets(0, 1);
    // pg2 has no shared pool yet: its first member's refill builds it.
    assert!(!has_shared_pool(&pg2).await);
    assert_eq!(
        fill(&o.rt, shared_targets).await.made,
        2,
        "default's and pg2's"
    );
    let members = keys_of(&o.pg, "pg2", "shared").await;
    assert_eq!(members.len(), 1);
    let key = members.iter().next().unwrap().clone();
    let stem = format!("tenant_wp__{key}");
    let id: String =
        o.pg.query_one(
            "SELECT id::text FROM berqenas.warm_pool WHERE key = $1",
            &[&key],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(roles_like(&pg2, &format!("{stem}_")).await, 6);
    assert_eq!(
        member_rows(&pg2, &stem).await,
        vec![(id.clone(), 6)],
        "the member's rows on pg2 map its roles to its id"
    );
    assert_eq!(
        roles_like(&o.pg, &format!("{stem}_")).await,
        0,
        "made on default"
    );

    let scratch = common::unique("wpshscr");
    let scratch_answer = create_on_pg2(&o.app, &scratch, "shared").await;
    let claimed = common::unique("wpshclm");
    let answer = create_on_pg2(&o.app, &claimed, "shared").await;
    assert!(
        keys_of(&o.pg, "pg2", "shared").await.is_empty(),
        "not claimed"
    );
    assert_ne!(answer["id"].as_str(), Some(id.as_str()));
    assert_eq!(roles_like(&pg2, &format!("{stem}_")).await, 0);
    assert!(member_rows(&pg2, &stem).await.is_empty());
    // Its rows are its own: it writes one, and reads neither its neighbour's nor any
    // the member's id would map.
    writes_on(&answer, &cluster).await;
    writes_on(&scratch_answer, &cluster).await;
    let tenant = common::connect_as(&answer["credentials"]).await;
    let seen: i64 = tenant
        .query_one("SELECT count(*) FROM applications", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        seen, 1,
        "a claimed shared tenant sees other rows than its own"
    );
    // It reads the same as the tenant made from scratch there, its member rows mapped
    // to its own id (the catalog diff counts them).
    let a = same_catalog(&o.pg, (&pg2, None, None), &scratch, &claimed).await;
    assert!(
        a.contains(&"shared members mapped to the tenant: 6".to_string()),
        "{a:#?}"
    );
}
