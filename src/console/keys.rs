//! API keys: add (the key shown once), rotate (the new one shown once), revoke.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use secrecy::ExposeSecret;

use super::{field, html, Failure, Fields, Operator};
use crate::api::AppState;
use crate::problem::Kind;
use crate::tenant::api_keys::{CreateApiKey, RotateApiKey};
use crate::workflows::changes;

fn shown_once(op: &Operator, tenant: &str, title: &str, key: &str, prefix: &str) -> Response {
    let body = format!(
        "<h2>{}</h2><section class=\"secret\"><p><strong>Shown once:</strong> copy it now; \
         berqenas keeps only a hash.</p><p><code id=\"new-key\">{}</code></p><p>Prefix <code id=\"new-key-prefix\">{}</code></p></section>\
         <p><a href=\"/console/tenants/{3}\" id=\"back\">Back to {3}</a></p>",
        html::esc(title),
        html::esc(key),
        html::esc(prefix),
        html::esc(tenant),
    );
    (StatusCode::CREATED, html::page(title, op, &body)).into_response()
}

pub async fn create(
    State(state): State<AppState>,
    op: Operator,
    Path(name): Path<String>,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    let req = CreateApiKey {
        name: field(&form, "name").map(str::to_string),
        expires_in: field(&form, "expires_in").map(str::to_string),
    };
    let k = changes::create_key(&state.platform, &name, &req, &op.actor).await?;
    Ok(shown_once(
        &op,
        &name,
        "New API key",
        k.api_key.expose_secret(),
        &k.key.prefix,
    ))
}

pub async fn act(
    State(state): State<AppState>,
    op: Operator,
    Path((name, id, action)): Path<(String, String, String)>,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    match action.as_str() {
        "revoke" => {
            changes::revoke_key(&state.platform, &name, &id, &op.actor).await?;
            Ok(Redirect::to(&format!("/console/tenants/{name}#keys")).into_response())
        }
        "rotate" => {
            let req = RotateApiKey {
                expires_in: field(&form, "expires_in").map(str::to_string),
            };
            let r = changes::rotate_key(&state.platform, &name, &id, &req, &op.actor).await?;
            Ok(shown_once(
                &op,
                &name,
                "Rotated API key",
                r.api_key.expose_secret(),
                &r.key.prefix,
            ))
        }
        other => Err(Failure::new(
            Kind::NotFound,
            "not_found",
            format!("no key action {other:?}"),
        )),
    }
}
