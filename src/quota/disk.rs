//! Disk quotas: measuring each tenant's size, and cutting off its writes in
//! PostgreSQL when it is over quota (reads keep working), then giving them back.
//!
//! Sizes:
//! - schema mode: `pg_total_relation_size` (heap, indexes, TOAST) of every table,
//!   materialized view and sequence in the tenant's schema;
//! - database mode: `pg_database_size` of its database less that of the template
//!   database it was cloned from (the ~7.5 MB of catalogs every database carries);
//! - shared mode: for each pool table, the table's total size times the tenant's share
//!   of the live row bytes (`sum(pg_column_size(row))`). An estimate: dead rows and
//!   free space are charged to the tenants that have live rows, in proportion.
//!
//! Writes are cut off where the privileges are, never by a setting the tenant could
//! change. Schema and database modes: relations in the tenant's schema owned by another
//! tenant role (a tenant admin's own tables) pass to the tenant's owner role, then every
//! INSERT and UPDATE grant on them (tables and columns), CREATE on the schema, and in
//! database mode TEMPORARY on the database, are revoked (CASCADE) from everyone but
//! the owner role; on the relations handed over, DELETE too (a rule there runs with the
//! owner role's rights), and their previous owner is lent SELECT. Shared mode: the
//! tenant's roles leave the pool's write roles and join its read-only (auditor) pool
//! role. What was taken is recorded, and exactly that comes back.

use deadpool_postgres::{GenericClient, Transaction};
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient as PgClient;
use uuid::Uuid;

use crate::isolation::shared as pool;
use crate::pg::{self, Ident};
use crate::platform::Platform;
use crate::store::{quotas as store, tenants as registry};
use crate::tenant::{service, Isolation, Slug, Tenant};
use crate::{audit, metrics};

type Result<T, E = service::Error> = std::result::Result<T, E>;

/// One thing taken away from a tenant while it is over its disk quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "snake_case")]
pub enum Revoked {
    /// A relation that belonged to another tenant role passed to the owner role.
    /// `lent_select`: the previous owner was granted SELECT on it meanwhile (ownership
    /// passing takes the owner's own privileges), taken back before it returns.
    Owner {
        oid: u32,
        owner: String,
        #[serde(default)]
        lent_select: bool,
    },
    /// `grantable`: held WITH GRANT OPTION. `grantor`: who granted it, when not the
    /// object's owner at the time (a role re-granting a privilege it held with grant
    /// option); revoking from that role with CASCADE took it too.
    Relation {
        oid: u32,
        grantee: String,
        privilege: String,
        #[serde(default)]
        grantable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grantor: Option<String>,
    },
    Column {
        oid: u32,
        column: String,
        grantee: String,
        privilege: String,
        #[serde(default)]
        grantable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grantor: Option<String>,
    },
    Schema {
        name: Ident,
        grantee: String,
        privilege: String,
        #[serde(default)]
        grantable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grantor: Option<String>,
    },
    Database {
        name: Ident,
        grantee: String,
        privilege: String,
        #[serde(default)]
        grantable: bool,
    },
    /// A membership in the role that holds TEMPORARY on the control database (schema
    /// and shared modes: one role for every tenant, so a block takes the membership).
    Membership { role: String, member: String },
}

/// Privileges that may appear in a record (it is read back from the registry).
const PRIVILEGES: &[&str] = &["INSERT", "UPDATE", "DELETE", "CREATE", "TEMPORARY"];

/// Bounds for the statements of a disk round on tenant objects: a tenant holding a lock
/// (`LOCK TABLE` in an idle transaction) makes its own measurement or enforcement fail,
/// logged and retried next round, instead of holding up the round.
pub const ROUND_TIMEOUTS: &str =
    "SET LOCAL lock_timeout = '5s'; SET LOCAL statement_timeout = '60s'";

fn grantee(name: &str) -> String {
    if name == "PUBLIC" {
        "PUBLIC".into()
    } else {
        Ident::new(name.to_string())
            .expect("catalog names are identifiers")
            .to_string()
    }
}

fn privilege(p: &str) -> &str {
    PRIVILEGES
        .iter()
        .find(|x| **x == p)
        .copied()
        .expect("recorded privileges come from the fixed list")
}

/// The template database's size, which database-mode tenants are not charged for.
fn template_db(p: &Platform) -> String {
    crate::isolation::database::template_db(&p.endpoint.database)
        .as_str()
        .to_string()
}

