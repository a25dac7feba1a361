//! Item 1: the configuration document.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{self, unique};

fn builtin(plan: &str) -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 1000, "rate_limit_per_minute": 60,
           "features": {"basic_chat": true}, "plan": plan})
}

#[tokio::test]
async fn every_isolation_mode_starts_with_seed_004s_defaults_and_the_tenant_reads_its_own() {
    let app = crate::app().await;
    for mode in ["schema", "shared", "database"] {
        let name = unique(&format!("cfg-{mode}"));
        let created = app
            .create_with(
                json!({"name": name, "isolation": mode, "plan": "starter", "public_api": true}),
            )
            .await;
        let (s, c) = app
            .call(Method::GET, &format!("/api/v1/tenants/{name}/config"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{mode}: {c}");
        assert_eq!(c["version"], 1, "{mode}: {c}");
        assert_eq!(c["config"], builtin("starter"), "{mode}");
        let key = created["api_key"].as_str().unwrap();
        let (s, mine) = app
            .call_with(Method::GET, "/api/v1/me/config", None, Some(key), &[])
            .await;
        assert_eq!(s, StatusCode::OK, "{mode}: {mine}");
        assert_eq!(mine["config"], c["config"], "{mode}");
        // The admin token is not a tenant's key.
        let (s, _) = app.call(Method::GET, "/api/v1/me/config", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, h) = app
            .call(
                Method::GET,
                &format!("/api/v1/tenants/{name}/config/history"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["versions"].as_array().unwrap().len(), 1, "{h}");
        assert!(h["versions"][0]["patch"].is_null());
    }
}

#[tokio::test]
async fn a_patch_merges_is_versioned_audited_and_announced() {
    let app = crate::app().await;
    let name = unique("cfg-patch");
    app.create_with(json!({"name": name, "isolation": "schema", "plan": "starter"}))
        .await;
    let path = format!("/api/v1/tenants/{name}/config");
    let (s, c) = app
        .call(
            Method::PATCH,
            &path,
            Some(json!({"max_tokens": 2000, "features": {"rag": true, "basic_chat": null}, "model": null})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["version"], 2);
    assert_eq!(
        c["config"],
        json!({"max_tokens": 2000, "rate_limit_per_minute": 60, "features": {"rag": true}, "plan": "starter"})
    );
    let (_, again) = app.call(Method::GET, &path, None).await;
    assert_eq!(again["config"], c["config"]);
    let (_, h) = app
        .call(Method::GET, &format!("{path}/history"), None)
        .await;
    let versions: Vec<i64> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [2, 1]);
    assert_eq!(h["versions"][0]["patch"]["max_tokens"], 2000);
    assert_eq!(h["versions"][0]["actor"], "admin");
    let pg = common::superuser().await;
    assert_eq!(
        common::audit_count(&pg, &name, "tenant_config_changed").await,
        1
    );
    let events = crate::events(&name, "tenant.config_changed").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["version"], 2);
    assert_eq!(events[0]["config"], c["config"]);
    // An empty patch makes no version.
    let (s, same) = app.call(Method::PATCH, &path, Some(json!({}))).await;
    assert_eq!((s, same["version"].clone()), (StatusCode::OK, json!(2)));
}

#[tokio::test]
async fn plan_defaults_and_their_schema_govern_new_tenants_and_every_patch() {
    let app = crate::app().await;
    let plan_path = "/api/v1/plans/custom/config-defaults";
    let schema = json!({
        "type": "object",
        "required": ["model", "max_tokens"],
        "properties": {
            "model": {"type": "string"},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 4096},
            "features": {"type": "object", "additionalProperties": {"type": "boolean"}}
        }
    });
    // Refusals name the field and store nothing.
    for (body, field) in [
        (json!({"defaults": [1]}), "defaults"),
        (
            json!({"defaults": {"model": "m", "max_tokens": 10}, "schema": {"type": "no-such-type"}}),
            "schema",
        ),
        (
            json!({"defaults": {"model": "m", "max_tokens": 99999}, "schema": schema}),
            "defaults.max_tokens",
        ),
        (
            json!({"defaults": {"model": "m", "plan": "x"}}),
            "defaults.plan",
        ),
        (json!({"defaults": {}, "colour": 1}), "colour"),
    ] {
        let (s, b) = app.call(Method::PUT, plan_path, Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
        assert_eq!(b["error"]["field"], field, "{body}: {b}");
    }
    let (_, shown) = app.call(Method::GET, plan_path, None).await;
    assert_eq!(
        shown["defaults"]["model"], "gpt-4o-mini",
        "still the built-in: {shown}"
    );
    let (s, b) = app
        .call(
            Method::PUT,
            "/api/v1/plans/no-such-plan/config-defaults",
            Some(json!({"defaults": {}})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");

    let defaults = json!({"model": "claude", "max_tokens": 500, "features": {"basic_chat": true, "rag": false}});
    let (s, b) = app
        .call(
            Method::PUT,
            plan_path,
            Some(json!({"defaults": defaults, "schema": schema})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let name = unique("cfg-schema");
    app.create_with(json!({"name": name, "isolation": "shared", "plan": "custom"}))
        .await;
    let path = format!("/api/v1/tenants/{name}/config");
    let (_, c) = app.call(Method::GET, &path, None).await;
    let mut want = defaults.clone();
    want["plan"] = json!("custom");
    assert_eq!(c["config"], want);

    let before = crate::tenant_rows(&name).await;
    for (patch, field) in [
        (json!({"max_tokens": 99999}), "max_tokens"),
        (json!({"max_tokens": "many"}), "max_tokens"),
        (json!({"features": {"rag": "yes"}}), "features.rag"),
        (json!({"model": null}), "config"),
        (json!({"plan": "enterprise"}), "plan"),
    ] {
        let (s, b) = app.call(Method::PATCH, &path, Some(patch.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{patch}: {b}");
        assert_eq!(b["error"]["field"], field, "{patch}: {b}");
    }
    // A JSON Patch (an array) is not a merge patch: the body extractor refuses it.
    let (s, b) = app
        .call(Method::PATCH, &path, Some(json!([{"op": "replace"}])))
        .await;
    assert_eq!(
        (s, b["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("malformed_json")),
        "{b}"
    );
    assert_eq!(
        crate::tenant_rows(&name).await,
        before,
        "a refused patch changed something"
    );
    let (s, b) = app
        .call(Method::PATCH, &path, Some(json!({"max_tokens": 4096})))
        .await;
    assert_eq!((s, b["version"].clone()), (StatusCode::OK, json!(2)), "{b}");
    // Other tests create tenants on the built-in defaults: put them back.
    let (s, _) = app
        .call(
            Method::PUT,
            plan_path,
            Some(
                json!({"defaults": {"model": "gpt-4o-mini", "max_tokens": 1000,
            "rate_limit_per_minute": 60, "features": {"basic_chat": true}}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn the_cli_gets_and_sets_values_parsed_as_json_with_dotted_keys() {
    let app = crate::app().await;
    let name = unique("cfg-cli");
    app.create_with(json!({"name": name, "isolation": "schema", "plan": "starter"}))
        .await;
    let out = common::cli(
        &app,
        &[
            "tenant",
            "config",
            "set",
            &name,
            "max_tokens=2000",
            "model=gpt-4o",
            "features.rag=true",
            "-o",
            "json",
        ],
    )
    .await;
    let set = common::stdout_json(&out);
    assert_eq!(set["version"], 2, "{set}");
    let out = common::cli(&app, &["tenant", "config", "get", &name, "-o", "json"]).await;
    let got = common::stdout_json(&out);
    assert_eq!(got["config"]["max_tokens"], 2000);
    assert_eq!(got["config"]["model"], "gpt-4o");
    assert_eq!(
        got["config"]["features"],
        json!({"basic_chat": true, "rag": true})
    );
    let out = common::cli(&app, &["tenant", "config", "history", &name]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("v2") && text.contains("v1"),
        "{text}"
    );
    let out = common::cli(&app, &["plan", "config-defaults", "starter", "-o", "json"]).await;
    assert_eq!(common::stdout_json(&out)["defaults"]["max_tokens"], 1000);
    let out = common::cli(&app, &["tenant", "config", "set", &name, "novalue"]).await;
    assert!(!out.status.success());
}

#[tokio::test]
async fn a_plan_change_carries_into_the_document_as_a_new_version() {
    let app = crate::app().await;
    let name = unique("cfg-plan");
    app.create_with(json!({"name": name, "isolation": "schema", "plan": "starter"}))
        .await;
    let (s, b) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/tenants/{name}"),
            Some(json!({"plan": "professional"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, c) = app
        .call(Method::GET, &format!("/api/v1/tenants/{name}/config"), None)
        .await;
    assert_eq!(
        (c["version"].clone(), c["config"]["plan"].clone()),
        (json!(2), json!("professional")),
        "{c}"
    );
    assert_eq!(c["config"]["max_tokens"], 1000);
    assert_eq!(crate::events(&name, "tenant.config_changed").await.len(), 1);
}
