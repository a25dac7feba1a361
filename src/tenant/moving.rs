//! Moving a tenant to another server (docs/moves.md): the parts the `tenant.move`
//! operation (`workflows::move_tenant`) runs as steps. Each takes the views it works
//! on (`Platform::on(server)`) and is idempotent, so a step can run again after a
//! crash: its roles with the same password verifier and its schema definition made
//! on the target, its writes blocked on the source, and the source copy dropped.
//! Replicating the rows is `pg::logical`'s; the registry is the workflow's.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio_postgres::config::Host;

use super::{Isolation, Slug};
use crate::pg::conn::Conn;
use crate::pg::{self, Ident, Literal};
use crate::platform::Platform;
use crate::secrets::SecretString;

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a part of a move failed (the workflow undoes it, or retries it forward).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Pg(#[from] pg::PgError),
    #[error(transparent)]
    Name(#[from] pg::ident::IdentError),
    /// `pg_dump` or `psql` failed: its stderr (for the log, never an answer).
    #[error("{program}: {detail}")]
    Tool { program: String, detail: String },
}

/// Where a tenant's data is on a server: the database holding it (schema mode: the
/// server's own database; database mode: the tenant's).
pub fn database_on(view: &Platform, slug: &Slug, isolation: Isolation) -> String {
    match isolation {
        Isolation::Database => slug.schema().as_str().to_string(),
        _ => view.endpoint.database.clone(),
    }
}

/// A session as the server's control role on one of its databases.
pub async fn connect_db(view: &Platform, database: &str) -> Result<tokio_postgres::Client> {
    let mut config = view.config.clone();
    config.dbname(database);
    Ok(pg::connect(&config).await?)
}

/// Which of `roles` exist on the server.
pub async fn existing_roles(view: &Platform, roles: &[String]) -> Result<Vec<String>> {
    Ok(view
        .pool
        .get()
        .await?
        .query(
            "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname = ANY($1) ORDER BY rolname",
            &[&roles],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Settings whose value is a list, each element quoted apart (as pg_dumpall does).
const LIST_SETTINGS: [&str; 4] = [
    "search_path",
    "temp_tablespaces",
    "local_preload_libraries",
    "session_preload_libraries",
];

/// `name=value` from `pg_db_role_setting`, as the tail of `ALTER ROLE ... SET`.
fn setting_sql(pair: &str) -> Option<String> {
    let (name, value) = pair.split_once('=')?;
    let name = Ident::new(name.to_string()).ok()?;
    let value = if LIST_SETTINGS.contains(&name.as_str()) {
        value
            .split(',')
            .map(|v| Literal(v.trim().trim_matches('"')).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        Literal(value).to_string()
    };
    Some(format!("SET {name} TO {value}"))
}

/// Makes `roles` on the target as they are on the source: the same names, password
/// verifier (copied from `pg_authid`, so the tenant's password keeps working),
/// inheritance, connection limit, settings and memberships among themselves, but
/// NOLOGIN until the cutover. Roles already there (made before a crash) are brought
/// to the same state. `src_db`/`dst_db`: the database whose per-database settings
/// are copied, and the one they are made for on the target (`None`: only the
/// roles' own settings; a database's `pg_dump --create` carries the others).
pub async fn copy_roles(
    src: &Platform,
    dst: &Platform,
    roles: &[String],
    src_db: Option<&str>,
    dst_db: &str,
) -> Result<()> {
    let s = src.pool.get().await?;
    let rows = s
        .query(
            "SELECT rolname::text, rolinherit, rolconnlimit, rolpassword,
                    rolvaliduntil::text
               FROM pg_catalog.pg_authid WHERE rolname = ANY($1) ORDER BY rolname",
            &[&roles],
        )
        .await?;
    let mut sql = String::new();
    let present = existing_roles(dst, roles).await?;
    for r in &rows {
        let name = Ident::new(r.get::<_, String>(0))?;
        let (inherit, limit): (bool, i32) = (r.get(1), r.get(2));
        let verifier: Option<String> = r.get(3);
        let until: Option<String> = r.get(4);
        if !present.iter().any(|p| p == name.as_str()) {
            sql.push_str(&format!("CREATE ROLE {name} NOLOGIN;\n"));
        }
        sql.push_str(&format!(
            "ALTER ROLE {name} WITH NOLOGIN {} CONNECTION LIMIT {limit} PASSWORD {}{};\n",
            if inherit { "INHERIT" } else { "NOINHERIT" },
            verifier
                .as_deref()
                .map_or("NULL".to_string(), |v| Literal(v).to_string()),
            until.map_or(String::new(), |u| format!(" VALID UNTIL {}", Literal(&u))),
        ));
    }
    let settings = s
        .query(
            "SELECT r.rolname::text, d.datname::text, unnest(s.setconfig)
               FROM pg_catalog.pg_db_role_setting s
               JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
               LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
              WHERE r.rolname = ANY($1) AND (s.setdatabase = 0 OR d.datname = $2::text)",
            &[&roles, &src_db],
        )
        .await?;
    let dst_db = Ident::new(dst_db.to_string())?;
    for r in &settings {
        let name = Ident::new(r.get::<_, String>(0))?;
        let database: Option<String> = r.get(1);
        let Some(set) = setting_sql(&r.get::<_, String>(2)) else {
            continue;
        };
        let scope = match database {
            Some(_) => format!(" IN DATABASE {dst_db}"),
            None => String::new(),
        };
        sql.push_str(&format!("ALTER ROLE {name}{scope} {set};\n"));
    }
    // Memberships among the tenant's roles, and in the server's own roles a tenant's
    // role is granted (`berqenas_tenant_connect`: CONNECT on the server's database),
    // which every registered server has (docs/servers.md).
    let members = s
        .query(
            "SELECT g.rolname::text, m.rolname::text, a.admin_option
               FROM pg_catalog.pg_auth_members a
               JOIN pg_catalog.pg_roles g ON g.oid = a.roleid
               JOIN pg_catalog.pg_roles m ON m.oid = a.member
              WHERE m.rolname = ANY($1)",
            &[&roles],
        )
        .await?;
    let groups: Vec<String> = members.iter().map(|r| r.get(0)).collect();
    let on_target = existing_roles(dst, &groups).await?;
    for r in &members {
        let group: String = r.get(0);
        if !roles.contains(&group) && !on_target.contains(&group) {
            // A tenant leaving a pool for a server that has none: the move takes its
            // roles out of the pool anyway (`moving_shared::leave_pool`).
            let pooled = crate::isolation::shared::pool_roles()
                .iter()
                .any(|p| p.as_str() == group);
            if !pooled {
                tracing::warn!(role = %group, "a tenant role's group is not on the target server: not granted there");
            }
            continue;
        }
        let group = Ident::new(group)?;
        let member = Ident::new(r.get::<_, String>(1))?;
        let admin = if r.get::<_, bool>(2) {
            " WITH ADMIN OPTION"
        } else {
            ""
        };
        sql.push_str(&format!("GRANT {group} TO {member}{admin};\n"));
    }
    let mut d = dst.pool.get().await?;
    let tx = d.transaction().await?;
    // The statements carry password verifiers: never logged.
    tx.batch_execute(&sql).await?;
    tx.commit().await?;
    Ok(())
}

/// Whether the tenant's schema (schema mode) or database (database mode) is on the
/// server.
pub async fn data_exists(view: &Platform, slug: &Slug, isolation: Isolation) -> Result<bool> {
    let c = view.pool.get().await?;
    let found = match isolation {
        Isolation::Database => {
            c.query_opt(
                "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
                &[&slug.schema().as_str()],
            )
            .await?
        }
        _ => {
            c.query_opt(
                "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
                &[&slug.schema().as_str()],
            )
            .await?
        }
    };
    Ok(found.is_some())
}

/// The tenant's schema definition, made on the target from `pg_dump --schema-only`
/// of the source (tables, functions, policies, owners, grants, default privileges):
/// schema mode, its schema in the target's database, in one transaction; database
/// mode, its whole database (`--create`: the database's own grants and settings
/// too). Skipped when it is there already (a step run again).
pub async fn copy_definition(
    src: &Platform,
    dst: &Platform,
    slug: &Slug,
    isolation: Isolation,
) -> Result<()> {
    if data_exists(dst, slug, isolation).await? {
        return Ok(());
    }
    let src_db = database_on(src, slug, isolation);
    let (args, dst_db) = match isolation {
        Isolation::Database => (vec!["--create".to_string()], dst.endpoint.database.clone()),
        _ => (
            vec![format!("--schema={}", slug.schema())],
            database_on(dst, slug, isolation),
        ),
    };
    // Database mode: psql reads `CREATE DATABASE` while connected to the server's
    // own database, then `\connect`s to the new one (not one transaction).
    let single = isolation != Isolation::Database;
    let mut attempt = 1;
    loop {
        match dump_into(src, &src_db, &args, dst, &dst_db, single, "").await {
            // The dump's grants on the new database can meet the role check closing
            // that database to PUBLIC, which writes the same catalog row. The database
            // is this move's (none was there before this step), so it is dropped and
            // made again.
            Err(Error::Tool { detail, .. })
                if !single && attempt < 3 && detail.contains("tuple concurrently updated") =>
            {
                tracing::info!(tenant = %slug, attempt, "a concurrent catalog update met the copy of the database definition; making it again");
                super::database_mode::drop_database(dst, slug)
                    .await
                    .map_err(|e| tool("psql", e.to_string()))?;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// `pg_dump --schema-only <args>` of `src_db` on the source, fed to `psql` on
/// `dst_db` of the target after `prelude` (`single`: all in one transaction). Used
/// by moves between servers and between isolation modes (`moving_mode`).
pub(crate) async fn dump_into(
    src: &Platform,
    src_db: &str,
    args: &[String],
    dst: &Platform,
    dst_db: &str,
    single: bool,
    prelude: &str,
) -> Result<()> {
    let bin = pg::binaries::PgBinaries::find().map_err(|e| tool("pg_dump", e.to_string()))?;
    let mut dump = tokio::process::Command::new(
        bin.client("pg_dump")
            .map_err(|e| tool("pg_dump", e.to_string()))?,
    );
    Conn::control(&src.config, src_db).apply(&mut dump);
    dump.arg("--schema-only").args(args);
    dump.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = dump
        .output()
        .await
        .map_err(|e| tool("pg_dump", e.to_string()))?;
    if !out.status.success() {
        return Err(tool("pg_dump", String::from_utf8_lossy(&out.stderr).into()));
    }
    let mut psql = tokio::process::Command::new(
        bin.client("psql")
            .map_err(|e| tool("psql", e.to_string()))?,
    );
    Conn::control(&dst.config, dst_db).apply(&mut psql);
    psql.args(["--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1"]);
    if single {
        psql.arg("--single-transaction");
    }
    psql.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = psql.spawn().map_err(|e| tool("psql", e.to_string()))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // The servers' own berqenas roles may have other names: what the source's owns in
    // the definition, the target's owns.
    let role = |p: &Platform| p.config.get_user().unwrap_or("postgres").to_string();
    let mut script = prelude.as_bytes().to_vec();
    script.extend(pg::dump_script::with_role_renamed(
        &out.stdout,
        &role(src),
        &role(dst),
    ));
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&script).await;
    });
    let done = child
        .wait_with_output()
        .await
        .map_err(|e| tool("psql", e.to_string()))?;
    let _ = feed.await;
    if !done.status.success() {
        return Err(tool("psql", String::from_utf8_lossy(&done.stderr).into()));
    }
    Ok(())
}

fn tool(program: &str, detail: String) -> Error {
    Error::Tool {
        program: program.into(),
        detail,
    }
}

/// Tables of the published set with no replica identity (no primary key): logical
/// replication could not carry their updates and deletes, and PostgreSQL would refuse
/// those on the source. They get `REPLICA IDENTITY FULL` before the publication;
/// returns their names (schema-qualified, quoted).
pub async fn full_identity(
    src: &tokio_postgres::Client,
    schema: Option<&Ident>,
) -> Result<Vec<String>> {
    let rows = src
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname)
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p') AND c.relreplident = 'd'
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
                AND (($1::text IS NULL AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                      AND n.nspname NOT LIKE 'pg_toast%') OR n.nspname = $1)",
            &[&schema.map(Ident::as_str)],
        )
        .await?;
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    for t in &names {
        // `t` came from format('%I.%I'): quoted by PostgreSQL itself.
        src.batch_execute(&format!("ALTER TABLE {t} REPLICA IDENTITY FULL"))
            .await?;
    }
    Ok(names)
}

/// A libpq connection string to `database` on the view's server, with its
/// credentials, for a subscription on another server to reach it.
pub fn source_dsn(view: &Platform, database: &str) -> SecretString {
    let c = &view.config;
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let host = match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let mut dsn = format!(
        "host={} port={} user={} dbname={} application_name=berqenas-move",
        quote(&host),
        c.get_ports().first().copied().unwrap_or(5432),
        quote(c.get_user().unwrap_or("postgres")),
        quote(database),
    );
    if let Some(p) = c.get_password() {
        dsn.push_str(&format!(" password={}", quote(&String::from_utf8_lossy(p))));
    }
    SecretString::from(dsn)
}

/// Those of `roles` that can log in on the server now.
pub async fn can_login(view: &Platform, roles: &[String]) -> Result<Vec<String>> {
    Ok(view
        .pool
        .get()
        .await?
        .query(
            "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname = ANY($1) AND rolcanlogin ORDER BY rolname",
            &[&roles],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Blocks the tenant's writes on the server: `logins` lose LOGIN, then the sessions
/// of all its `roles` end (waiting up to 5 s for each to be gone, so no transaction
/// of theirs commits after this returns). A client gets a connection error it
/// retries ("not permitted to log in"), and finds the tenant on its new server.
pub async fn block(view: &Platform, logins: &[String], roles: &[String]) -> Result<()> {
    let c = view.pool.get().await?;
    for r in logins {
        let r = Ident::new(r.clone())?;
        c.batch_execute(&format!("ALTER ROLE {r} NOLOGIN")).await?;
    }
    end_sessions(view, roles).await
}

/// Ends every session of `roles` on the server, waiting until each is gone.
pub async fn end_sessions(view: &Platform, roles: &[String]) -> Result<()> {
    view.pool
        .get()
        .await?
        .query(
            "SELECT pg_catalog.pg_terminate_backend(pid, 5000) FROM pg_catalog.pg_stat_activity
              WHERE usename = ANY($1) AND pid <> pg_backend_pid()",
            &[&roles],
        )
        .await?;
    Ok(())
}

/// Gives LOGIN to those of `roles` that exist on the server.
pub async fn unblock(view: &Platform, roles: &[String]) -> Result<()> {
    let c = view.pool.get().await?;
    for r in existing_roles(view, roles).await? {
        let r = Ident::new(r)?;
        c.batch_execute(&format!("ALTER ROLE {r} LOGIN")).await?;
    }
    Ok(())
}

/// Drops the tenant's copy on a server: its database (sessions ended) or schema,
/// then `roles` with what they own or were granted. Idempotent. The caller made sure
/// the copy is not the one the registry points at.
pub async fn drop_copy(
    view: &Platform,
    slug: &Slug,
    isolation: Isolation,
    roles: &[String],
) -> Result<()> {
    let c = view.pool.get().await?;
    match isolation {
        Isolation::Database => {
            c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                slug.schema()
            ))
            .await?;
        }
        _ => {
            c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", slug.schema()))
                .await?;
        }
    }
    drop(c);
    drop_roles(view, roles).await
}

/// Of `roles`, those on the server dropped, with what they own there and their
/// sessions. Idempotent.
pub async fn drop_roles(view: &Platform, roles: &[String]) -> Result<()> {
    let present = existing_roles(view, roles).await?;
    if present.is_empty() {
        return Ok(());
    }
    let c = view.pool.get().await?;
    end_sessions(view, &present).await?;
    let idents: Vec<Ident> = present
        .into_iter()
        .map(Ident::new)
        .collect::<std::result::Result<_, _>>()?;
    let list = idents
        .iter()
        .map(Ident::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!("DROP OWNED BY {list} CASCADE;\n");
    for r in &idents {
        sql.push_str(&format!("DROP ROLE IF EXISTS {r};\n"));
    }
    c.batch_execute(&sql).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_settings_quote_each_element_and_others_the_whole_value() {
        assert_eq!(
            setting_sql("search_path=tenant_acme, public").unwrap(),
            "SET \"search_path\" TO 'tenant_acme', 'public'"
        );
        assert_eq!(
            setting_sql("statement_timeout=30s").unwrap(),
            "SET \"statement_timeout\" TO '30s'"
        );
        assert!(setting_sql("no equals sign").is_none());
    }
}
