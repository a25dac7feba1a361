//! A real PgBouncer (Debian's `pgbouncer`) for the tests, run with the configuration the
//! deployment ships (`deploy/pgbouncer/pgbouncer.ini`, only addresses, paths and a
//! timeout changed), in front of the test cluster or another one.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berqenas::pg::pgbouncer::AUTH_QUERY;
use serde_json::Value;
use tokio_postgres::SimpleQueryMessage;

pub const AUTH_USER: &str = "berqenas_pgbouncer_auth";
pub const AUTH_PASSWORD: &str = "auth-pass-3141592653";
pub const ADMIN_USER: &str = "pgbouncer_admin";
pub const ADMIN_PASSWORD: &str = "admin-pass-2718281828";

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// A PgBouncer of its own for one test; stopped, and its directory removed, on drop.
pub struct Bouncer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Bouncer {
    /// Starts PgBouncer in front of the test cluster (as `postgres` when the tests run
    /// as root: PgBouncer refuses root), and waits until it takes connections.
    pub async fn start() -> Self {
        let db = crate::common::database().await;
        Self::in_front_of(&db.endpoint.host, db.endpoint.port).await
    }

    /// Starts PgBouncer in front of the server at `host`:`port`.
    pub async fn in_front_of(host: &str, server_port: u16) -> Self {
        assert!(
            std::path::Path::new(PGBOUNCER).exists(),
            "{PGBOUNCER} is missing: apt-get install pgbouncer (.ci/run does)"
        );
        let dir = crate::common::scratch_dir("pgbouncer");
        let port = free_port();
        std::fs::write(
            dir.join("userlist.txt"),
            format!("\"{AUTH_USER}\" \"{AUTH_PASSWORD}\"\n\"{ADMIN_USER}\" \"{ADMIN_PASSWORD}\"\n"),
        )
        .unwrap();
        let ini = shipped_ini(&[
            ("*", format!("host={host} port={server_port}")),
            ("listen_addr", "127.0.0.1".into()),
            ("listen_port", port.to_string()),
            ("auth_file", format!("{}/userlist.txt", dir.display())),
            // Shorter than shipped: a held client's wait ends sooner in the tests.
            ("query_wait_timeout", "5".into()),
        ]);
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        let log = std::fs::File::create(dir.join("pgbouncer.log")).unwrap();
        let mut cmd = Command::new(PGBOUNCER);
        cmd.arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if nix::unistd::geteuid().is_root() {
            use std::os::unix::process::CommandExt;
            let user = nix::unistd::User::from_name("postgres")
                .unwrap()
                .expect("a postgres user (Debian's postgresql package creates it)");
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        let child = cmd.spawn().expect("starting pgbouncer");
        let bouncer = Self { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not start: {}",
                bouncer.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bouncer
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    pub fn admin_url(&self) -> String {
        format!(
            "postgresql://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{}/pgbouncer",
            self.port
        )
    }

    /// Connects through PgBouncer as `user` with `password` to `database`.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        database: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(database)
            .connect_timeout(Duration::from_secs(5))
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// Connects with a tenant's own credentials (as berqenas handed them out).
    pub async fn connect_as(
        &self,
        t: &Value,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let c = &t["credentials"];
        self.connect(
            c["user"].as_str().unwrap(),
            c["password"].as_str().unwrap(),
            c["database"].as_str().unwrap(),
        )
        .await
    }

    /// The server connections PgBouncer holds for `user`, from its admin console.
    pub async fn servers_of(&self, user: &str) -> usize {
        let (admin, conn) = tokio_postgres::connect(&self.admin_url(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("admin console: {e}; log: {}", self.log()));
        tokio::spawn(conn);
        admin
            .simple_query("SHOW SERVERS")
            .await
            .unwrap()
            .iter()
            .filter(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get("user") == Some(user)))
            .count()
    }
}

/// deploy/pgbouncer/pgbouncer.ini, the file the deployment ships, with these keys set
/// to this test's values (each must be in the file: the test runs what ships).
fn shipped_ini(overrides: &[(&str, String)]) -> String {
    let shipped = include_str!("../../deploy/pgbouncer/pgbouncer.ini");
    let mut seen = vec![false; overrides.len()];
    let lines: Vec<String> = shipped
        .lines()
        .map(|line| {
            let key = line.split('=').next().unwrap_or("").trim();
            match overrides
                .iter()
                .position(|(k, _)| *k == key && !line.starts_with(';'))
            {
                Some(i) => {
                    seen[i] = true;
                    format!("{key} = {}", overrides[i].1)
                }
                None => line.to_string(),
            }
        })
        .collect();
    for (i, (k, _)) in overrides.iter().enumerate() {
        assert!(seen[i], "{k} is not in deploy/pgbouncer/pgbouncer.ini");
    }
    for (key, value) in [
        ("pool_mode", "transaction"),
        ("auth_type", "scram-sha-256"),
        ("auth_user", AUTH_USER),
        ("auth_query", AUTH_QUERY),
        ("admin_users", ADMIN_USER),
    ] {
        assert!(
            shipped.lines().any(|l| l == format!("{key} = {value}")),
            "deploy/pgbouncer/pgbouncer.ini: {key} = {value}"
        );
    }
    lines.join("\n") + "\n"
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