/// Measures every live tenant (or just `only`): (tenant, bytes).
///
/// Each schema-mode tenant is measured on its own (in a savepoint, under
/// [`ROUND_TIMEOUTS`]): one whose tables are locked fails alone, logged, and is left out
/// (measuring just `only`, the error is returned).
pub async fn measure(p: &Platform, only: Option<Uuid>) -> Result<Vec<(Uuid, i64)>> {
    let mut client = p.pool.get().await?;
    let mut sizes: Vec<(Uuid, i64)> = Vec::new();
    let mut tx = client.transaction().await?;
    tx.batch_execute(ROUND_TIMEOUTS).await?;
    let schemas = registry::live_schemas(&tx, only).await?;
    for (id, schema) in schemas {
        let sp = tx.savepoint("measure_tenant").await?;
        let size = sp
            .query_one(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relkind IN ('r', 'm', 'S')",
                &[&schema],
            )
            .await;
        match size {
            Ok(r) => {
                sp.commit().await?;
                sizes.push((id, r.get(0)));
            }
            Err(e) if only.is_none() => {
                sp.rollback().await?;
                let error = e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string());
                tracing::warn!(tenant.id = %id, %error, "measuring the tenant's disk use failed (a lock held?); retrying next round");
            }
            Err(e) => return Err(e.into()),
        }
    }
    sizes.extend(registry::live_database_sizes(&tx, only, &template_db(p)).await?);
    let shared = registry::live_shared(&tx, only).await?;
    let temp = temp_usage(&mut tx, only).await?;
    tx.commit().await?;
    if !shared.is_empty() {
        let shares = match shared_shares(&mut client).await {
            Ok(s) => s,
            Err(e) if only.is_none() => {
                tracing::warn!(error = %e, "measuring the shared pool failed (a lock held?); retrying next round");
                return Ok(sizes);
            }
            Err(e) => return Err(e),
        };
        for id in shared {
            let bytes = shares.get(&id).copied().unwrap_or(0.0);
            sizes.push((id, bytes.round() as i64));
        }
    }
    for (id, bytes) in sizes.iter_mut() {
        *bytes += temp.get(id).copied().unwrap_or(0);
    }
    Ok(sizes)
}

/// Temporary tables of schema- and shared-mode tenants' sessions, which live in the
/// control database outside any tenant schema (database mode's are in its database's
/// size already): charged to their tenant like any table.
///
/// Sizing a relation takes a lock on it, and a session may hold its own temporary
/// table locked: all are sized in one statement with a short lock timeout, and if one
/// is held, one by one, leaving out (until the next round) the ones that are held.
async fn temp_usage(
    tx: &mut Transaction<'_>,
    only: Option<Uuid>,
) -> Result<std::collections::HashMap<Uuid, i64>> {
    let relations = registry::temp_relations(&*tx, only).await?;
    let mut usage = std::collections::HashMap::new();
    if relations.is_empty() {
        return Ok(usage);
    }
    let size = "SELECT pg_catalog.pg_total_relation_size($1::oid)";
    let sp = tx.savepoint("temp_usage").await?;
    sp.batch_execute("SET LOCAL lock_timeout = '100ms'").await?;
    let oids: Vec<u32> = relations.iter().map(|r| r.1).collect();
    let all = sp
        .query(
            "SELECT o, pg_catalog.pg_total_relation_size(o) FROM unnest($1::oid[]) o",
            &[&oids],
        )
        .await;
    let sizes: std::collections::HashMap<u32, i64> = match all {
        Ok(rows) => {
            sp.commit().await?;
            rows.iter().map(|r| (r.get(0), r.get(1))).collect()
        }
        Err(_) => {
            sp.rollback().await?;
            let mut sizes = std::collections::HashMap::new();
            for oid in &oids {
                let one = tx.savepoint("temp_relation").await?;
                one.batch_execute("SET LOCAL lock_timeout = '100ms'")
                    .await?;
                match one.query_one(size, &[oid]).await {
                    Ok(r) => {
                        one.commit().await?;
                        sizes.insert(*oid, r.get::<_, i64>(0));
                    }
                    Err(_) => one.rollback().await?,
                }
            }
            sizes
        }
    };
    for (id, oid) in relations {
        *usage.entry(id).or_insert(0) += sizes.get(&oid).copied().unwrap_or(0);
    }
    Ok(usage)
}

