//! Crash safety of restores. A restore spans several transactions in up to two
//! databases: logins off, the tenant's schema set aside, `pg_restore` into a fresh
//! one, the swap, the registry. Its operation row (written before anything changes,
//! its lease renewed while it runs) carries an undo journal of what has changed so
//! far, saved before or together with each change. When the process dies, the
//! reconciler (or the next action on the tenant, see [`settle`]) reads the journal
//! and the catalog and finishes the restore or puts the tenant back as it was:
//!
//! - the set-aside schema still exists: the restore did not finish, so the new
//!   schema goes and the old one takes its name again;
//! - the set-aside schema was renamed `done`: the restored schema is complete, so the
//!   registry catches up (template version, audit) and `done` is dropped;
//! - in both cases the logins and memberships the restore took are given back.
//!
//! A restore into a new tenant that did not finish takes the new tenant away again.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Error, Result};
use crate::ops::lease::{Keeper, Renewal};
use crate::pg::Ident;
use crate::platform::Platform;
use crate::tenant::suspension::{self, Membership};
use crate::tenant::{store, Isolation, Status, Tenant};
use crate::{audit, ops};

pub const IN_PLACE: &str = "backup.restore";
pub const AS_NEW: &str = "backup.restore_as";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Undo {
    pub backup_id: Option<Uuid>,
    pub template_version: i32,
    /// Login roles that lost LOGIN, and memberships revoked, for the restore.
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub memberships: Vec<Membership>,
    /// The name the tenant's own schema has while the restore runs.
    pub aside: Option<String>,
    /// The name it takes once the restored schema is complete, until dropped.
    pub done: Option<String>,
    /// The registry records the restore (version, audit row).
    #[serde(default)]
    pub committed: bool,
    /// Into a new tenant: the tenant created for it.
    pub new_tenant: Option<Uuid>,
}

/// A restore in progress: its operation row, lease kept alive while this lives.
pub(crate) struct Journal {
    pub id: Uuid,
    pub undo: Undo,
    _lease: Keeper,
}

impl Journal {
    /// Writes the operation row, journal included, before anything changes.
    pub async fn begin(p: &Platform, kind: &str, tenant: &Tenant, undo: Undo) -> Result<Self> {
        Self::begin_named(p, kind, Some(tenant.id), &tenant.name, undo).await
    }

    pub async fn begin_named(
        p: &Platform,
        kind: &str,
        tenant_id: Option<Uuid>,
        tenant_name: &str,
        undo: Undo,
    ) -> Result<Self> {
        let id = Uuid::now_v7();
        let mut c = p.pool.get().await?;
        let tx = c.transaction().await?;
        ops::begin(
            &tx,
            &ops::NewOperation {
                id,
                kind,
                tenant_id,
                tenant_name,
                idempotency: None,
                params: None,
                instance: None,
            },
        )
        .await?;
        save(&tx, id, &undo).await?;
        tx.commit().await?;
        Ok(Self {
            id,
            undo,
            _lease: Keeper::start(p.pool.clone(), Renewal::OPERATION, id),
        })
    }

    /// Saves the journal; inside the caller's transaction when the change it records
    /// is made there too.
    pub async fn save(&self, c: &impl deadpool_postgres::GenericClient) -> Result<()> {
        save(c, self.id, &self.undo).await
    }

    pub async fn succeed(self, p: &Platform) -> Result<()> {
        let c = p.pool.get().await?;
        ops::succeed(&c, self.id, &[], None).await?;
        Ok(())
    }

    /// After an error: whatever the restore had done is finished or put back, as
    /// after a crash, and the operation is closed. From the journal as saved, not as
    /// held here: a failed commit may have lost a change made to it in memory.
    pub async fn settle_after_error(self, p: &Platform) {
        let id = self.id;
        drop(self);
        if let Err(e) = recover(p, id).await {
            tracing::error!(operation.id = %id, error = %e, "could not settle a failed restore; the reconciler will retry");
        }
    }
}

