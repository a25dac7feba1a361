//! A real Chroma server (`chroma run`, from the PyPI package `chromadb`) for a test:
//! on a free port of 127.0.0.1, its data in a temporary directory removed when it is
//! dropped. The executable is `BERQENAS_TEST_CHROMA`, else the venv .ci/run installs
//! it into (`${BERQENAS_CI_TOOLS:-/tmp/berqenas-ci-tools}/chroma-venv`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

pub const INSTALL: &str = "python3 -m venv /tmp/berqenas-ci-tools/chroma-venv && /tmp/berqenas-ci-tools/chroma-venv/bin/pip install chromadb==1.5.9 (or run .ci/run; or set BERQENAS_TEST_CHROMA to a `chroma` executable)";

/// The `chroma` executable, or a panic naming how to install it.
pub fn executable() -> PathBuf {
    if let Ok(p) = std::env::var("BERQENAS_TEST_CHROMA") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "BERQENAS_TEST_CHROMA={} is not a file",
            p.display()
        );
        return p;
    }
    let tools =
        std::env::var("BERQENAS_CI_TOOLS").unwrap_or_else(|_| "/tmp/berqenas-ci-tools".into());
    let p = PathBuf::from(tools).join("chroma-venv/bin/chroma");
    assert!(
        p.is_file(),
        "the Chroma server is not installed ({} is missing): {INSTALL}",
        p.display()
    );
    p
}

pub struct Chroma {
    child: Option<Child>,
    pub port: u16,
    pub url: String,
    dir: PathBuf,
    http: reqwest::Client,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Chroma {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("berqenas-chroma-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let mut c = Self {
            child: None,
            port,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            http: reqwest::Client::new(),
        };
        c.run().await;
        c
    }

    /// Starts the server on this one's port and data (again, after [`Chroma::stop`]).
    pub async fn run(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(executable())
            .args([
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--path",
            ])
            .arg(self.dir.join("data"))
            .env("ANONYMIZED_TELEMETRY", "False")
            // Its Python writes nothing of its own into the temp directory the CI checks.
            .env("TMPDIR", &self.dir)
            .env("HOME", &self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let up = self
                .http
                .get(format!("{}/api/v2/heartbeat", self.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("chroma run exited with {status} before it answered");
            }
            assert!(Instant::now() < deadline, "Chroma did not start within 90s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the server (its data stays for [`Chroma::run`]).
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
            let _ = c.wait().await;
        }
    }

    /// Every collection on the server: (name, metadata).
    pub async fn collections(&self) -> Vec<(String, Value)> {
        let v: Value = self
            .http
            .get(format!(
                "{}/api/v2/tenants/default_tenant/databases/default_database/collections?limit=10000",
                self.url
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut all: Vec<(String, Value)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["metadata"].clone(),
                )
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The collection of this name, if there is one: its metadata.
    pub async fn collection(&self, name: &str) -> Option<Value> {
        self.collections()
            .await
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
    }

    /// Records straight from Chroma (not through berqenas): how many the collection has.
    pub async fn count(&self, name: &str) -> u64 {
        let base = format!(
            "{}/api/v2/tenants/default_tenant/databases/default_database/collections",
            self.url
        );
        let c: Value = self
            .http
            .get(format!("{base}/{name}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = c["id"].as_str().unwrap();
        self.http
            .get(format!("{base}/{id}/count"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Chroma {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
        // The process is killed: wait for it briefly so its files are closed.
        if let Some(mut c) = self.child.take() {
            for _ in 0..50 {
                if c.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