/// Each tenant's share of every pool table, in bytes.
async fn shared_shares(
    client: &mut deadpool_postgres::Client,
) -> Result<std::collections::HashMap<Uuid, f64>> {
    let mut shares = std::collections::HashMap::new();
    let tx = client.transaction().await?;
    tx.batch_execute(ROUND_TIMEOUTS).await?;
    let tables = crate::tenant::shared_mode::pool_tables(&tx).await?;
    // The pool owner's maintenance policy sees every tenant's rows.
    tx.batch_execute(&format!("SET LOCAL ROLE {}", ident(pool::POOL_OWNER)))
        .await?;
    let schema = ident(pool::POOL_SCHEMA);
    for t in tables {
        let table = Ident::new(t).expect("catalog names are identifiers");
        let total: i64 = tx
            .query_one(
                "SELECT pg_total_relation_size($1::text::regclass)",
                &[&format!("{schema}.{table}")],
            )
            .await?
            .get(0);
        let rows = tx
            .query(
                &format!(
                    "SELECT tenant_id, sum(pg_column_size(t.*))::float8 FROM {schema}.{table} t GROUP BY tenant_id"
                ),
                &[],
            )
            .await?;
        let all: f64 = rows.iter().map(|r| r.get::<_, f64>(1)).sum();
        if all <= 0.0 {
            continue;
        }
        for r in rows {
            *shares.entry(r.get::<_, Uuid>(0)).or_insert(0.0) +=
                total as f64 * r.get::<_, f64>(1) / all;
        }
    }
    tx.commit().await?;
    Ok(shares)
}

fn ident(s: &str) -> Ident {
    Ident::new(s).expect("static names are identifiers")
}

/// What one enforcement pass did for a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Blocked,
    Restored,
}

/// A measuring and enforcing round over every tenant; returns (measured, blocked, restored).
pub async fn run_round(p: &Platform) -> Result<(usize, usize, usize)> {
    let sizes = measure(p, None).await?;
    let client = p.pool.get().await?;
    store::record_measurements(&client, &sizes).await?;
    let due = store::over_quota_or_blocked(&client).await?;
    drop(client);
    let (mut blocked, mut restored) = (0, 0);
    for id in due {
        match enforce(p, id).await {
            Ok(Outcome::Blocked) => blocked += 1,
            Ok(Outcome::Restored) => restored += 1,
            Ok(Outcome::Unchanged) => {}
            Err(e) => {
                tracing::warn!(tenant.id = %id, error = %e, "disk quota enforcement failed; retrying next round")
            }
        }
    }
    Ok((sizes.len(), blocked, restored))
}

/// Measures one tenant now and records it (for a forced quota change, or a usage
/// request before the first round).
pub async fn measure_now(p: &Platform, tenant_id: Uuid) -> Result<Option<i64>> {
    let sizes = measure(p, Some(tenant_id)).await?;
    let client = p.pool.get().await?;
    store::record_measurements(&client, &sizes).await?;
    Ok(sizes.first().map(|s| s.1))
}

/// Compares the tenant's last measurement with its quota and blocks, re-blocks (new
/// tables since) or restores its writes accordingly.
pub async fn enforce(p: &Platform, tenant_id: Uuid) -> Result<Outcome> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let Some(tenant) = registry::find_for_update(&tx, &tenant_id.to_string()).await? else {
        return Ok(Outcome::Unchanged);
    };
    let slug = tenant.name.clone();
    service::lock_name(&tx, &slug).await?;
    let (blocked, revoked) = store::lock_disk_row(&tx, tenant.id).await?;
    // The registry locks are held; from here on, a lock of the tenant's fails this
    // tenant's enforcement (retried next round) instead of hanging the round.
    tx.batch_execute(ROUND_TIMEOUTS).await?;
    let bytes = store::disk_bytes(&tx, tenant.id).await?;
    let mut taken: Vec<Revoked> = serde_json::from_value(revoked)?;
    let over = bytes > tenant.db_quota_bytes;
    let live = matches!(tenant.status.as_str(), "trial" | "active" | "suspended");
    if over && live {
        if tenant.isolation == Isolation::Database {
            // Another database: record what will be taken first, so a crash in between
            // leaves a record to give back from, never grants lost without one.
            let db = connect_to(p, tenant.database.as_str()).await?;
            let fresh = snapshot(&db, &tenant, &slug, &tx).await?;
            merge(&mut taken, &fresh);
            store::set_blocked(&tx, tenant.id, true, &serde_json::to_value(&taken)?).await?;
            if !blocked {
                record(&tx, &tenant, "quota_exceeded", bytes).await?;
            }
            let roles = tenant_roles(&tx, &tenant, &slug).await?;
            tx.commit().await?;
            if !fresh.is_empty() {
                let sql = privileges_sql(&db, &tenant, &fresh, false).await?;
                db.batch_execute(&format!("BEGIN;\n{sql}COMMIT;")).await?;
            }
            end_temp_holders(&db, &tenant, &roles).await?;
            return Ok(finish_block(&tenant, blocked, bytes));
        }
        let mut fresh = match tenant.isolation {
            Isolation::Shared => {
                // The flag set below is what the pool's policies read.
                ensure_shared_guard(&tx).await?;
                Vec::new()
            }
            _ => snapshot(&*tx, &tenant, &slug, &tx).await?,
        };
        fresh.extend(temp_memberships(&tx, &tenant, &slug).await?);
        if !fresh.is_empty() {
            let sql = privileges_sql(&*tx, &tenant, &fresh, false).await?;
            tx.batch_execute(&sql).await?;
        }
        merge(&mut taken, &fresh);
        store::set_blocked(&tx, tenant.id, true, &serde_json::to_value(&taken)?).await?;
        if !blocked {
            record(&tx, &tenant, "quota_exceeded", bytes).await?;
        }
        let roles = tenant_roles(&tx, &tenant, &slug).await?;
        tx.commit().await?;
        end_temp_holders(&**client, &tenant, &roles).await?;
        return Ok(finish_block(&tenant, blocked, bytes));
    }
    if !blocked {
        return Ok(Outcome::Unchanged);
    }
    // Under quota again (or no longer live): exactly what was taken comes back.
    if tenant.isolation == Isolation::Database {
        let db = connect_to(p, tenant.database.as_str()).await?;
        let sql = privileges_sql(&db, &tenant, &taken, true).await?;
        db.batch_execute(&format!("BEGIN;\n{sql}COMMIT;")).await?;
    } else {
        let sql = privileges_sql(&*tx, &tenant, &taken, true).await?;
        tx.batch_execute(&sql).await?;
    }
    store::set_blocked(&tx, tenant.id, false, &serde_json::json!([])).await?;
    record(&tx, &tenant, "quota_restored", bytes).await?;
    tx.commit().await?;
    metrics::quota_restored("disk");
    tracing::info!(tenant.name = %tenant.name, bytes, quota = tenant.db_quota_bytes, "under disk quota again: writes restored");
    Ok(Outcome::Restored)
}

