//! `berqenas psql`: psql as the server's superuser (the embedded cluster through its
//! private unix socket), or `--tenant NAME` as that tenant's login role.

use crate::secrets::ExposeSecret;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::ClientArgs;
use crate::pg::binaries::PgBinaries;
use crate::server::EMBEDDED_DATABASE;

#[derive(Debug, Args)]
pub struct PsqlArgs {
    /// Connect as this tenant's login role instead of the superuser.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Print the connection string instead of starting psql.
    #[arg(long)]
    pub print_dsn: bool,
    /// The server's database URL, when it does not use the embedded cluster.
    #[arg(long, env = "BERQENAS_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Extra arguments for psql (after --).
    #[arg(last = true)]
    pub psql_args: Vec<String>,
}

pub async fn run(a: PsqlArgs) -> anyhow::Result<ExitCode> {
    let dsn = match &a.tenant {
        Some(name) => a
            .client
            .client()
            .credentials(name)
            .await?
            .dsn
            .expose_secret()
            .to_string(),
        None => match &a.database_url {
            Some(url) => url.clone(),
            None => embedded_dsn(&a.client.data_dir)?,
        },
    };
    if a.print_dsn {
        println!("{dsn}");
        return Ok(ExitCode::SUCCESS);
    }
    let psql = PgBinaries::find()
        .ok()
        .and_then(|b| b.client("psql").ok())
        .or_else(|| which("psql"))
        .context("psql not found: install the PostgreSQL client package (Debian/Ubuntu: apt-get install postgresql-client)")?;
    let err = std::process::Command::new(psql)
        .arg(&dsn)
        .args(&a.psql_args)
        .exec();
    Err(err).context("starting psql")
}

/// The superuser's DSN through the embedded cluster's socket directory.
fn embedded_dsn(data_dir: &Path) -> anyhow::Result<String> {
    let dir = std::path::absolute(data_dir)?;
    let pid_file = dir.join("pgdata").join("postmaster.pid");
    let pid = std::fs::read_to_string(&pid_file).with_context(|| {
        format!(
            "no running embedded cluster in {} (start `berqenas serve`, or pass --database-url)",
            dir.display()
        )
    })?;
    let port = pid
        .lines()
        .nth(3)
        .map(str::trim)
        .context("unreadable postmaster.pid")?;
    let socket: String =
        url::form_urlencoded::byte_serialize(dir.join("run").to_string_lossy().as_bytes())
            .collect();
    Ok(format!(
        "postgresql://{}@/{}?host={socket}&port={port}",
        crate::pg::cluster::SUPERUSER,
        EMBEDDED_DATABASE
    ))
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