async fn save(c: &impl deadpool_postgres::GenericClient, id: Uuid, undo: &Undo) -> Result<()> {
    c.execute(
        "UPDATE berqenas.operations SET undo = $2 WHERE id = $1",
        &[&id, &serde_json::to_value(undo)?],
    )
    .await?;
    Ok(())
}

/// Before an action on a tenant (by name or id): a restore of it still running
/// elsewhere is a 409; one whose process died is finished or put back first. One
/// query when there is none (an unknown tenant is left to the action's own 404).
pub(crate) async fn settle(p: &Platform, key: &str) -> Result<()> {
    let c = p.pool.get().await?;
    let rows = c
        .query(
            "SELECT o.id, o.lease_until < now(), t.name FROM berqenas.operations o
               JOIN berqenas.tenants t ON o.tenant_id = t.id OR o.tenant_name = t.name
              WHERE o.state = 'running' AND o.kind IN ($2, $3)
                AND (t.id::text = $1 OR t.name = $1)",
            &[&key, &IN_PLACE, &AS_NEW],
        )
        .await?;
    for row in rows {
        let (id, lapsed, name): (Uuid, bool, String) = (row.get(0), row.get(1), row.get(2));
        let claimed = lapsed
            && c.execute(
                "UPDATE berqenas.operations SET lease_until = now() + interval '1 minute'
                  WHERE id = $1 AND state = 'running' AND lease_until < now()",
                &[&id],
            )
            .await?
                == 1;
        if !claimed {
            return Err(Error::conflict(
                "tenant_busy",
                format!("a restore of tenant {name} is in progress; retry when it has finished"),
            ));
        }
        recover(p, id).await?;
    }
    Ok(())
}

/// The reconciler's part, for an operation it has claimed.
pub async fn recover(p: &Platform, id: Uuid) -> Result<()> {
    let c = p.pool.get().await?;
    let undo: Option<serde_json::Value> = c
        .query_one("SELECT undo FROM berqenas.operations WHERE id = $1", &[&id])
        .await?
        .get(0);
    drop(c);
    let undo = match undo {
        Some(v) => serde_json::from_value(v)?,
        None => Undo::default(),
    };
    recover_claimed(p, id, undo).await
}

async fn recover_claimed(p: &Platform, id: Uuid, mut undo: Undo) -> Result<()> {
    let c = p.pool.get().await?;
    let row = c
        .query_one(
            "SELECT kind, tenant_id, tenant_name, created_at FROM berqenas.operations WHERE id = $1",
            &[&id],
        )
        .await?;
    let (kind, tenant_id, tenant_name, started): (
        String,
        Option<Uuid>,
        String,
        chrono::DateTime<chrono::Utc>,
    ) = (row.get(0), row.get(1), row.get(2), row.get(3));
    drop(c);
    let finished = if kind == AS_NEW {
        undo_new_tenant(p, &tenant_name, started, &undo).await?
    } else {
        match tenant_id {
            Some(t) => match store::find(&p.pool.get().await?, &t.to_string()).await? {
                Some(t) => settle_in_place(p, id, &t, &mut undo).await?,
                None => false,
            },
            None => false,
        }
    };
    let c = p.pool.get().await?;
    if finished {
        ops::succeed(&c, id, &[], None).await?;
    } else {
        ops::fail(
            &c,
            id,
            "the restore did not finish; the tenant was put back as it was",
            None,
        )
        .await?;
    }
    tracing::warn!(operation.id = %id, tenant.name = %tenant_name, finished, "settled an interrupted restore");
    Ok(())
}