fn finish_block(t: &Tenant, was_blocked: bool, bytes: i64) -> Outcome {
    if was_blocked {
        return Outcome::Unchanged;
    }
    metrics::quota_breach("disk");
    tracing::warn!(tenant.name = %t.name, bytes, quota = t.db_quota_bytes, "over disk quota: writes revoked");
    Outcome::Blocked
}

fn merge(all: &mut Vec<Revoked>, fresh: &[Revoked]) {
    for r in fresh {
        if !all.contains(r) {
            all.push(r.clone());
        }
    }
}

async fn record(
    c: &impl GenericClient,
    t: &Tenant,
    action: &str,
    bytes: i64,
) -> crate::store::Result<()> {
    audit::record(
        c,
        &audit::Entry {
            actor: "worker",
            action,
            tenant_id: Some(t.id),
            tenant_name: Some(&t.name),
            operation_id: None,
            details: serde_json::json!({"metric": "disk", "bytes": bytes, "db_quota_bytes": t.db_quota_bytes}),
        },
    )
    .await
}

async fn connect_to(p: &Platform, database: &str) -> Result<tokio_postgres::Client> {
    let mut config = p.config.clone();
    config.dbname(database);
    let c = pg::connect(&config).await?;
    // Its own session: the same bounds as ROUND_TIMEOUTS, for every transaction.
    c.batch_execute("SET lock_timeout = '5s'; SET statement_timeout = '60s'")
        .await?;
    Ok(c)
}

/// Every role of the tenant (users included) except its owner role.
async fn tenant_roles(
    reg: &impl GenericClient,
    t: &Tenant,
    slug: &Slug,
) -> crate::store::Result<Vec<String>> {
    let mut roles: Vec<String> = slug
        .fixed_roles()
        .iter()
        .map(|r| r.as_str().to_string())
        .filter(|r| r != t.owner_role.as_str())
        .collect();
    roles.extend(
        crate::store::users::list(reg, t.id)
            .await?
            .into_iter()
            .map(|u| u.db_user.as_str().to_string()),
    );
    Ok(roles)
}

/// The tenant's roles' memberships in the TEMPORARY role (schema and shared modes).
async fn temp_memberships(
    reg: &impl GenericClient,
    t: &Tenant,
    slug: &Slug,
) -> Result<Vec<Revoked>> {
    let roles = tenant_roles(reg, t, slug).await?;
    let rows = reg
        .query(
            "SELECT m.rolname::text FROM pg_catalog.pg_auth_members am
               JOIN pg_catalog.pg_roles m ON m.oid = am.member
              WHERE am.roleid = $1::text::regrole AND m.rolname = ANY($2) ORDER BY 1",
            &[&crate::pg::hardening::TEMP_ROLE, &roles],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Revoked::Membership {
            role: crate::pg::hardening::TEMP_ROLE.to_string(),
            member: r.get(0),
        })
        .collect())
}

