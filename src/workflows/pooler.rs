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

/// At start: the auth user (created NOLOGIN if missing), its CONNECT and the lookup
/// function in the control database, the template database and every database-mode
/// tenant's database. Idempotent; nothing is rewritten that is already right.
pub async fn prepare(p: &Platform) -> Result<(), Error> {
    let Some(auth) = &p.pgbouncer.auth_user else {
        return Ok(());
    };
    if !p.caps.superuser {
        tracing::warn!("PgBouncer's lookup function reads pg_authid, which only a superuser may: not installed (connect berqenas as a superuser, or install it as one)");
        return Ok(());
    }
    let c = p.pool.get().await?;
    c.batch_execute(&pgbouncer::ensure_auth_user_sql(auth))
        .await?;
    let control = p.endpoint.database.as_str();
    install(
        &c,
        control,
        auth,
        crate::store::pooler::LIVE_TENANT_CONDITION,
    )
    .await?;
    let template = template_db(control);
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
    let databases = crate::store::pooler::tenant_databases(&c).await?;
    drop(c);
    // One tenant database that cannot be prepared (its tenant holds the install's
    // lock, say) costs that tenant its pooler logins, not the control plane its start.
    for db in &databases {
        if let Err(e) = prepare_tenant_database(p, db).await {
            tracing::warn!(database = %db, error = %e, "PgBouncer's lookup function not installed in this tenant database; its tenants cannot log in through PgBouncer until the next start");
        }
    }
    tracing::info!(
        auth_user = auth.as_str(),
        tenant_databases = databases.len(),
        "PgBouncer lookup function installed"
    );
    Ok(())
}

/// In one database-mode tenant's database: the auth user's CONNECT and the lookup
/// function (a clone of the template has it already unless the template predates it).
pub async fn prepare_tenant_database(p: &Platform, database: &str) -> Result<(), Error> {
    let Some(auth) = &p.pgbouncer.auth_user else {
        return Ok(());
    };
    if !p.caps.superuser {
        return Ok(());
    }
    let client = connect(p, database).await?;
    install(&client, database, auth, "").await
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

/// After a suspension: asks PgBouncer's admin console to drop what it pools for the
/// tenant: `KILL` (then `RESUME`) its own database in database mode, `RECONNECT` the
/// shared control database otherwise. Never fails: a console that is down or slow is
/// logged, and the suspension holds through PostgreSQL anyway.
pub async fn end_pooled(p: &Platform, t: &Tenant) {
    let Some(url) = &p.pgbouncer.admin_url else {
        return;
    };
    let (database, how) = match t.isolation {
        Isolation::Database => (t.database.as_str(), End::Kill),
        _ => (p.endpoint.database.as_str(), End::Reconnect),
    };
    let Some(commands) = pgbouncer::admin_commands(database, how) else {
        tracing::warn!(
            database,
            "database name not usable on PgBouncer's admin console; pooled connections left to PostgreSQL's termination"
        );
        return;
    };
    match pgbouncer::admin(url, &commands, ADMIN_DEADLINE).await {
        Ok(()) => {
            tracing::info!(tenant.name = %t.name, database, "PgBouncer dropped the tenant's pooled connections")
        }
        Err(e) => {
            tracing::warn!(tenant.name = %t.name, error = %e, "PgBouncer's admin console failed; the suspension holds through PostgreSQL")
        }
    }
}
