//! What a server must be before tenants are placed on it, and what `server list`
//! shows of it: reachable, PostgreSQL 15 or later, a role that may create roles and
//! databases, PUBLIC's defaults taken away (the hardening `default` gets at start).

use deadpool_postgres::GenericClient;

use super::Server;
use crate::pg::{self, hardening, Ident, PgError};

/// The oldest PostgreSQL a server may run (`FOR TABLES IN SCHEMA` publications, the
/// privileges berqenas sets).
pub const MIN_VERSION_NUM: i32 = 150_000;

/// Why a server cannot take tenants; every message names the field it is about and
/// carries no part of the URL's credentials.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("url: {0}")]
    Url(String),
    #[error("url: cannot reach the server: {0}")]
    Unreachable(String),
    #[error("url: the server runs PostgreSQL {0}; berqenas needs 15 or later")]
    TooOld(String),
    #[error(
        "url: the role berqenas connects as must be a superuser or have CREATEROLE and CREATEDB"
    )]
    Privileges,
    #[error("url: the server refused berqenas's setup: {0}")]
    Setup(String),
}

/// What PostgreSQL said when a connection failed: its message, never the URL.
pub fn reason(e: &PgError) -> String {
    match e {
        PgError::Connect(e) | PgError::Db(e) => match e.as_db_error() {
            Some(d) => d.message().to_string(),
            None => {
                // The client's own errors ("error connecting to server: Connection
                // refused") name no credential; keep the first line.
                let s = e.to_string();
                s.lines().next().unwrap_or("unreachable").to_string()
            }
        },
        PgError::Pool(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// Parses a server URL; the message names the field and never echoes the URL.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, CheckError> {
    if url.trim().is_empty() {
        return Err(CheckError::Url("url is required".into()));
    }
    let config = pg::parse_config(url).map_err(|_| {
        CheckError::Url(
            "not a PostgreSQL URL (postgresql://user:password@host:port/database)".into(),
        )
    })?;
    if config.get_hosts().is_empty() {
        return Err(CheckError::Url("the URL names no host".into()));
    }
    if config.get_user().is_none() {
        return Err(CheckError::Url("the URL names no user".into()));
    }
    Ok(config)
}

/// Reads the server's version: (`server_version_num`, `server_version`).
pub async fn version(c: &impl GenericClient) -> Result<(i32, String), tokio_postgres::Error> {
    let row = c
        .query_one(
            "SELECT pg_catalog.current_setting('server_version_num')::int,
                    pg_catalog.current_setting('server_version')",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Everything [`CheckError`] names, on an opened server, then its hardening: returns
/// its version. Runs again harmlessly (only what is still granted is revoked).
pub async fn admit(server: &Server) -> Result<String, CheckError> {
    let mut c = server
        .pool
        .get()
        .await
        .map_err(|e| CheckError::Unreachable(reason(&PgError::Pool(e))))?;
    let (num, shown) = version(&c)
        .await
        .map_err(|e| CheckError::Unreachable(reason(&PgError::Db(e))))?;
    if num < MIN_VERSION_NUM {
        return Err(CheckError::TooOld(shown));
    }
    let db = Ident::new(server.endpoint.database.clone())
        .map_err(|_| CheckError::Url("the URL's database name is not a valid name".into()))?;
    hardening::secure_defaults(&mut c, &db)
        .await
        .map_err(|e| CheckError::Setup(reason(&PgError::Db(e))))?;
    let (_, refused) = hardening::close_databases(&c)
        .await
        .map_err(|e| CheckError::Setup(reason(&PgError::Db(e))))?;
    c.batch_execute(crate::isolation::realtime_triggers::INSTALL_SQL)
        .await
        .map_err(|e| CheckError::Setup(reason(&PgError::Db(e))))?;
    if !refused.is_empty() {
        tracing::warn!(server = %server.name, databases = ?refused, "PUBLIC can connect to these databases and berqenas may not change that");
    }
    Ok(shown)
}

/// What `server list` shows of a live server.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub version: String,
    /// All databases on the server together.
    pub disk_bytes: i64,
    pub connections: i64,
    pub max_connections: i64,
    /// `logical` lets tenants move off it (docs/moves.md); PostgreSQL's default is
    /// `replica`.
    pub wal_level: String,
}

/// A live look at a server; `Err(reason)`: it cannot be reached.
pub async fn stats(server: &Server) -> Result<Stats, String> {
    let probe = async {
        let c = server
            .pool
            .get()
            .await
            .map_err(|e| reason(&PgError::Pool(e)))?;
        let row = c
            .query_one(
                "SELECT pg_catalog.current_setting('server_version'),
                        (SELECT COALESCE(sum(pg_catalog.pg_database_size(oid)), 0)::bigint
                           FROM pg_catalog.pg_database WHERE datallowconn),
                        (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend'),
                        pg_catalog.current_setting('max_connections')::bigint,
                        pg_catalog.current_setting('wal_level')",
                &[],
            )
            .await
            .map_err(|e| reason(&PgError::Db(e)))?;
        Ok(Stats {
            version: row.get(0),
            disk_bytes: row.get(1),
            connections: row.get(2),
            max_connections: row.get(3),
            wal_level: row.get(4),
        })
    };
    match tokio::time::timeout(std::time::Duration::from_secs(6), probe).await {
        Ok(r) => r,
        Err(_) => Err("no answer within 6 s".into()),
    }
}