/// Sessions of the tenant's roles that hold temporary relations end: taking TEMP away
/// stops new ones, but a session keeps (and can fill) the ones it has. `db`: the
/// database the relations are in.
async fn end_temp_holders(db: &impl PgClient, t: &Tenant, roles: &[String]) -> Result<()> {
    let ended = db
        .query(
            "SELECT pg_catalog.pg_terminate_backend(a.pid) FROM pg_catalog.pg_stat_activity a
              WHERE a.datname = pg_catalog.current_database()
                AND a.usename IN (SELECT DISTINCT r.rolname FROM pg_catalog.pg_class c
                                    JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
                                   WHERE c.relpersistence = 't' AND r.rolname = ANY($1))",
            &[&roles],
        )
        .await?;
    if !ended.is_empty() {
        tracing::info!(tenant.name = %t.name, sessions = ended.len(), "ended sessions holding temporary tables of a tenant over its disk quota");
    }
    Ok(())
}

/// What must be taken in schema and database mode: read from the catalog of the
/// database `db` is connected to (`reg` is the registry, for the tenant's users).
async fn snapshot(
    db: &impl PgClient,
    t: &Tenant,
    slug: &Slug,
    reg: &impl GenericClient,
) -> Result<Vec<Revoked>> {
    let schema = slug.schema();
    let roles = tenant_roles(reg, t, slug).await?;
    let mut out = Vec::new();
    // Relations owned by another tenant role: their owner could grant itself anything.
    for r in db
        .query(
            "SELECT c.oid, o.rolname::text FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_roles o ON o.oid = c.relowner
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND o.rolname = ANY($2)",
            &[&schema.as_str(), &roles],
        )
        .await?
    {
        out.push(Revoked::Owner {
            oid: r.get(0),
            owner: r.get(1),
            lent_select: true,
        });
    }
    let from = "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_roles o ON o.oid = c.relowner";
    // DELETE too on relations passing to the owner role: a rule there (ON DELETE DO
    // INSTEAD INSERT) would run with the owner role's rights.
    let tenant_rels = "n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                       AND (o.rolname = $2 OR o.rolname = ANY($3))
                       AND (a.privilege_type IN ('INSERT', 'UPDATE')
                            OR (a.privilege_type = 'DELETE' AND o.rolname <> $2))
                       AND a.grantee <> c.relowner
                       AND a.grantee <> (SELECT oid FROM pg_roles WHERE rolname = $2)";
    let grantee = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE (SELECT rolname::text FROM pg_roles WHERE oid = a.grantee) END";
    // The grantor, unless it is the object's owner (whoever owns it when given back).
    let grantor = |owner: &str| {
        format!("CASE WHEN a.grantor = {owner} THEN NULL ELSE (SELECT rolname::text FROM pg_roles WHERE oid = a.grantor) END")
    };
    let rel_grantor = grantor("c.relowner");
    let owner = t.owner_role.as_str();
    for r in db
        .query(
            &format!(
                "SELECT c.oid, {grantee}, a.privilege_type, a.is_grantable, {rel_grantor} {from}
                   CROSS JOIN LATERAL aclexplode(c.relacl) a
                  WHERE {tenant_rels}"
            ),
            &[&schema.as_str(), &owner, &roles],
        )
        .await?
    {
        out.push(Revoked::Relation {
            oid: r.get(0),
            grantee: r.get(1),
            privilege: r.get(2),
            grantable: r.get(3),
            grantor: r.get(4),
        });
    }
    for r in db
        .query(
            &format!(
                "SELECT c.oid, att.attname::text, {grantee}, a.privilege_type, a.is_grantable, {rel_grantor} {from}
                   JOIN pg_attribute att ON att.attrelid = c.oid AND att.attacl IS NOT NULL
                   CROSS JOIN LATERAL aclexplode(att.attacl) a
                  WHERE {tenant_rels}"
            ),
            &[&schema.as_str(), &owner, &roles],
        )
        .await?
    {
        out.push(Revoked::Column {
            oid: r.get(0),
            column: r.get(1),
            grantee: r.get(2),
            privilege: r.get(3),
            grantable: r.get(4),
            grantor: r.get(5),
        });
    }
    for r in db
        .query(
            &format!(
                "SELECT {grantee}, a.privilege_type, a.is_grantable, {}
                   FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a
                  WHERE n.nspname = $1 AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner",
                grantor("n.nspowner")
            ),
            &[&schema.as_str()],
        )
        .await?
    {
        out.push(Revoked::Schema {
            name: schema.clone(),
            grantee: r.get(0),
            privilege: r.get(1),
            grantable: r.get(2),
            grantor: r.get(3),
        });
    }
    if t.isolation == Isolation::Database {
        for r in db
            .query(
                &format!(
                    "SELECT {grantee}, a.privilege_type, a.is_grantable FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a
                      WHERE d.datname = current_database() AND a.privilege_type IN ('TEMPORARY', 'CREATE')
                        AND a.grantee <> d.datdba"
                ),
                &[],
            )
            .await?
        {
            out.push(Revoked::Database {
                name: t.database.clone(),
                grantee: r.get(0),
                privilege: r.get(1),
                grantable: r.get(2),
            });
        }
    }
    Ok(out)
}

