//! A template migration's worker (`access::worker`): one login role and its session,
//! lent to one schema-mode tenant after another. Code of the tenant it served last
//! runs in that session with the role's own rights once it says `RESET ROLE`; each
//! mark such code can leave on the role is made here, in the worker's session as that
//! code would, and the next lending must refuse the role (never granting it the next
//! tenant's owner) or undo the mark.

use berqenas::access::{TempRole, Worker};
use berqenas::pg::Ident;
use berqenas::platform::Platform;
use serde_json::Value;

use crate::common::{self, unique, TestApp};

fn owner_of(name: &str) -> Ident {
    Ident::new(format!("tenant_{}_owner", name.replace('-', "_"))).unwrap()
}

async fn member(su: &tokio_postgres::Client, role: &Ident, of: &Ident) -> bool {
    su.query_one(
        "SELECT pg_has_role($1::text, $2::text, 'MEMBER')",
        &[&role.as_str(), &of.as_str()],
    )
    .await
    .unwrap()
    .get(0)
}

async fn exists(su: &tokio_postgres::Client, role: &Ident) -> bool {
    su.query_one(
        "SELECT count(*) = 1 FROM pg_roles WHERE rolname = $1",
        &[&role.as_str()],
    )
    .await
    .unwrap()
    .get(0)
}

/// A worker lent to `a`'s owner, its session as `RESET ROLE` leaves it.
async fn lent_to(p: &Platform, owner: &Ident) -> Worker {
    let mut w = Worker::start(p, TempRole::new_name("wktest"), &[])
        .await
        .unwrap();
    w.lend(p, owner).await.unwrap().unwrap();
    w
}

struct Two {
    _app: TestApp,
    p: Platform,
    a: Value,
    owner_a: Ident,
    owner_b: Ident,
}

async fn two() -> Two {
    let p = common::platform(4).await;
    let app = TestApp::serve(p.clone()).await;
    let (na, nb) = (unique("wk-a"), unique("wk-b"));
    let a = app.create(&na).await;
    app.create(&nb).await;
    Two {
        _app: app,
        p,
        a,
        owner_a: owner_of(&na),
        owner_b: owner_of(&nb),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_marked_by_the_last_tenants_code_is_never_lent_again() {
    let _g = crate::shared().await;
    let t = two().await;
    let p = &t.p;
    let su = common::superuser().await;
    let schema_a = t.a["schema"].as_str().unwrap().to_string();
    let login_a = t.a["credentials"]["user"].as_str().unwrap().to_string();
    // (what the code leaves, the statements of the worker's own session, with `{w}` its role)
    let marks = [
        (
            "a function it owns, SECURITY DEFINER",
            format!(
                "CREATE FUNCTION \"{schema_a}\".kept() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'"
            ),
        ),
        (
            "a privilege granted to it",
            format!(
                "SET ROLE \"{}\"; GRANT SELECT ON \"{schema_a}\".applications TO {{w}}; RESET ROLE",
                t.owner_a.as_str()
            ),
        ),
        (
            "a default of its own",
            "ALTER ROLE {w} SET work_mem = '64MB'".to_string(),
        ),
    ];
    for (what, sql) in marks {
        let mut w = lent_to(p, &t.owner_a).await;
        let name = w.name().clone();
        let quoted = name.to_string();
        w.session()
            .batch_execute(&sql.replace("{w}", &quoted))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        w.rest().await.unwrap();
        let tainted = w
            .lend(p, &t.owner_b)
            .await
            .unwrap()
            .expect_err(&format!("a worker with {what} was lent again"));
        assert_eq!(
            tainted.after.as_deref(),
            Some(t.owner_a.to_string().as_str())
        );
        assert!(!member(&su, &name, &t.owner_b).await, "{what}");
        w.retire(p).await.unwrap();
        assert!(!exists(&su, &name).await, "{what}: the role was dropped");
    }
    // Memberships: PostgreSQL 15 refuses a role's own session `GRANT <itself> TO ..`
    // (some releases allowed it), so they are made by someone else here; one in the
    // role handed to the tenant's login, and one the role was given.
    for grant in [
        format!("GRANT {{w}} TO \"{login_a}\""),
        "GRANT pg_read_all_data TO {w}".to_string(),
    ] {
        let mut w = lent_to(p, &t.owner_a).await;
        let name = w.name().clone();
        let quoted = name.to_string();
        su.batch_execute(&grant.replace("{w}", &quoted))
            .await
            .unwrap();
        w.rest().await.unwrap();
        assert!(w.lend(p, &t.owner_b).await.unwrap().is_err(), "{grant}");
        assert!(!member(&su, &name, &t.owner_b).await, "{grant}");
        w.retire(p).await.unwrap();
        assert!(!exists(&su, &name).await, "{grant}: the role was dropped");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_worker_moves_to_the_next_tenant_with_nothing_of_the_last() {
    let _g = crate::shared().await;
    let t = two().await;
    let p = &t.p;
    let su = common::superuser().await;
    let mut w = lent_to(p, &t.owner_a).await;
    let name = w.name().clone();
    let path: String = w
        .session()
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .unwrap()
        .get(0);
    // Session state, and a password the code would know.
    w.session()
        .batch_execute(&format!(
            "SET search_path = \"$user\", public; LISTEN spy; PREPARE kept AS SELECT 1;
             ALTER ROLE {name} PASSWORD 'known-to-the-tenant'; SET ROLE \"{}\";",
            t.owner_a.as_str()
        ))
        .await
        .unwrap();
    w.rest().await.unwrap();
    w.lend(p, &t.owner_b).await.unwrap().unwrap();
    assert!(member(&su, &name, &t.owner_b).await);
    assert!(
        !member(&su, &name, &t.owner_a).await,
        "still a member of the last tenant's owner"
    );
    let password_gone: bool = su
        .query_one(
            "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = $1",
            &[&name.as_str()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(password_gone, "the password the code set was kept");
    // A simple query: the extended protocol would prepare a statement of its own.
    let rows = w
        .session()
        .simple_query(
            "SELECT current_setting('search_path'), (current_user = session_user)::text,
                    ((SELECT count(*) FROM pg_prepared_statements)
                     + (SELECT count(*) FROM pg_listening_channels()))::text",
        )
        .await
        .unwrap();
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .expect("a row");
    assert_eq!(
        row.get(0),
        Some(path.as_str()),
        "a setting outlived the tenant"
    );
    assert_eq!(row.get(1), Some("true"), "a SET ROLE outlived the tenant");
    assert_eq!(
        row.get(2),
        Some("0"),
        "a prepared statement or listener outlived the tenant"
    );
    // The role takes no session but berqenas's, even with the right password.
    let mut config: tokio_postgres::Config =
        t.a["credentials"]["dsn"].as_str().unwrap().parse().unwrap();
    config.user(name.as_str()).password("known-to-the-tenant");
    let refused = config.connect(tokio_postgres::NoTls).await.err();
    assert!(refused.is_some(), "a second session of the worker's role");
    w.retire(p).await.unwrap();
    assert!(!exists(&su, &name).await);
}
