//! The `tenants` table: the registry row, lists and counts, status and suspension,
//! sealed credentials, template versions, and the reads that join other tables onto
//! it (metrics, disk measurement, the integrity round). The caller owns the
//! transaction.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

pub mod record;
pub mod search;
mod usage;

pub use usage::*;

use super::{found, Result};
use crate::names::Slug;
use crate::pg::Ident;
pub use record::{AccessMode, Isolation, Plan, Status, Tenant, VectorStoreRef};

/// The registry row (`t`) and, while the tenant is deleted or purged, what its delete
/// recorded (`o`) and its archive's expiry (`b`): with [`JOINS`], one shape of a
/// tenant for every read.
/// The registry's own columns of a read (`t`: the tenants table).
macro_rules! own_columns {
    () => {
        "t.id, t.name, t.status, t.plan, t.isolation, t.schema_name, t.database_name, t.login_role, \
         t.owner_role, t.db_quota_bytes, t.vpn_enabled, t.vpn_subnet::text AS vpn_subnet, t.public_api, t.template_version, t.trial_ends_at, \
         t.metadata, t.integrations, t.vector_store, t.server, t.created_at, t.updated_at, t.suspended_at, t.suspension_reason"
    };
}

const COLUMNS: &str = concat!(
    own_columns!(),
    ", o.previous_status, o.purge_after, o.purged_at, o.final_backup_id, \
     b.expires_at AS archive_expires_at, \
     ARRAY(SELECT a.kind FROM berqenas.auth_providers a WHERE a.tenant_id = t.id ORDER BY a.kind) AS auth_providers"
);

/// [`COLUMNS`] of a row just inserted: no offboarding, archive or auth provider can
/// name it yet, so nothing is joined (a create plans its insert again after every
/// schema's DDL: the joins were half of that).
const INSERTED_COLUMNS: &str = concat!(
    own_columns!(),
    ", NULL::text AS previous_status, NULL::timestamptz AS purge_after, NULL::timestamptz AS purged_at, \
     NULL::uuid AS final_backup_id, NULL::timestamptz AS archive_expires_at, '{}'::text[] AS auth_providers"
);

const JOINS: &str =
    "LEFT JOIN berqenas.offboarding o ON o.tenant_id = t.id AND t.status IN ('deleted', 'purged') \
                     LEFT JOIN berqenas.backups b ON b.id = o.final_backup_id";

/// A statement that changes registry rows (`RETURNING *`), answering them in the
/// shape every read has.
fn changed(statement: &str) -> String {
    format!("WITH t AS ({statement} RETURNING *) SELECT {COLUMNS} FROM t {JOINS}")
}

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
        vpn_subnet: row.try_get("vpn_subnet")?,
        public_api,
        access_mode: AccessMode::derive(vpn_enabled, public_api),
        template_version: row.try_get("template_version")?,
        trial_ends_at: row.try_get("trial_ends_at")?,
        suspended_at: row.try_get("suspended_at")?,
        suspension_reason: row.try_get("suspension_reason")?,
        metadata: row.try_get("metadata")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        previous_status: row.try_get("previous_status")?,
        purge_after: row.try_get("purge_after")?,
        purged_at: row.try_get("purged_at")?,
        final_backup_id: row.try_get("final_backup_id")?,
        archive_expires_at: row.try_get("archive_expires_at")?,
        integrations: row.try_get("integrations")?,
        auth_providers: row.try_get("auth_providers")?,
        vector_store: row
            .try_get::<_, Option<serde_json::Value>>("vector_store")?
            .and_then(|v| serde_json::from_value(v).ok()),
        server: row.try_get("server")?,
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
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "INSERT INTO berqenas.tenants AS t (id, name, status, plan, isolation, schema_name, database_name,
                 login_role, owner_role, db_quota_bytes, vpn_enabled, public_api, template_version, metadata,
                 credentials, trial_ends_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                     CASE WHEN $16 > 0 THEN now() + make_interval(days => $16) END)
             RETURNING {INSERTED_COLUMNS}"
        )
    });
    let row = c
        .query_one(
            &c.prepare_cached(&SQL).await?,
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

/// Whether a tenant has this name (a create's check, cheaper to plan than [`find`]).
pub async fn name_taken(c: &impl GenericClient, name: &str) -> Result<bool> {
    let stmt = c
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM berqenas.tenants WHERE name = $1)")
        .await?;
    Ok(c.query_one(&stmt, &[&name]).await?.get(0))
}