/// Any constant; serialises adding the guard to the pool's tables.
const GUARD_LOCK: i64 = 0x6265_7271_6775_6172; // "berqguar"

/// Whether the guard function exists, and the pool tables without its policies.
async fn guard_state(c: &impl GenericClient) -> Result<(bool, Vec<String>), tokio_postgres::Error> {
    let has_fn = c
        .query_opt(
            "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = $1 AND p.proname = 'writes_blocked'",
            &[&pool::POOL_SCHEMA],
        )
        .await?
        .is_some();
    let missing: Vec<String> = c
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname <> 'members'
                AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'quota_block_insert')",
            &[&pool::POOL_SCHEMA],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok((has_fn, missing))
}

/// Shared mode cannot revoke a privilege from one tenant: the privileges belong to the
/// pool roles every tenant shares. So each pool table carries two restrictive row
/// security policies that refuse INSERT and UPDATE (SQLSTATE 42501, as a revoked
/// privilege would) while the tenant's `disk_usage.writes_blocked` is set. A tenant
/// can read that flag only through this function, and change it not at all.
async fn ensure_shared_guard(c: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    let (schema, owner) = (ident(pool::POOL_SCHEMA), ident(pool::POOL_OWNER));
    if let (true, missing) = guard_state(c).await? {
        if missing.is_empty() {
            return Ok(());
        }
    }
    c.execute("SELECT pg_advisory_xact_lock($1)", &[&GUARD_LOCK])
        .await?;
    let (has_fn, missing) = guard_state(c).await?;
    let mut sql = String::new();
    if !has_fn {
        let users: Vec<String> = pool::pool_roles()
            .iter()
            .filter(|r| r.as_str() != pool::POOL_OWNER)
            .map(|r| r.to_string())
            .collect();
        // Owned by the control role, which can read the registry; fixed SQL with a
        // pinned search path, taking a tenant id and telling only whether it is blocked.
        sql.push_str(&format!(
            "CREATE FUNCTION {schema}.writes_blocked(uuid) RETURNS boolean\n\
                 LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog\n\
                 AS $$ SELECT coalesce((SELECT writes_blocked FROM berqenas.disk_usage WHERE tenant_id = $1), false) $$;\n\
             REVOKE ALL ON FUNCTION {schema}.writes_blocked(uuid) FROM PUBLIC;\n\
             GRANT EXECUTE ON FUNCTION {schema}.writes_blocked(uuid) TO {};\n",
            users.join(", ")
        ));
    }
    let tenants = guarded_roles();
    for table in missing {
        let t = Ident::new(table).expect("catalog names are identifiers");
        let blocked = format!("NOT {schema}.writes_blocked({schema}.current_tenant())");
        sql.push_str(&format!(
            "SET LOCAL ROLE {owner};\n\
             CREATE POLICY quota_block_insert ON {schema}.{t} AS RESTRICTIVE FOR INSERT TO {tenants} WITH CHECK ({blocked});\n\
             CREATE POLICY quota_block_update ON {schema}.{t} AS RESTRICTIVE FOR UPDATE TO {tenants} USING (true) WITH CHECK ({blocked});\n\
             RESET ROLE;\n"
        ));
    }
    c.batch_execute(&sql).await
}

