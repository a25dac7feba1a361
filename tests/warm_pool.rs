//! The warm pool (docs/warm_pool.md): a claimed tenant reads the same in the catalog
//! as one made from scratch; concurrent creates never share a member; a crash at a
//! claim or a refill leaves no orphan and no half-claimed member; a template
//! migration leaves no stale member claimable; a claimed tenant lives, is suspended,
//! deleted, restored and purged like any other; members are not tenants anywhere but
//! in `status`.
//!
//! Each test has a control database of its own (`common::control_database`): the pool
//! is per control plane, and another test's creates must not claim this test's members.

mod common;
#[path = "warm_pool/database.rs"]
mod database;
#[path = "support/extra_cluster.rs"]
mod extra_cluster;
#[path = "warm_pool/holds.rs"]
mod holds;
#[path = "warm_pool/placed.rs"]
mod placed;
#[path = "support/receiver.rs"]
mod receiver;
#[path = "warm_pool/settle.rs"]
mod settle;

use std::collections::BTreeSet;
use std::sync::Arc;

use berqenas::isolation::warm::Mode;
use berqenas::server::{self, Database};
use berqenas::workflows::warm_pool::{self, Targets};
use berqenas::workflows::Runtime;
use common::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A control plane of its own: its database, a runtime (engine) on it and the API.
struct Own {
    db: Database,
    rt: Arc<Runtime>,
    app: TestApp,
    pg: tokio_postgres::Client,
}

async fn own(label: &str, template: berqenas::template::Template) -> Own {
    let db = common::control_database(&format!("wp_{label}")).await;
    let platform = server::platform_with(&db, common::secret_key(), 16, template)
        .await
        .unwrap();
    berqenas::tenant::shared_mode::ensure_pool(&platform)
        .await
        .unwrap();
    let rt = common::runtime(platform).await;
    let app = TestApp::over(rt.clone()).await;
    let pg = berqenas::pg::connect(&db.config).await.unwrap();
    Own { db, rt, app, pg }
}

fn targets(schema: i64, shared: i64) -> Targets {
    Targets {
        schema,
        database: 0,
        shared,
    }
}

