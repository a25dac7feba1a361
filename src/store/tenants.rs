//! The `tenants` table: the registry row, lists and counts, status and suspension,
//! sealed credentials, template versions, and the reads that join other tables onto
//! it (metrics, disk measurement, the integrity round). The caller owns the
//! transaction.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{found, Result};
use crate::pg::Ident;
use crate::tenant::{AccessMode, Isolation, Slug, Status, Tenant};

const COLUMNS: &str = "id, name, status, plan, isolation, schema_name, database_name, login_role, owner_role, \
                       db_quota_bytes, vpn_enabled, public_api, template_version, trial_ends_at, metadata, created_at, updated_at, \
                       suspended_at, suspension_reason";

/// Decodes a registry row once: its names into their types. A row that does not
/// decode is this read's error.
fn tenant(row: &Row) -> Result<Tenant> {
    let vpn_enabled = row.try_get("vpn_enabled")?;
    let public_api = row.try_get("public_api")?;
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        status: row.try_get("status")?,
        plan: row.try_get("plan")?,
        isolation: row.try_get("isolation")?,
        schema: row.try_get("schema_name")?,
        database: row.try_get("database_name")?,
        role: row.try_get("login_role")?,
        owner_role: row.try_get("owner_role")?,
        db_quota_bytes: row.try_get("db_quota_bytes")?,
        vpn_enabled,
        public_api,
        access_mode: AccessMode::derive(vpn_enabled, public_api),
        template_version: row.try_get("template_version")?,
        trial_ends_at: row.try_get("trial_ends_at")?,
        suspended_at: row.try_get("suspended_at")?,
        suspension_reason: row.try_get("suspension_reason")?,
        metadata: row.try_get("metadata")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The row to insert for a new tenant.
pub struct NewTenant<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub status: Status,
    pub plan: &'a str,
    pub isolation: Isolation,
    pub schema: Option<&'a str>,
    pub database: &'a str,
    pub login_role: &'a str,
    pub owner_role: &'a str,
    pub db_quota_bytes: i64,
    pub vpn_enabled: bool,
    pub public_api: bool,
    pub template_version: i32,
    pub metadata: &'a serde_json::Value,
    pub credentials: &'a [u8],
    /// Days of trial from now; 0 for none.
    pub trial_days: i32,
}

/// Inserts a tenant; a taken name is [`super::Error::Conflict`].
pub async fn insert(c: &impl GenericClient, t: &NewTenant<'_>) -> Result<Tenant> {
    let sql = format!(
        "INSERT INTO berqenas.tenants (id, name, status, plan, isolation, schema_name, database_name, login_role,
             owner_role, db_quota_bytes, vpn_enabled, public_api, template_version, metadata, credentials, trial_ends_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                 CASE WHEN $16 > 0 THEN now() + make_interval(days => $16) END)
         RETURNING {COLUMNS}"
    );
    let row = c
        .query_one(
            &c.prepare_cached(&sql).await?,
            &[
                &t.id,
                &t.name,
                &t.status.as_str(),
                &t.plan,
                &t.isolation.as_str(),
                &t.schema,
                &t.database,
                &t.login_role,
                &t.owner_role,
                &t.db_quota_bytes,
                &t.vpn_enabled,
                &t.public_api,
                &t.template_version,
                t.metadata,
                &t.credentials,
                &t.trial_days,
            ],
        )
        .await?;
    tenant(&row)
}

/// Finds a tenant by name, or by id when `key` is a UUID.
pub async fn find(c: &impl GenericClient, key: &str) -> Result<Option<Tenant>> {
    let row = match key.parse::<Uuid>() {
        Ok(id) => {
            c.query_opt(
                &c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM berqenas.tenants WHERE id = $1"
                ))
                .await?,
                &[&id],
            )
            .await?
        }
        Err(_) => {
            c.query_opt(
                &c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM berqenas.tenants WHERE name = $1"
                ))
                .await?,
                &[&key],
            )
            .await?
        }
    };
    row.as_ref().map(tenant).transpose()
}

/// A tenant by id that must exist (the caller holds its row, or just read it).
pub async fn get(c: &impl GenericClient, id: Uuid) -> Result<Tenant> {
    found(find(c, &id.to_string()).await?)
}

