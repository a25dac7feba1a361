//! The operators' web console at `/console`: server-rendered HTML over the same
//! workflows the API calls, signed in with the admin token and then a session cookie.
//! No script is needed to read or act (forms post, the server redirects); the pages
//! carry a strict Content-Security-Policy, so nothing inline would run anyway.

mod audit;
mod backups;
mod charts;
mod failure;
mod html;
mod keys;
mod lifecycle;
mod migrations;
mod network;
mod operations;
mod people;
mod plans;
mod session;
mod signin;
mod tenant_page;
mod tenants;
mod webhooks;

use std::collections::HashMap;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::api::AppState;
pub use failure::Failure;
pub use session::{Operator, Sessions, COOKIE};
pub use signin::Password;

/// A posted form, as field → value.
pub type Fields = HashMap<String, String>;

/// Every console route; the API router merges them.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(tenants::list))
        .route(
            "/console/login",
            get(session::login_form).post(session::login),
        )
        .route("/console/logout", post(session::logout))
        .route("/console/tenants", post(tenants::create))
        .route("/console/tenants/new", get(tenants::new_form))
        .route("/console/tenants/{name}", get(tenant_page::show))
        .route(
            "/console/tenants/{name}/credentials",
            post(tenant_page::credentials),
        )
        .route("/console/tenants/{name}/keys", post(keys::create))
        .route(
            "/console/tenants/{name}/keys/{id}/{action}",
            post(keys::act),
        )
        .route("/console/tenants/{name}/backups", post(backups::take))
        .route(
            "/console/tenants/{name}/backups/{id}/{action}",
            post(backups::act),
        )
        .route(
            "/console/tenants/{name}/backup-policy",
            post(backups::set_policy),
        )
        .route("/console/tenants/{name}/users", post(people::add_user))
        .route(
            "/console/tenants/{name}/users/remove",
            post(people::remove_user),
        )
        .route("/console/tenants/{name}/quotas", post(people::set_quotas))
        .route("/console/tenants/{name}/firewall", post(network::add))
        .route(
            "/console/tenants/{name}/firewall/{id}/remove",
            post(network::remove),
        )
        .route("/console/tenants/{name}/{action}", post(lifecycle::act))
        .route(
            "/console/migrations",
            get(migrations::show).post(migrations::start),
        )
        .route("/console/migrations/{id}", get(migrations::run))
        .route("/console/plans", get(plans::list))
        .route("/console/operations", get(operations::list))
        .route("/console/operations/{id}", get(operations::show))
        .route(
            "/console/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route("/console/webhooks/{id}", get(webhooks::show))
        .route("/console/webhooks/{id}/ping", post(webhooks::ping))
        .route(
            "/console/webhooks/{id}/deliveries/{delivery}/replay",
            post(webhooks::replay),
        )
        .route("/console/audit", get(audit::list))
        .route("/console/audit/verify", post(audit::verify))
        .route("/console/static/console.css", get(stylesheet))
        .layer(middleware::from_fn(security_headers))
}

/// The headers every console answer carries: only this origin's styles and forms, no
/// framing (clickjacking), no caching of pages that may show secrets.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("console.css"),
    )
        .into_response()
}

/// A form field, empty meaning absent.
fn field<'a>(form: &'a Fields, name: &str) -> Option<&'a str> {
    form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}