/// The ids of the pool's members (a claimed tenant takes its member's id).
async fn member_ids(pg: &tokio_postgres::Client, mode: &str) -> BTreeSet<String> {
    pg.query(
        "SELECT id::text FROM berqenas.warm_pool WHERE isolation = $1",
        &[&mode],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Every member's key (any mode).
async fn member_keys(pg: &tokio_postgres::Client) -> BTreeSet<String> {
    pg.query("SELECT key FROM berqenas.warm_pool", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Member schemas of this database without a pool row; pool rows whose schema (schema
/// mode) or any of whose six roles are missing; and, of the members `known` (roles are
/// the whole cluster's, shared with other tests' pools), roles left without their row.
async fn pool_orphans(pg: &tokio_postgres::Client, known: &BTreeSet<String>) -> Vec<String> {
    let known: Vec<String> = known.iter().cloned().collect();
    pg.query(
        "WITH members AS (SELECT 'tenant_wp__' || key AS stem, key, isolation FROM berqenas.warm_pool)
         SELECT 'schema without a member: ' || nspname FROM pg_namespace
          WHERE starts_with(nspname, 'tenant_wp__')
            AND nspname NOT IN (SELECT stem FROM members WHERE isolation = 'schema')
         UNION ALL
         SELECT 'member without its schema: ' || stem FROM members
          WHERE isolation = 'schema' AND stem NOT IN (SELECT nspname FROM pg_namespace)
         UNION ALL
         SELECT 'member without its six roles: ' || stem FROM members m
          WHERE (SELECT count(*) FROM pg_roles WHERE starts_with(rolname, m.stem || '_')) <> 6
         UNION ALL
         SELECT 'role without a member: ' || rolname FROM pg_roles, unnest($1::text[]) k
          WHERE starts_with(rolname, 'tenant_wp__' || k || '_')
            AND k NOT IN (SELECT key FROM members)
         UNION ALL
         SELECT 'database without a member: ' || datname FROM pg_database, unnest($1::text[]) k
          WHERE datname = 'tenant_wp__' || k AND k NOT IN (SELECT key FROM members)
         UNION ALL
         SELECT 'member without its database: ' || stem FROM members
          WHERE isolation = 'database' AND stem NOT IN (SELECT datname FROM pg_database)",
        &[&known],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Everything the catalog and the registry say about a tenant, its names normalized
/// (`tenant_X`, `X`, `ID`), password salts left out.
async fn catalog(pg: &tokio_postgres::Client, name: &str) -> Vec<String> {
    catalog_in(pg, None, name).await
}

/// [`catalog`]; `inside`: a connection to the tenant's own database (database mode),
/// where its schema and objects are.
async fn catalog_in(
    pg: &tokio_postgres::Client,
    inside: Option<&tokio_postgres::Client>,
    name: &str,
) -> Vec<String> {
    catalog_at(pg, None, inside, name).await
}

/// [`catalog_in`] of a tenant on another server: `server` reaches its database there
/// (the registry is `pg`'s).
async fn catalog_at(
    pg: &tokio_postgres::Client,
    server: Option<&tokio_postgres::Client>,
    inside: Option<&tokio_postgres::Client>,
    name: &str,
) -> Vec<String> {
    let stem = format!("tenant_{}", name.replace('-', "_"));
    let like = format!("{stem}_");
    let id: String = pg
        .query_one(
            "SELECT id::text FROM berqenas.tenants WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    let queries: &[(&str, &str)] = &[
        ("role", "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,
                  rolconnlimit, rolbypassrls, left(rolpassword, 18), rolvaliduntil::text
                  FROM pg_authid WHERE starts_with(rolname, $1)"),
        ("setting", "SELECT r.rolname, s.setdatabase <> 0, s.setconfig::text FROM pg_db_role_setting s
                     JOIN pg_roles r ON r.oid = s.setrole WHERE starts_with(r.rolname, $1)"),
        ("membership", "SELECT r.rolname, m.rolname, g.rolname, am.admin_option FROM pg_auth_members am
                        JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
                        JOIN pg_roles g ON g.oid = am.grantor
                        WHERE starts_with(r.rolname, $1) OR starts_with(m.rolname, $1)"),
        ("database", "SELECT datname, pg_get_userbyid(datdba), datconnlimit, datacl::text, datistemplate,
                      datallowconn FROM pg_database WHERE datname = rtrim($1, '_')"),
        ("schema", "SELECT nspname, pg_get_userbyid(nspowner), nspacl::text, obj_description(oid, 'pg_namespace')
                    FROM pg_namespace WHERE nspname = rtrim($1, '_')"),
        ("relation", "SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relacl::text,
                      obj_description(c.oid, 'pg_class'), c.relrowsecurity, c.relforcerowsecurity
                      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = rtrim($1, '_')"),
        ("column", "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                    pg_get_expr(d.adbin, d.adrelid), a.attacl::text, col_description(c.oid, a.attnum)
                    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                    JOIN pg_namespace n ON n.oid = c.relnamespace
                    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                    WHERE n.nspname = rtrim($1, '_') AND a.attnum > 0 AND NOT a.attisdropped"),
        ("constraint", "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k
                        JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = rtrim($1, '_')"),
        ("function", "SELECT p.proname, pg_get_userbyid(p.proowner), p.proacl::text,
                      pg_get_function_identity_arguments(p.oid), p.proconfig::text, p.prosrc,
                      obj_description(p.oid, 'pg_proc')
                      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                      WHERE n.nspname = rtrim($1, '_')"),
        ("trigger", "SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
                     JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = rtrim($1, '_') AND NOT t.tgisinternal"),
        ("policy", "SELECT tablename, policyname, roles::text, qual, with_check FROM pg_policies
                    WHERE schemaname = rtrim($1, '_')"),
        ("default acl", "SELECT pg_get_userbyid(d.defaclrole), d.defaclobjtype, d.defaclacl::text
                         FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace
                         WHERE n.nspname = rtrim($1, '_')"),
        ("database privilege", "SELECT datname, datacl::text LIKE '%' || rtrim($1, '_') || '%' FROM pg_database
                                WHERE datname = current_database()"),
        ("shared member", "SELECT role::text FROM berqenas_shared.members WHERE starts_with(role, $1)"),
    ];
    let mut out = Vec::new();
    for (what, sql) in queries {
        // The schema and what is in it are in the tenant's database, if it has one.
        let on = match (inside, *what) {
            (
                Some(db),
                "schema" | "relation" | "column" | "constraint" | "function" | "trigger" | "policy"
                | "default acl",
            ) => db,
            _ => server.unwrap_or(pg),
        };
        if *what == "shared member" && !has_shared_pool(on).await {
            continue;
        }
        for row in on.query(*sql, &[&like]).await.unwrap() {
            let cols: Vec<String> = (0..row.len()).map(|i| text_of(&row, i)).collect();
            out.push(format!("{what}: {}", cols.join(" | ")));
        }
    }
    // Shared-mode member rows (on the tenant's server) map the tenant's roles to the
    // tenant's id.
    let on = server.unwrap_or(pg);
    let mapped: i64 = match has_shared_pool(on).await {
        true => on
            .query_one(
                "SELECT count(*) FROM berqenas_shared.members WHERE tenant_id::text = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0),
        false => 0,
    };
    out.push(format!("shared members mapped to the tenant: {mapped}"));
    // The registry row, its API key, its audit row and its event.
    let mut row: Value = pg
        .query_one(
            "SELECT to_jsonb(t) FROM berqenas.tenants t WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    for volatile in [
        "id",
        "name",
        "created_at",
        "updated_at",
        "credentials",
        "trial_ends_at",
        "operation_id",
        "generation",
    ] {
        row.as_object_mut().unwrap().remove(volatile);
    }
    out.push(format!("registry: {row}"));
    for sql in [
        "SELECT 'api key: ' || count(*) FROM berqenas.api_keys WHERE tenant_id::text = $1",
        "SELECT 'audit: ' || action || ' ' || (details - 'api_key_prefix')::text FROM berqenas.audit_log WHERE tenant_id::text = $1",
        "SELECT 'event: ' || type FROM berqenas.outbox WHERE tenant_id::text = $1",
    ] {
        for r in pg.query(sql, &[&id]).await.unwrap() {
            out.push(r.get(0));
        }
    }
    let mut out: Vec<String> = out
        .into_iter()
        .map(|l| {
            l.replace(&stem, "tenant_X")
                .replace(&id, "ID")
                .replace(name, "X")
        })
        .collect();
    out.sort();
    out
}

/// Whether the cluster `c` is connected to has a shared pool (another server has one
/// once a shared-mode tenant or member is made there).
async fn has_shared_pool(c: &tokio_postgres::Client) -> bool {
    c.query_one(
        "SELECT to_regclass('berqenas_shared.members') IS NOT NULL",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// A column as text, whatever its type (NULL as `∅`).
fn text_of(row: &tokio_postgres::Row, i: usize) -> String {
    use tokio_postgres::types::Type;
    let t = row.columns()[i].type_().clone();
    let shown = match t {
        Type::BOOL => row.get::<_, Option<bool>>(i).map(|b| b.to_string()),
        Type::INT4 => row.get::<_, Option<i32>>(i).map(|b| b.to_string()),
        Type::CHAR => row
            .get::<_, Option<i8>>(i)
            .map(|c| (c as u8 as char).to_string()),
        _ => row.get::<_, Option<String>>(i),
    };
    shown.unwrap_or_else(|| "∅".into())
}

async fn fill(rt: &Runtime, t: Targets) -> warm_pool::Round {
    warm_pool::round(rt, t).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claimed_tenant_reads_the_same_as_one_made_from_scratch() {
    let o = own("diff", berqenas::template::Template::builtin()).await;
    for mode in ["schema", "shared"] {
        // From scratch: the pool is empty.
        assert!(member_ids(&o.pg, mode).await.is_empty());
        let scratch = common::unique(&format!("scr{mode}"));
        let made = o.app.create_in(&scratch, mode).await;
        assert!(!member_ids(&o.pg, mode)
            .await
            .contains(made["id"].as_str().unwrap()));
        // Claimed: one member ready, and the create takes it.
        let round = fill(
            &o.rt,
            targets(i64::from(mode == "schema"), i64::from(mode == "shared")),
        )
        .await;
        assert_eq!(round.made, 1, "{mode}");
        let ids = member_ids(&o.pg, mode).await;
        assert_eq!(ids.len(), 1);
        let keys = member_keys(&o.pg).await;
        // The member's login already has its password (NOLOGIN): the claim only
        // grants LOGIN (PostgreSQL's check of a new password costs a PBKDF2).
        let key = keys.iter().next().unwrap();
        let verifier = |role: String| {
            let pg = &o.pg;
            async move {
                pg.query_one(
                    "SELECT rolpassword, rolcanlogin FROM pg_authid WHERE rolname = $1",
                    &[&role],
                )
                .await
                .map(|r| (r.get::<_, Option<String>>(0), r.get::<_, bool>(1)))
                .unwrap()
            }
        };
        let (before, can_login) = verifier(format!("tenant_wp__{key}_user")).await;
        assert!(!can_login);
        assert!(
            before
                .as_deref()
                .is_some_and(|v| v.starts_with("SCRAM-SHA-256$4096:")),
            "{mode}: the member has no password: {before:?}"
        );
        let claimed = common::unique(&format!("clm{mode}"));
        let answer = o.app.create_in(&claimed, mode).await;
        let login = format!("tenant_{}_user", claimed.replace('-', "_"));
        assert_eq!(
            verifier(login.clone()).await,
            (before, true),
            "{mode}: the claim set another password"
        );
        assert!(
            ids.contains(answer["id"].as_str().unwrap()),
            "{mode}: the create did not claim the member"
        );
        assert!(member_ids(&o.pg, mode).await.is_empty(), "{mode}");
        // The claimed tenant logs in, with its own search_path, and sees its tables.
        let tenant = common::connect_as(&answer["credentials"]).await;
        tenant
            .batch_execute(
                "INSERT INTO applications (name, team, created_by) VALUES ('a', 'b', 'c')",
            )
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        let a = catalog(&o.pg, &scratch).await;
        let b = catalog(&o.pg, &claimed).await;
        let only_scratch: Vec<&String> = a.iter().filter(|l| !b.contains(l)).collect();
        let only_claimed: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
        assert!(
            only_scratch.is_empty() && only_claimed.is_empty(),
            "{mode}: the catalogs differ\nonly from scratch: {only_scratch:#?}\nonly claimed: {only_claimed:#?}"
        );
        assert!(a.len() > 20, "{mode}: too little compared: {a:#?}");
        // The diff sees what a claim could get wrong: a role setting out of a
        // create's order (set again, it moves to the end of the array).
        o.pg.batch_execute(&format!(
            "ALTER ROLE \"{login}\" RESET statement_timeout; ALTER ROLE \"{login}\" SET statement_timeout = 30000"
        ))
        .await
        .unwrap();
        assert_ne!(
            catalog(&o.pg, &claimed).await,
            b,
            "{mode}: the diff is blind to settings"
        );
        let orphans = pool_orphans(&o.pg, &keys).await;
        assert!(orphans.is_empty(), "{orphans:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_creates_never_share_a_member_of_ten() {
    let o = own("race", berqenas::template::Template::builtin()).await;
    let round = fill(&o.rt, targets(10, 0)).await;
    assert_eq!(round.made, 10);
    let members = member_ids(&o.pg, "schema").await;
    assert_eq!(members.len(), 10);
    let keys = member_keys(&o.pg).await;
    let app = Arc::new(o.app);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100 {
        let app = app.clone();
        set.spawn(async move {
            let n = format!("race{i}x");
            let (s, body) = app
                .call(
                    Method::POST,
                    "/api/v1/tenants",
                    Some(json!({"name": n, "isolation": "schema"})),
                )
                .await;
            (n, s, body)
        });
    }
    let mut claimed = Vec::new();
    while let Some(r) = set.join_next().await {
        let (n, s, body) = r.unwrap();
        assert_eq!(s, StatusCode::CREATED, "{n}: {body}");
        let id = body["id"].as_str().unwrap().to_string();
        if members.contains(&id) {
            claimed.push(id);
        }
        // Every tenant has its own schema, under its own name.
        let schema = format!("tenant_{n}");
        let owner: String =
            o.pg.query_one(
                "SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = $1",
                &[&schema],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(owner, format!("{schema}_owner"));
    }
    claimed.sort();
    let distinct: BTreeSet<&String> = claimed.iter().collect();
    assert_eq!(distinct.len(), claimed.len(), "a member handed out twice");
    assert_eq!(claimed.len(), 10, "every member claimed once: {claimed:?}");
    assert!(member_ids(&o.pg, "schema").await.is_empty());
    let orphans = pool_orphans(&o.pg, &keys).await;
    assert!(orphans.is_empty(), "{orphans:?}");
}

/// Kills the runtime's engine at `point` while `work` runs; returns a restarted
/// runtime of the same server on the same database.
async fn killed_at<F>(o: &Own, point: &str, work: F) -> Arc<Runtime>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let reached = o.rt.engine.failpoints().arm(point);
    let task = tokio::spawn(work);
    tokio::time::timeout(std::time::Duration::from_secs(60), reached.notified())
        .await
        .unwrap_or_else(|_| panic!("{point} never reached"));
    o.rt.engine.kill();
    task.abort();
    let _ = task.await;
    o.rt.pool.close();
    let platform = server::platform(&o.db, common::secret_key(), 4)
        .await
        .unwrap();
    common::runtime(platform).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_during_a_claim_or_a_refill_leaves_no_orphan_and_no_half_claimed_member() {
    for (i, at) in ["before", "after"].into_iter().enumerate() {
        // A claim killed at its commit: the tenant and the claim are one transaction.
        let o = own(&format!("kill{i}"), berqenas::template::Template::builtin()).await;
        fill(&o.rt, targets(2, 0)).await;
        let members = member_ids(&o.pg, "schema").await;
        let mut keys = member_keys(&o.pg).await;
        let name = format!("killed{i}x");
        let rt = o.rt.clone();
        let n = name.clone();
        let restarted = killed_at(&o, &format!("tenant.create/commit/{at}"), async move {
            let req = berqenas::tenant::create::CreateTenant {
                name: n,
                ..Default::default()
            };
            let _ = berqenas::workflows::create::create(&rt, &req, None, "test").await;
        })
        .await;
        let tenant =
            o.pg.query_opt(
                "SELECT id::text FROM berqenas.tenants WHERE name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .map(|r| r.get::<_, String>(0));
        let left = member_ids(&o.pg, "schema").await;
        match (at, tenant) {
            ("before", None) => assert_eq!(left, members, "the claim was not undone"),
            ("after", Some(id)) => {
                assert!(
                    members.contains(&id),
                    "the committed create had claimed a member"
                );
                assert_eq!(left.len(), 1);
                assert!(!left.contains(&id));
            }
            (at, t) => panic!("killed {at} the commit: tenant {t:?}"),
        }
        let orphans = pool_orphans(&o.pg, &keys).await;
        assert!(orphans.is_empty(), "{orphans:?}");

        // A refill killed at its commit: the member is whole or absent.
        let before = member_ids(&o.pg, "schema").await;
        let o2 = Own {
            db: o.db,
            rt: restarted,
            app: o.app,
            pg: o.pg,
        };
        let rt = o2.rt.clone();
        let key = warm_pool::new_key();
        keys.insert(key.clone());
        let k = key.clone();
        let restarted = killed_at(&o2, &format!("warm_pool.refill/commit/{at}"), async move {
            let _ = warm_pool::refill_one(&rt, Mode::Schema, &k, 100).await;
        })
        .await;
        let after = member_ids(&o2.pg, "schema").await;
        let made: bool = o2
            .pg
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM berqenas.warm_pool WHERE key = $1)",
                &[&key],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(made, at == "after", "killed {at} the refill's commit");
        assert_eq!(after.len(), before.len() + usize::from(made));
        let orphans = pool_orphans(&o2.pg, &keys).await;
        assert!(orphans.is_empty(), "{orphans:?}");
        // And the restarted server claims what is there.
        let app = TestApp::over(restarted.clone()).await;
        let t = app.create(&format!("after{i}x")).await;
        assert!(after.contains(t["id"].as_str().unwrap()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_template_migration_leaves_no_stale_member_claimable() {
    let v1 = common::template_with(&[]);
    let o = own("stale", v1).await;
    fill(&o.rt, targets(3, 0)).await;
    let stale = member_ids(&o.pg, "schema").await;
    assert_eq!(stale.len(), 3);
    let stale_keys = member_keys(&o.pg).await;
    // The operator's template gains a migration; the server restarts with it.
    let v2 = common::template_with(&[(
        "0002_notes.sql",
        "ALTER TABLE applications ADD COLUMN note text;",
    )]);
    assert_eq!(v2.latest_version(), 2);
    let platform = server::platform_with(&o.db, common::secret_key(), 16, v2)
        .await
        .unwrap();
    let rt = common::runtime(platform).await;
    let app = TestApp::over(rt.clone()).await;
    // A create with a full pool of stale members makes the tenant from scratch.
    let t = app.create(&common::unique("fresh")).await;
    assert!(
        !stale.contains(t["id"].as_str().unwrap()),
        "a stale member was claimed"
    );
    assert_eq!(t["template_version"], 2);
    assert_eq!(member_ids(&o.pg, "schema").await, stale);
    // The next round recycles every stale member and refills at version 2.
    let round = fill(&rt, targets(3, 0)).await;
    assert_eq!(round.recycled, 3);
    assert_eq!(round.made, 3);
    let versions: Vec<i32> =
        o.pg.query("SELECT template_version FROM berqenas.warm_pool", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(versions, [2, 2, 2]);
    let mut keys = member_keys(&o.pg).await;
    assert!(keys.is_disjoint(&stale_keys));
    keys.extend(stale_keys);
    let orphans = pool_orphans(&o.pg, &keys).await;
    assert!(orphans.is_empty(), "{orphans:?}");
    // A claimed tenant at version 2 has the new column.
    let fresh = member_ids(&o.pg, "schema").await;
    let t = app.create(&common::unique("claimed")).await;
    assert!(fresh.contains(t["id"].as_str().unwrap()));
    assert_eq!(t["template_version"], 2);
    let c = common::connect_as(&t["credentials"]).await;
    c.batch_execute(
        "INSERT INTO applications (name, team, created_by, note) VALUES ('a', 'b', 'c', 'n')",
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claimed_tenant_is_suspended_deleted_restored_and_purged_like_any_other() {
    let o = own("life", berqenas::template::Template::builtin()).await;
    fill(&o.rt, targets(1, 0)).await;
    let members = member_ids(&o.pg, "schema").await;
    let keys = member_keys(&o.pg).await;
    let n = common::unique("life");
    let t = o.app.create(&n).await;
    assert!(members.contains(t["id"].as_str().unwrap()));
    let base = format!("/api/v1/tenants/{n}");
    let logs_in = || async {
        let mut config: tokio_postgres::Config =
            t["credentials"]["dsn"].as_str().unwrap().parse().unwrap();
        config.connect_timeout(std::time::Duration::from_secs(5));
        config.connect(tokio_postgres::NoTls).await.is_ok()
    };
    assert!(logs_in().await);
    let call = |m: Method, p: String, b: Option<Value>| {
        let app = &o.app;
        async move {
            let (s, e) = app.call(m, &p, b).await;
            assert_eq!(s, StatusCode::OK, "{p}: {e}");
            e
        }
    };
    call(Method::POST, format!("{base}/suspend"), None).await;
    assert!(!logs_in().await, "a suspended tenant logs in");
    call(Method::POST, format!("{base}/resume"), None).await;
    assert!(logs_in().await);
    call(Method::DELETE, base.clone(), None).await;
    assert!(!logs_in().await, "a deleted tenant logs in");
    call(Method::POST, format!("{base}/restore"), None).await;
    assert!(logs_in().await, "a restored tenant does not log in");
    call(
        Method::DELETE,
        format!("{base}?purge=now"),
        Some(json!({"confirm": n})),
    )
    .await;
    let left: i64 =
        o.pg.query_one(
            "SELECT (SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1))
                  + (SELECT count(*) FROM pg_namespace WHERE nspname = rtrim($1, '_'))",
            &[&format!("tenant_{}_", n.replace('-', "_"))],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "a purged claimed tenant left roles or its schema");
    let orphans = pool_orphans(&o.pg, &keys).await;
    assert!(orphans.is_empty(), "{orphans:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_are_not_tenants_but_status_counts_them() {
    let o = own("seen", berqenas::template::Template::builtin()).await;
    let round = fill(&o.rt, targets(2, 3)).await;
    assert_eq!(round.made, 5);
    let (s, list) = o.app.call(Method::GET, "/api/v1/tenants", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!list.to_string().contains("wp--"), "{list}");
    let (s, status) = o.app.call(Method::GET, "/api/v1/status", None).await;
    assert_eq!(s, StatusCode::OK);
    let pool = status["warm_pool"].as_array().unwrap();
    let of = |mode: &str| {
        pool.iter()
            .filter(|m| m["isolation"] == mode)
            .map(|m| m["members"].as_i64().unwrap())
            .sum::<i64>()
    };
    assert_eq!((of("schema"), of("shared")), (2, 3), "{status}");
    let tenants: i64 = status["tenants"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_i64().unwrap())
        .sum();
    assert_eq!(tenants, 0, "{status}");
    // Metrics count tenants only.
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", o.app.url))
        .bearer_auth(common::TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("wp--") && !text.contains("tenant_wp__"));
    // A second round at the same targets makes nothing more.
    assert_eq!(
        fill(&o.rt, targets(2, 3)).await,
        warm_pool::Round::default()
    );
    // Member roles cannot log in.
    let nologin: i64 = o
        .pg
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, 'tenant_wp__') AND rolcanlogin",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(nologin, 0);
    // A member made before members were given their password at the refill (no
    // sealed credentials, no password): its claim sets one, and the tenant logs in.
    o.pg.batch_execute(
        "DO $$ DECLARE k text; BEGIN
           FOR k IN SELECT key FROM berqenas.warm_pool WHERE isolation = 'schema' LOOP
             EXECUTE format('ALTER ROLE %I PASSWORD NULL', 'tenant_wp__' || k || '_user');
           END LOOP;
           UPDATE berqenas.warm_pool SET credentials = NULL WHERE isolation = 'schema';
         END $$",
    )
    .await
    .unwrap();
    let ids = member_ids(&o.pg, "schema").await;
    let t = o.app.create(&common::unique("legacy")).await;
    assert!(ids.contains(t["id"].as_str().unwrap()), "{t}");
    common::connect_as(&t["credentials"])
        .await
        .batch_execute("SELECT 1")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_refiller_keeps_out_of_a_burst_of_creates_unless_the_pool_runs_low() {
    let o = own("pace", berqenas::template::Template::builtin()).await;
    assert_eq!(fill(&o.rt, targets(4, 0)).await.made, 4);
    for _ in 0..2 {
        o.app.create(&common::unique("burst")).await;
    }
    // Creates keep arriving (a thread notes one every millisecond) while it runs.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let burst = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                warm_pool::create_started();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let paced = |rt: Arc<Runtime>| async move {
        warm_pool::round_paced(&rt, targets(4, 0), warm_pool::Pace::AroundCreates)
            .await
            .unwrap()
    };
    // Two of four left: no member is made during the burst.
    assert_eq!(paced(o.rt.clone()).await.made, 0);
    assert_eq!(member_ids(&o.pg, "schema").await.len(), 2);
    // Down to a quarter: it refills, back above a quarter, then waits again.
    o.app.create(&common::unique("burst")).await;
    assert_eq!(paced(o.rt.clone()).await.made, 1);
    assert_eq!(member_ids(&o.pg, "schema").await.len(), 2);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    burst.join().unwrap();
    // After the burst the pool fills up (other tests' creates may pause a round).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while member_ids(&o.pg, "schema").await.len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pool was not refilled after the burst"
        );
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        paced(o.rt.clone()).await;
    }
}
