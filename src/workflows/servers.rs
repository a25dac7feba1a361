//! `/api/v1/servers` (docs/servers.md): the PostgreSQL servers tenants are placed on.
//! An add checks the server (reachable, PostgreSQL 15+, a role that may create roles
//! and databases), hardens it and builds its template database as `default` gets at
//! start, then records it with its URL sealed. Preparing the server is idempotent and
//! harmless to repeat, and the registry row is written last in one transaction: a
//! crash before it leaves nothing registered (a retry prepares the server again).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::fleet::{self, check, placement, Server};
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::secrets::{ExposeSecret, SecretString};
use crate::store::servers::{self as store, ServerRow, DEFAULT};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", .0.message)]
    Rejected(Problem),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Tenant(#[from] crate::tenant::service::Error),
}

type Result<T, E = Error> = std::result::Result<T, E>;

fn bad(field: &str, message: impl Into<String>) -> Error {
    Error::Rejected(Problem::bad_field(field, message))
}

fn unprocessable(field: &str, code: &str, message: impl Into<String>) -> Error {
    let mut p = Problem::new(Kind::Unprocessable, code, message);
    p.field = Some(field.into());
    Error::Rejected(p)
}

fn conflict(code: &str, message: impl Into<String>) -> Error {
    Error::Rejected(Problem::new(Kind::Conflict, code, message))
}

fn not_found(name: &str) -> Error {
    Error::Rejected(Problem::new(
        Kind::NotFound,
        "server_not_found",
        format!("server {name:?} not found"),
    ))
}

/// `POST /api/v1/servers`. The URL carries the credentials: it is sealed at rest and
/// never shown again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddServer {
    /// 2 to 32 characters, `[a-z][a-z0-9-]*[a-z0-9]`.
    pub name: String,
    /// `postgresql://user:password@host:port/database`: schema-mode tenants live in
    /// this database; the role must be a superuser or have CREATEROLE and CREATEDB.
    #[schema(value_type = String)]
    pub url: SecretString,
    /// `{"region": "eu", "tier": "gold"}`: what `placement` selectors match.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Register it draining: no tenant is placed there until it is undrained
    /// [default: false].
    #[serde(default)]
    pub draining: bool,
    /// The admin console of the PgBouncer in front of it,
    /// `postgresql://admin:password@host:port/pgbouncer`: a suspension of a tenant
    /// there drops the clients it pools for the tenant. Sealed, never shown again.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub pgbouncer_admin_url: Option<SecretString>,
}

/// `PATCH /api/v1/servers/{name}`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateServer {
    /// Replaces the labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `true`: no new tenants are placed there (`server drain`); `false` undoes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining: Option<bool>,
    /// The PgBouncer console's URL (as in `POST`); `null` forgets it.
    #[serde(default, deserialize_with = "crate::nullable::field", skip_serializing)]
    #[schema(value_type = Option<String>)]
    pub pgbouncer_admin_url: Option<Option<SecretString>>,
}

/// A console URL, checked and sealed. Its text is never echoed: it holds a password.
fn seal_console(p: &Platform, url: &SecretString) -> Result<Vec<u8>> {
    let parsed = url.expose_secret().parse::<tokio_postgres::Config>();
    match parsed {
        Ok(c) if c.get_dbname() == Some("pgbouncer") => {}
        _ => {
            return Err(bad(
                "pgbouncer_admin_url",
                "pgbouncer_admin_url must be postgresql://user:password@host:port/pgbouncer (PgBouncer's admin console)",
            ))
        }
    }
    Ok(p.key.seal(url.expose_secret().as_bytes()))
}

/// A server as the API shows it: never its URL or credentials.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerInfo {
    pub name: String,
    pub host: String,
    pub port: i32,
    pub database: String,
    #[schema(value_type = Object)]
    pub labels: serde_json::Value,
    /// `up`, `down` (see `down_reason`) or `draining`.
    pub status: String,
    pub draining: bool,
    /// Why the last look could not reach it; null while it is up.
    pub down_reason: Option<String>,
    /// PostgreSQL's `server_version`.
    pub version: Option<String>,
    /// Tenants that live there (purged ones included until their name is released).
    pub tenants: i64,
    /// All its databases together (live; null when down).
    pub disk_bytes: Option<i64>,
    /// Client connections in use (live; null when down).
    pub connections: Option<i64>,
    pub max_connections: Option<i64>,
    /// Its `wal_level` (live; null when down): tenants move off it only at `logical`.
    #[serde(default)]
    pub wal_level: Option<String>,
    pub checked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Whether the admin console of a PgBouncer in front of it is known (never its URL).
    #[serde(default)]
    pub pgbouncer_admin: bool,
    /// Unclaimed warm pool members on it (docs/warm_pool.md); `tenants` does not count
    /// them.
    #[serde(default)]
    pub warm_pool_members: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServerList {
    pub servers: Vec<ServerInfo>,
}