/// Finds a tenant by name, or by id when `key` is a UUID.
pub async fn find(c: &impl GenericClient, key: &str) -> Result<Option<Tenant>> {
    let row = match key.parse::<Uuid>() {
        Ok(id) => {
            c.query_opt(
                &c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM berqenas.tenants t {JOINS} WHERE t.id = $1"
                ))
                .await?,
                &[&id],
            )
            .await?
        }
        Err(_) => {
            c.query_opt(
                &c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM berqenas.tenants t {JOINS} WHERE t.name = $1"
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
                "SELECT {COLUMNS} FROM berqenas.tenants t {JOINS}
                 WHERE ($1::uuid IS NOT NULL AND t.id = $1) OR ($1::uuid IS NULL AND t.name = $2)
                 FOR UPDATE OF t"
            ),
            &[&id, &key],
        )
        .await?;
    row.as_ref().map(tenant).transpose()
}

/// Records what an onboarding step answered, under its name.
pub async fn set_integration(
    c: &impl GenericClient,
    id: Uuid,
    step: &str,
    answer: &serde_json::Value,
) -> Result<()> {
    c.execute(
        "UPDATE berqenas.tenants SET integrations = integrations || jsonb_build_object($2::text, $3::jsonb)
          WHERE id = $1",
        &[&id, &step, answer],
    )
    .await?;
    Ok(())
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
                "SELECT {COLUMNS} FROM berqenas.tenants t {JOINS}
                 WHERE ($1::text IS NULL OR t.status = $1)
                   AND ($2::text IS NULL OR t.plan = $2)
                   AND ($3::uuid IS NULL OR t.id > $3)
                 ORDER BY t.id LIMIT $4"
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

/// The names of every tenant still in PostgreSQL (purged and failed ones have no
/// roles) on the `default` server (docs/servers.md: the others are not checked yet).
pub async fn names_with_roles(c: &impl GenericClient) -> Result<Vec<Slug>> {
    let rows = c
        .query(
            "SELECT name FROM berqenas.tenants WHERE status NOT IN ('purged', 'failed') AND server = 'default'",
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
            &changed(
                "UPDATE berqenas.tenants SET
                     plan = coalesce($2, plan),
                     db_quota_bytes = coalesce($3, db_quota_bytes),
                     vpn_enabled = coalesce($4, vpn_enabled),
                     public_api = coalesce($5, public_api),
                     metadata = coalesce($6, metadata),
                     updated_at = now()
                 WHERE id = $1",
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
    let stmt = c
        .prepare_cached(&changed(
            "UPDATE berqenas.tenants SET status = $2, updated_at = now() WHERE id = $1",
        ))
        .await?;
    let row = c.query_opt(&stmt, &[&id, &status.as_str()]).await?;
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
    let stmt = c
        .prepare_cached("SELECT credentials FROM berqenas.tenants WHERE id = $1")
        .await?;
    let row = c.query_opt(&stmt, &[&id]).await?;
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

/// The verifier hashes last seen of `tenants`' login roles, keyed by (tenant, user):
/// `None` for the tenant's own login role, the user's id for a user's.
pub async fn verifier_hashes_of(
    c: &impl GenericClient,
    tenants: &[Uuid],
) -> Result<Vec<((Uuid, Option<Uuid>), Option<Vec<u8>>)>> {
    Ok(c.query(
        "SELECT id, NULL::uuid, verifier_sha256 FROM berqenas.tenants WHERE id = ANY($1)
             UNION ALL SELECT tenant_id, id, verifier_sha256 FROM berqenas.tenant_users
                        WHERE tenant_id = ANY($1)",
        &[&tenants],
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

/// Tenants whose trial has ended (oldest first): each is ended by an operation of
/// its own, which locks the tenant (one of several servers' workers gets it).
pub async fn ended_trials(c: &impl GenericClient, limit: i64) -> Result<Vec<Tenant>> {
    let rows = c
        .query(
            &format!(
                "SELECT {COLUMNS} FROM berqenas.tenants t {JOINS}
                  WHERE t.status = 'trial' AND t.trial_ends_at <= now()
                  ORDER BY t.trial_ends_at LIMIT $1"
            ),
            &[&limit],
        )
        .await?;
    rows.iter().map(tenant).collect()
}

/// Purged tenants without a succeeded backup left (their archive expired).
pub async fn released_names(c: &impl GenericClient) -> Result<Vec<Uuid>> {
    Ok(c
        .query(
            "SELECT t.id FROM berqenas.tenants t
              WHERE t.status = 'purged'
                AND NOT EXISTS (SELECT 1 FROM berqenas.backups b WHERE b.tenant_id = t.id AND b.status = 'succeeded')
              LIMIT 100",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

pub async fn set_template_version(c: &impl GenericClient, id: Uuid, version: i32) -> Result<()> {
    c.execute(
        "UPDATE berqenas.tenants SET template_version = $2, updated_at = now() WHERE id = $1",
        &[&id, &version],
    )
    .await?;
    Ok(())
}

/// Every shared-mode tenant on `server` below `target` moves to it (that server's
/// pool's tables moved); returns (id, name, old version) of each.
pub async fn move_shared_to_version(
    c: &impl GenericClient,
    target: i32,
    server: &str,
) -> Result<Vec<(Uuid, String, i32)>> {
    Ok(c.query(
        "UPDATE berqenas.tenants t SET template_version = $1, updated_at = now()
               FROM (SELECT id, template_version AS old FROM berqenas.tenants
                      WHERE isolation = 'shared' AND template_version < $1 AND server = $2
                        FOR UPDATE) o
              WHERE t.id = o.id
          RETURNING t.id, t.name, o.old",
        &[&target, &server],
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
    /// The server its objects are on (docs/servers.md).
    pub server: String,
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
                        'owner', owner_role, 'version', template_version, 'server', server)
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

/// Which tenants with roles to read.
#[derive(Debug, Clone, Copy)]
pub enum WithRoles {
    /// This one.
    One(Uuid),
    /// At most `limit`, the first by id after `after` (`Uuid::nil()`: from the first).
    Page { after: Uuid, limit: i64 },
}

/// Tenants on `server` that have roles (not provisioning, purged or failed), by id,
/// and the `after` of the next page when this one was full. A row that does not decode
/// is left out (logged): one bad row must not stop the round for every other tenant.
pub async fn with_roles(
    c: &impl GenericClient,
    server: &str,
    which: WithRoles,
) -> Result<(Vec<LiveRoles>, Option<Uuid>)> {
    let (one, after, limit) = match which {
        WithRoles::One(id) => (Some(id), Uuid::nil(), 1),
        WithRoles::Page { after, limit } => (None, after, limit),
    };
    let rows = c
        .query(
            "SELECT id, name, isolation, schema_name FROM berqenas.tenants
              WHERE status NOT IN ('provisioning', 'purged', 'failed') AND server = $1
                AND ($2::uuid IS NULL OR id = $2) AND id > $3
              ORDER BY id LIMIT $4",
            &[&server, &one, &after, &limit],
        )
        .await?;
    let next = match (which, rows.last()) {
        (WithRoles::Page { .. }, Some(last)) if rows.len() as i64 == limit => {
            Some(last.try_get(0)?)
        }
        _ => None,
    };
    let live = rows.iter().filter_map(|r| {
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
    });
    Ok((live.collect(), next))
}

/// The servers other than `default` where tenants with roles live.
pub async fn other_servers_with_roles(c: &impl GenericClient) -> Result<Vec<String>> {
    Ok(c.query(
        "SELECT DISTINCT server FROM berqenas.tenants
          WHERE status NOT IN ('provisioning', 'purged', 'failed') AND server <> 'default'
          ORDER BY 1",
        &[],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
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

/// The key with this public id, with the tenant it belongs to, in one round trip
/// (every data API request asks).
pub async fn find_by_api_key(
    c: &impl GenericClient,
    public_id: &str,
) -> Result<Option<super::api_keys::StoredKey>> {
    let sql = format!(
        "SELECT k.id AS key_id, k.hash,
                k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()) AS usable,
                coalesce((SELECT array_agg(r.cidr::text) FROM berqenas.firewall_rules r
                           WHERE r.tenant_id = t.id AND r.service IN ('api', 'all')), '{{}}') AS api_ranges,
                {COLUMNS}
           FROM berqenas.api_keys k JOIN berqenas.tenants t ON t.id = k.tenant_id {JOINS}
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
            api_ranges: r.try_get("api_ranges")?,
            tenant: tenant(&r)?,
        })
    })
    .transpose()
}

/// Records (or, with `None`, clears) the tenant's vector store.
pub async fn set_vector_store(
    c: &impl GenericClient,
    id: Uuid,
    store: Option<&VectorStoreRef>,
) -> Result<()> {
    let value =
        store.map(|s| serde_json::json!({"backend": s.backend, "collection": s.collection}));
    c.execute(
        "UPDATE berqenas.tenants SET vector_store = $2 WHERE id = $1",
        &[&id, &value],
    )
    .await?;
    Ok(())
}
