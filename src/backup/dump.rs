//! Running `pg_dump` and `pg_restore`: where they are, how they connect (the
//! connection string on the command line, a password only through `PGPASSWORD`), and
//! what they said when they failed.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::pg::binaries::PgBinaries;
pub use crate::pg::conn::Conn;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    Missing(String),
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
}

/// The client program `name` (`pg_dump`, `pg_restore`): beside the server binaries,
/// else on `$PATH`.
pub fn program(name: &str) -> Result<PathBuf, ToolError> {
    if let Ok(path) = PgBinaries::find()
        .map_err(|_| ())
        .and_then(|b| b.client(name).map_err(|_| ()))
    {
        return Ok(path);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| {
            ToolError::Missing(format!(
                "{name} not found: install the PostgreSQL client package (Debian/Ubuntu: `apt-get install postgresql-client`) or set BERQENAS_PG_BINDIR"
            ))
        })
}

/// The planner settings of `pg_dump`'s session. pg_dump reads the whole catalog
/// whatever `--schema` says, and on a large catalog one of its statements (the
/// materialized views' dependencies, through `pg_depend`, `pg_rewrite` and
/// `pg_class`) can be planned as a nested loop of every relation's dependency row
/// against the views' ones: 23 s of a 25 s dump of one schema among 10,000
/// (docs/backups.md, "Many tenants"). Joined in the order pg_dump writes its joins,
/// each join has an equality to use and the statement takes milliseconds.
pub const PG_DUMP_OPTIONS: &str = "-c join_collapse_limit=1";

/// `pg_dump` of one schema in custom format (compressed), on stdout.
pub fn pg_dump(conn: &Conn, schema: &str, snapshot: Option<&str>) -> Result<Command, ToolError> {
    let mut cmd = Command::new(program("pg_dump")?);
    conn.apply(&mut cmd);
    cmd.env("PGOPTIONS", PG_DUMP_OPTIONS);
    // A quoted pattern matches exactly this name, whatever characters it holds.
    cmd.arg("--format=custom").arg(format!(
        "--schema={}",
        crate::pg::Ident::new(schema).expect("catalog names are valid")
    ));
    if let Some(s) = snapshot {
        cmd.arg(format!("--snapshot={s}"));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.kill_on_drop(true);
    Ok(cmd)
}

/// `pg_restore` of an archive on stdin, in one transaction, owners and privileges
/// left out (the caller re-applies its own). `role`: SET ROLE after connecting, so
/// the objects belong to it; `schema`: only that schema's objects.
pub fn pg_restore(
    conn: &Conn,
    role: Option<&str>,
    schema: Option<&str>,
) -> Result<Command, ToolError> {
    let mut cmd = Command::new(program("pg_restore")?);
    conn.apply(&mut cmd);
    // Row security on: with it off (pg_restore's default), a table whose owner forced
    // row-level security makes the refresh of a materialized view over it fail ("query
    // would be affected by row-level security policy"), and a backup of such a tenant
    // could never be restored. On, the refresh sees exactly what the tenant's own
    // refresh saw; the data itself is loaded before any policy is enabled.
    cmd.args([
        "--single-transaction",
        "--exit-on-error",
        "--no-owner",
        "--no-privileges",
        "--enable-row-security",
    ]);
    if let Some(r) = role {
        cmd.arg(format!("--role={r}"));
    }
    if let Some(s) = schema {
        cmd.arg(format!("--schema={s}"));
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.kill_on_drop(true);
    Ok(cmd)
}

/// Spawns and starts collecting stderr (capped), so a chatty tool never blocks on it.
pub fn spawn(
    mut cmd: Command,
    program: &str,
) -> Result<(Child, tokio::task::JoinHandle<String>), ToolError> {
    let mut child = cmd.spawn().map_err(|source| ToolError::Spawn {
        program: program.to_string(),
        source,
    })?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let collect = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.take(64 * 1024).read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).trim().to_string()
    });
    Ok((child, collect))
}

/// Waits for the tool; an exit other than 0 is an error carrying its stderr.
pub async fn finish(
    mut child: Child,
    stderr: tokio::task::JoinHandle<String>,
    program: &str,
) -> Result<(), ToolError> {
    let status = child.wait().await.map_err(|source| ToolError::Spawn {
        program: program.to_string(),
        source,
    })?;
    let stderr = stderr.await.unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    Err(ToolError::Failed {
        program: program.to_string(),
        status: status.to_string(),
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_dump_joins_in_written_order_and_nothing_else_of_ours_reaches_it() {
        let config: tokio_postgres::Config = "host=/tmp port=5432 user=u dbname=d".parse().unwrap();
        let cmd = pg_dump(&Conn::control(&config, "d"), "tenant_a", None).unwrap();
        let options: Vec<_> = cmd
            .as_std()
            .get_envs()
            .filter(|(k, _)| *k == "PGOPTIONS")
            .map(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(options, [Some(PG_DUMP_OPTIONS.to_string())]);
    }
}
