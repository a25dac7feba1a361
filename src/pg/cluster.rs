//! A private PostgreSQL cluster in a directory: initdb on first use, start, stop.
//!
//! `berqenas serve` uses it as the embedded default and the test suite uses it for
//! throw-away clusters. As root the programs run as the `postgres` user, because
//! PostgreSQL refuses to run as root.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nix::unistd::{Gid, Uid, User};

use super::binaries::{NotFound, PgBinaries};

/// The superuser initdb creates; it can only log in through the private socket.
pub const SUPERUSER: &str = "berqenas";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Binaries(#[from] NotFound),
    #[error("running as root needs a `postgres` system user to run PostgreSQL as (Debian's postgresql package creates it; or `useradd --system postgres`), or run berqenas as an ordinary user")]
    NoPostgresUser,
    #[error("the postgres user cannot reach {0}: every parent directory of the data directory must be traversable (chmod o+x) when berqenas runs as root")]
    NotTraversable(PathBuf),
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How to set up a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// berqenas's data directory; the cluster lives in `<dir>/pgdata`.
    pub dir: PathBuf,
    /// TCP port; a free one is picked when `None`.
    pub port: Option<u16>,
    /// Comma-separated addresses PostgreSQL listens on for TCP.
    pub listen_addresses: String,
    /// Trade durability for speed (fsync off): for throw-away test clusters only.
    pub ephemeral: bool,
}

impl ClusterOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            port: None,
            listen_addresses: "127.0.0.1".into(),
            ephemeral: false,
        }
    }
}

/// A running cluster. Dropping it does not stop it; call [`Cluster::stop`].
#[derive(Debug, Clone)]
pub struct Cluster {
    bins: PgBinaries,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    run_as: Option<(Uid, Gid)>,
}

impl Cluster {
    /// Creates the cluster if the directory has none, starts it unless it is already
    /// running (a berqenas killed with SIGKILL leaves it up: we adopt it), and returns it.
    pub fn ensure(opts: &ClusterOptions) -> Result<Self, ClusterError> {
        let bins = PgBinaries::find()?;
        let run_as = if Uid::effective().is_root() {
            let user = User::from_name("postgres")
                .ok()
                .flatten()
                .ok_or(ClusterError::NoPostgresUser)?;
            Some((user.uid, user.gid))
        } else {
            None
        };
        let dir = absolute(&opts.dir)?;
        // As root the directory must be traversable by postgres; its secrets (admin
        // token, key) are files of mode 0600 inside it.
        make_dir(&dir, if run_as.is_some() { 0o755 } else { 0o700 }, None)?;
        if run_as.is_some() {
            check_traversable(&dir)?;
        }
        let cluster = Self {
            pgdata: dir.join("pgdata"),
            socket_dir: dir.join("run"),
            log_file: dir.join("log").join("postgresql.log"),
            port: 0,
            bins,
            run_as,
        };
        make_dir(&cluster.socket_dir, 0o700, run_as)?;
        make_dir(&dir.join("log"), 0o700, run_as)?;
        if !cluster.pgdata.join("PG_VERSION").is_file() {
            make_dir(&cluster.pgdata, 0o700, run_as)?;
            cluster.initdb(opts.ephemeral)?;
        }
        if let Some(port) = cluster.running_port() {
            tracing::info!(
                port,
                "adopting the PostgreSQL cluster that is already running"
            );
            return Ok(Self { port, ..cluster });
        }
        let port = match opts.port {
            Some(p) => p,
            None => match cluster.previous_port().filter(|p| port_is_free(*p)) {
                Some(p) => p,
                None => {
                    let port = free_port().map_err(io_err(&dir))?;
                    if let Some(old) = cluster.previous_port() {
                        tracing::warn!(
                            old,
                            port,
                            "the cluster's previous port is taken: tenants' connection strings change (pin it with --pg-port)"
                        );
                    }
                    port
                }
            },
        };
        let cluster = Self { port, ..cluster };
        cluster.write_config(opts)?;
        cluster.start()?;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The cluster's data directory (its pg_hba.conf is berqenas's to render).
    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    pub fn binaries(&self) -> &PgBinaries {
        &self.bins
    }

