//! An in-process server like `TestApp::spawn()`, that also hands back its state, so a
//! test can drive the quota worker (`run_once`-style) and read the data API's pools.

use berqenas::api::{self, AppState};
use berqenas::dataapi::DataApiConfig;

use crate::common::{platform, runtime, TestApp, TOKEN};

pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789";

pub async fn spawn_with(config: DataApiConfig) -> (TestApp, AppState) {
    // Server errors in the test's own output (shown when it fails).
    let _ = tracing_subscriber::fmt()
        .with_env_filter("berqenas=info")
        .with_test_writer()
        .try_init();
    let state = AppState::new(runtime(platform(16).await).await, TOKEN)
        .with_metrics_token(Some(METRICS_TOKEN))
        .with_data_api(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = api::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (
        TestApp {
            url,
            http: reqwest::Client::new(),
        },
        state,
    )
}

pub async fn spawn() -> (TestApp, AppState) {
    spawn_with(DataApiConfig::default()).await
}
