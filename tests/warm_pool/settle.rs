//! A create is settled (its plan's mode and vector store, its server) before it claims
//! a member: one the plan sends to another mode, or refuses, takes none. A guard for
//! any shortcut that would claim first and settle after (one was measured and not
//! kept: docs/warm_pool.md, "Where a create's time goes").

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_create_its_plan_sends_elsewhere_takes_no_member() {
    let o = own("settle", berqenas::template::Template::builtin()).await;
    assert_eq!(fill(&o.rt, targets(2, 0)).await.made, 2);
    let members = member_ids(&o.pg, "schema").await;
    for mode in ["shared", "database"] {
        let plan = format!("in_{mode}");
        common::plan_like_free(&o.pg, &plan, &format!("default_isolation = '{mode}'")).await;
        let name = common::unique(&format!("pl{mode}"));
        let made = o.app.create_with(json!({"name": name, "plan": plan})).await;
        assert_eq!(made["isolation"], mode, "{made}");
        assert_eq!(
            member_ids(&o.pg, "schema").await,
            members,
            "a create the plan sent to {mode} mode took a schema-mode member"
        );
    }

    // A plan that gives its tenants a vector store, on a server with none: refused
    // as when the request asks for one, and nothing taken or made.
    common::plan_like_free(&o.pg, "with_vectors", "vector_store = true").await;
    let name = common::unique("plvec");
    let (status, body) = o
        .app
        .call(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": name, "plan": "with_vectors"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"]["code"], "vector_store_not_configured",
        "{body}"
    );
    assert_eq!(member_ids(&o.pg, "schema").await, members);
    let rows: i64 =
        o.pg.query_one(
            "SELECT count(*) FROM berqenas.tenants WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "a refused create left a registry row");

    // The plan's default mode is schema: the create claims a member.
    let name = common::unique("plschema");
    let made = o.app.create_with(json!({"name": name})).await;
    assert_eq!(made["isolation"], "schema", "{made}");
    assert!(
        members.contains(made["id"].as_str().unwrap()),
        "a plain create did not claim a member: {made}"
    );
    assert_eq!(member_ids(&o.pg, "schema").await.len(), 1);
}