/// The roles the guard's policies apply to: the pool roles tenants are members of.
/// Not PUBLIC: the pool's owner (restores, purges) and the control role must never be
/// held back by a tenant's block.
fn guarded_roles() -> String {
    pool::pool_roles()
        .iter()
        .filter(|r| r.as_str() != pool::POOL_OWNER)
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Guards installed by releases that applied them to PUBLIC are narrowed to the
/// tenants' pool roles, so a restore (as the pool's owner) works again after any
/// tenant was ever blocked. Runs at start.
pub async fn repair_shared_guard(c: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    let public: Vec<(String, String)> = c
        .query(
            "SELECT c.relname::text, p.polname::text FROM pg_policy p
               JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND p.polname IN ('quota_block_insert', 'quota_block_update')
                AND p.polroles = '{0}'",
            &[&pool::POOL_SCHEMA],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if public.is_empty() {
        return Ok(());
    }
    let (schema, owner) = (ident(pool::POOL_SCHEMA), ident(pool::POOL_OWNER));
    let mut sql = format!("SET ROLE {owner};\n");
    for (table, policy) in &public {
        let (t, p) = (
            Ident::new(table.clone()).expect("catalog names are identifiers"),
            Ident::new(policy.clone()).expect("catalog names are identifiers"),
        );
        sql.push_str(&format!(
            "ALTER POLICY {p} ON {schema}.{t} TO {};\n",
            guarded_roles()
        ));
    }
    sql.push_str("RESET ROLE;\n");
    c.batch_execute(&sql).await?;
    tracing::info!(
        policies = public.len(),
        "narrowed the shared pool's quota guard to the tenants' roles"
    );
    Ok(())
}

/// After the pool gained tables (a template migration): if the guard is installed,
/// the new tables get its policies too, so a blocked tenant cannot write there.
pub async fn extend_shared_guard(c: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    match guard_state(c).await? {
        (true, missing) if !missing.is_empty() => ensure_shared_guard(c).await,
        _ => Ok(()),
    }
}

/// Relations by oid: (oid, qualified name, the ALTER keyword for their kind).
async fn relations(
    db: &impl PgClient,
    taken: &[Revoked],
) -> Result<std::collections::HashMap<u32, (String, &'static str)>, tokio_postgres::Error> {
    let oids: Vec<u32> = taken
        .iter()
        .filter_map(|r| match r {
            Revoked::Owner { oid, .. }
            | Revoked::Relation { oid, .. }
            | Revoked::Column { oid, .. } => Some(*oid),
            _ => None,
        })
        .collect();
    if oids.is_empty() {
        return Ok(Default::default());
    }
    let rows = db
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY($1)",
            &[&oids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let name = format!(
                "{}.{}",
                Ident::new(r.get::<_, String>(1)).expect("catalog names are identifiers"),
                Ident::new(r.get::<_, String>(2)).expect("catalog names are identifiers")
            );
            let kind = match r.get::<_, &str>(3) {
                "v" => "VIEW",
                "m" => "MATERIALIZED VIEW",
                "f" => "FOREIGN TABLE",
                _ => "TABLE",
            };
            (r.get::<_, u32>(0), (name, kind))
        })
        .collect())
}

/// Roles of `taken` that still exist (a removed user's grants are not given back).
async fn existing_roles(
    db: &impl PgClient,
    taken: &[Revoked],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let names: Vec<&str> = taken
        .iter()
        .flat_map(|r| match r {
            Revoked::Owner { owner, .. } => vec![owner.as_str()],
            Revoked::Relation {
                grantee, grantor, ..
            }
            | Revoked::Column {
                grantee, grantor, ..
            }
            | Revoked::Schema {
                grantee, grantor, ..
            } => std::iter::once(grantee.as_str())
                .chain(grantor.as_deref())
                .collect(),
            Revoked::Database { grantee, .. } => vec![grantee.as_str()],
            Revoked::Membership { role, member } => vec![role.as_str(), member.as_str()],
        })
        .collect();
    let mut present: Vec<String> = db
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)",
            &[&names],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    present.push("PUBLIC".into());
    Ok(present)
}

