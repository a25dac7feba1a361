//! PgBouncer in front of the tenants (docs/deploy.md#pgbouncer): its `auth_query`
//! lookup function in every database tenants use (at start for those that exist, then
//! in each new tenant database), and a suspended tenant's pooled connections dropped
//! through its admin console, best effort (PostgreSQL has already ended the
//! tenant's sessions and refuses its logins; this also drops the clients PgBouncer
//! still holds).

use std::time::Duration;

use crate::isolation::database::template_db;
use crate::pg::pgbouncer::{self, End};
use crate::pg::{self, Ident};
use crate::platform::Platform;
use crate::tenant::{Isolation, Tenant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("installing PgBouncer's lookup function in database {database}")]
    Install {
        database: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Pg(#[from] pg::PgError),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Name(#[from] crate::pg::ident::IdentError),
    #[error("taking the template database's lock")]
    Template(#[source] Box<crate::tenant::service::Error>),
}

/// How long a suspension waits for the admin console; past it, the suspension goes on.
pub const ADMIN_DEADLINE: Duration = Duration::from_millis(1500);

/// At start, on `default`: the auth user (created NOLOGIN if missing), its CONNECT
/// and the lookup function in the control database, the template database and every
/// database-mode tenant's database there. Idempotent; nothing is rewritten that is
/// already right. The other servers: [`prepare_servers`].
pub async fn prepare(p: &Platform) -> Result<(), Error> {
    prepare_server(p, crate::store::servers::DEFAULT).await
}

/// At start, after [`prepare`]: the same on every other registered server (each
/// fronted by a PgBouncer of its own, with the same `auth_user`), all at once. One that
/// is down or refuses is logged: its tenants cannot log in through its PgBouncer until
/// the next start, and the control plane starts anyway.
pub async fn prepare_servers(p: &Platform) {
    if p.pgbouncer.auth_user.is_none() {
        return;
    }
    let servers = match others(p).await {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!(error = %e, "PgBouncer: the servers could not be listed; only default is prepared");
            return;
        }
    };
    futures_util::future::join_all(servers.iter().map(|name| async move {
        let view = match p.view_of(name).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(server = %name, error = %e, "PgBouncer's lookup function not installed on this server (not reachable); its tenants cannot log in through its PgBouncer until the next start");
                return;
            }
        };
        if let Err(e) = prepare_server(&view, name).await {
            tracing::warn!(server = %name, error = %e, "PgBouncer's lookup function not installed on this server; its tenants cannot log in through its PgBouncer until the next start");
        }
    }))
    .await;
}

/// The registered servers other than `default`.
async fn others(p: &Platform) -> Result<Vec<String>, Error> {
    Ok(crate::store::servers::list(&p.control().get().await?)
        .await?
        .into_iter()
        .map(|s| s.name)
        .filter(|n| n != crate::store::servers::DEFAULT)
        .collect())
}

/// On `server` (`view`: the platform as seen from it; for another server at its add
/// and at every start): the auth user, its CONNECT and the lookup function in the
/// server's database (where its schema-mode tenants live), its template database and
/// its database-mode tenants' databases. Only `default`'s lookup reads the registry
/// (a tenant that is not live is refused); elsewhere a tenant that is not live is kept
/// out by its NOLOGIN roles alone.
pub async fn prepare_server(view: &Platform, server: &str) -> Result<(), Error> {
    if view.pgbouncer.auth_user.is_none() {
        return Ok(());
    }
    if !view.caps.superuser {
        tracing::warn!(server, "PgBouncer's lookup function reads pg_authid, which only a superuser may: not installed (connect berqenas to this server as a superuser, or install it as one)");
        return Ok(());
    }
    let extra = match server {
        crate::store::servers::DEFAULT => crate::store::pooler::LIVE_TENANT_CONDITION,
        _ => "",
    };
    let databases = prepare_cluster(view, server, extra).await?;
    tracing::info!(
        server,
        tenant_databases = databases,
        "PgBouncer lookup function installed"
    );
    Ok(())
}

/// [`prepare_server`]: in the cluster `p` reaches, its database (with
/// `extra` in the lookup), its template database and the databases its database-mode
/// tenants (on `server`, by the registry) have there. Returns how many of those.
async fn prepare_cluster(p: &Platform, server: &str, extra: &str) -> Result<usize, Error> {
    let auth = p.pgbouncer.auth_user.as_ref().expect("checked by callers");
    let c = p.pool.get().await?;
    c.batch_execute(&pgbouncer::ensure_auth_user_sql(auth))
        .await?;
    let own = p.endpoint.database.as_str();
    install(&c, own, auth, extra).await?;
    let template = template_db(own);
    let exists = c
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[&template.as_str()],
        )
        .await?
        .is_some();
    if exists {
        // No clone may start while this session is connected to the template.
        let _lock = crate::tenant::database_mode::template_session(p, true)
            .await
            .map_err(|e| Error::Template(Box::new(e)))?;
        install(
            &connect(p, template.as_str()).await?,
            template.as_str(),
            auth,
            "",
        )
        .await?;
    }
    let named = crate::store::pooler::tenant_databases(&p.control().get().await?, server).await?;
    let databases: Vec<String> = c
        .query(
            "SELECT datname::text FROM pg_catalog.pg_database WHERE datname = ANY($1) ORDER BY 1",
            &[&named],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(c);
    // One tenant database that cannot be prepared (its tenant holds the install's
    // lock, say) costs that tenant its pooler logins, not the control plane its start.
    for db in &databases {
        if let Err(e) = prepare_tenant_database(p, db).await {
            tracing::warn!(server, database = %db, error = %e, "PgBouncer's lookup function not installed in this tenant database; its tenants cannot log in through PgBouncer until the next start");
        }
    }
    Ok(databases.len())
}

