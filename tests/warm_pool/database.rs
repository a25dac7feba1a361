//! Database mode: members are databases cloned from the template (docs/warm_pool.md).

use super::*;

/// Kills `rt`'s engine at `point` while `work` runs (what `kill -9` leaves).
async fn kill_at<F>(rt: &Runtime, point: &str, work: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let reached = rt.engine.failpoints().arm(point);
    let task = tokio::spawn(work);
    tokio::time::timeout(std::time::Duration::from_secs(60), reached.notified())
        .await
        .unwrap_or_else(|_| panic!("{point} never reached"));
    rt.engine.kill();
    task.abort();
    let _ = task.await;
    rt.pool.close();
}

/// The OID of the database named `name`, if there is one.
pub(super) async fn database_oid(pg: &tokio_postgres::Client, name: &str) -> Option<u32> {
    pg.query_opt("SELECT oid FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .map(|r| r.get(0))
}

/// Database mode: a claim renames a prepared database and its roles; the tenant reads
/// the same as one made from scratch, inside its database too; concurrent creates
/// never share a member; a kill during a refill or after a claim's commit leaves no
/// orphan database or role.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_mode_claims_a_prepared_database() {
    let o = own("db", berqenas::template::Template::builtin()).await;
    berqenas::tenant::database_mode::ensure_template(&o.rt.platform)
        .await
        .unwrap();
    let db_targets = |n| Targets {
        schema: 0,
        database: n,
        shared: 0,
    };
    let scratch = common::unique("dbscr");
    o.app.create_in(&scratch, "database").await;
    assert_eq!(fill(&o.rt, db_targets(1)).await.made, 1);
    let mut keys = member_keys(&o.pg).await;
    let key = keys.iter().next().unwrap().clone();
    let member_db = format!("tenant_wp__{key}");
    let oid = database_oid(&o.pg, &member_db)
        .await
        .expect("the member's database");
    // The refill installed the realtime gate, with no limits until a claim.
    {
        let m = common::superuser_in(&member_db).await;
        let unset: i64 = m
            .query_one("SELECT count(*) FROM berqenas_realtime.limits", &[])
            .await
            .expect("the member's realtime gate")
            .get(0);
        assert_eq!(unset, 0);
    }
    let claimed = common::unique("dbclm");
    let answer = o.app.create_in(&claimed, "database").await;
    let tenant_db = format!("tenant_{}", claimed.replace('-', "_"));
    assert_eq!(
        database_oid(&o.pg, &tenant_db).await,
        Some(oid),
        "the create did not claim the member's database"
    );
    assert!(database_oid(&o.pg, &member_db).await.is_none());
    assert!(member_keys(&o.pg).await.is_empty());
    let tenant = common::connect_as(&answer["credentials"]).await;
    tenant
        .batch_execute("INSERT INTO applications (name, team, created_by) VALUES ('a', 'b', 'c')")
        .await
        .unwrap();
    let scratch_db = common::superuser_in(&format!("tenant_{}", scratch.replace('-', "_"))).await;
    let claimed_db = common::superuser_in(&tenant_db).await;
    let a = catalog_in(&o.pg, Some(&scratch_db), &scratch).await;
    let b = catalog_in(&o.pg, Some(&claimed_db), &claimed).await;
    let only_scratch: Vec<&String> = a.iter().filter(|l| !b.contains(l)).collect();
    let only_claimed: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
    assert!(
        only_scratch.is_empty() && only_claimed.is_empty(),
        "database mode: the catalogs differ\nonly from scratch: {only_scratch:#?}\nonly claimed: {only_claimed:#?}"
    );
    assert!(a.iter().any(|l| l.starts_with("database: ")), "{a:#?}");
    assert!(a.iter().any(|l| l.starts_with("relation: ")), "{a:#?}");
    // The claim set the gate's limits: the plan's, as a create from scratch does.
    let limits = |c: tokio_postgres::Client| async move {
        c.query_one(
            "SELECT per_minute, per_hour FROM berqenas_realtime.limits",
            &[],
        )
        .await
        .map(|r| (r.get::<_, i32>(0), r.get::<_, i32>(1)))
        .unwrap()
    };
    assert_eq!(limits(claimed_db).await, limits(scratch_db).await);
    // The claim configured its database beside the activation (no `configure` step
    // journaled); the create from scratch in a step of its own.
    let configured = |name: String| {
        let pg = &o.pg;
        async move {
            pg.query_one(
                "SELECT count(*) FROM berqenas.operation_steps s
                   JOIN berqenas.operations o ON o.id = s.operation_id
                  WHERE o.tenant_name = $1 AND s.name = 'configure' AND s.state = 'applied'",
                &[&name],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };
    assert_eq!(configured(scratch.clone()).await, 1);
    assert_eq!(configured(claimed.clone()).await, 0);
    // Configured again (a claim's activation run again after a crash): the schema
    // renamed already, nothing changes.
    let slug = berqenas::tenant::Slug::parse(&claimed).unwrap();
    berqenas::tenant::database_mode::configure_claimed(&o.rt.platform, &slug, &key)
        .await
        .expect("a claim configured twice");
    let again = catalog_in(
        &o.pg,
        Some(&common::superuser_in(&tenant_db).await),
        &claimed,
    )
    .await;
    assert_eq!(again, b);
    drop(tenant);

    // Concurrent creates, a pool of 2: every create succeeds, no member twice.
    assert_eq!(fill(&o.rt, db_targets(2)).await.made, 2);
    let ready: BTreeSet<Option<u32>> = {
        let mut s = BTreeSet::new();
        for k in member_keys(&o.pg).await {
            s.insert(database_oid(&o.pg, &format!("tenant_wp__{k}")).await);
            keys.insert(k);
        }
        s
    };
    // One member as made before members had their gate: its claim installs it.
    let old = member_keys(&o.pg).await.into_iter().next().unwrap();
    common::superuser_in(&format!("tenant_wp__{old}"))
        .await
        .batch_execute("DROP SCHEMA berqenas_realtime CASCADE")
        .await
        .unwrap();
    let app = Arc::new(TestApp {
        url: o.app.url.clone(),
        http: o.app.http.clone(),
    });
    let mut set = tokio::task::JoinSet::new();
    for i in 0..4 {
        let app = app.clone();
        set.spawn(async move {
            let n = format!("dbrace{i}x");
            let (s, body) = app
                .call(
                    Method::POST,
                    "/api/v1/tenants",
                    Some(json!({"name": n, "isolation": "database"})),
                )
                .await;
            (n, s, body)
        });
    }
    let mut taken = Vec::new();
    while let Some(r) = set.join_next().await {
        let (n, s, body) = r.unwrap();
        assert_eq!(s, StatusCode::CREATED, "{n}: {body}");
        let oid = database_oid(&o.pg, &format!("tenant_{n}")).await;
        if ready.contains(&oid) {
            taken.push(oid);
        }
        let set: i64 = common::superuser_in(&format!("tenant_{n}"))
            .await
            .query_one("SELECT count(*) FROM berqenas_realtime.limits", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(set, 1, "{n}: the realtime gate has no limits");
    }
    assert_eq!(taken.len(), 2, "each member claimed once: {taken:?}");
    assert_ne!(taken[0], taken[1]);
    assert!(member_keys(&o.pg).await.is_empty());

    // A refill killed after its clone: the restart (the same server identity) undoes
    // it, leaving nothing behind. Then a claim killed before its commit.
    let identity = format!("test:{}", uuid::Uuid::new_v4());
    let (db, identity) = (&o.db, identity.as_str());
    let start = move || async move {
        let platform = server::platform(db, common::secret_key(), 8).await.unwrap();
        Runtime::start(platform, identity).await.unwrap()
    };
    let key = warm_pool::new_key();
    keys.insert(key.clone());
    let first = start().await;
    let (rt, k) = (first.clone(), key.clone());
    kill_at(
        &first,
        "warm_pool.refill.database/configure/before",
        async move {
            let _ = warm_pool::refill_one(&rt, Mode::Database, &k, 100).await;
        },
    )
    .await;
    let second = start().await;
    assert!(database_oid(&o.pg, &format!("tenant_wp__{key}"))
        .await
        .is_none());
    let orphans = pool_orphans(&o.pg, &keys).await;
    assert!(orphans.is_empty(), "{orphans:?}");
    assert_eq!(fill(&second, db_targets(1)).await.made, 1);
    let members = member_keys(&o.pg).await;
    keys.extend(members.clone());
    let member = members.iter().next().unwrap().clone();
    let oid = database_oid(&o.pg, &format!("tenant_wp__{member}")).await;
    let create = |rt: Arc<Runtime>, name: String| async move {
        let req = berqenas::tenant::create::CreateTenant {
            name,
            isolation: Some("database".into()),
            ..Default::default()
        };
        berqenas::workflows::create::create(&rt, &req, None, "test").await
    };
    // Killed before its one transaction commits, after the member's own work in its
    // database: the member is the pool's again, under its own names.
    let name = common::unique("dbkill");
    let (rt, n) = (second.clone(), name.clone());
    kill_at(&second, "tenant.create/commit/before", async move {
        let _ = create(rt, n).await;
    })
    .await;
    assert_eq!(
        member_keys(&o.pg).await,
        members,
        "the member was not given back"
    );
    let third = start().await;
    let db = format!("tenant_{}", name.replace('-', "_"));
    assert!(
        database_oid(&o.pg, &db).await.is_none(),
        "the claimed database was left"
    );
    let left: i64 =
        o.pg.query_one(
            "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)",
            &[&format!("{db}_")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    assert_eq!(
        database_oid(&o.pg, &format!("tenant_wp__{member}")).await,
        oid
    );
    let orphans = pool_orphans(&o.pg, &keys).await;
    assert!(orphans.is_empty(), "{orphans:?}");
    // The next claim takes it whole: its schema (named by the dead claim) found by its
    // owner and named for the new tenant.
    let next = common::unique("dbnext");
    create(third.clone(), next.clone())
        .await
        .expect("the next claim");
    let next_db = format!("tenant_{}", next.replace('-', "_"));
    assert_eq!(
        database_oid(&o.pg, &next_db).await,
        oid,
        "the member was not claimed"
    );
    let schemas: Vec<String> = common::superuser_in(&next_db)
        .await
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant%' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(schemas, vec![next_db.clone()]);
    let orphans = pool_orphans(&o.pg, &keys).await;
    assert!(orphans.is_empty(), "{orphans:?}");

    // A database of the tenant's name that is not in the registry: the claim is
    // refused as a taken name, and the member is the pool's again, its database
    // under its own name.
    assert_eq!(fill(&third, db_targets(1)).await.made, 1);
    let members = member_keys(&o.pg).await;
    keys.extend(members.clone());
    let stray = common::unique("dbstray");
    let stray_db = format!("tenant_{}", stray.replace('-', "_"));
    o.pg.batch_execute(&format!("CREATE DATABASE {stray_db}"))
        .await
        .unwrap();
    let app = TestApp::over(third.clone()).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": stray, "isolation": "database"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.to_string().contains(&stray), "{body}");
    assert_eq!(
        member_keys(&o.pg).await,
        members,
        "the member was not given back"
    );
    let member = members.iter().next().unwrap();
    assert!(database_oid(&o.pg, &format!("tenant_wp__{member}"))
        .await
        .is_some());
    let (status, _) = app
        .call(Method::GET, &format!("/api/v1/tenants/{stray}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    o.pg.batch_execute(&format!("DROP DATABASE {stray_db}"))
        .await
        .unwrap();
}
