//! Enforcement: a tenant over its disk quota loses its writes (the privileges, or in
//! shared mode the pool's guard), and gets exactly them back once under it again. In
//! pieces the `quota.disk` operation calls (`workflows::quotas`): the decision and
//! what the control database holds in one transaction, then what is left in the
//! tenant's own database, done forward.

use deadpool_postgres::{GenericClient, Transaction};
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient as PgClient;

use super::privileges::{merge, privileges_sql, Revoked};
use super::{store, Outcome, Result, ROUND_TIMEOUTS};
use crate::isolation::quota_guard::{ensure_shared_guard, set_local_block};
use crate::names::Slug;
use crate::pg;
use crate::platform::Platform;
use crate::store::outbox::{
    self,
    data::{QuotaExceeded, QuotaRecovered, QuotaState},
};
use crate::store::tenants::{Isolation, Tenant};
use crate::{audit, metrics};

/// What is left of an enforcement for outside the control database's transaction
/// that decided it: journaled by the caller before it is done, done forward.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Remaining {
    Nothing,
    /// Schema and shared modes: sessions of these roles holding temporary tables end.
    EndTempHolders {
        roles: Vec<String>,
    },
    /// Database mode: these privileges go (recorded as taken already), then sessions of
    /// these roles holding temporary tables end.
    Revoke {
        fresh: Vec<Revoked>,
        roles: Vec<String>,
    },
    /// Database mode: what was taken comes back, then the record says so.
    GiveBack {
        taken: Vec<Revoked>,
        bytes: i64,
    },
}

/// Compares the tenant's last measurement with its quota and blocks, re-blocks (new
/// tables since) or restores its writes, in the caller's transaction, which holds the
/// tenant (its name, then its row). What belongs outside this transaction is returned
/// for [`apply_remaining`], then [`finish_locked`].
pub async fn enforce_locked(
    p: &Platform,
    tx: &Transaction<'_>,
    tenant: &Tenant,
) -> Result<(Outcome, Remaining)> {
    let slug = tenant.name.clone();
    let (blocked, revoked) = store::lock_disk_row(tx, tenant.id).await?;
    // The registry locks are held; from here on, a lock of the tenant's fails this
    // tenant's enforcement (retried next round) instead of hanging the round.
    tx.batch_execute(ROUND_TIMEOUTS).await?;
    let bytes = store::disk_bytes(tx, tenant.id).await?;
    let mut taken: Vec<Revoked> = serde_json::from_value(revoked)?;
    let over = bytes > tenant.db_quota_bytes;
    let live = matches!(tenant.status.as_str(), "trial" | "active" | "suspended");
    if over && live {
        let roles = tenant_roles(tx, tenant, &slug).await?;
        if elsewhere(tenant) {
            // Another database: recorded as taken first, taken after this commits.
            let db = connect_to(p, tenant.database.as_str()).await?;
            // Shared mode: the flag its server's pool reads is set after this commits.
            let mut fresh = match tenant.isolation {
                Isolation::Shared => Vec::new(),
                _ => snapshot(&db, tenant, &slug, tx).await?,
            };
            if tenant.isolation != Isolation::Database {
                // A schema on another server: TEMP there comes through its hub role.
                fresh.extend(temp_memberships(&db, &roles).await?);
            }
            merge(&mut taken, &fresh);
            store::set_blocked(tx, tenant.id, true, &serde_json::to_value(&taken)?).await?;
            if !blocked {
                record(tx, tenant, "quota_exceeded", bytes).await?;
            }
            return Ok((
                finish_block(tenant, blocked, bytes),
                Remaining::Revoke { fresh, roles },
            ));
        }
        let mut fresh = match tenant.isolation {
            Isolation::Shared => {
                // The flag set below is what the pool's policies read.
                ensure_shared_guard(tx).await?;
                Vec::new()
            }
            _ => snapshot(&**tx, tenant, &slug, tx).await?,
        };
        fresh.extend(temp_memberships(&**tx, &roles).await?);
        if !fresh.is_empty() {
            let sql = privileges_sql(&**tx, tenant, &fresh, false).await?;
            tx.batch_execute(&sql).await?;
        }
        merge(&mut taken, &fresh);
        store::set_blocked(tx, tenant.id, true, &serde_json::to_value(&taken)?).await?;
        if !blocked {
            record(tx, tenant, "quota_exceeded", bytes).await?;
        }
        return Ok((
            finish_block(tenant, blocked, bytes),
            Remaining::EndTempHolders { roles },
        ));
    }
    if !blocked {
        return Ok((Outcome::Unchanged, Remaining::Nothing));
    }
    // Under quota again (or no longer live): exactly what was taken comes back.
    if elsewhere(tenant) {
        return Ok((Outcome::Restored, Remaining::GiveBack { taken, bytes }));
    }
    let sql = privileges_sql(&**tx, tenant, &taken, true).await?;
    tx.batch_execute(&sql).await?;
    restored(tx, tenant, bytes).await?;
    Ok((Outcome::Restored, Remaining::Nothing))
}