/// In one database-mode tenant's database: the auth user's CONNECT and the lookup
/// function (a clone of the template has it already unless the template predates it).
pub async fn prepare_tenant_database(p: &Platform, database: &str) -> Result<(), Error> {
    let Some(auth) = auth_user(p) else {
        return Ok(());
    };
    let client = connect(p, database).await?;
    install(&client, database, auth, "").await
}

/// [`prepare_tenant_database`] on a session the caller has in `database` (a claimed
/// warm pool member's, under its own name: see `tenant::database_claim`).
pub async fn prepare_in(
    p: &Platform,
    client: &tokio_postgres::Client,
    database: &str,
) -> Result<(), Error> {
    match auth_user(p) {
        Some(auth) => install(client, database, auth, "").await,
        None => Ok(()),
    }
}

/// PgBouncer's auth user, when this server installs its lookup function (as a
/// superuser only).
fn auth_user(p: &Platform) -> Option<&Ident> {
    p.pgbouncer.auth_user.as_ref().filter(|_| p.caps.superuser)
}

impl From<Error> for crate::tenant::service::Error {
    fn from(e: Error) -> Self {
        use crate::tenant::service::Error as S;
        match e {
            Error::Install { source, .. } | Error::Db(source) => S::Db(source),
            Error::Pg(e) => S::Pg(e),
            Error::Pool(e) => S::Pool(e),
            Error::Store(e) => S::Store(e),
            Error::Name(e) => S::Name(e),
            Error::Template(e) => *e,
        }
    }
}

async fn connect(p: &Platform, database: &str) -> Result<tokio_postgres::Client, Error> {
    let mut config = p.config.clone();
    config.dbname(database);
    Ok(pg::connect(&config).await?)
}

/// CONNECT for the auth user and the function, in the database `c` is connected to.
async fn install(
    c: &tokio_postgres::Client,
    database: &str,
    auth: &Ident,
    extra: &str,
) -> Result<(), Error> {
    let wrap = |source| Error::Install {
        database: database.to_string(),
        source,
    };
    let db = Ident::new(database.to_string())?;
    let has_connect: bool = c
        .query_one(
            "SELECT pg_catalog.has_database_privilege($1, $2, 'CONNECT')",
            &[&auth.as_str(), &database],
        )
        .await
        .map_err(wrap)?
        .get(0);
    if !has_connect {
        c.batch_execute(&pgbouncer::grant_connect_sql(&db, auth))
            .await
            .map_err(wrap)?;
    }
    let installed: bool = c
        .query_one(
            pgbouncer::INSTALLED_SQL,
            &[&pgbouncer::installed_body(extra), &auth.as_str()],
        )
        .await
        .map_err(wrap)?
        .get(0);
    if !installed {
        c.batch_execute(&pgbouncer::install_sql(auth, extra))
            .await
            .map_err(wrap)?;
    }
    Ok(())
}

/// After a suspension: asks the admin console of the PgBouncer in front of the
/// tenant's server (`--pgbouncer-admin-url` for `default`, the server's registered one
/// otherwise) to drop what it pools for the tenant: `KILL` (then `RESUME`) its own
/// database in database mode, `RECONNECT` the shared database otherwise. Never fails:
/// a console that is down or slow is logged, and the suspension holds through
/// PostgreSQL anyway.
pub async fn end_pooled(p: &Platform, t: &Tenant) {
    let Some((url, shared)) = console_of(p, t).await else {
        return;
    };
    let (database, how) = match t.isolation {
        Isolation::Database => (t.database.as_str(), End::Kill),
        _ => (shared.as_str(), End::Reconnect),
    };
    let Some(commands) = pgbouncer::admin_commands(database, how) else {
        tracing::warn!(
            database,
            "database name not usable on PgBouncer's admin console; pooled connections left to PostgreSQL's termination"
        );
        return;
    };
    match pgbouncer::admin(&url, &commands, ADMIN_DEADLINE).await {
        Ok(()) => {
            tracing::info!(tenant.name = %t.name, server = %t.server, database, "PgBouncer dropped the tenant's pooled connections")
        }
        Err(e) => {
            tracing::warn!(tenant.name = %t.name, server = %t.server, error = %e, "PgBouncer's admin console failed; the suspension holds through PostgreSQL")
        }
    }
}

/// The console in front of the tenant's server and that server's own database.
async fn console_of(p: &Platform, t: &Tenant) -> Option<(crate::secrets::SecretString, String)> {
    if t.server == crate::store::servers::DEFAULT {
        let url = p.pgbouncer.admin_url.clone()?;
        return Some((url, p.endpoint.database.clone()));
    }
    let found: Result<_, Error> = async {
        Ok(crate::store::servers::pgbouncer_admin(&p.control().get().await?, &t.server).await?)
    }
    .await;
    let (sealed, database) = match found {
        Ok(found) => found?,
        Err(e) => {
            tracing::warn!(server = %t.server, error = %e, "reading the server's PgBouncer console failed; pooled connections left to PostgreSQL's termination");
            return None;
        }
    };
    let Some(url) = p
        .key
        .open(&sealed)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        tracing::warn!(server = %t.server, "the server's PgBouncer console URL cannot be opened with this key; pooled connections left to PostgreSQL's termination");
        return None;
    };
    Some((url.into(), database))
}
