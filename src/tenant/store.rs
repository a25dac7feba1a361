//! SQL for the `tenants`, `plans` and `api_keys` tables. The caller owns the transaction.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{AccessMode, Isolation, Plan, Status, Tenant};

const COLUMNS: &str = "id, name, status, plan, isolation, schema_name, database_name, login_role, owner_role, \
                       db_quota_bytes, vpn_enabled, public_api, template_version, trial_ends_at, metadata, created_at, updated_at, \
                       suspended_at, suspension_reason";

fn tenant(row: &Row) -> Tenant {
    let vpn_enabled = row.get("vpn_enabled");
    let public_api = row.get("public_api");
    Tenant {
        id: row.get("id"),
        name: row.get("name"),
        status: Status::parse(row.get("status")).expect("status is checked by the table"),
        plan: row.get("plan"),
        isolation: Isolation::parse(row.get("isolation"))
            .expect("isolation is checked by the table"),
        schema: row.get("schema_name"),
        database: row.get("database_name"),
        role: row.get("login_role"),
        owner_role: row.get("owner_role"),
        db_quota_bytes: row.get("db_quota_bytes"),
        vpn_enabled,
        public_api,
        access_mode: AccessMode::derive(vpn_enabled, public_api),
        template_version: row.get("template_version"),
        trial_ends_at: row.get("trial_ends_at"),
        suspended_at: row.get("suspended_at"),
        suspension_reason: row.get("suspension_reason"),
        metadata: row.get("metadata"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
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

pub async fn insert(
    c: &impl GenericClient,
    t: &NewTenant<'_>,
) -> Result<Tenant, tokio_postgres::Error> {
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
    Ok(tenant(&row))
}

/// Finds a tenant by name, or by id when `key` is a UUID.
pub async fn find(
    c: &impl GenericClient,
    key: &str,
) -> Result<Option<Tenant>, tokio_postgres::Error> {
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
    Ok(row.as_ref().map(tenant))
}

/// Like [`find`], locking the row for the rest of the transaction.
pub async fn find_for_update(
    c: &impl GenericClient,
    key: &str,
) -> Result<Option<Tenant>, tokio_postgres::Error> {
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
    Ok(row.as_ref().map(tenant))
}

/// A page of tenants in creation order (ids are UUIDv7, so ordered by time).
pub async fn list(
    c: &impl GenericClient,
    status: Option<&str>,
    plan: Option<&str>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Tenant>, tokio_postgres::Error> {
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
    Ok(rows.iter().map(tenant).collect())
}

pub async fn count_by_status(
    c: &impl GenericClient,
) -> Result<Vec<(String, i64)>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT status, count(*) FROM berqenas.tenants GROUP BY status ORDER BY status",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Every role of every tenant still in PostgreSQL (purged ones have none): owner,
/// login and default group roles, and the tenants' users.
pub async fn all_tenant_roles(
    c: &impl GenericClient,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT name FROM berqenas.tenants WHERE status NOT IN ('purged', 'failed')",
            &[],
        )
        .await?;
    let mut roles: Vec<String> = rows
        .iter()
        .filter_map(|r| super::Slug::parse(r.get(0)).ok())
        .flat_map(|s| s.fixed_roles())
        .map(|r| r.as_str().to_string())
        .collect();
    let users = c
        .query("SELECT db_user FROM berqenas.tenant_users", &[])
        .await?;
    roles.extend(users.iter().map(|r| r.get::<_, String>(0)));
    Ok(roles)
}

/// Tenants that hold data: everything but deleted, purged and failed.
pub async fn count_live(c: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
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

pub async fn update(
    c: &impl GenericClient,
    id: Uuid,
    ch: &Changes<'_>,
) -> Result<Tenant, tokio_postgres::Error> {
    let row = c
        .query_one(
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
    Ok(tenant(&row))
}

pub async fn set_status(
    c: &impl GenericClient,
    id: Uuid,
    status: Status,
) -> Result<Tenant, tokio_postgres::Error> {
    let row = c
        .query_one(
            &format!("UPDATE berqenas.tenants SET status = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"),
            &[&id, &status.as_str()],
        )
        .await?;
    Ok(tenant(&row))
}

pub async fn delete(c: &impl GenericClient, id: Uuid) -> Result<(), tokio_postgres::Error> {
    c.execute("DELETE FROM berqenas.tenants WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

pub async fn sealed_credentials(
    c: &impl GenericClient,
    id: Uuid,
) -> Result<Vec<u8>, tokio_postgres::Error> {
    let row = c
        .query_one(
            "SELECT credentials FROM berqenas.tenants WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn plan(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<Plan>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            &c.prepare_cached("SELECT * FROM berqenas.plans WHERE name = $1")
                .await?,
            &[&name],
        )
        .await?;
    Ok(row.as_ref().map(plan_row))
}

pub async fn plans(c: &impl GenericClient) -> Result<Vec<Plan>, tokio_postgres::Error> {
    let rows = c
        .query("SELECT * FROM berqenas.plans ORDER BY storage_bytes", &[])
        .await?;
    Ok(rows.iter().map(plan_row).collect())
}

fn plan_row(r: &Row) -> Plan {
    Plan {
        name: r.get("name"),
        max_users: r.get("max_users"),
        api_calls_per_minute: r.get("api_calls_per_minute"),
        storage_bytes: r.get("storage_bytes"),
        max_connections: r.get("max_connections"),
        statement_timeout_ms: r.get("statement_timeout_ms"),
        llm_tokens_per_day: r.get("llm_tokens_per_day"),
        max_agents: r.get("max_agents"),
        concurrent_agents: r.get("concurrent_agents"),
        retention_days: r.get("retention_days"),
        trial_days: r.get("trial_days"),
        transaction_timeout_ms: r.get("transaction_timeout_ms"),
        default_isolation: r
            .get::<_, Option<&str>>("default_isolation")
            .and_then(super::Isolation::parse),
    }
}

pub async fn insert_api_key(
    c: &impl GenericClient,
    tenant_id: Uuid,
    prefix: &str,
    hash: &[u8],
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        &c.prepare_cached(
            "INSERT INTO berqenas.api_keys (id, tenant_id, prefix, hash) VALUES ($1, $2, $3, $4)",
        )
        .await?,
        &[&Uuid::now_v7(), &tenant_id, &prefix, &hash],
    )
    .await?;
    Ok(())
}

/// Every login role of a tenant: its own, then its users'.
pub async fn login_roles(
    c: &impl GenericClient,
    t: &Tenant,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut logins = vec![t.role.clone()];
    logins.extend(users(c, t.id).await?.into_iter().map(|u| u.db_user));
    Ok(logins)
}

fn user_row(r: &Row) -> super::users::TenantUser {
    super::users::TenantUser {
        email: r.get("email"),
        role: super::roles::DefaultRole::parse(r.get("role"))
            .expect("role is checked by the table"),
        db_user: r.get("db_user"),
        created_at: r.get("created_at"),
    }
}

pub async fn find_user(
    c: &impl GenericClient,
    tenant_id: Uuid,
    email: &str,
) -> Result<Option<super::users::TenantUser>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT email, role, db_user, created_at FROM berqenas.tenant_users WHERE tenant_id = $1 AND email = $2",
            &[&tenant_id, &email],
        )
        .await?;
    Ok(row.as_ref().map(user_row))
}

pub async fn users(
    c: &impl GenericClient,
    tenant_id: Uuid,
) -> Result<Vec<super::users::TenantUser>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT email, role, db_user, created_at FROM berqenas.tenant_users WHERE tenant_id = $1 ORDER BY email",
            &[&tenant_id],
        )
        .await?;
    Ok(rows.iter().map(user_row).collect())
}

/// Inserts a user; returns its creation time.
pub async fn insert_user(
    c: &impl GenericClient,
    id: Uuid,
    tenant_id: Uuid,
    email: &str,
    role: &str,
    db_user: &str,
    credentials: &[u8],
) -> Result<chrono::DateTime<chrono::Utc>, tokio_postgres::Error> {
    let row = c
        .query_one(
            "INSERT INTO berqenas.tenant_users (id, tenant_id, email, role, db_user, credentials)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
            &[&id, &tenant_id, &email, &role, &db_user, &credentials],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn delete_user(
    c: &impl GenericClient,
    tenant_id: Uuid,
    email: &str,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "DELETE FROM berqenas.tenant_users WHERE tenant_id = $1 AND email = $2",
        &[&tenant_id, &email],
    )
    .await?;
    Ok(())
}

/// A stored API key found by its public id, with the tenant it belongs to.
pub struct StoredKey {
    pub id: Uuid,
    pub hash: Vec<u8>,
    /// Revoked, or past its expiry: as of the database's clock.
    pub usable: bool,
    pub tenant: Tenant,
}

pub async fn find_api_key(
    c: &impl GenericClient,
    public_id: &str,
) -> Result<Option<StoredKey>, tokio_postgres::Error> {
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
    Ok(row.map(|r| StoredKey {
        id: r.get("key_id"),
        hash: r.get("hash"),
        usable: r.get("usable"),
        tenant: tenant(&r),
    }))
}
