//! A small W3C WebDriver client over reqwest, driving Debian's headless Chromium
//! through the chromedriver this module starts (no extra crate: the protocol is a
//! handful of JSON calls).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium with its profile in
    /// `profile`; screenshots go to `shots`. Fails, saying what to install, when the
    /// browser is missing: a console test that cannot run must not pass.
    pub async fn start(profile: &Path, shots: PathBuf) -> Self {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the console tests drive a real browser; \
                 install it with `apt-get install -y chromium chromium-driver`"
            );
        }
        std::fs::create_dir_all(&shots).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // chromedriver and the browser it starts in a process group of their own, so
        // that stopping them stops every browser process too, also after a panic.
        let driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            // Chromium's own temp files land in the test's scratch directory, which
            // is removed afterwards.
            .env("TMPDIR", profile)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--no-first-run",
                         format!("--user-data-dir={}", profile.join("profile").display())]
            }
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {r}"))
            .to_string();
        Self {
            driver,
            base,
            session,
            http,
            shots,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        let v = self
            .call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
        assert!(v.is_null(), "navigate to {url}: {v}");
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn try_find(&self, css: &str) -> Option<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        if std::env::var_os("WEBDRIVER_DEBUG").is_some() {
            eprintln!("find {css}: {v}");
        }
        v[ELEMENT].as_str().map(str::to_string)
    }

    /// The element `css` selects, waiting up to 10 s for it (a page still loading).
    pub async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(id) = self.try_find(css).await {
                return id;
            }
            if Instant::now() > deadline {
                panic!(
                    "no element {css:?} on {}:\n{}",
                    self.url().await,
                    self.source().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn exists(&self, css: &str) -> bool {
        self.try_find(css).await.is_some()
    }

    /// Clicks `css`; an element the page replaced before the click (a stale element:
    /// nothing was clicked) is found again, for up to 10 s.
    pub async fn click(&self, css: &str) {
        self.on_element(css, "click", |el| async move {
            self.call(
                reqwest::Method::POST,
                &format!("/element/{el}/click"),
                Some(json!({})),
            )
            .await
        })
        .await;
    }

    /// Types `text` into `css` after clearing it; retried as [`Self::click`] is.
    pub async fn fill(&self, css: &str, text: &str) {
        self.on_element(css, "type into", |el| async move {
            let cleared = self
                .call(
                    reqwest::Method::POST,
                    &format!("/element/{el}/clear"),
                    Some(json!({})),
                )
                .await;
            if !cleared.is_null() {
                return cleared;
            }
            self.call(
                reqwest::Method::POST,
                &format!("/element/{el}/value"),
                Some(json!({"text": text})),
            )
            .await
        })
        .await;
    }

    /// Runs `act` on the element `css` selects until it answers null (done); a stale
    /// element (the page changed under it) is found again, anything else fails.
    async fn on_element<F, Fut>(&self, css: &str, what: &str, act: F)
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Value>,
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = act(self.find(css).await).await;
            if v.is_null() {
                return;
            }
            let stale = v["error"] == "stale element reference";
            assert!(stale && Instant::now() < deadline, "{what} {css}: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of `css`, retried while the page changes under it (a stale element).
    pub async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let el = self.find(css).await;
            let v = self
                .call(reqwest::Method::GET, &format!("/element/{el}/text"), None)
                .await;
            if let Some(t) = v.as_str() {
                return t.to_string();
            }
            assert!(Instant::now() < deadline, "text of {css}: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to 10 s for `css` to read `want` (the page after a post may still be
    /// loading); panics with what it reads instead.
    pub async fn wait_text(&self, css: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.text(css).await;
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css} reads {got:?}, not {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to 10 s for the page's URL to hold `part` (a form that navigates: the
    /// page the click left answers `find` until the new one replaces it).
    pub async fn wait_url(&self, part: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.url().await;
            if url.contains(part) {
                return;
            }
            assert!(Instant::now() < deadline, "still on {url}, not {part:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The browser's cookies, as WebDriver describes them.
    pub async fn cookies(&self) -> Vec<Value> {
        self.call(reqwest::Method::GET, "/cookie", None)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Saves a screenshot of the page as `<name>.png`.
    pub async fn shot(&self, name: &str) {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    pub async fn quit(self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver alone would leave the browser running.
        unsafe { libc::kill(-(self.driver.id() as i32), libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}
