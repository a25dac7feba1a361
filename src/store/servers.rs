//! The `servers` table (migration 0032): the PostgreSQL servers tenants are placed on.
//! A server's URL (it carries the credentials) is stored sealed; nothing here opens it.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{found, Result};

/// The server berqenas starts with; it keeps the control database.
pub const DEFAULT: &str = "default";

/// A registered server as stored (its URL still sealed).
#[derive(Clone)]
pub struct ServerRow {
    pub name: String,
    /// `None` for `default` (reached through the platform's own connection).
    pub url_sealed: Option<Vec<u8>>,
    pub host: String,
    pub port: i32,
    pub database: String,
    pub labels: serde_json::Value,
    pub draining: bool,
    pub down_reason: Option<String>,
    pub version: Option<String>,
    pub checked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Tenants that live on it (purged ones left nothing there).
    pub tenants: i64,
    /// The admin console of the PgBouncer in front of it, sealed (`None`: none known).
    pub pgbouncer_admin_sealed: Option<Vec<u8>>,
    /// Unclaimed warm pool members on it (docs/warm_pool.md): not tenants.
    pub warm_pool_members: i64,
}

impl std::fmt::Debug for ServerRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerRow")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "s.name, s.url_sealed, s.host, s.port, s.database_name, s.labels, s.draining, \
     s.down_reason, s.version, s.checked_at, s.created_at, s.pgbouncer_admin_sealed, \
     (SELECT count(*) FROM berqenas.tenants t WHERE t.server = s.name AND t.status <> 'purged') AS tenants, \
     (SELECT count(*) FROM berqenas.warm_pool w WHERE w.server = s.name) AS warm_pool_members";

fn server(row: &Row) -> Result<ServerRow> {
    Ok(ServerRow {
        name: row.try_get("name")?,
        url_sealed: row.try_get("url_sealed")?,
        host: row.try_get("host")?,
        port: row.try_get("port")?,
        database: row.try_get("database_name")?,
        labels: row.try_get("labels")?,
        draining: row.try_get("draining")?,
        down_reason: row.try_get("down_reason")?,
        version: row.try_get("version")?,
        checked_at: row.try_get("checked_at")?,
        created_at: row.try_get("created_at")?,
        tenants: row.try_get("tenants")?,
        pgbouncer_admin_sealed: row.try_get("pgbouncer_admin_sealed")?,
        warm_pool_members: row.try_get("warm_pool_members")?,
    })
}

/// What `POST /api/v1/servers` records once its checks passed.
pub struct NewServer<'a> {
    pub name: &'a str,
    pub url_sealed: &'a [u8],
    pub host: &'a str,
    pub port: i32,
    pub database: &'a str,
    pub labels: &'a serde_json::Value,
    pub version: &'a str,
    pub draining: bool,
    pub pgbouncer_admin_sealed: Option<&'a [u8]>,
}

/// Records a checked server; a taken name is a [`super::Error::Conflict`].
pub async fn insert(c: &impl GenericClient, s: &NewServer<'_>) -> Result<ServerRow> {
    c.execute(
        "INSERT INTO berqenas.servers (name, url_sealed, host, port, database_name, labels, version, draining,
                                       pgbouncer_admin_sealed, checked_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())",
        &[&s.name, &s.url_sealed, &s.host, &s.port, &s.database, s.labels, &s.version, &s.draining,
          &s.pgbouncer_admin_sealed],
    )
    .await?;
    get(c, s.name).await
}

/// Whether any server besides `default` is registered (one index probe: the create
/// path asks it before anything else about servers).
pub async fn others_exist(c: &impl GenericClient) -> Result<bool> {
    // Prepared once per connection: it is on every create's path.
    let stmt = c
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM berqenas.servers WHERE name <> 'default')")
        .await?;
    Ok(c.query_one(&stmt, &[]).await?.get(0))
}

/// Every server, `default` first, then by name.
pub async fn list(c: &impl GenericClient) -> Result<Vec<ServerRow>> {
    c.query(
        &format!("SELECT {COLUMNS} FROM berqenas.servers s ORDER BY s.name <> 'default', s.name"),
        &[],
    )
    .await?
    .iter()
    .map(server)
    .collect()
}