fn info(row: &ServerRow, live: Option<&check::Stats>) -> ServerInfo {
    let status = match (&row.down_reason, row.draining) {
        (Some(_), _) => "down",
        (None, true) => "draining",
        _ => "up",
    };
    ServerInfo {
        name: row.name.clone(),
        host: row.host.clone(),
        port: row.port,
        database: row.database.clone(),
        labels: row.labels.clone(),
        status: status.into(),
        draining: row.draining,
        down_reason: row.down_reason.clone(),
        version: live.map(|s| s.version.clone()).or(row.version.clone()),
        tenants: row.tenants,
        disk_bytes: live.map(|s| s.disk_bytes),
        connections: live.map(|s| s.connections),
        max_connections: live.map(|s| s.max_connections),
        wal_level: live.map(|s| s.wal_level.clone()),
        checked_at: row.checked_at,
        created_at: row.created_at,
        pgbouncer_admin: row.pgbouncer_admin_sealed.is_some(),
        warm_pool_members: row.warm_pool_members,
    }
}

fn check_name(name: &str) -> Result<()> {
    let ok = (2..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(bad(
            "name",
            format!("name must be 2 to 32 characters of a-z, 0-9 and '-', starting with a letter, got {name:?}"),
        ));
    }
    Ok(())
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<serde_json::Value> {
    for (k, v) in labels {
        placement::check_label(k, v).map_err(|e| bad("labels", format!("labels: {e}")))?;
    }
    Ok(serde_json::to_value(labels).expect("a map of strings"))
}

fn check_error(e: check::CheckError) -> Error {
    let code = match &e {
        check::CheckError::Url(_) => return bad("url", e.to_string()),
        check::CheckError::Unreachable(_) => "server_unreachable",
        check::CheckError::TooOld(_) => "server_too_old",
        check::CheckError::Privileges => "server_privileges",
        check::CheckError::Setup(_) => "server_setup_refused",
    };
    unprocessable("url", code, e.to_string())
}

fn fleet_error(e: fleet::Error) -> Error {
    match e {
        fleet::Error::NotFound(n) => not_found(&n),
        fleet::Error::Down { reason, .. } => check_error(check::CheckError::Unreachable(reason)),
        fleet::Error::Pg(crate::pg::PgError::Privileges) => {
            check_error(check::CheckError::Privileges)
        }
        fleet::Error::Pg(e) => check_error(check::CheckError::Unreachable(check::reason(&e))),
        fleet::Error::Store(e) => Error::Store(e),
        fleet::Error::Sealed(n) => Error::Rejected(Problem::new(
            Kind::Unprocessable,
            "server_url_sealed",
            format!("the stored URL of server {n:?} does not open with this server's secret key"),
        )),
    }
}

/// `POST /api/v1/servers`: checks, prepares and records a server.
pub async fn add(p: &Platform, req: &AddServer, actor: &str) -> Result<ServerInfo> {
    check_name(&req.name)?;
    let config = check::parse_url(req.url.expose_secret()).map_err(check_error)?;
    let labels = check_labels(&req.labels.clone().unwrap_or_default())?;
    let console = req
        .pgbouncer_admin_url
        .as_ref()
        .map(|u| seal_console(p, u))
        .transpose()?;
    if store::find(&p.pool.get().await?, &req.name)
        .await?
        .is_some()
    {
        return Err(conflict(
            "server_exists",
            format!("name: a server named {:?} exists", req.name),
        ));
    }
    let server = fleet::open(&req.name, &req.url)
        .await
        .map_err(fleet_error)?;
    if let Some(other) = registered_as(p, &server).await? {
        return Err(conflict(
            "server_exists",
            format!("url: this PostgreSQL server is registered already, as {other:?}"),
        ));
    }
    let version = check::admit(&server).await.map_err(check_error)?;
    let view = p.on(&server);
    crate::tenant::database_mode::ensure_template_on(p, &view, &req.name)
        .await
        .map_err(|e| {
            tracing::warn!(server = %req.name, error = %e, "building the template database failed");
            check_error(check::CheckError::Setup(
                "building the template database failed".into(),
            ))
        })?;
    super::pooler::prepare_server(&view, &req.name)
        .await
        .map_err(|e| {
            tracing::warn!(server = %req.name, error = %e, "installing PgBouncer's lookup function failed");
            check_error(check::CheckError::Setup(
                "installing PgBouncer's lookup function failed".into(),
            ))
        })?;
    let endpoint = fleet::endpoint_of(&config);
    let sealed = p.key.seal(req.url.expose_secret().as_bytes());
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let row = match store::insert(
        &tx,
        &store::NewServer {
            name: &req.name,
            url_sealed: &sealed,
            host: &endpoint.host,
            port: i32::from(endpoint.port),
            database: &endpoint.database,
            labels: &labels,
            version: &version,
            draining: req.draining,
            pgbouncer_admin_sealed: console.as_deref(),
        },
    )
    .await
    {
        Err(crate::store::Error::Conflict { .. }) => {
            return Err(conflict(
                "server_exists",
                format!("name: a server named {:?} exists", req.name),
            ))
        }
        other => other?,
    };
    audit(&tx, actor, "server_added", &req.name, serde_json::json!({
        "host": endpoint.host, "port": endpoint.port, "database": endpoint.database, "labels": labels,
        "pgbouncer_admin": console.is_some(),
    }))
    .await?;
    tx.commit().await?;
    p.fleet.insert(server);
    tracing::info!(server = %req.name, host = %endpoint.host, port = endpoint.port, "server added");
    let live = check::stats(&p.fleet.cached(&req.name).expect("just inserted"))
        .await
        .ok();
    Ok(info(&row, live.as_ref()))
}

async fn audit(
    c: &impl deadpool_postgres::GenericClient,
    actor: &str,
    action: &str,
    server: &str,
    mut details: serde_json::Value,
) -> Result<()> {
    details["server"] = serde_json::json!(server);
    crate::audit::record(
        c,
        &crate::audit::Entry {
            actor,
            action,
            tenant_id: None,
            tenant_name: None,
            operation_id: None,
            details,
        },
    )
    .await?;
    Ok(())
}

/// The registered server that is the same PostgreSQL cluster (by its system
/// identifier) as `new`, if any: one cluster as two servers would share roles. A
/// registered server that is down now cannot be compared, and is passed over.
async fn registered_as(p: &Platform, new: &Server) -> Result<Option<String>> {
    const ID: &str = "SELECT system_identifier FROM pg_catalog.pg_control_system()";
    let id: i64 = match new.pool.get().await {
        Ok(c) => c.query_one(ID, &[]).await?.get(0),
        Err(e) => {
            return Err(check_error(check::CheckError::Unreachable(check::reason(
                &crate::pg::PgError::Pool(e),
            ))))
        }
    };
    for row in store::list(&p.pool.get().await?).await? {
        let Ok(server) = opened(p, &row.name).await else {
            continue;
        };
        let Ok(c) = server.pool.get().await else {
            continue;
        };
        if let Ok(r) = c.query_one(ID, &[]).await {
            if r.get::<_, i64>(0) == id {
                return Ok(Some(row.name));
            }
        }
    }
    Ok(None)
}

/// A live look at one registered server; records what it found (up, or why down).
async fn look(p: &Platform, row: &mut ServerRow) -> Option<check::Stats> {
    let found = match opened(p, &row.name).await {
        Ok(server) => check::stats(&server).await,
        Err(fleet::Error::Down { reason, .. }) => Err(reason),
        Err(e) => Err(e.to_string()),
    };
    let (stats, reason) = match found {
        Ok(s) => (Some(s), None),
        Err(r) => (None, Some(r)),
    };
    if row.down_reason != reason || stats.as_ref().map(|s| &s.version) != row.version.as_ref() {
        if let Ok(c) = p.pool.get().await {
            let version = stats.as_ref().map(|s| s.version.as_str());
            if let Err(e) = store::set_health(&c, &row.name, version, reason.as_deref()).await {
                tracing::warn!(server = %row.name, error = %e, "recording a server's health failed");
            }
        }
        if let Some(r) = &reason {
            tracing::warn!(server = %row.name, reason = %r, "server is down");
        }
    }
    row.down_reason = reason;
    stats
}

/// The server, opened by this process (once).
pub async fn opened(p: &Platform, name: &str) -> Result<std::sync::Arc<Server>, fleet::Error> {
    if let Some(s) = p.fleet.cached(name) {
        return Ok(s);
    }
    let c = p.pool.get().await.map_err(crate::pg::PgError::from)?;
    p.fleet.server(&c, &p.key, name).await
}

/// `GET /api/v1/servers`: every server with a live look at each (in parallel).
pub async fn list(p: &Platform) -> Result<ServerList> {
    let mut rows = store::list(&p.pool.get().await?).await?;
    let looks = futures_util::future::join_all(rows.iter_mut().map(|row| async move {
        let live = look(p, row).await;
        info(row, live.as_ref())
    }))
    .await;
    Ok(ServerList { servers: looks })
}

/// `GET /api/v1/servers/{name}`.
pub async fn get(p: &Platform, name: &str) -> Result<ServerInfo> {
    let mut row = store::find(&p.pool.get().await?, name)
        .await?
        .ok_or_else(|| not_found(name))?;
    let live = look(p, &mut row).await;
    Ok(info(&row, live.as_ref()))
}

/// `PATCH /api/v1/servers/{name}`: labels, draining.
pub async fn update(
    p: &Platform,
    name: &str,
    req: &UpdateServer,
    actor: &str,
) -> Result<ServerInfo> {
    let labels = req.labels.as_ref().map(check_labels).transpose()?;
    let console = match &req.pgbouncer_admin_url {
        Some(Some(url)) => Some(Some(seal_console(p, url)?)),
        Some(None) => Some(None),
        None => None,
    };
    if labels.is_none() && req.draining.is_none() && console.is_none() {
        return Err(bad(
            "labels",
            "nothing to change: give labels, draining or pgbouncer_admin_url",
        ));
    }
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let sealed = console.as_ref().map(|c| c.as_deref());
    let mut row = match store::update(&tx, name, labels.as_ref(), req.draining, sealed).await {
        Err(crate::store::Error::NotFound) => return Err(not_found(name)),
        other => other?,
    };
    audit(
        &tx,
        actor,
        "server_updated",
        name,
        serde_json::json!({
            "labels": labels, "draining": req.draining,
            "pgbouncer_admin": console.as_ref().map(Option::is_some),
        }),
    )
    .await?;
    tx.commit().await?;
    let live = look(p, &mut row).await;
    Ok(info(&row, live.as_ref()))
}

/// `DELETE /api/v1/servers/{name}`: only an empty server, never `default`.
pub async fn remove(p: &Platform, name: &str, actor: &str) -> Result<ServerInfo> {
    if name == DEFAULT {
        return Err(conflict(
            "server_default",
            "server \"default\" keeps the control database and cannot be removed",
        ));
    }
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    if !store::lock(&tx, name).await? {
        return Err(not_found(name));
    }
    let row = store::get(&tx, name).await?;
    // Members are dropped before (`warm_pool_placed::before_remove`); one a refill
    // published since is left for the next round to recycle, and the remove retried.
    let members = crate::store::warm_pool::on_server(&tx, name).await?;
    if row.tenants == 0 && members > 0 {
        return Err(conflict(
            "server_not_empty",
            format!("server {name:?} still has {members} warm pool member(s); try again"),
        ));
    }
    match store::delete_if_empty(&tx, name).await {
        Ok(Ok(())) => {}
        Ok(Err(n)) => {
            return Err(conflict(
                "server_not_empty",
                format!("server {name:?} still has {n} tenant(s); delete or move them first"),
            ))
        }
        Err(crate::store::Error::NotFound) => return Err(not_found(name)),
        Err(e) => return Err(e.into()),
    }
    audit(&tx, actor, "server_removed", name, serde_json::json!({})).await?;
    tx.commit().await?;
    p.fleet.forget(name);
    tracing::info!(server = %name, "server removed");
    Ok(info(&row, None))
}

/// At start: where `default` is, recorded (shown by `server list`).
pub async fn at_start(p: &Platform) -> Result<()> {
    let e = &p.endpoint;
    store::set_default_endpoint(
        &p.pool.get().await?,
        &e.host,
        i32::from(e.port),
        &e.database,
    )
    .await?;
    Ok(())
}

/// The worker round: a look at every other server, so one that came back takes
/// tenants again and one that went away is marked down with its reason.
pub async fn health_round(p: &Platform) -> Result<()> {
    let mut rows = store::list(&p.pool.get().await?).await?;
    futures_util::future::join_all(
        rows.iter_mut()
            .filter(|r| r.name != DEFAULT)
            .map(|row| look(p, row)),
    )
    .await;
    Ok(())
}

/// Marks a server down (a placement could not reach it).
pub(super) async fn mark_down(p: &Platform, name: &str, reason: &str) {
    tracing::warn!(server = %name, reason = %reason, "server is down");
    if let Ok(c) = p.pool.get().await {
        let _ = store::set_health(&c, name, None, Some(reason)).await;
    }
}

/// Candidates for a placement: every server with its tenant count (and, for
/// `least_disk`, its disk use, looked at live).
pub(super) async fn candidates(
    p: &Platform,
    policy: &placement::Policy,
) -> Result<Vec<placement::Candidate>> {
    let mut rows = store::list(&p.pool.get().await?).await?;
    let mut out = Vec::with_capacity(rows.len());
    let disks: Vec<Option<i64>> = if *policy == placement::Policy::LeastDisk {
        futures_util::future::join_all(
            rows.iter_mut()
                .map(|row| async move { look(p, row).await.map(|s| s.disk_bytes) }),
        )
        .await
    } else {
        vec![None; rows.len()]
    };
    for (row, disk) in rows.into_iter().zip(disks) {
        out.push(placement::Candidate {
            name: row.name,
            tenants: row.tenants,
            disk_bytes: disk,
            labels: row.labels,
            draining: row.draining,
            down_reason: row.down_reason,
        });
    }
    Ok(out)
}
