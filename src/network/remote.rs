//! pg_hba.conf of a server other than `default`, which berqenas reaches over SQL only
//! (no file system beside it): read with `pg_read_file`, written with `COPY ... TO`
//! (both need superuser there, or `pg_read_server_files` and `pg_write_server_files`),
//! checked with `pg_hba_file_rules` before the reload, the previous file put back on
//! any error. Before each write the file as it was is kept beside it
//! (`pg_hba.conf.berqenas-previous`): `COPY` is not an atomic rename, so an operator
//! has it should the server stop in the middle of one.

use deadpool_postgres::{GenericClient, Pool};
use serde::{Deserialize, Serialize};

use super::enforce::{control_ranges, end_sessions, hba_errors, reload, LOCK};
use super::{hba, Error};
use crate::pg::Literal;
use crate::store::network::{self as store, Restricted};

/// What a render on one server did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerReport {
    pub server: String,
    pub tenants: usize,
    pub hba_lines: usize,
    pub sessions_ended: i64,
    /// `enforced`, or why not.
    pub postgres: String,
}

/// Why a server's file cannot be managed: berqenas's role there may not read or
/// write it.
pub const NOT_PERMITTED: &str = "not enforced: berqenas's role on this server may not read and write its pg_hba.conf (it needs superuser, or pg_read_server_files and pg_write_server_files)";

/// Renders the lines of the tenants on `server` into that server's pg_hba.conf
/// (`there`: its pool), under the render lock of the control database (`control`),
/// and ends the sessions there that the new lines no longer allow.
pub async fn enforce_on(control: &Pool, there: &Pool, server: &str) -> Result<ServerReport, Error> {
    let mut c = control.get().await.map_err(pool_error)?;
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_catalog.pg_advisory_xact_lock($1)", &[&LOCK])
        .await?;
    let tenants: Vec<Restricted> = store::snapshot(&tx)
        .await?
        .into_iter()
        .filter(|t| t.server == server)
        .collect();
    let s = there.get().await.map_err(pool_error)?;
    let mut report = ServerReport {
        server: server.to_string(),
        tenants: tenants.len(),
        ..ServerReport::default()
    };
    let block = hba::render(&tenants, &control_ranges(&s).await?);
    report.hba_lines = block.lines().filter(|l| l.starts_with("host")).count();
    match apply(&s, &block).await {
        Ok(()) => {
            report.sessions_ended = end_sessions(&s, &tenants).await?;
            report.postgres = "enforced".into();
        }
        Err(Error::Db(e))
            if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
        {
            report.postgres = NOT_PERMITTED.into();
        }
        Err(e) => return Err(e),
    }
    tx.commit().await?;
    Ok(report)
}

fn pool_error(e: deadpool_postgres::PoolError) -> Error {
    Error::Pool(e.to_string())
}

/// Puts `block` in place of berqenas's block of the server's pg_hba.conf, checks the
/// whole file, and reloads the server's configuration.
async fn apply(c: &impl GenericClient, block: &str) -> Result<(), Error> {
    let row = c
        .query_one(
            "SELECT pg_catalog.current_setting('hba_file'),
                    pg_catalog.pg_read_file(pg_catalog.current_setting('hba_file'))",
            &[],
        )
        .await?;
    let (path, old): (String, String) = (row.get(0), row.get(1));
    if !old.contains(hba::BEGIN) && !block.lines().any(|l| l.starts_with("host")) {
        // No tenant of this server is restricted, and none ever was: the operator's
        // file is left as it is.
        return Ok(());
    }
    let new = hba::splice(&old, block);
    if new != old {
        c.batch_execute(&copy_sql(&format!("{path}.berqenas-previous"), &old)?)
            .await?;
        c.batch_execute(&copy_sql(&path, &new)?).await?;
        let errors = hba_errors(c).await?;
        if !errors.is_empty() {
            c.batch_execute(&copy_sql(&path, &old)?).await?;
            return Err(Error::Invalid(errors.join("; ")));
        }
    }
    // Also when unchanged: a render cut off between its write and its reload left
    // the file right and the rules in force old.
    reload(c).await
}

/// The `COPY` that writes `content` to `path` on the server, line for line: CSV with a
/// delimiter and a quote character no line has, so no line is quoted or escaped, and
/// an empty line as the (unquoted, empty) NULL.
fn copy_sql(path: &str, content: &str) -> Result<String, Error> {
    let body = content.strip_suffix('\n').unwrap_or(content);
    let mut lines = Vec::new();
    for l in body.split('\n') {
        let l = l.strip_suffix('\r').unwrap_or(l);
        if l.contains(['\u{1f}', '\u{2}', '\r']) {
            return Err(Error::Invalid(format!(
                "pg_hba.conf has a line berqenas cannot write back over SQL (a control character): {l:?}"
            )));
        }
        lines.push(Literal(l).to_string());
    }
    Ok(format!(
        "COPY (SELECT NULLIF(l, '') FROM unnest(ARRAY[{}]::text[]) WITH ORDINALITY AS x(l, n) ORDER BY n)
           TO {} WITH (FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x02')",
        lines.join(", "),
        Literal(path)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_as_they_are() {
        let sql = copy_sql(
            "/x/pg_hba.conf",
            "local all all trust\n\nhost all \"a\" 10.0.0.0/8 reject\r\n",
        )
        .unwrap();
        assert!(
            sql.contains("'local all all trust', '', 'host all \"a\" 10.0.0.0/8 reject'"),
            "{sql}"
        );
        assert!(sql.contains("TO '/x/pg_hba.conf'"), "{sql}");
        assert!(copy_sql("/x", "a\u{1f}b\n").is_err());
    }
}
