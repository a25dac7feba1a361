//! Where backup objects live. A trait, so an object store can follow; the one that
//! ships keeps them in a local directory (`<data-dir>/backups` for the embedded
//! cluster, or `--backup-dir` / `BERQENAS_BACKUP_DIR`).

use std::future::Future;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// An object being read.
pub type ObjectReader = Pin<Box<dyn AsyncRead + Send>>;

/// An object being written. It becomes visible under its key only on [`commit`];
/// dropped without it, nothing is left behind.
///
/// [`commit`]: ObjectWriter::commit
pub trait ObjectWriter: AsyncWrite + Send + Unpin {
    fn commit(self: Box<Self>) -> BoxFuture<'static, io::Result<()>>;
}

/// A place for backup objects, addressed by keys like `<tenant id>/<backup id>.bqb`.
pub trait BackupStore: Send + Sync {
    fn create<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<Box<dyn ObjectWriter>>>;
    fn open<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<ObjectReader>>;
    /// Removing a missing object is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>>;
    /// Where the objects are, for people (never a secret).
    fn describe(&self) -> String;
}

pub type Store = Arc<dyn BackupStore>;

/// Keys are made by berqenas from ids; anything else is refused, so a key can never
/// leave the store's directory.
fn check_key(key: &str) -> io::Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 200
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !key
            .split('/')
            .any(|part| part.is_empty() || part.starts_with('.'));
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid backup object key {key:?}"),
        ))
    }
}

/// Objects as files under one directory (mode 0700, files 0600), written to a
/// `.partial` file, synced, then renamed into place. Deleting an object deletes its
/// `.partial` file too: what a process killed mid-write left goes with the
/// compensation of the operation that wrote it.
#[derive(Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

struct LocalWriter {
    file: Option<tokio::fs::File>,
    partial: PathBuf,
    target: PathBuf,
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

impl AsyncWrite for LocalWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.file.as_mut() {
            Some(f) => Pin::new(f).poll_write(cx, buf),
            None => Poll::Ready(Err(io::Error::other("object already committed"))),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.file.as_mut() {
            Some(f) => Pin::new(f).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.file.as_mut() {
            Some(f) => Pin::new(f).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl ObjectWriter for LocalWriter {
    fn commit(mut self: Box<Self>) -> BoxFuture<'static, io::Result<()>> {
        let file = self.file.take();
        let (partial, target) = (self.partial.clone(), self.target.clone());
        Box::pin(async move {
            let Some(mut file) = file else {
                return Err(io::Error::other("object already committed"));
            };
            let result = async {
                file.flush().await?;
                file.sync_all().await?;
                drop(file);
                tokio::fs::rename(&partial, &target).await
            }
            .await;
            if result.is_err() {
                let _ = tokio::fs::remove_file(&partial).await;
            }
            result
        })
    }
}

impl BackupStore for LocalDirStore {
    fn create<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<Box<dyn ObjectWriter>>> {
        Box::pin(async move {
            let target = self.path(key)?;
            let dir = target.parent().expect("keys have a parent").to_path_buf();
            let root = self.root.clone();
            tokio::task::spawn_blocking(move || {
                private_dir(&root)?;
                private_dir(&dir)
            })
            .await
            .map_err(io::Error::other)??;
            let partial = target.with_extension("partial");
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true).mode(0o600);
            let file = tokio::fs::OpenOptions::from(options).open(&partial).await?;
            Ok(Box::new(LocalWriter {
                file: Some(file),
                partial,
                target,
            }) as Box<dyn ObjectWriter>)
        })
    }

    fn open<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<ObjectReader>> {
        Box::pin(async move {
            let file = tokio::fs::File::open(self.path(key)?).await?;
            Ok(Box::pin(file) as ObjectReader)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let path = self.path(key)?;
            for p in [path.with_extension("partial"), path] {
                match tokio::fs::remove_file(&p).await {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    other => other?,
                }
            }
            Ok(())
        })
    }

    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }
}

/// `--backup-dir` / `BERQENAS_BACKUP_DIR` when given, else `<data-dir>/backups`;
pub fn local(dir: Option<&Path>, data_dir: &Path) -> Store {
    let root = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir.join("backups"));
    Arc::new(LocalDirStore::new(root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn keys_cannot_escape_the_directory() {
        for bad in [
            "",
            "../x",
            "a/../b",
            "/etc/passwd",
            "a//b",
            ".hidden",
            "a b",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key("0190-ab/0190-cd.bqb").is_ok());
    }

    #[tokio::test]
    async fn an_object_appears_only_when_committed() {
        // Removed on drop, also when an assertion below fails.
        struct Removed(std::path::PathBuf);
        impl Drop for Removed {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = std::env::temp_dir().join(format!("berqenas-store-{}", std::process::id()));
        let _removed = Removed(dir.clone());
        let store = LocalDirStore::new(&dir);
        let mut w = store.create("t/one.bqb").await.unwrap();
        w.write_all(b"hello").await.unwrap();
        assert!(store.open("t/one.bqb").await.is_err(), "not visible yet");
        w.commit().await.unwrap();
        let mut s = String::new();
        store
            .open("t/one.bqb")
            .await
            .unwrap()
            .read_to_string(&mut s)
            .await
            .unwrap();
        assert_eq!(s, "hello");
        let mut w = store.create("t/two.bqb").await.unwrap();
        w.write_all(b"partial").await.unwrap();
        drop(w);
        assert!(
            !dir.join("t/two.partial").exists(),
            "aborted write leaves nothing"
        );
        store.delete("t/one.bqb").await.unwrap();
        store.delete("t/one.bqb").await.unwrap();
    }
}
