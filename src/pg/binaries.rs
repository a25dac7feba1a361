//! Finds the PostgreSQL server binaries on this machine.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the PostgreSQL programs live. All are in one directory, as every
/// distribution installs them.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    pub bindir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found in $BERQENAS_PG_BINDIR, \
     $PATH, `pg_config --bindir` or /usr/lib/postgresql/*/bin. Install the server package \
     (Debian/Ubuntu: `apt-get install postgresql`; Fedora: `dnf install postgresql-server`; \
     macOS: `brew install postgresql@15`) or set BERQENAS_PG_BINDIR, or point berqenas at an \
     existing server with --database-url"
)]
pub struct NotFound;

const REQUIRED: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

impl PgBinaries {
    /// Looks in order: `$BERQENAS_PG_BINDIR`, `$PATH`, `pg_config --bindir`, then the
    /// newest `/usr/lib/postgresql/<major>/bin` (Debian keeps server binaries off PATH).
    pub fn find() -> Result<Self, NotFound> {
        candidates()
            .into_iter()
            .find(|dir| REQUIRED.iter().all(|b| dir.join(b).is_file()))
            .map(|bindir| Self { bindir })
            .ok_or(NotFound)
    }

    pub fn path(&self, program: &str) -> PathBuf {
        self.bindir.join(program)
    }

    /// psql and pg_dump ship in the client package; say which when missing.
    pub fn client(&self, program: &str) -> Result<PathBuf, std::io::Error> {
        let local = self.path(program);
        if local.is_file() {
            return Ok(local);
        }
        which(program).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{program} not found: install the PostgreSQL client package (Debian/Ubuntu: `apt-get install postgresql-client`)"),
            )
        })
    }
}

fn candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("BERQENAS_PG_BINDIR") {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(initdb) = which("initdb") {
        if let Some(dir) = initdb.parent() {
            dirs.push(dir.to_path_buf());
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !dir.is_empty() {
                dirs.push(PathBuf::from(dir));
            }
        }
    }
    dirs.extend(debian_bindirs(Path::new("/usr/lib/postgresql")));
    dirs.push(PathBuf::from("/usr/local/pgsql/bin"));
    dirs
}

/// `/usr/lib/postgresql/<major>/bin`, newest major first.
fn debian_bindirs(root: &Path) -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, e.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    versions.into_iter().map(|(_, p)| p).collect()
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