/// The sealed URL of the admin console of the PgBouncer in front of `name`, and the
/// server's database (where its schema-mode tenants live).
pub async fn pgbouncer_admin(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<(Vec<u8>, String)>> {
    Ok(c.query_opt(
        "SELECT pgbouncer_admin_sealed, database_name FROM berqenas.servers
              WHERE name = $1 AND pgbouncer_admin_sealed IS NOT NULL",
        &[&name],
    )
    .await?
    .map(|r| (r.get(0), r.get(1))))
}

/// (name, host, port) of each of these servers that is registered.
pub async fn endpoints(
    c: &impl GenericClient,
    names: &[&str],
) -> Result<Vec<(String, String, i32)>> {
    Ok(c.query(
        "SELECT name::text, host, port FROM berqenas.servers WHERE name = ANY($1) ORDER BY 1",
        &[&names],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect())
}

pub async fn find(c: &impl GenericClient, name: &str) -> Result<Option<ServerRow>> {
    c.query_opt(
        &format!("SELECT {COLUMNS} FROM berqenas.servers s WHERE s.name = $1"),
        &[&name],
    )
    .await?
    .as_ref()
    .map(server)
    .transpose()
}

pub async fn get(c: &impl GenericClient, name: &str) -> Result<ServerRow> {
    found(find(c, name).await?)
}

/// The row, locked for the rest of the caller's transaction.
pub async fn lock(c: &impl GenericClient, name: &str) -> Result<bool> {
    Ok(c.query_opt(
        "SELECT 1 FROM berqenas.servers WHERE name = $1 FOR UPDATE",
        &[&name],
    )
    .await?
    .is_some())
}

/// Changes labels, draining and/or the PgBouncer console (`Some(None)` forgets it);
/// `None` leaves a field as it is.
pub async fn update(
    c: &impl GenericClient,
    name: &str,
    labels: Option<&serde_json::Value>,
    draining: Option<bool>,
    pgbouncer_admin_sealed: Option<Option<&[u8]>>,
) -> Result<ServerRow> {
    let n = c
        .execute(
            "UPDATE berqenas.servers SET labels = COALESCE($2, labels),
                    draining = COALESCE($3, draining),
                    pgbouncer_admin_sealed = CASE WHEN $4 THEN $5 ELSE pgbouncer_admin_sealed END,
                    updated_at = now()
              WHERE name = $1",
            &[
                &name,
                &labels,
                &draining,
                &pgbouncer_admin_sealed.is_some(),
                &pgbouncer_admin_sealed.flatten(),
            ],
        )
        .await?;
    if n == 0 {
        return Err(super::Error::NotFound);
    }
    get(c, name).await
}

/// What the last check found: its version, or why it could not be reached.
pub async fn set_health(
    c: &impl GenericClient,
    name: &str,
    version: Option<&str>,
    down_reason: Option<&str>,
) -> Result<()> {
    c.execute(
        "UPDATE berqenas.servers SET version = COALESCE($2, version), down_reason = $3,
                checked_at = now()
          WHERE name = $1",
        &[&name, &version, &down_reason],
    )
    .await?;
    Ok(())
}

/// Where `default` is (shown, never used to connect: the platform's own connection is).
pub async fn set_default_endpoint(
    c: &impl GenericClient,
    host: &str,
    port: i32,
    database: &str,
) -> Result<()> {
    c.execute(
        "UPDATE berqenas.servers SET host = $1, port = $2, database_name = $3
          WHERE name = 'default' AND (host, port, database_name) IS DISTINCT FROM ($1, $2, $3)",
        &[&host, &port, &database],
    )
    .await?;
    Ok(())
}

/// Removes an empty server. `Ok(Err(count))`: it still has tenants (nothing removed).
pub async fn delete_if_empty(
    c: &impl GenericClient,
    name: &str,
) -> Result<std::result::Result<(), i64>> {
    let row = c
        .query_one(
            "WITH n AS (SELECT count(*) AS c FROM berqenas.tenants WHERE server = $1),
                  d AS (DELETE FROM berqenas.servers
                         WHERE name = $1 AND (SELECT c FROM n) = 0 RETURNING 1)
             SELECT (SELECT c FROM n), EXISTS (SELECT 1 FROM d)",
            &[&name],
        )
        .await?;
    let (count, deleted): (i64, bool) = (row.get(0), row.get(1));
    match (deleted, count) {
        (true, _) => Ok(Ok(())),
        (false, 0) => Err(super::Error::NotFound),
        (false, n) => Ok(Err(n)),
    }
}

/// Moves a registry row to a server (a placed create registers it there).
pub async fn place_tenant(c: &impl GenericClient, tenant: uuid::Uuid, server: &str) -> Result<()> {
    c.execute(
        "UPDATE berqenas.tenants SET server = $2 WHERE id = $1",
        &[&tenant, &server],
    )
    .await?;
    Ok(())
}

/// Points a registry row at the server (and database) a move copied it to: the
/// move's point of no return (`workflows::move_tenant`).
pub async fn move_tenant(
    c: &impl GenericClient,
    tenant: uuid::Uuid,
    server: &str,
    database: &str,
) -> Result<()> {
    c.execute(
        "UPDATE berqenas.tenants SET server = $2, database_name = $3, updated_at = now() WHERE id = $1",
        &[&tenant, &server, &database],
    )
    .await?;
    Ok(())
}

/// [`move_tenant`] into another isolation mode (docs/moves.md): the mode changes with
/// the server and database, in the caller's transaction.
pub async fn move_tenant_mode(
    c: &impl GenericClient,
    tenant: uuid::Uuid,
    server: &str,
    database: &str,
    isolation: &str,
    schema: &str,
) -> Result<()> {
    c.execute(
        "UPDATE berqenas.tenants SET server = $2, database_name = $3, isolation = $4, schema_name = $5, updated_at = now() WHERE id = $1",
        &[&tenant, &server, &database, &isolation, &schema],
    )
    .await?;
    Ok(())
}