    /// Connection string for the superuser through the private unix socket.
    pub fn superuser_dsn(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            self.socket_dir.display(),
            self.port,
            SUPERUSER,
            dbname
        )
    }

    /// Fast shutdown: rolls back open transactions, disconnects clients, checkpoints.
    /// A cluster that is already down (stopped by an operator) is not an error.
    pub fn stop(&self) -> Result<(), ClusterError> {
        if self.running_port().is_none() {
            return Ok(());
        }
        let out = self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"])?;
        check(out, "pg_ctl stop")
    }

    /// Immediate shutdown, for throw-away clusters at process exit.
    pub fn stop_immediately(&self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "10"]);
    }

    fn initdb(&self, ephemeral: bool) -> Result<(), ClusterError> {
        let mut args = vec![
            "-D".to_string(),
            self.pgdata.display().to_string(),
            "-U".into(),
            SUPERUSER.into(),
            "--auth-local=trust".into(),
            "--auth-host=scram-sha-256".into(),
            "--encoding=UTF8".into(),
            "--no-locale".into(),
        ];
        if ephemeral {
            args.push("--no-sync".into());
        }
        let out = self.run(self.bins.path("initdb"), &args)?;
        check(out, "initdb")?;
        let conf = self.pgdata.join("postgresql.conf");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(io_err(&conf))?;
        writeln!(f, "\ninclude_if_exists = 'berqenas.conf'").map_err(io_err(&conf))
    }

    /// The port of the last start (tenants' connection strings name it): kept across
    /// restarts when it is still free.
    fn previous_port(&self) -> Option<u16> {
        let conf = fs::read_to_string(self.pgdata.join("berqenas.conf")).ok()?;
        conf.lines()
            .find_map(|l| l.trim().strip_prefix("port = "))
            .and_then(|p| p.trim().parse().ok())
    }

    /// Rewritten at every start, because the port may change.
    fn write_config(&self, opts: &ClusterOptions) -> Result<(), ClusterError> {
        // Room for tenants' own sessions next to the control pool (16) and the data
        // API's cap (64 by default): see docs/data-api.md. `wal_level = logical`: a
        // tenant moves off this server by logical replication (pg/logical.rs), and
        // several moves at once each need a walsender and a slot on the source, and an
        // apply worker plus table-sync workers on the target: PostgreSQL's defaults
        // (4 logical replication workers, 10 slots) run out at a few concurrent moves.
        // `wal_retrieve_retry_interval`: PostgreSQL 15's launcher starts a new
        // subscription's apply worker at most once per this interval (5 s by default),
        // so a move arriving within 5 s of another one's start waited out the rest
        // (benches/moves, docs/moves.md).
        let mut conf = format!(
            "# written by berqenas at every start; edit postgresql.conf instead\n\
             listen_addresses = '{}'\n\
             port = {}\n\
             unix_socket_directories = '{}'\n\
             unix_socket_permissions = 0700\n\
             password_encryption = 'scram-sha-256'\n\
             max_connections = 400\n\
             wal_level = logical\n\
             max_worker_processes = 32\n\
             max_logical_replication_workers = 16\n\
             max_replication_slots = 32\n\
             max_wal_senders = 32\n\
             wal_retrieve_retry_interval = '200ms'\n",
            opts.listen_addresses.replace('\'', ""),
            self.port,
            self.socket_dir.display().to_string().replace('\'', "''"),
        );
        if opts.ephemeral {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let path = self.pgdata.join("berqenas.conf");
        fs::write(&path, conf).map_err(io_err(&path))?;
        chown(&path, self.run_as)
    }

    fn start(&self) -> Result<(), ClusterError> {
        let out = self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            &self.log_file.display().to_string(),
        ])?;
        if !out.status.success() {
            let tail = fs::read_to_string(&self.log_file)
                .map(|log| log.lines().rev().take(5).collect::<Vec<_>>().join(" | "))
                .unwrap_or_default();
            return Err(ClusterError::Command {
                what: "pg_ctl start".into(),
                detail: format!(
                    "{} (log: {tail})",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }

    /// The port of a postmaster already running on this data directory, if any.
    fn running_port(&self) -> Option<u16> {
        let status = self.pg_ctl(&["status"]).ok()?;
        if !status.status.success() {
            return None;
        }
        let pid_file = fs::read_to_string(self.pgdata.join("postmaster.pid")).ok()?;
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Output, ClusterError> {
        let mut all = vec!["-D".to_string(), self.pgdata.display().to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        self.run(self.bins.path("pg_ctl"), &all)
    }

    fn run(&self, program: PathBuf, args: &[String]) -> Result<Output, ClusterError> {
        let mut cmd = Command::new(&program);
        cmd.args(args).env_remove("PGDATA").env("LC_ALL", "C");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw()).current_dir("/");
        }
        // pg_ctl start leaves the postmaster holding our stdout open; give it none.
        cmd.stdin(std::process::Stdio::null());
        cmd.output().map_err(io_err(&program))
    }
}

fn check(out: Output, what: &str) -> Result<(), ClusterError> {
    if out.status.success() {
        return Ok(());
    }
    Err(ClusterError::Command {
        what: what.into(),
        detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

fn absolute(dir: &Path) -> Result<PathBuf, ClusterError> {
    if dir.is_absolute() {
        return Ok(dir.to_path_buf());
    }
    Ok(std::env::current_dir().map_err(io_err(dir))?.join(dir))
}

fn make_dir(dir: &Path, mode: u32, owner: Option<(Uid, Gid)>) -> Result<(), ClusterError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(io_err(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io_err(dir))?;
    }
    chown(dir, owner)
}

fn chown(path: &Path, owner: Option<(Uid, Gid)>) -> Result<(), ClusterError> {
    if let Some((uid, gid)) = owner {
        nix::unistd::chown(path, Some(uid), Some(gid))
            .map_err(|e| io_err(path)(std::io::Error::from(e)))?;
    }
    Ok(())
}

fn check_traversable(dir: &Path) -> Result<(), ClusterError> {
    for ancestor in dir.ancestors() {
        let meta = fs::metadata(ancestor).map_err(io_err(ancestor))?;
        if meta.permissions().mode() & 0o001 == 0 {
            return Err(ClusterError::NotTraversable(ancestor.to_path_buf()));
        }
    }
    Ok(())
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
