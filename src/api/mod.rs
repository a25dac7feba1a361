//! The REST API: routes, admin authentication, and the OpenAPI document. Handlers
//! authorize, decode, call the domain, encode; nothing else.

pub mod api_keys;
pub mod audit;
pub mod auth_providers;
pub mod backups;
pub mod bearer;
pub mod client_addr;
pub mod config;
pub mod data;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod invitations;
pub mod lifecycle;
pub mod metrics;
pub mod migrations;
pub mod monitoring;
pub mod moves;
pub mod network;
pub mod onboarding_steps;
pub mod openapi;
pub mod operations;
pub mod quotas;
pub mod ratelimit;
pub mod realtime;
pub mod servers;
pub mod strict_json;
pub mod tenant_key;
pub mod tenants;
pub mod users;
pub mod vectors;
pub mod webhooks;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use subtle::ConstantTimeEq;

use crate::problem::{Kind, Problem};
use crate::workflows::Runtime;
use error::ApiError;

/// What every handler can reach. axum clones the state for each handler and
/// middleware a request passes through: one reference count to bump, not one per
/// part. Cloning and dropping the parts one by one was 3.4 % of the server's CPU
/// samples under `GET /api/v1/tenants/{name}` (`perf`, docs/scale.md).
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// [`AppState`]'s parts.
#[derive(Clone)]
pub struct AppStateInner {
    /// The platform and its operation engine (dereferences to the platform).
    pub platform: Arc<Runtime>,
    admin_token: Arc<str>,
    /// Opens `/metrics` and nothing else.
    metrics_token: Option<Arc<str>>,
    /// Opens `/api/v1/integration/...` (the sign-in providers' secrets) and nothing
    /// else; `None`: those endpoints are closed.
    integration_token: Option<Arc<str>>,
    /// Per-tenant rate limits (API calls, realtime events).
    pub limits: Arc<crate::quota::rate::RateLimits>,
    /// The tenant data API's connection pools.
    pub data: Arc<crate::dataapi::DataApi>,
    /// Where webhooks may be sent (`--webhook-allow-private`).
    pub webhooks: crate::events::webhooks::Settings,
    /// Wakes this instance's webhook relay (a ping or a replay is sent at once).
    pub relay_wake: Arc<tokio::sync::Notify>,
    /// The web console's signed-in sessions (kept in memory: a restart signs out).
    pub console: Arc<crate::console::Sessions>,
    /// Monitoring: the scrape targets to announce, the rule file to keep written.
    pub monitoring: monitoring::Settings,
    /// This server's realtime feeds and their subscribers.
    pub realtime: Arc<crate::realtime::Hub>,
    /// The background jobs this instance is elected for (docs/instances.md).
    pub elected: Arc<crate::pg::election::Elected>,
}

impl AppState {
    pub fn new(runtime: Arc<Runtime>, admin_token: &str) -> Self {
        Self(Arc::new(AppStateInner {
            platform: runtime,
            admin_token: admin_token.into(),
            metrics_token: None,
            integration_token: None,
            limits: Default::default(),
            data: Default::default(),
            webhooks: Default::default(),
            relay_wake: Default::default(),
            console: Default::default(),
            monitoring: Default::default(),
            realtime: Default::default(),
            elected: Default::default(),
        }))
    }

    /// The parts, to set while the state is being built (before the router shares
    /// it: nothing is copied then).
    fn parts(&mut self) -> &mut AppStateInner {
        Arc::make_mut(&mut self.0)
    }

    /// The jobs this instance holds, as its campaign keeps them.
    pub fn with_elected(mut self, elected: Arc<crate::pg::election::Elected>) -> Self {
        self.parts().elected = elected;
        self
    }

    /// Monitoring settings: the targets HTTP service discovery announces, and the
    /// rule file a change wakes.
    pub fn with_monitoring(mut self, settings: monitoring::Settings) -> Self {
        self.parts().monitoring = settings;
        self
    }

    /// Webhook settings, and the relay a ping or replay wakes.
    pub fn with_webhooks(
        mut self,
        settings: crate::events::webhooks::Settings,
        relay_wake: Arc<tokio::sync::Notify>,
    ) -> Self {
        self.parts().webhooks = settings;
        self.parts().relay_wake = relay_wake;
        self
    }

    /// Whether `presented` is the admin token (compared in constant time).
    pub fn is_admin_token(&self, presented: &str) -> bool {
        bool::from(presented.as_bytes().ct_eq(self.admin_token.as_bytes()))
    }

    /// A token that may read `/metrics` (the admin token always may).
    pub fn with_metrics_token(mut self, token: Option<&str>) -> Self {
        self.parts().metrics_token = token.map(Into::into);
        self
    }