/// Whether the tenant's objects are outside the registry's database: its own database
/// (database mode), or its schema on another server (where `p`, the platform as seen
/// from that server, connects to its `database`). What is taken there is recorded
/// first, then taken after the registry's transaction commits.
fn elsewhere(t: &Tenant) -> bool {
    t.isolation == Isolation::Database || t.server != crate::store::servers::DEFAULT
}

/// Does what [`enforce_locked`] left for outside its transaction. Idempotent: revoking
/// or granting again changes nothing.
pub async fn apply_remaining(p: &Platform, tenant: &Tenant, rest: &Remaining) -> Result<()> {
    match rest {
        Remaining::Nothing => {}
        Remaining::EndTempHolders { roles } => {
            end_temp_holders(&**p.pool.get().await?, tenant, roles).await?;
        }
        Remaining::Revoke { fresh, roles } => {
            let db = connect_to(p, tenant.database.as_str()).await?;
            if tenant.isolation == Isolation::Shared {
                set_local_block(&p.pool.get().await?, tenant.id, true).await?;
            }
            if !fresh.is_empty() {
                let sql = privileges_sql(&db, tenant, fresh, false).await?;
                db.batch_execute(&format!("BEGIN;\n{sql}COMMIT;")).await?;
            }
            end_temp_holders(&db, tenant, roles).await?;
        }
        Remaining::GiveBack { taken, .. } => {
            let db = connect_to(p, tenant.database.as_str()).await?;
            let sql = privileges_sql(&db, tenant, taken, true).await?;
            db.batch_execute(&format!("BEGIN;\n{sql}COMMIT;")).await?;
            if tenant.isolation == Isolation::Shared {
                set_local_block(&p.pool.get().await?, tenant.id, false).await?;
            }
        }
    }
    Ok(())
}

/// Records a give-back done outside the registry's transaction, in the caller's.
pub async fn finish_locked(tx: &Transaction<'_>, tenant: &Tenant, rest: &Remaining) -> Result<()> {
    if let Remaining::GiveBack { bytes, .. } = rest {
        restored(tx, tenant, *bytes).await?;
    }
    Ok(())
}

async fn restored(tx: &Transaction<'_>, tenant: &Tenant, bytes: i64) -> Result<()> {
    store::set_blocked(tx, tenant.id, false, &serde_json::json!([])).await?;
    record(tx, tenant, "quota_restored", bytes).await?;
    metrics::quota_restored("disk");
    tracing::info!(tenant.name = %tenant.name, bytes, quota = tenant.db_quota_bytes, "under disk quota again: writes restored");
    Ok(())
}

fn finish_block(t: &Tenant, was_blocked: bool, bytes: i64) -> Outcome {
    if was_blocked {
        return Outcome::Unchanged;
    }
    metrics::quota_breach("disk");
    tracing::warn!(tenant.name = %t.name, bytes, quota = t.db_quota_bytes, "over disk quota: writes revoked");
    Outcome::Blocked
}

async fn record(
    c: &impl GenericClient,
    t: &Tenant,
    action: &str,
    bytes: i64,
) -> crate::store::Result<()> {
    let state = QuotaState {
        quota: "disk".into(),
        limit_name: "db_quota_bytes".into(),
        limit: t.db_quota_bytes,
        used: bytes,
    };
    if action == "quota_exceeded" {
        outbox::emit(c, t.id, t.name.as_str(), &QuotaExceeded { state }).await?;
    } else {
        outbox::emit(c, t.id, t.name.as_str(), &QuotaRecovered { state }).await?;
    }
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

/// The memberships of `roles` (the tenant's) in the TEMPORARY role of the cluster `c`
/// is on (schema and shared modes).
async fn temp_memberships(c: &impl PgClient, roles: &[String]) -> Result<Vec<Revoked>> {
    let rows = c
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
    let sql = format!(
        "SELECT pg_catalog.pg_terminate_backend(a.pid) FROM pg_catalog.pg_stat_activity a
          WHERE a.datname = pg_catalog.current_database()
            AND a.usename IN (SELECT t.owner FROM {} t WHERE t.owner = ANY($1))",
        crate::pg::temp_relations::TEMP_RELATIONS.as_str()
    );
    let ended = db.query(&sql, &[&roles]).await?;
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
