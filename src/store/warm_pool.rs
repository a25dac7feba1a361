//! The `warm_pool` table: unclaimed tenants prepared in the background
//! (docs/warm_pool.md). A member row commits with its objects (one transaction), and a
//! claim deletes it in the create's transaction, so a member is either ready and
//! unclaimed, or gone. The caller owns the transaction.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::Result;
use crate::store::tenants::Isolation;

/// The server every member is on until servers are registered.
pub const DEFAULT_SERVER: &str = "default";

/// A member of the pool: its id (the claiming tenant's id) and placeholder key.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: Uuid,
    pub key: String,
    pub isolation: Isolation,
    pub template_version: i32,
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
            &DEFAULT_SERVER,
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
                 RETURNING id, key, isolation, template_version, credentials",
            )
            .await?,
            &[&DEFAULT_SERVER, &isolation.as_str(), &exact, &row],
        )
        .await?;
    row.as_ref().map(member).transpose()
}

/// Takes one member of this mode whose template version is not `current` (to be
/// dropped; `only`: that member, if it is stale), skipping those held by another
/// transaction.
pub async fn take_stale(
    c: &impl GenericClient,
    isolation: Isolation,
    current: i32,
    only: Option<&str>,
) -> Result<Option<Member>> {
    let row = c
        .query_opt(
            "DELETE FROM berqenas.warm_pool
              WHERE id = (SELECT id FROM berqenas.warm_pool
                           WHERE server = $1 AND isolation = $2 AND template_version <> $3
                             AND ($4::text IS NULL OR key = $4)
                           ORDER BY created_at LIMIT 1
                           FOR UPDATE SKIP LOCKED)
             RETURNING id, key, isolation, template_version, credentials",
            &[&DEFAULT_SERVER, &isolation.as_str(), &current, &only],
        )
        .await?;
    row.as_ref().map(member).transpose()
}

/// Whether any member of this mode is stale (cheap: the round asks before it takes).
pub async fn any_stale(c: &impl GenericClient, isolation: Isolation, current: i32) -> Result<bool> {
    Ok(c.query_one(
        "SELECT EXISTS (SELECT 1 FROM berqenas.warm_pool
                         WHERE server = $1 AND isolation = $2 AND template_version <> $3)",
        &[&DEFAULT_SERVER, &isolation.as_str(), &current],
    )
    .await?
    .get(0))
}

/// Ready members of this mode at this template version.
pub async fn count(
    c: &impl GenericClient,
    isolation: Isolation,
    template_version: i32,
) -> Result<i64> {
    Ok(c.query_one(
        "SELECT count(*) FROM berqenas.warm_pool
          WHERE server = $1 AND isolation = $2 AND template_version = $3",
        &[&DEFAULT_SERVER, &isolation.as_str(), &template_version],
    )
    .await?
    .get(0))
}

/// Every member, per mode and template version (for `status`).
pub async fn counts(c: &impl GenericClient) -> Result<Vec<(String, i32, i64)>> {
    let rows = c
        .query(
            "SELECT isolation, template_version, count(*) FROM berqenas.warm_pool
              GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Serializes the refills of one mode across instances for the rest of the caller's
/// transaction, so two refills never overshoot the target (the second counts after
/// the first commits). Claims never take it.
pub async fn lock_refill(c: &impl GenericClient, isolation: Isolation) -> Result<()> {
    c.execute(
        "SELECT pg_advisory_xact_lock(hashtext('berqenas.warm_pool:' || $1))",
        &[&isolation.as_str()],
    )
    .await?;
    Ok(())
}
