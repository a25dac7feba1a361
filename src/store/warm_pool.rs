//! The `warm_pool` table: unclaimed tenants prepared in the background
//! (docs/warm_pool.md). A member row commits with its objects (one transaction), and a
//! claim deletes it in the create's transaction, so a member is either ready and
//! unclaimed, or gone. The caller owns the transaction.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::Result;
use crate::store::tenants::Isolation;

/// The server berqenas starts with: the shared and database-mode pools live there.
pub const DEFAULT_SERVER: &str = "default";

/// A member of the pool: its id (the claiming tenant's id) and placeholder key.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: Uuid,
    pub key: String,
    pub isolation: Isolation,
    pub template_version: i32,
    /// The PostgreSQL server its objects are on (a create on that server claims it).
    pub server: String,
    /// Its login role's password, sealed as the registry's `credentials` (the role
    /// has it from the refill); `None` for a member made before members had one.
    pub credentials: Option<Vec<u8>>,
}

/// The template version a claim must match.
#[derive(Debug, Clone, Copy)]
pub enum Version<'a> {
    Exactly(i32),
    /// The version a built template records (`template_database`; the shared pool's),
    /// read in the claim's own statement.
    Built(&'a str),
}

fn member(r: &tokio_postgres::Row) -> Result<Member> {
    Ok(Member {
        id: r.try_get("id")?,
        key: r.try_get("key")?,
        isolation: r.try_get("isolation")?,
        template_version: r.try_get("template_version")?,
        server: r.try_get("server")?,
        credentials: r.try_get("credentials")?,
    })
}

pub async fn insert(c: &impl GenericClient, m: &Member) -> Result<()> {
    c.execute(
        &c.prepare_cached(
            "INSERT INTO berqenas.warm_pool
                    (id, key, isolation, template_version, server, credentials)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?,
        &[
            &m.id,
            &m.key,
            &m.isolation.as_str(),
            &m.template_version,
            &m.server,
            &m.credentials,
        ],
    )
    .await?;
    Ok(())
}

/// Takes the oldest member of this mode at exactly `template_version` (a stale member
/// is never handed out), skipping those another claim holds; the row is deleted in
/// the caller's transaction, so a rollback gives it back.
pub async fn claim(
    c: &impl GenericClient,
    server: &str,
    isolation: Isolation,
    version: Version<'_>,
) -> Result<Option<Member>> {
    let (exact, row) = match version {
        Version::Exactly(v) => (Some(v), None),
        Version::Built(name) => (None, Some(name)),
    };
    let row = c
        .query_opt(
            &c.prepare_cached(
                "DELETE FROM berqenas.warm_pool
                  WHERE id = (SELECT id FROM berqenas.warm_pool
                               WHERE server = $1 AND isolation = $2
                                 AND template_version = coalesce($3::int,
                                     (SELECT version FROM berqenas.template_database WHERE name = $4))
                               ORDER BY created_at LIMIT 1
                               FOR UPDATE SKIP LOCKED)
                 RETURNING id, key, isolation, template_version, server, credentials",
            )
            .await?,
            &[&server, &isolation.as_str(), &exact, &row],
        )
        .await?;
    row.as_ref().map(member).transpose()
}

/// Takes one member of this mode on `server` whose template version is not
/// `current` (to be dropped; `only`: that member, if it is stale; `current` `None`:
/// any member, the server is going), skipping those held by another transaction.
pub async fn take_stale(
    c: &impl GenericClient,
    server: &str,
    isolation: Isolation,
    current: Option<i32>,
    only: Option<&str>,
) -> Result<Option<Member>> {
    let row = c
        .query_opt(
            "DELETE FROM berqenas.warm_pool
              WHERE id = (SELECT id FROM berqenas.warm_pool
                           WHERE server = $1 AND isolation = $2
                             AND template_version IS DISTINCT FROM $3
                             AND ($4::text IS NULL OR key = $4)
                           ORDER BY created_at LIMIT 1
                           FOR UPDATE SKIP LOCKED)
             RETURNING id, key, isolation, template_version, server, credentials",
            &[&server, &isolation.as_str(), &current, &only],
        )
        .await?;
    row.as_ref().map(member).transpose()
}

/// Whether any member of this mode is stale (cheap: the round asks before it takes).
pub async fn any_stale(
    c: &impl GenericClient,
    server: &str,
    isolation: Isolation,
    current: i32,
) -> Result<bool> {
    Ok(c.query_one(
        "SELECT EXISTS (SELECT 1 FROM berqenas.warm_pool
                         WHERE server = $1 AND isolation = $2 AND template_version <> $3)",
        &[&server, &isolation.as_str(), &current],
    )
    .await?
    .get(0))
}