    /// The console also opens with this password (`--console-password`).
    pub fn with_console_password(mut self, password: crate::console::Password) -> Self {
        self.parts().console = Arc::new(crate::console::Sessions::with_password(password));
        self
    }

    /// A token for the platform's auth service: it reads the sign-in providers'
    /// secrets, which the admin token cannot.
    pub fn with_integration_token(mut self, token: Option<&str>) -> Self {
        self.parts().integration_token = token.map(Into::into);
        self
    }

    /// The data API with these connection limits.
    pub fn with_data_api(mut self, config: crate::dataapi::DataApiConfig) -> Self {
        self.parts().data = Arc::new(crate::dataapi::DataApi::new(config));
        self
    }
}

/// Who did it, for the audit trail.
pub const ADMIN_ACTOR: &str = "admin";

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/tenants", get(tenants::list).post(tenants::create))
        .route("/tenant", axum::routing::post(tenants::create))
        .route(
            "/tenants/{name}",
            get(tenants::get)
                .patch(tenants::update)
                .delete(tenants::delete),
        )
        .route(
            "/tenant/{name}",
            get(tenants::get)
                .patch(tenants::update)
                .delete(tenants::delete),
        )
        .route("/tenants/{name}/credentials", get(tenants::credentials))
        .route(
            "/tenants/{name}/credentials/rotate",
            post(tenants::rotate_credentials),
        )
        .route("/tenants/{name}/users", get(users::list).post(users::add))
        .route(
            "/tenants/{name}/users/{email}",
            axum::routing::delete(users::remove),
        )
        .route("/tenants/{name}/suspend", post(lifecycle::suspend))
        .route("/tenants/{name}/resume", post(lifecycle::resume))
        .route("/tenants/{name}/activate", post(lifecycle::activate))
        .route("/tenants/{name}/move", post(moves::start))
        .route(
            "/tenants/{name}/api-keys",
            get(api_keys::list).post(api_keys::create),
        )
        .route(
            "/tenants/{name}/api-keys/{id}",
            axum::routing::delete(api_keys::revoke),
        )
        .route(
            "/tenants/{name}/api-keys/{id}/rotate",
            post(api_keys::rotate),
        )
        .route("/tenants/{name}/audit", get(audit::tenant))
        .route("/audit", get(audit::list))
        .route("/audit/verify", get(audit::verify))
        .route("/events", get(events::list))
        .route(
            "/tenants/{name}/quotas",
            get(quotas::limits).put(quotas::update),
        )
        .route("/tenants/{name}/limits", get(quotas::limits))
        .route(
            "/tenants/{name}/usage",
            get(quotas::summary).post(quotas::increment),
        )
        .route("/tenants/{name}/resources", get(quotas::resources))
        .route("/plans", get(tenants::plans))
        .route("/migrations", axum::routing::post(migrations::start))
        .route("/migrations/status", get(migrations::status))
        .route("/migrations/{id}", get(migrations::get))
        .route(
            "/tenants/{name}/backups",
            get(backups::list).post(backups::create),
        )
        .route("/tenants/{name}/backups/{id}", get(backups::get))
        .route(
            "/tenants/{name}/backups/{id}/restore",
            axum::routing::post(backups::restore),
        )
        .route(
            "/tenants/{name}/backups/{id}/verify",
            axum::routing::post(backups::verify),
        )
        .route("/backups/{id}", get(backups::get_by_id))
        .route(
            "/backups/{id}/verify",
            axum::routing::post(backups::verify_by_id),
        )
        .route(
            "/tenants/{name}/backup-policy",
            get(backups::get_policy)
                .put(backups::put_policy)
                .delete(backups::delete_policy),
        )
        .route(
            "/plans/{name}/backup-policy",
            get(backups::get_plan_policy).put(backups::put_plan_policy),
        )
        .route(
            "/tenants/{name}/restore",
            axum::routing::post(backups::restore_tenant),
        )
        .route("/tenants/{name}/network", get(network::view))
        .route(
            "/tenants/{name}/firewall",
            get(network::list).post(network::add).put(network::replace),
        )
        .route(
            "/tenants/{name}/firewall/{id}",
            axum::routing::delete(network::remove),
        )
        .route(
            "/tenants/{name}/vpn/peers",
            get(network::peers).post(network::add_peer),
        )
        .route(
            "/tenants/{name}/vpn/peers/{peer}",
            axum::routing::delete(network::remove_peer),
        )
        .route(
            "/onboarding-steps",
            get(onboarding_steps::list).post(onboarding_steps::create),
        )
        .route(
            "/onboarding-steps/{name}",
            get(onboarding_steps::get).delete(onboarding_steps::remove),
        )
        .route("/servers", get(servers::list).post(servers::add))
        .route(
            "/servers/{name}",
            get(servers::get)
                .patch(servers::update)
                .delete(servers::remove),
        )
        .route("/operations", get(operations::list))
        .route("/operations/{id}", get(operations::get))
        .route("/operations/{id}/abort", post(operations::abort))
        .route("/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/webhooks/{id}/rotate-secret", post(webhooks::rotate))
        .route("/webhooks/{id}/ping", post(webhooks::ping))
        .route("/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/webhooks/{id}/deliveries/{delivery_id}/replay",
            post(webhooks::replay_one),
        )
        .route("/webhooks/{id}/replay", post(webhooks::replay_range))
        .route(
            "/tenants/{name}/realtime/publish",
            post(realtime::admin_publish),
        )
        .route(
            "/tenants/{name}/realtime/stream",
            get(realtime::admin_stream),
        )
        .route("/tenants/{name}/realtime/tables", post(realtime::tables))
        .route("/status", get(health::status))
        .route(
            "/tenants/{name}/config",
            get(config::get).patch(config::patch),
        )
        .route("/tenants/{name}/config/history", get(config::history))
        .route(
            "/plans/{name}/config-defaults",
            get(config::get_plan_defaults).put(config::put_plan_defaults),
        )
        .route(
            "/tenants/{name}/auth-providers/{kind}",
            get(auth_providers::get)
                .put(auth_providers::put)
                .delete(auth_providers::delete),
        )
        .route(
            "/tenants/{name}/auth-providers/{kind}/test",
            post(auth_providers::test),
        )
        .route(
            "/tenants/{name}/monitoring",
            get(monitoring::get).put(monitoring::put),
        )
        .route(
            "/tenants/{name}/monitoring/dashboard",
            get(monitoring::dashboard),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            monitoring::wake_after_change,
        ))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin))
        // The platform's auth service, with its own token (never the admin's).
        .merge(
            Router::new()
                .route(
                    "/integration/tenants/{name}/auth-providers",
                    get(auth_providers::integration),
                )
                .route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    require_integration,
                )),
        )
        // An invitee has no token: the link's own token is the secret.
        .route("/invitations/{token}", get(invitations::accept))
        .route("/me/config", get(config::me))
        // What Prometheus reads: the metrics token opens these too (docs/monitoring.md).
        .route("/monitoring/rules", get(monitoring::rules))
        .route("/monitoring/targets", get(monitoring::targets))
        // The API's own description is public: it holds no tenant data.
        .route("/openapi.json", get(openapi::document))
        // Tenant-facing endpoints authenticate with the tenant's API key instead.
        // An onboarding step's callback authenticates with the step's own signature
        // (or the admin token): see workflows::onboarding_callback.
        .route(
            "/operations/{id}/steps/{name}/complete",
            post(operations::complete_step),
        )
        .route("/me", get(tenant_key::me))
        .route("/query", axum::routing::post(data::query))
        .route("/realtime/publish", post(realtime::publish))
        .route("/realtime/stream", get(realtime::stream))
        .route("/vectors/upsert", post(vectors::upsert))
        .route("/vectors/query", post(vectors::query));
    Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::scrape))
        .nest("/api/v1", v1)
        // The operators' console authenticates with a session cookie of its own.
        .merge(crate::console::routes())
        .fallback(not_found)
        .layer(middleware::from_fn(metrics::track))
        .layer(DefaultBodyLimit::max(extract::MAX_BODY))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError(Problem::new(
        Kind::NotFound,
        "not_found",
        "no such endpoint",
    ))
}

/// `Authorization: Bearer <integration token>`, compared in constant time; the admin
/// token is refused here, and without `--integration-token` every call is.
async fn require_integration(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let presented = bearer::token(req.headers());
    let ok = match (presented, &state.integration_token) {
        (Some(p), Some(t)) => bool::from(p.as_bytes().ct_eq(t.as_bytes())),
        _ => false,
    };
    if !ok {
        let mut res = ApiError(Problem::new(
            Kind::Unauthorized,
            "unauthorized",
            "missing or wrong integration token (the admin token does not open this): send Authorization: Bearer <integration token>",
        ))
        .into_response();
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return res;
    }
    next.run(req).await
}

/// `Authorization: Bearer <admin token>`, compared in constant time.
async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let presented = bearer::token(req.headers());
    let ok = presented.is_some_and(|t| state.is_admin_token(t));
    if !ok {
        let mut res = ApiError(Problem::new(
            Kind::Unauthorized,
            "unauthorized",
            "missing or wrong admin token: send Authorization: Bearer <token>",
        ))
        .into_response();
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return res;
    }
    next.run(req).await
}
