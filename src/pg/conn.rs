//! How PostgreSQL's client tools (`pg_dump`, `pg_restore`) connect: the connection
//! string on their command line, a password only through `PGPASSWORD`.

use tokio::process::Command;
use tokio_postgres::config::Host;
use tokio_postgres::Config;

use crate::secrets::{ExposeSecret, SecretString};

/// Where and as whom a tool connects.
#[derive(Clone)]
pub struct Conn {
    host: String,
    port: u16,
    pub user: String,
    password: Option<SecretString>,
    pub dbname: String,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Conn({}@{}:{}/{})",
            self.user, self.host, self.port, self.dbname
        )
    }
}

/// A libpq connection-string value, quoted.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl Conn {
    /// The control plane's own connection, to `dbname`.
    pub fn control(config: &Config, dbname: &str) -> Self {
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        Self {
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            user: config.get_user().unwrap_or("postgres").to_string(),
            password: config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned().into()),
            dbname: dbname.to_string(),
        }
    }

    /// The same server and database as another role.
    pub fn as_role(&self, user: &str, password: &SecretString) -> Self {
        Self {
            user: user.to_string(),
            password: Some(password.clone()),
            ..self.clone()
        }
    }

    pub fn to_database(&self, dbname: &str) -> Self {
        Self {
            dbname: dbname.to_string(),
            ..self.clone()
        }
    }

    pub(crate) fn conninfo(&self) -> String {
        format!(
            "host={} port={} user={} dbname={} application_name=berqenas-backup connect_timeout=10",
            quote(&self.host),
            self.port,
            quote(&self.user),
            quote(&self.dbname)
        )
    }

    /// Points a tool's command at this connection (the password only in its
    /// environment; nothing from ours may redirect it).
    pub fn apply(&self, cmd: &mut Command) {
        cmd.arg(format!("--dbname={}", self.conninfo()))
            .arg("--no-password");
        match &self.password {
            Some(p) => cmd.env("PGPASSWORD", p.expose_secret()),
            None => cmd.env_remove("PGPASSWORD"),
        };
        // Nothing from the environment may redirect the tools elsewhere.
        for var in ["PGSERVICE", "PGSERVICEFILE", "PGOPTIONS", "PGPASSFILE"] {
            cmd.env_remove(var);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_quote_values_and_leave_the_password_out() {
        let config: Config = "host='/tmp/x y' port=5433 user='o\\'brien' password=s3cret dbname=db"
            .parse()
            .unwrap();
        let c = Conn::control(&config, "tenant_a");
        let info = c.conninfo();
        assert!(info.contains("user='o\\'brien'"), "{info}");
        assert!(info.contains("dbname='tenant_a'"), "{info}");
        assert!(!info.contains("s3cret"));
    }
}