/// The keys of the `n` members of this mode at this template version that claims
/// take next (the oldest: [`claim`]'s order).
pub async fn next_keys(
    c: &impl GenericClient,
    server: &str,
    isolation: Isolation,
    template_version: i32,
    n: i64,
) -> Result<Vec<String>> {
    Ok(c.query(
        "SELECT key FROM berqenas.warm_pool
              WHERE server = $1 AND isolation = $2 AND template_version = $3
              ORDER BY created_at LIMIT $4",
        &[&server, &isolation.as_str(), &template_version, &n],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// Ready members of this mode at this template version.
pub async fn count(
    c: &impl GenericClient,
    server: &str,
    isolation: Isolation,
    template_version: i32,
) -> Result<i64> {
    Ok(c.query_one(
        "SELECT count(*) FROM berqenas.warm_pool
          WHERE server = $1 AND isolation = $2 AND template_version = $3",
        &[&server, &isolation.as_str(), &template_version],
    )
    .await?
    .get(0))
}

/// Every member, per server, mode and template version (for `status`).
pub async fn counts(c: &impl GenericClient) -> Result<Vec<Counted>> {
    let rows = c
        .query(
            "SELECT server, isolation, template_version, count(*) FROM berqenas.warm_pool
              GROUP BY 1, 2, 3 ORDER BY server <> 'default', 1, 2, 3",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Counted {
            server: r.get(0),
            isolation: r.get(1),
            template_version: r.get(2),
            members: r.get(3),
        })
        .collect())
}

/// Members of one server, mode and template version.
#[derive(Debug, Clone)]
pub struct Counted {
    pub server: String,
    pub isolation: String,
    pub template_version: i32,
    pub members: i64,
}

/// Members on `server`, any mode or version (a server is removed only without any).
pub async fn on_server(c: &impl GenericClient, server: &str) -> Result<i64> {
    Ok(c.query_one(
        "SELECT count(*) FROM berqenas.warm_pool WHERE server = $1",
        &[&server],
    )
    .await?
    .get(0))
}

/// Serializes the refills of one mode on one server across instances for the rest
/// of the caller's transaction, so two refills never overshoot the target (the second
/// counts after the first commits). Claims never take it.
pub async fn lock_refill(c: &impl GenericClient, server: &str, isolation: Isolation) -> Result<()> {
    let key = match server {
        DEFAULT_SERVER => format!("berqenas.warm_pool:{}", isolation.as_str()),
        other => format!("berqenas.warm_pool:{}:{other}", isolation.as_str()),
    };
    c.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&key])
        .await?;
    Ok(())
}

/// The servers other than `default` a refill round tends, each with whether it takes
/// new tenants (its pool is refilled; a draining or down server's is not): those
/// that do, and those up that hold members (their stale ones are recycled).
pub async fn servers_to_tend(c: &impl GenericClient) -> Result<Vec<(String, bool)>> {
    let rows = c
        .query(
            "SELECT s.name, NOT s.draining AND s.down_reason IS NULL
               FROM berqenas.servers s
              WHERE s.name <> $1 AND s.down_reason IS NULL
                AND (NOT s.draining
                     OR EXISTS (SELECT 1 FROM berqenas.warm_pool w WHERE w.server = s.name))
              ORDER BY s.name",
            &[&DEFAULT_SERVER],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
