//! PostgreSQL access: identifiers, binaries, the embedded cluster, connection pools.

pub mod binaries;
pub mod closing;
pub mod cluster;
pub mod conn;
pub mod dump_script;
pub mod election;
pub mod hardening;
pub mod ident;
pub mod logical;
pub mod open_transaction;
pub mod pgbouncer;
pub mod predefined_roles;
pub mod schema_relations;
pub mod session_lock;
pub mod temp_relations;

pub use ident::{Ident, Literal};

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{Config, NoTls};

/// Reads a text column into an enum through its `parse(&str) -> Option<Self>`: a
/// value the type does not know is an error of the read, never a panic later.
macro_rules! from_text_column {
    ($t:ty, $what:literal) => {
        impl<'a> tokio_postgres::types::FromSql<'a> for $t {
            fn from_sql(
                ty: &tokio_postgres::types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                let s = <&str as tokio_postgres::types::FromSql>::from_sql(ty, raw)?;
                <$t>::parse(s).ok_or_else(|| format!("{s:?} is not a {}", $what).into())
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <&str as tokio_postgres::types::FromSql>::accepts(ty)
            }
        }
    };
}
pub(crate) use from_text_column;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("invalid database URL: {0}")]
    Url(#[source] tokio_postgres::Error),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error("cannot connect to PostgreSQL: {0}")]
    Socket(#[source] std::io::Error),
    #[error("the role berqenas connects as must be a superuser or have CREATEROLE and CREATEDB")]
    Privileges,
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Build(#[from] deadpool_postgres::BuildError),
}

pub fn parse_config(url: &str) -> Result<Config, PgError> {
    let mut config = Config::from_str(url).map_err(PgError::Url)?;
    if config.get_application_name().is_none() {
        config.application_name("berqenas");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    Ok(config)
}

/// Control-plane sessions resolve names in `pg_catalog` only (and temporary
/// relations last): a session of the control role that touches a tenant's objects can
/// never pick up a function, operator or table of the tenant's by name. Every query of
/// the control plane names its schema.
///
/// They do not JIT-compile either: their statements read a few rows each, but the
/// catalog's estimates for some (the role check's, with 60,000 roles) cross
/// `jit_above_cost`, and compiling cost 10 ms a statement, a fifth of the role check's
/// time and most of a server list's (docs/scale.md).
pub fn control_session_options(config: &mut Config) {
    add_session_options(config, "-c search_path=pg_catalog,pg_temp -c jit=off");
}

/// Appends `ours` (`-c name=value ...`) to the options a session starts with.
pub fn add_session_options(config: &mut Config, ours: &str) {
    let options = match config.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} {ours}"),
        _ => ours.to_string(),
    };
    config.options(&options);
}

/// A pool of control-plane connections.
pub fn pool(config: Config, size: usize) -> Result<Pool, PgError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?)
}

/// Opens one connection, driving it on a background task.
pub async fn connect(config: &Config) -> Result<tokio_postgres::Client, PgError> {
    let (client, conn) = config.connect(NoTls).await.map_err(PgError::Connect)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection closed");
        }
    });
    Ok(client)
}

/// Creates a database if missing (CREATE DATABASE cannot run in a transaction, and
/// two starts racing for it are told apart by the duplicate error).
pub async fn ensure_database(client: &tokio_postgres::Client, name: &Ident) -> Result<(), PgError> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&name.as_str()],
        )
        .await?
        .is_some();
    if !exists {
        match client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
        {
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            other => other?,
        }
    }
    Ok(())
}

/// What the connected role may do; decides e.g. whether `temp_file_limit` can be set.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    pub superuser: bool,
}

impl Capabilities {
    pub async fn probe(client: &tokio_postgres::Client) -> Result<Self, PgError> {
        let row = client
            .query_one(
                "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await?;
        let (superuser, createrole, createdb): (bool, bool, bool) =
            (row.get(0), row.get(1), row.get(2));
        if !(superuser || (createrole && createdb)) {
            return Err(PgError::Privileges);
        }
        Ok(Self { superuser })
    }
}

/// Creates a NOLOGIN role unless it exists. Roles belong to the whole cluster while
/// advisory locks belong to one database, so two control planes in one cluster may
/// both try: the one that loses the race finds the role there and carries on.
pub fn ensure_nologin_role_sql(role: &Ident) -> String {
    format!(
        "DO $berqenas$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {name}) THEN
             CREATE ROLE {role} NOLOGIN;
           END IF;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $berqenas$",
        name = Literal(role.as_str()),
    )
}
