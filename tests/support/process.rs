//! The real `berqenas` binary as a child process, on an embedded cluster in a
//! directory of its own: for tests that kill it (SIGKILL through a failpoint, as
//! `kill -9` would) and start it again on the same data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::process::{Child, Command};

pub const TOKEN: &str = "process-test-admin-token-0123";

/// Stops the embedded cluster a test's servers left running and removes its
/// directory, also when the test fails half way.
pub struct Cleanup(pub PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.0.join("pgdata/postmaster.pid").exists() {
            let opts = berqenas::pg::cluster::ClusterOptions::new(&self.0);
            if let Ok(cluster) = berqenas::pg::cluster::Cluster::ensure(&opts) {
                cluster.stop_immediately();
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Server {
    pub child: Child,
    pub url: String,
    http: reqwest::Client,
}

impl Server {
    /// `berqenas serve` on `dir` with `env` added (`BERQENAS_FAILPOINT`,
    /// `BERQENAS_LEASE_SECS`, ...); returns once it has written its URL.
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let url_file = dir.join("server-url");
        let _ = std::fs::remove_file(&url_file);
        let child = Command::new(env!("CARGO_BIN_EXE_berqenas"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env_remove("BERQENAS_DATABASE_URL")
            .env_remove("BERQENAS_FAILPOINT")
            .envs(env.iter().copied())
            .env("BERQENAS_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(url) = std::fs::read_to_string(&url_file) {
                return Self {
                    child,
                    url: url.trim().to_string(),
                    http: reqwest::Client::new(),
                };
            }
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Calls the API as the admin; returns the status and the JSON body (or null).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await?;
        let status = res.status();
        let text = res.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Calls the API with another bearer token (a tenant's API key).
    pub async fn call_as(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: &str,
    ) -> reqwest::Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await?;
        let status = res.status();
        let text = res.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A POST that must get an answer.
    pub async fn post(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, body)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// A call that must succeed; returns its body.
    pub async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (s, b) = self.call(method, path, body).await.unwrap();
        assert!(s.is_success(), "{path}: {s} {b}");
        b
    }

    /// Sends a request the failpoint kills the server in, and waits for the SIGKILL.
    pub async fn killed_by(
        mut self,
        point: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) {
        let res = self.call(method, path, body).await;
        assert!(
            res.is_err(),
            "{point}: the server died mid-request: {res:?}"
        );
        let status = self.child.wait().await.unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{point}"
        );
    }

    /// SIGTERM; the server must exit cleanly within a minute.
    pub async fn stop(&mut self) {
        let pid = self.child.id().unwrap() as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("server stops within 60 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "clean exit after SIGTERM: {status}");
    }
}

/// A superuser connection to the cluster in `dir`: its control database, or another.
pub async fn superuser_in(dir: &Path, database: Option<&str>) -> tokio_postgres::Client {
    let out = Command::new(env!("CARGO_BIN_EXE_berqenas"))
        .args(["psql", "--print-dsn", "--data-dir"])
        .arg(dir)
        .env_remove("BERQENAS_DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut config: tokio_postgres::Config = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if let Some(db) = database {
        config.dbname(db);
    }
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}
