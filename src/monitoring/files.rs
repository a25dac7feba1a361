//! The rule file under `<data-dir>/monitoring/rules/` for a file-based Prometheus
//! (`rule_files:`). Rendered whole from the registry and replaced atomically (written
//! beside it, then renamed), so a reader sees the old file or the new one, never half;
//! and since it is rendered whole, rendering it again is all a crash ever needs: it
//! needs no journal. Written at start, when an API change on this instance wakes the
//! writer, and every round (changes made by the worker or by another instance).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, Notify};

use crate::platform::Platform;

/// Why the rule file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the registry: {0}")]
    Registry(#[from] super::service::Error),
    #[error("writing the rule file: {0}")]
    Io(#[from] std::io::Error),
}

/// Keeps `<dir>/rules/berqenas-tenants.yml` equal to the registry's rendering.
pub struct RulesFile {
    dir: PathBuf,
    wake: Notify,
    /// The SHA-256 of what was last written, so an unchanged rendering is not
    /// rewritten (the text itself is 15 MB at 10,000 tenants).
    last: Mutex<Option<[u8; 32]>>,
}

/// Renders woken by changes come at most this often: creates at 30 a second would
/// otherwise render the whole file back to back.
const MIN_GAP: Duration = Duration::from_secs(1);

/// ... and after a render, the writer rests this many times as long as it took: at
/// 10,000 tenants a render (15 MB made, hashed, written and synced) came every second
/// while tenants were created, its hash alone 3.3 % of the machine's samples and the
/// render and the write about 2 % more (`perf`, docs/scale.md), for rules that appear
/// a few seconds later instead.
const REST_FACTOR: u32 = 20;

impl RulesFile {
    /// The writer for `<monitoring dir>` (`<data-dir>/monitoring`).
    pub fn new(dir: impl Into<PathBuf>) -> Arc<Self> {
        Arc::new(Self {
            dir: dir.into(),
            wake: Notify::new(),
            last: Mutex::new(None),
        })
    }

    /// The rule file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join("rules").join(super::rules::FILE_NAME)
    }

    /// Asks the writer to render again soon (coalesced: many wakes, one render).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Renders the registry and replaces the file if it changed; whether it did.
    pub async fn refresh(&self, p: &Platform) -> Result<bool, Error> {
        let text = super::service::rules(p).await?;
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let mut last = self.last.lock().await;
        if *last == Some(digest) && self.path().exists() {
            return Ok(false);
        }
        let path = self.path();
        tokio::task::spawn_blocking(move || replace(&path, text.as_bytes()))
            .await
            .map_err(std::io::Error::other)??;
        *last = Some(digest);
        Ok(true)
    }

    /// Renders at each wake (at most once per [`MIN_GAP`], or [`REST_FACTOR`] times
    /// the last render's time if longer: wakes in between make one render after it),
    /// and at least every `every`.
    pub async fn run_forever(self: Arc<Self>, p: Platform, every: Duration) {
        loop {
            let _ = tokio::time::timeout(every, self.wake.notified()).await;
            let started = tokio::time::Instant::now();
            if let Err(e) = self.refresh(&p).await {
                tracing::warn!(error = %e, path = %self.path().display(), "writing the tenant alert rules failed; retrying at the next round");
            }
            tokio::time::sleep(MIN_GAP.max(started.elapsed() * REST_FACTOR)).await;
        }
    }
}

/// Writes `data` to `path` whole or not at all (a temporary file beside it, synced,
/// then renamed over it).
pub fn replace(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.partial",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("rules")
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    // The rename itself made durable.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #[test]
    fn replace_writes_whole_files() {
        let dir = std::env::temp_dir().join(format!("bq-rules-{}", uuid::Uuid::new_v4()));
        let path = dir.join("rules").join("x.yml");
        super::replace(&path, b"one").unwrap();
        super::replace(&path, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