/// Like [`find`], locking the row for the rest of the transaction.
pub async fn find_for_update(c: &impl GenericClient, key: &str) -> Result<Option<Tenant>> {
    let id = key.parse::<Uuid>().ok();
    let row = c
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM berqenas.tenants
                 WHERE ($1::uuid IS NOT NULL AND id = $1) OR ($1::uuid IS NULL AND name = $2)
                 FOR UPDATE"
            ),
            &[&id, &key],
        )
        .await?;
    row.as_ref().map(tenant).transpose()
}

/// A page of tenants in creation order (ids are UUIDv7, so ordered by time).
pub async fn list(
    c: &impl GenericClient,
    status: Option<&str>,
    plan: Option<&str>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Tenant>> {
    let rows = c
        .query(
            &format!(
                "SELECT {COLUMNS} FROM berqenas.tenants
                 WHERE ($1::text IS NULL OR status = $1)
                   AND ($2::text IS NULL OR plan = $2)
                   AND ($3::uuid IS NULL OR id > $3)
                 ORDER BY id LIMIT $4"
            ),
            &[&status, &plan, &after, &limit],
        )
        .await?;
    rows.iter().map(tenant).collect()
}

pub async fn count_by_status(c: &impl GenericClient) -> Result<Vec<(String, i64)>> {
    let rows = c
        .query(
            "SELECT status, count(*) FROM berqenas.tenants GROUP BY status ORDER BY status",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Tenants by (status, plan, isolation), for the metrics.
pub async fn count_by_status_plan_isolation(
    c: &impl GenericClient,
) -> Result<Vec<(String, String, String, i64)>> {
    let rows = c
        .query(
            "SELECT status, plan, isolation, count(*) FROM berqenas.tenants GROUP BY 1, 2, 3",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// One live tenant's resources for the metrics.
pub struct ResourceRow {
    pub name: String,
    pub disk_bytes: i64,
    pub db_quota_bytes: i64,
    pub connections: i64,
    pub max_connections: i32,
    pub writes_blocked: bool,
}

/// Disk and connections against their quotas, for every live tenant, in one statement.
pub async fn resource_rows(c: &impl GenericClient) -> Result<Vec<ResourceRow>> {
    let rows = c
        .query(
            "SELECT t.name, coalesce(u.bytes, 0), t.db_quota_bytes, coalesce(c.n, 0), q.max_connections,
                    coalesce(u.writes_blocked, false)
               FROM berqenas.tenants t
               JOIN berqenas.effective_quotas q ON q.tenant_id = t.id
               LEFT JOIN berqenas.disk_usage u ON u.tenant_id = t.id
               LEFT JOIN (SELECT l.id, count(*) AS n FROM pg_stat_activity a
                            JOIN (SELECT id, login_role AS role FROM berqenas.tenants
                                  UNION ALL SELECT tenant_id, db_user FROM berqenas.tenant_users) l
                              ON l.role = a.usename
                           GROUP BY l.id) c ON c.id = t.id
              WHERE t.status IN ('trial', 'active', 'suspended')",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ResourceRow {
            name: r.get(0),
            disk_bytes: r.get(1),
            db_quota_bytes: r.get(2),
            connections: r.get(3),
            max_connections: r.get(4),
            writes_blocked: r.get(5),
        })
        .collect())
}

/// The names of every tenant still in PostgreSQL (purged and failed ones have no roles).
pub async fn names_with_roles(c: &impl GenericClient) -> Result<Vec<Slug>> {
    let rows = c
        .query(
            "SELECT name FROM berqenas.tenants WHERE status NOT IN ('purged', 'failed')",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// Tenants that hold data: everything but deleted, purged and failed.
pub async fn count_live(c: &impl GenericClient) -> Result<i64> {
    let row = c
        .query_one(
            "SELECT count(*) FROM berqenas.tenants WHERE status NOT IN ('deleted','purged','failed')",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// The changeable fields; `None` leaves a field as it is.
pub struct Changes<'a> {
    pub plan: Option<&'a str>,
    pub db_quota_bytes: Option<i64>,
    pub vpn_enabled: Option<bool>,
    pub public_api: Option<bool>,
    pub metadata: Option<&'a serde_json::Value>,
}

pub async fn update(c: &impl GenericClient, id: Uuid, ch: &Changes<'_>) -> Result<Tenant> {
    let row = c
        .query_opt(
            &format!(
                "UPDATE berqenas.tenants SET
                     plan = coalesce($2, plan),
                     db_quota_bytes = coalesce($3, db_quota_bytes),
                     vpn_enabled = coalesce($4, vpn_enabled),
                     public_api = coalesce($5, public_api),
                     metadata = coalesce($6, metadata),
                     updated_at = now()
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &ch.plan,
                &ch.db_quota_bytes,
                &ch.vpn_enabled,
                &ch.public_api,
                &ch.metadata,
            ],
        )
        .await?;
    tenant(&found(row)?)
}

pub async fn set_status(c: &impl GenericClient, id: Uuid, status: Status) -> Result<Tenant> {
    let row = c
        .query_opt(
            &format!("UPDATE berqenas.tenants SET status = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"),
            &[&id, &status.as_str()],
        )
        .await?;
    tenant(&found(row)?)
}

/// The disk quota: `Some(bytes)`, or `None` for the plan's storage.
pub async fn set_db_quota(c: &impl GenericClient, id: Uuid, bytes: Option<i64>) -> Result<()> {
    c.execute(
        "UPDATE berqenas.tenants t SET db_quota_bytes = coalesce($2, p.storage_bytes), updated_at = now()
           FROM berqenas.plans p WHERE p.name = t.plan AND t.id = $1",
        &[&id, &bytes],
    )
    .await?;
    Ok(())
}

pub async fn delete(c: &impl GenericClient, id: Uuid) -> Result<()> {
    c.execute("DELETE FROM berqenas.tenants WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

/// The tenant's sealed login password.
pub async fn sealed_credentials(c: &impl GenericClient, id: Uuid) -> Result<Vec<u8>> {
    let row = c
        .query_opt(
            "SELECT credentials FROM berqenas.tenants WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(found(row)?.get(0))
}

/// Like [`sealed_credentials`], locking the row (`None`: no such tenant).
pub async fn sealed_credentials_for_update(
    c: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Vec<u8>>> {
    Ok(c.query_opt(
        "SELECT credentials FROM berqenas.tenants WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await?
    .map(|r| r.get(0)))
}

/// A new sealed password and the SHA-256 of the verifier it was set with.
pub async fn set_credentials(
    c: &impl GenericClient,
    id: Uuid,
    sealed: &[u8],
    verifier_sha256: &[u8],
) -> Result<()> {
    c.execute(
        "UPDATE berqenas.tenants SET credentials = $2, verifier_sha256 = $3, updated_at = now() WHERE id = $1",
        &[&id, &sealed, &verifier_sha256],
    )
    .await?;
    Ok(())
}

/// Records the SHA-256 of the login role's verifier as last seen.
pub async fn set_verifier_sha256(c: &impl GenericClient, id: Uuid, sha: &[u8]) -> Result<()> {
    c.execute(
        "UPDATE berqenas.tenants SET verifier_sha256 = $2 WHERE id = $1",
        &[&id, &sha],
    )
    .await?;
    Ok(())
}

/// The verifier hashes last seen, keyed by (tenant, user): `None` for the tenant's
/// own login role, the user's id for a user's.
pub async fn verifier_hashes(
    c: &impl GenericClient,
) -> Result<Vec<((Uuid, Option<Uuid>), Option<Vec<u8>>)>> {
    Ok(c.query(
        "SELECT id, NULL::uuid, verifier_sha256 FROM berqenas.tenants
             UNION ALL SELECT tenant_id, id, verifier_sha256 FROM berqenas.tenant_users",
        &[],
    )
    .await?
    .iter()
    .map(|r| ((r.get(0), r.get(1)), r.get(2)))
    .collect())
}

/// Records a suspension: status, time, reason, and what was taken (the login roles
/// disabled and the memberships revoked, as JSON).
pub async fn mark_suspended(
    c: &impl GenericClient,
    id: Uuid,
    reason: Option<&str>,
    roles: &[String],
    memberships: &serde_json::Value,
) -> Result<()> {
    c.execute(
        "UPDATE berqenas.tenants
            SET status = 'suspended', suspended_at = now(), suspension_reason = $2,
                suspended_roles = $3, suspended_memberships = $4, updated_at = now()
          WHERE id = $1",
        &[&id, &reason, &roles, memberships],
    )
    .await?;
    Ok(())
}

/// What a suspension took: (login roles, memberships as JSON); `None` each when it
/// was recorded before they were.
pub async fn suspension_record(
    c: &impl GenericClient,
    id: Uuid,
) -> Result<(Option<Vec<String>>, Option<serde_json::Value>)> {
    let row = c
        .query_opt(
            "SELECT suspended_roles, suspended_memberships FROM berqenas.tenants WHERE id = $1",
            &[&id],
        )
        .await?;
    let row = found(row)?;
    Ok((row.get(0), row.get(1)))
}

/// Active again, the suspension's record cleared.
pub async fn clear_suspension(c: &impl GenericClient, id: Uuid) -> Result<()> {
    c.execute(
        "UPDATE berqenas.tenants
            SET status = 'active', suspended_at = NULL, suspension_reason = NULL,
                suspended_roles = NULL, suspended_memberships = NULL, updated_at = now()
          WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

/// Trials that have ended, claimed (locked, skipping rows others hold).
pub async fn claim_ended_trials(c: &impl GenericClient, limit: i64) -> Result<Vec<Uuid>> {
    Ok(c.query(
        "SELECT id FROM berqenas.tenants WHERE status = 'trial' AND trial_ends_at <= now()
              ORDER BY trial_ends_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        &[&limit],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// Purged tenants without a succeeded backup left (their archive expired), claimed.
pub async fn claim_released_names(c: &impl GenericClient) -> Result<Vec<(Uuid, String)>> {
    Ok(c
        .query(
            "SELECT t.id, t.name FROM berqenas.tenants t
              WHERE t.status = 'purged'
                AND NOT EXISTS (SELECT 1 FROM berqenas.backups b WHERE b.tenant_id = t.id AND b.status = 'succeeded')
              FOR UPDATE SKIP LOCKED",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// The template version the registry records for a tenant (`None`: no such tenant).
pub async fn template_version(c: &impl GenericClient, id: Uuid) -> Result<Option<i32>> {
    Ok(c.query_opt(
        "SELECT template_version FROM berqenas.tenants WHERE id = $1",
        &[&id],
    )
    .await?
    .map(|r| r.get(0)))
}

pub async fn set_template_version(c: &impl GenericClient, id: Uuid, version: i32) -> Result<()> {
    c.execute(
        "UPDATE berqenas.tenants SET template_version = $2, updated_at = now() WHERE id = $1",
        &[&id, &version],
    )
    .await?;
    Ok(())
}

/// Every shared-mode tenant below `target` moves to it (the pool's tables moved);
/// returns (id, name, old version) of each.
pub async fn move_shared_to_version(
    c: &impl GenericClient,
    target: i32,
) -> Result<Vec<(Uuid, String, i32)>> {
    Ok(c.query(
        "UPDATE berqenas.tenants t SET template_version = $1, updated_at = now()
               FROM (SELECT id, template_version AS old FROM berqenas.tenants
                      WHERE isolation = 'shared' AND template_version < $1 FOR UPDATE) o
              WHERE t.id = o.id
          RETURNING t.id, t.name, o.old",
        &[&target],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect())
}

/// Tenants per template version among those in `statuses`.
pub async fn count_by_version(
    c: &impl GenericClient,
    statuses: &[&str],
) -> Result<Vec<(i32, i64)>> {
    Ok(c.query(
        "SELECT template_version, count(*) FROM berqenas.tenants
              WHERE status = ANY($1) GROUP BY 1 ORDER BY 1",
        &[&statuses],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

/// A tenant below a migration's target version, and where its objects are.
#[derive(serde::Deserialize)]
pub struct MigrationCandidate {
    pub id: Uuid,
    pub name: Slug,
    pub isolation: Isolation,
    pub schema: Option<Ident>,
    pub database: Ident,
    pub owner: Ident,
    pub version: i32,
}

/// What a migration run would do, in one row whatever the count: how many of the
/// selected tenants (in `statuses`) are at `target` already, and the others, oldest
/// first.
pub async fn migration_candidates(
    c: &impl GenericClient,
    statuses: &[&str],
    tenant_id: Option<Uuid>,
    plan: Option<&str>,
    isolation: Option<&str>,
    target: i32,
) -> Result<(i64, Vec<MigrationCandidate>)> {
    let row = c
        .query_one(
            "SELECT count(*) FILTER (WHERE template_version >= $4) AS current,
                    coalesce(json_agg(json_build_object(
                        'id', id, 'name', name, 'isolation', isolation,
                        'schema', schema_name, 'database', database_name,
                        'owner', owner_role, 'version', template_version)
                      ORDER BY created_at, id) FILTER (WHERE template_version < $4), '[]') AS pending
               FROM berqenas.tenants
              WHERE status = ANY($5)
                AND ($1::uuid IS NULL OR id = $1)
                AND ($2::text IS NULL OR plan = $2)
                AND ($3::text IS NULL OR isolation = $3)",
            &[&tenant_id, &plan, &isolation, &target, &statuses],
        )
        .await?;
    let pending =
        serde_json::from_value(row.try_get("pending")?).map_err(|source| super::Error::Decode {
            what: "tenants",
            source,
        })?;
    Ok((row.try_get("current")?, pending))
}

/// A tenant whose roles the integrity round checks.
pub struct LiveRoles {
    pub id: Uuid,
    pub name: Slug,
    pub isolation: Isolation,
    pub schema: Option<Ident>,
}

/// Every tenant that has roles (not provisioning, purged or failed), by id. A row
/// that does not decode is left out (logged): one bad row must not stop the round
/// for every other tenant.
pub async fn with_roles(c: &impl GenericClient) -> Result<Vec<LiveRoles>> {
    Ok(c.query(
        "SELECT id, name, isolation, schema_name FROM berqenas.tenants
              WHERE status NOT IN ('provisioning', 'purged', 'failed') ORDER BY id",
        &[],
    )
    .await?
    .iter()
    .filter_map(|r| {
        let decoded = (|| {
            Ok::<_, tokio_postgres::Error>(LiveRoles {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                isolation: r.try_get(2)?,
                schema: r.try_get(3)?,
            })
        })();
        decoded
            .map_err(|e| tracing::error!(error = %e, "a registry row does not decode; skipped"))
            .ok()
    })
    .collect())
}

/// Database-mode tenants whose database is below hardening level `level`: (id, database).
pub async fn below_hardening_level(
    c: &impl GenericClient,
    level: i32,
    limit: i64,
) -> Result<Vec<(Uuid, Ident)>> {
    Ok(c.query(
        "SELECT id, database_name FROM berqenas.tenants
              WHERE isolation = 'database' AND hardening_level < $1
                AND status NOT IN ('provisioning', 'purged', 'failed')
              ORDER BY id LIMIT $2",
        &[&level, &limit],
    )
    .await?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect::<Result<_, tokio_postgres::Error>>()?)
}

pub async fn set_hardening_level(c: &impl GenericClient, id: Uuid, level: i32) -> Result<()> {
    c.execute(
        "UPDATE berqenas.tenants SET hardening_level = $2 WHERE id = $1",
        &[&id, &level],
    )
    .await?;
    Ok(())
}

/// The tenants whose data is measured and whose quota is enforced.
const LIVE: &str = "('trial', 'active', 'suspended')";

/// Live schema-mode tenants (or just `only`) whose schema exists: (id, schema).
pub async fn live_schemas(
    c: &impl GenericClient,
    only: Option<Uuid>,
) -> Result<Vec<(Uuid, String)>> {
    Ok(c
        .query(
            &format!(
                "SELECT t.id, t.schema_name::text FROM berqenas.tenants t
                   JOIN pg_namespace n ON n.nspname = t.schema_name
                  WHERE t.isolation = 'schema' AND t.status IN {LIVE} AND ($1::uuid IS NULL OR t.id = $1)"
            ),
            &[&only],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Live database-mode tenants (or just `only`) and their databases' sizes less that
/// of `template` (the catalogs every database carries): (id, bytes).
pub async fn live_database_sizes(
    c: &impl GenericClient,
    only: Option<Uuid>,
    template: &str,
) -> Result<Vec<(Uuid, i64)>> {
    Ok(c
        .query(
            &format!(
                "SELECT t.id, greatest(pg_database_size(d.oid) - coalesce(
                        (SELECT pg_database_size(x.oid) FROM pg_database x WHERE x.datname = $2), 0), 0)::bigint
                   FROM berqenas.tenants t JOIN pg_database d ON d.datname = t.database_name
                  WHERE t.isolation = 'database' AND t.status IN {LIVE} AND ($1::uuid IS NULL OR t.id = $1)"
            ),
            &[&only, &template],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Live shared-mode tenants (or just `only`).
pub async fn live_shared(c: &impl GenericClient, only: Option<Uuid>) -> Result<Vec<Uuid>> {
    Ok(c.query(
        &format!(
                "SELECT id FROM berqenas.tenants
                  WHERE isolation = 'shared' AND status IN {LIVE} AND ($1::uuid IS NULL OR id = $1)"
            ),
        &[&only],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// Temporary relations owned by the login roles (the tenant's and its users') of
/// schema- and shared-mode tenants (or just `only`): (tenant id, relation oid).
pub async fn temp_relations(
    c: &impl GenericClient,
    only: Option<Uuid>,
) -> Result<Vec<(Uuid, u32)>> {
    Ok(c.query(
        "WITH logins AS (
                 SELECT id, login_role AS role FROM berqenas.tenants
                  WHERE isolation IN ('schema', 'shared') AND ($1::uuid IS NULL OR id = $1)
                 UNION ALL
                 SELECT u.tenant_id, u.db_user FROM berqenas.tenant_users u
                   JOIN berqenas.tenants t ON t.id = u.tenant_id
                  WHERE t.isolation IN ('schema', 'shared') AND ($1::uuid IS NULL OR t.id = $1))
             SELECT l.id, c.oid FROM logins l JOIN pg_catalog.pg_roles r ON r.rolname = l.role
               JOIN pg_catalog.pg_class c ON c.relowner = r.oid
              WHERE c.relpersistence = 't' AND c.relkind IN ('r', 'm', 'S')",
        &[&only],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

/// Open sessions of the tenant's login roles (its own and its users').
pub async fn open_sessions(c: &impl GenericClient, id: Uuid) -> Result<i64> {
    let stmt = c
        .prepare_cached(
            "SELECT count(*) FROM pg_stat_activity a
              WHERE a.usename IN (SELECT login_role FROM berqenas.tenants WHERE id = $1
                                  UNION ALL SELECT db_user FROM berqenas.tenant_users WHERE tenant_id = $1)",
        )
        .await?;
    Ok(c.query_one(&stmt, &[&id]).await?.get(0))
}

/// A backend one watchdog pass signalled.
pub struct Signalled {
    pub pid: i32,
    pub role: String,
    pub action: String,
    pub reason: String,
    pub blocked: Vec<i32>,
}

/// The watchdog's pass (see `quota::watchdog`), `$1`: the blocking grace in seconds.
/// `pg_blocking_pids` is not cheap (it takes the lock manager's partition locks), so it
/// is asked only about backends that have waited longer than the grace; `waiting` is
/// materialized to keep that order.
const WATCHDOG_PASS: &str = "
WITH logins AS (
    SELECT t.id, t.login_role AS role FROM berqenas.tenants t
    UNION ALL
    SELECT u.tenant_id, u.db_user FROM berqenas.tenant_users u
), backends AS MATERIALIZED (
    SELECT a.pid, a.usename::text AS role, l.id AS tenant_id, a.state, a.query_start,
           a.state_change, a.xact_start, q.statement_timeout_ms, q.transaction_timeout_ms
      FROM pg_stat_activity a
      JOIN logins l ON l.role = a.usename
      JOIN berqenas.effective_quotas q ON q.tenant_id = l.id
     WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
), waiting AS MATERIALIZED (
    -- Any backend (a tenant's, berqenas's, anyone's) waiting past the grace, and the
    -- tenant it belongs to (NULL: none).
    SELECT DISTINCT w.pid, wl.id AS tenant_id
      FROM pg_locks w
      LEFT JOIN pg_stat_activity wa ON wa.pid = w.pid
      LEFT JOIN logins wl ON wl.role = wa.usename
     WHERE NOT w.granted AND w.pid IS NOT NULL
       AND w.waitstart < clock_timestamp() - make_interval(secs => $1::float8)
), blocked AS MATERIALIZED (
    SELECT w.pid AS waiter, w.tenant_id AS waiter_tenant, unnest(pg_blocking_pids(w.pid)) AS blocker
      FROM waiting w
), overdue AS (
    -- A tenant may hold itself up; holding up anyone else ends the session.
    SELECT b.pid, b.role, 'terminate' AS action, 'blocking' AS reason, 1 AS rank,
           array_agg(DISTINCT x.waiter) AS blocked
      FROM backends b
      JOIN blocked x ON x.blocker = b.pid
     WHERE x.waiter_tenant IS DISTINCT FROM b.tenant_id
     GROUP BY b.pid, b.role
    UNION ALL
    SELECT pid, role, 'terminate', 'transaction', 2, '{}'::int[]
      FROM backends
     WHERE xact_start < clock_timestamp() - make_interval(secs => transaction_timeout_ms / 1000.0)
    UNION ALL
    SELECT pid, role,
           CASE WHEN state <> 'active'
                  OR query_start < clock_timestamp() - make_interval(secs => statement_timeout_ms * 2 / 1000.0)
                THEN 'terminate' ELSE 'cancel' END,
           CASE WHEN state = 'active' THEN 'statement' ELSE 'idle_in_transaction' END,
           3, '{}'::int[]
      FROM backends
     WHERE (state = 'active'
            AND query_start < clock_timestamp() - make_interval(secs => statement_timeout_ms / 1000.0))
        OR (state IN ('idle in transaction', 'idle in transaction (aborted)')
            AND state_change < clock_timestamp() - make_interval(secs => statement_timeout_ms * 2 / 1000.0))
), chosen AS (
    -- One signal per backend: ending it outranks cancelling its statement.
    SELECT DISTINCT ON (pid) pid, role, action, reason, blocked
      FROM overdue
     ORDER BY pid, action = 'terminate' DESC, rank
)
SELECT pid, role, action, reason, blocked,
       CASE WHEN action = 'terminate' THEN pg_terminate_backend(pid) ELSE pg_cancel_backend(pid) END
  FROM chosen";

/// Signals every tenant session over its hard time limits, or holding up another
/// tenant's (or berqenas's) for longer than `blocking_grace_secs`, in one statement;
/// returns those the server signalled.
pub async fn signal_overdue_sessions(
    c: &impl GenericClient,
    blocking_grace_secs: f64,
) -> Result<Vec<Signalled>> {
    let stmt = c.prepare_cached(WATCHDOG_PASS).await?;
    Ok(c.query(&stmt, &[&blocking_grace_secs])
        .await?
        .iter()
        .filter(|r| r.get::<_, Option<bool>>(5).unwrap_or(false))
        .map(|r| Signalled {
            pid: r.get(0),
            role: r.get(1),
            action: r.get(2),
            reason: r.get(3),
            blocked: r.get(4),
        })
        .collect())
}

/// The key with this public id, with the tenant it belongs to, in one round trip
/// (every data API request asks).
pub async fn find_by_api_key(
    c: &impl GenericClient,
    public_id: &str,
) -> Result<Option<super::api_keys::StoredKey>> {
    let cols = COLUMNS
        .split(", ")
        .map(|c| format!("t.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT k.id AS key_id, k.hash,
                k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()) AS usable,
                {cols}
           FROM berqenas.api_keys k JOIN berqenas.tenants t ON t.id = k.tenant_id
          WHERE k.prefix = $1"
    );
    let row = c
        .query_opt(&c.prepare_cached(&sql).await?, &[&public_id])
        .await?;
    row.map(|r| {
        Ok(super::api_keys::StoredKey {
            id: r.try_get("key_id")?,
            hash: r.try_get("hash")?,
            usable: r.try_get("usable")?,
            tenant: tenant(&r)?,
        })
    })
    .transpose()
}