/// Finishes or reverts an in-place restore; true if the backup's data stays.
async fn settle_in_place(p: &Platform, op: Uuid, t: &Tenant, undo: &mut Undo) -> Result<bool> {
    let mut finished = undo.committed;
    if t.isolation != Isolation::Shared {
        let schema = t.name.schema();
        let admin = super::connect_to(p, t.database.as_str()).await?;
        let exists = |name: Option<String>| {
            let admin = &admin;
            async move {
                let Some(name) = name else { return Ok(None) };
                let found: bool = admin
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                        &[&name],
                    )
                    .await?
                    .get(0);
                Ok::<_, Error>(found.then(|| Ident::new(name).expect("journal names are valid")))
            }
        };
        if let Some(aside) = exists(undo.aside.clone()).await? {
            admin
                .batch_execute(&format!(
                    "BEGIN;\nDROP SCHEMA IF EXISTS {schema} CASCADE;\nALTER SCHEMA {aside} RENAME TO {schema};\nCOMMIT;"
                ))
                .await?;
            finished = false;
        } else if let Some(done) = exists(undo.done.clone()).await? {
            if !undo.committed {
                commit_registry(p, op, t, undo).await?;
            }
            admin
                .batch_execute(&format!("DROP SCHEMA {done} CASCADE"))
                .await?;
            finished = true;
        }
    }
    let c = p.pool.get().await?;
    suspension::restore(&c, &undo.roles, &undo.memberships, p.caps.superuser).await?;
    if !finished {
        audit::record(
            &c,
            &audit::Entry {
                actor: "berqenas",
                action: "backup_restore_reverted",
                tenant_id: Some(t.id),
                tenant_name: Some(&t.name),
                operation_id: Some(op),
                details: serde_json::json!({"backup_id": undo.backup_id, "reason": "the restore did not finish"}),
            },
        )
        .await?;
    }
    Ok(finished)
}

/// The registry's half of a finished in-place restore: the backup's template
/// version, the audit row, and the journal saying so, in one transaction.
pub(crate) async fn commit_registry(
    p: &Platform,
    op: Uuid,
    t: &Tenant,
    undo: &mut Undo,
) -> Result<()> {
    let mut c = p.pool.get().await?;
    let tx = c.transaction().await?;
    record_restored(&tx, op, t, undo, "berqenas").await?;
    tx.commit().await?;
    Ok(())
}

/// Inside the caller's transaction: version, audit row, journal.
pub(crate) async fn record_restored(
    tx: &impl deadpool_postgres::GenericClient,
    op: Uuid,
    t: &Tenant,
    undo: &mut Undo,
    actor: &str,
) -> Result<()> {
    crate::migrate::set_restored_version(tx, t, undo.template_version).await?;
    audit::record(
        tx,
        &audit::Entry {
            actor,
            action: "backup_restored",
            tenant_id: Some(t.id),
            tenant_name: Some(&t.name),
            operation_id: Some(op),
            details: serde_json::json!({"backup_id": undo.backup_id, "into": "in_place"}),
        },
    )
    .await?;
    undo.committed = true;
    save(tx, op, undo).await
}

/// A restore into a new tenant that did not finish: the tenant it created goes.
async fn undo_new_tenant(
    p: &Platform,
    name: &str,
    started: chrono::DateTime<chrono::Utc>,
    undo: &Undo,
) -> Result<bool> {
    if undo.committed {
        return Ok(true);
    }
    let c = p.pool.get().await?;
    let t = match undo.new_tenant {
        Some(id) => store::find(&c, &id.to_string()).await?,
        // Died between the create's commit and the journal's: the tenant of that
        // name created since the restore began is this restore's (one existing
        // before would have made the restore fail at once).
        None => store::find(&c, name)
            .await?
            .filter(|t| t.created_at >= started),
    };
    drop(c);
    match t {
        // One still provisioning is its create's to roll back.
        Some(t) if t.status != Status::Provisioning => {
            crate::tenant::offboarding::drop_for_good(p, &t).await?;
        }
        _ => {}
    }
    Ok(false)
}

/// [`settle`] for actions outside the backup module (suspend, resume, activate).
pub(crate) async fn settle_tenant(
    p: &Platform,
    key: &str,
) -> std::result::Result<(), crate::tenant::service::Error> {
    use crate::tenant::service::Error as E;
    settle(p, key).await.map_err(|e| match e {
        Error::Rejected(problem) => E::Rejected(problem),
        Error::Db(e) => E::Db(e),
        Error::Pool(e) => E::Pool(e),
        other => E::Rejected(crate::problem::Problem::new(
            crate::problem::Kind::Internal,
            "restore_recovery_failed",
            format!("an interrupted restore of tenant {key} could not be settled: {other}"),
        )),
    })
}
