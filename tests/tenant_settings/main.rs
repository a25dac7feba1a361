//! Issue 16, items 1-3: tenants' configuration documents, sign-in providers and user
//! invitations, against the real server code on a real PostgreSQL cluster, with a
//! real OIDC issuer (discovery document and JWKS) served by the test over loopback.

#[path = "../common/mod.rs"]
mod common;

mod auth_provider_cli;
mod auth_providers;
mod backup_secrets;
mod config;
mod invitations;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use berqenas::api::{self, AppState};
use common::{TestApp, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const INTEGRATION_TOKEN: &str = "integration-token-for-the-auth-service-0123";

/// Everything the server code logged in this test binary, at debug level: what the
/// secret checks grep.
static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber before the shared cluster installs its own.
fn capture_log() {
    let buf = LOG.get_or_init(Default::default).clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "berqenas=debug,tower_http=debug",
        ))
        .with_writer(move || LogWriter(buf.clone()))
        .try_init();
}

pub fn server_log() -> String {
    String::from_utf8_lossy(&LOG.get_or_init(Default::default).lock().unwrap()).into_owned()
}

/// The production router with an integration token, its platform's invitation
/// lifetime `ttl` and provider checks allowed to reach loopback (`allow_private`).
pub async fn spawn(ttl: std::time::Duration, allow_private: bool) -> TestApp {
    capture_log();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut platform = common::platform(8).await;
    platform.public_url = Some(url.clone());
    platform.sign_in = berqenas::platform::SignIn {
        invitation_ttl: ttl,
        auth_allow_private: allow_private,
    };
    let rt = common::runtime(platform).await;
    let router =
        api::router(AppState::new(rt, TOKEN).with_integration_token(Some(INTEGRATION_TOKEN)));
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    TestApp {
        url,
        http: reqwest::Client::new(),
    }
}

pub async fn app() -> TestApp {
    spawn(berqenas::platform::DEFAULT_INVITATION_TTL, true).await
}

/// A call with no token at all.
pub async fn anonymous(app: &TestApp, path: &str) -> (StatusCode, Value) {
    app.call_with(Method::GET, path, None, None, &[]).await
}

/// The control-plane rows a refused request must leave alone, for one tenant: its
/// configuration versions, providers, users, invitations, audit rows and events.
pub async fn tenant_rows(tenant: &str) -> Vec<String> {
    let pg = common::superuser().await;
    let mut out = Vec::new();
    for (what, sql) in [
        ("config", "SELECT c.version::text || ' ' || c.config::text FROM berqenas.tenant_configs c JOIN berqenas.tenants t ON t.id = c.tenant_id WHERE t.name = $1 ORDER BY 1"),
        ("provider", "SELECT a.kind || ' ' || a.settings::text || ' ' || encode(a.client_secret, 'hex') FROM berqenas.auth_providers a JOIN berqenas.tenants t ON t.id = a.tenant_id WHERE t.name = $1 ORDER BY 1"),
        ("user", "SELECT u.email || ' ' || u.status FROM berqenas.tenant_users u JOIN berqenas.tenants t ON t.id = u.tenant_id WHERE t.name = $1 ORDER BY 1"),
        ("invitation", "SELECT encode(i.token_hash, 'hex') FROM berqenas.invitations i JOIN berqenas.tenants t ON t.id = i.tenant_id WHERE t.name = $1 ORDER BY 1"),
        ("audit", "SELECT id::text || ' ' || action FROM berqenas.audit_log WHERE tenant_name = $1 ORDER BY 1"),
        ("event", "SELECT id::text || ' ' || type FROM berqenas.outbox WHERE tenant_name = $1 ORDER BY 1"),
    ] {
        for r in pg.query(sql, &[&tenant]).await.unwrap() {
            out.push(format!("{what}: {}", r.get::<_, String>(0)));
        }
    }
    out
}

/// Every audit row's and event's text for a tenant (what must never hold a secret).
pub async fn audit_and_events(tenant: &str) -> String {
    let pg = common::superuser().await;
    let mut out = String::new();
    for sql in [
        "SELECT action || ' ' || details::text FROM berqenas.audit_log WHERE tenant_name = $1",
        "SELECT type || ' ' || data::text FROM berqenas.outbox WHERE tenant_name = $1",
    ] {
        for r in pg.query(sql, &[&tenant]).await.unwrap() {
            out.push_str(&r.get::<_, String>(0));
            out.push('\n');
        }
    }
    out
}

/// The events of one type for a tenant, oldest first.
pub async fn events(tenant: &str, event_type: &str) -> Vec<Value> {
    common::superuser()
        .await
        .query(
            "SELECT data FROM berqenas.outbox WHERE tenant_name = $1 AND type = $2 ORDER BY seq",
            &[&tenant, &event_type],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}