/// The statements that take (`give == false`) or give back what `taken` lists, in the
/// database the record came from. Objects and roles that are gone are skipped.
///
/// Taking revokes with CASCADE: a privilege a tenant role held WITH GRANT OPTION and
/// passed on goes with what was granted from it (those grants are recorded too).
/// Giving back grants WITH GRANT OPTION where it was held, and a grant that came from
/// another role than the owner is made as that role again (after its grant option is
/// back) when the control role may act as it (a superuser); otherwise as the owner role.
async fn privileges_sql(
    db: &impl PgClient,
    t: &Tenant,
    taken: &[Revoked],
    give: bool,
) -> Result<String, tokio_postgres::Error> {
    let rels = relations(db, taken).await?;
    let roles = existing_roles(db, taken).await?;
    let exists = |name: &str| roles.iter().any(|r| r == name);
    let owner = &t.owner_role;
    let superuser = give
        && db
            .query_one(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await?
            .get::<_, bool>(0);
    let (verb, prep) = if give {
        ("GRANT", "TO")
    } else {
        ("REVOKE", "FROM")
    };
    // Grants made and taken as a tenant role: (grantor, object, privilege, grantee,
    // grantable, statement); grantor None is the owner role.
    type Item = (Option<String>, String, String, String, bool, String);
    let mut items: Vec<Item> = Vec::new();
    let add = |grantor: &Option<String>, object: String, pr: &str, g: &str, grantable: bool| {
        let option = if give && grantable {
            " WITH GRANT OPTION"
        } else if give {
            ""
        } else {
            " CASCADE"
        };
        let stmt = format!(
            "{verb} {} {object} {prep} {}{option};\n",
            privilege(pr),
            grantee(g)
        );
        let grantor = grantor.clone().filter(|x| give && superuser && exists(x));
        (
            grantor,
            object,
            pr.to_string(),
            g.to_string(),
            grantable,
            stmt,
        )
    };
    let (mut owners, mut other) = (String::new(), String::new());
    for r in taken {
        match r {
            Revoked::Membership { role, member } => {
                if exists(role) && exists(member) {
                    let (role, member) = (grantee(role), grantee(member));
                    other.push_str(&if give {
                        format!("GRANT {role} TO {member};\n")
                    } else {
                        format!("REVOKE {role} FROM {member};\n")
                    });
                }
            }
            Revoked::Owner {
                oid,
                owner: was,
                lent_select,
            } => {
                if let (Some((name, kind)), true) = (rels.get(oid), exists(was)) {
                    let to = if give {
                        grantee(was)
                    } else {
                        owner.to_string()
                    };
                    owners.push_str(&format!("ALTER {kind} {name} OWNER TO {to};\n"));
                    if *lent_select {
                        // Lent while it is not the owner; taken back before it is again.
                        let (verb, prep) = if give {
                            ("REVOKE", "FROM")
                        } else {
                            ("GRANT", "TO")
                        };
                        items.push((
                            None,
                            String::new(),
                            String::new(),
                            String::new(),
                            false,
                            format!("{verb} SELECT ON {name} {prep} {};\n", grantee(was)),
                        ));
                    }
                }
            }
            Revoked::Relation {
                oid,
                grantee: g,
                privilege: pr,
                grantable,
                grantor,
            } => {
                if let (Some((name, _)), true) = (rels.get(oid), exists(g)) {
                    items.push(add(grantor, format!("ON {name}"), pr, g, *grantable));
                }
            }
            Revoked::Column {
                oid,
                column,
                grantee: g,
                privilege: pr,
                grantable,
                grantor,
            } => {
                let col = Ident::new(column.clone()).expect("catalog names are identifiers");
                if let (Some((name, _)), true) = (rels.get(oid), exists(g)) {
                    items.push(add(
                        grantor,
                        format!("({col}) ON {name}"),
                        pr,
                        g,
                        *grantable,
                    ));
                }
            }
            Revoked::Schema {
                name,
                grantee: g,
                privilege: pr,
                grantable,
                grantor,
            } => {
                let schema = name;
                let present = db
                    .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[name])
                    .await?
                    .is_some();
                if present && exists(g) {
                    items.push(add(
                        grantor,
                        format!("ON SCHEMA {schema}"),
                        pr,
                        g,
                        *grantable,
                    ));
                }
            }
            Revoked::Database {
                name,
                grantee: g,
                privilege: pr,
                grantable,
            } => {
                if exists(g) {
                    let db_name = name;
                    let option = match (give, grantable) {
                        (true, true) => " WITH GRANT OPTION",
                        (true, false) => "",
                        (false, _) => " CASCADE",
                    };
                    other.push_str(&format!(
                        "{verb} {} ON DATABASE {db_name} {prep} {}{option};\n",
                        privilege(pr),
                        grantee(g)
                    ));
                }
            }
        }
    }
    // Grants from another role come after the grant option they depend on is back.
    let mut ordered: Vec<Item> = Vec::new();
    let (mut pending, first): (Vec<Item>, Vec<Item>) =
        items.into_iter().partition(|i| i.0.is_some());
    ordered.extend(first);
    loop {
        let before = pending.len();
        let (ready, rest): (Vec<Item>, Vec<Item>) = pending.into_iter().partition(|i| {
            ordered
                .iter()
                .any(|o| o.1 == i.1 && o.2 == i.2 && o.4 && Some(&o.3) == i.0.as_ref())
        });
        ordered.extend(ready);
        pending = rest;
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    // What cannot be ordered so is given back as the owner role.
    ordered.extend(pending.into_iter().map(|mut i| {
        i.0 = None;
        i
    }));
    // Grants on the tenant's objects are made and taken as their owner role, so they
    // are recorded as the owner's (as the originals were). Ownership moves to the owner
    // role before its grants are taken, and back after they are given.
    let mut as_owner = String::new();
    let mut current: Option<String> = None;
    for (grantor, .., stmt) in ordered {
        let role = match &grantor {
            Some(g) => grantee(g),
            None => owner.to_string(),
        };
        if current.as_ref() != Some(&role) {
            as_owner.push_str(&format!("SET LOCAL ROLE {role};\n"));
            current = Some(role);
        }
        as_owner.push_str(&stmt);
    }
    if current.is_some() {
        as_owner.push_str("RESET ROLE;\n");
    }
    Ok(if give {
        format!("{other}{as_owner}{owners}")
    } else {
        format!("{owners}{as_owner}{other}")
    })
}
