//! Backups on the engine (the pieces are in [`crate::backup`]):
//!
//! - `backup.take` (manual and scheduled backups): `register` (its row `running`),
//!   `dump` (pg_dump into the store; in shared mode through a scratch schema it
//!   declares first), `record` (its row `succeeded`, with its audit entry). Until
//!   `record` commits, a failure or a crash fails the row and deletes what was stored.
//! - `backup.verify`: `check` (restored into a scratch database as a throw-away role,
//!   both declared first, and compared with the manifest), `record` (its audit entry).
//!
//! Restores are in [`super::restores`]. The backup worker's round is here too: due
//! scheduled backups, each a `backup.take`, then expired backups deleted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{failed, run_kind, Error, Runtime};
use crate::backup::verify::{self, VerifyReport};
use crate::backup::{self, take, worker, Backup, BackupKind, Manifest};
use crate::ops::{Kind, Object, Run, Step, StepError, StepFuture};
use crate::store::tenants;
use crate::tenant::{service, Isolation, Tenant};

pub const TAKE: &str = "backup.take";
pub const VERIFY: &str = "backup.verify";

pub fn kinds() -> Vec<Kind<Runtime>> {
    vec![
        Kind {
            name: TAKE,
            steps: vec![
                Step {
                    name: "register",
                    reaches_out: false,
                    apply: register,
                    compensate: Some(fail_backup),
                    skip: None,
                },
                Step {
                    name: "dump",
                    reaches_out: true,
                    apply: dump,
                    compensate: Some(delete_dump),
                    skip: None,
                },
                Step {
                    name: "record",
                    reaches_out: false,
                    apply: record,
                    compensate: None,
                    skip: None,
                },
            ],
            point_of_no_return: 2,
        },
        Kind {
            name: VERIFY,
            steps: vec![
                Step {
                    name: "check",
                    reaches_out: true,
                    apply: check,
                    compensate: None,
                    skip: None,
                },
                Step {
                    name: "record",
                    reaches_out: false,
                    apply: record_verified,
                    compensate: None,
                    skip: None,
                },
            ],
            point_of_no_return: 1,
        },
    ]
}

/// A backup error as a step's: the request's or the backup's fault is the answer
/// (a refusal, nothing to retry); anything else is a failure.
pub(crate) fn backup_error(e: backup::Error) -> StepError {
    match e.problem() {
        Some(p) => StepError::Rejected(p),
        None => StepError::failed(e),
    }
}

pub(crate) async fn tenant_by_id(rt: &Runtime, id: Uuid) -> Result<Tenant, StepError> {
    let client = rt.pool.get().await.map_err(failed)?;
    tenants::get(&client, id).await.map_err(failed)
}

/// A backup and its manifest, usable for a restore or a verification.
pub(crate) async fn usable(rt: &Runtime, id: Uuid) -> Result<(Backup, Manifest), StepError> {
    let client = rt.pool.get().await.map_err(failed)?;
    let (b, m) = crate::store::backups::find(&client, id)
        .await
        .map_err(failed)?
        .ok_or_else(|| StepError::Fenced(format!("backup {id} is gone")))?;
    let m = backup::restore::usable(&b, m).map_err(backup_error)?;
    Ok((b, m))
}

#[derive(Debug, Serialize, Deserialize)]
struct TakeParams {
    tenant: Uuid,
    backup: Uuid,
    kind: BackupKind,
    encrypted: bool,
    expires_at: Option<DateTime<Utc>>,
    actor: String,
}

/// `POST /api/v1/tenants/{name}/backups`: a manual backup, encrypted and kept as the
/// tenant's policy says (else encrypted, 30 days).
pub async fn create(rt: &Runtime, key: &str, actor: &str) -> Result<Backup, Error> {
    let t = service::get(rt, key).await?;
    take::check_live(&t)?;
    let (encrypted, expires) = take::manual_terms(&rt.pool.get().await?, &t).await?;
    take_backup(rt, &t, BackupKind::Manual, encrypted, Some(expires), actor).await
}

/// Takes a backup of `t` now, as one `backup.take` operation.
pub async fn take_backup(
    rt: &Runtime,
    t: &Tenant,
    kind: BackupKind,
    encrypted: bool,
    expires_at: Option<DateTime<Utc>>,
    actor: &str,
) -> Result<Backup, Error> {
    let started = std::time::Instant::now();
    let params = TakeParams {
        tenant: t.id,
        backup: Uuid::now_v7(),
        kind,
        encrypted,
        expires_at,
        actor: actor.to_string(),
    };
    let v = run_kind(rt, TAKE, Some(t.id), t.name.as_str(), &params).await?;
    let b: Backup = serde_json::from_value(v).map_err(service::Error::from)?;
    tracing::info!(tenant.name = %t.name, backup.id = %b.id, backup.kind = kind.as_str(),
        size_bytes = b.size_bytes, ms = started.elapsed().as_millis() as u64, "backup taken");
    Ok(b)
}

/// A claimed scheduled backup taken: `Some(true)` taken, `Some(false)` failed (logged),
/// `None` when its tenant is gone.
async fn scheduled_backup(rt: &Runtime, due: &worker::Due) -> Result<Option<bool>, Error> {
    let client = rt.pool.get().await?;
    let Some(t) = tenants::find(&client, &due.tenant_id.to_string())
        .await
        .map_err(service::Error::from)?
    else {
        return Ok(None);
    };
    drop(client);
    let expires = Utc::now() + chrono::Duration::days(due.retention_days.into());
    match take_backup(
        rt,
        &t,
        BackupKind::Scheduled,
        due.encryption,
        Some(expires),
        "worker",
    )
    .await
    {
        Ok(_) => Ok(Some(true)),
        Err(e) => {
            tracing::warn!(tenant.name = %t.name, error = %e, "scheduled backup failed");
            Ok(Some(false))
        }
    }
}

/// 1. The backup's row, `running` (the tenant must be live).
fn register<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: TakeParams = run.params()?;
        let t = tenant_by_id(rt, p.tenant).await?;
        take::check_live(&t).map_err(backup_error)?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        take::register(&tx, &t, p.backup, p.kind, p.encrypted)
            .await
            .map_err(backup_error)?;
        let outcome = json!({"backup_id": p.backup});
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// The row `failed` (a row no longer `running` is left as it is).
fn fail_backup<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: TakeParams = run.params()?;
        let t = tenant_by_id(rt, p.tenant).await?;
        // The row, its event and its audit entry together, under the tenant's name
        // (its events commit in order).
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        crate::ops::fence::lock_name(&tx, t.name.as_str()).await?;
        take::discard(
            &tx,
            &t,
            p.backup,
            p.kind,
            "the backup did not complete",
            &p.actor,
            Some(run.id),
        )
        .await
        .map_err(backup_error)?;
        tx.commit().await.map_err(failed)?;
        Ok(Value::Null)
    })
}

/// The scratch schema a shared-mode tenant's backup copies its rows into, in its
/// pool's database (on another server, a `schema@server` object cleaned there).
pub(super) fn shared_scratch(t: &crate::tenant::Tenant, backup: uuid::Uuid) -> Option<Object> {
    (t.isolation == Isolation::Shared).then(|| {
        super::restores_placed::scratch_object(
            t,
            &crate::backup::restore::Scratch {
                kind: "schema",
                name: backup::shared::scratch_schema(backup).as_str().to_string(),
                database: Some(t.database.as_str().to_string()),
            },
        )
    })
}

/// 2. pg_dump into the store, from the tenant's server; returns the manifest.
fn dump<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: TakeParams = run.params()?;
        let t = tenant_by_id(rt, p.tenant).await?;
        let scratch = shared_scratch(&t, p.backup);
        run.intend(scratch.into_iter().collect(), Value::Null)
            .await?;
        // From the tenant's own server (docs/servers.md); shared mode lives on `default`.
        let server = super::on_server::view_for(rt, &t).await?;
        match take::dump(&server, &t, p.backup, p.encrypted).await {
            Ok(m) => serde_json::to_value(&m).map_err(failed),
            Err(e) => {
                // The row says why (the compensation then finds it failed already).
                take::delete_objects(rt, t.id, p.backup).await;
                let mut c = rt.pool.get().await.map_err(failed)?;
                let tx = c.transaction().await.map_err(failed)?;
                crate::ops::fence::lock_name(&tx, t.name.as_str()).await?;
                take::discard(
                    &tx,
                    &t,
                    p.backup,
                    p.kind,
                    &e.to_string(),
                    &p.actor,
                    Some(run.id),
                )
                .await
                .map_err(backup_error)?;
                tx.commit().await.map_err(failed)?;
                Err(backup_error(e))
            }
        }
    })
}

/// What the dump may have stored (the manifest can be stored before the dump fails).
fn delete_dump<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: TakeParams = run.params()?;
        take::delete_objects(rt, p.tenant, p.backup).await;
        Ok(Value::Null)
    })
}

/// 3. The row `succeeded`, with its audit entry.
fn record<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: TakeParams = run.params()?;
        let m: Manifest = run
            .outcome("dump")
            .ok_or_else(|| StepError::Fenced("no manifest to record".into()))?;
        let t = tenant_by_id(rt, p.tenant).await?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        crate::ops::fence::lock_name(&tx, t.name.as_str()).await?;
        let b = take::record(&tx, &t, &m, p.kind, p.expires_at, &p.actor, Some(run.id))
            .await
            .map_err(backup_error)?;
        let outcome = serde_json::to_value(&b).map_err(failed)?;
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

#[derive(Debug, Serialize, Deserialize)]
struct VerifyParams {
    backup: Uuid,
    actor: String,
}

/// `POST .../backups/{id}/verify`: restored into a scratch database and compared with
/// the manifest.
pub async fn verify(
    rt: &Runtime,
    tenant_key: Option<&str>,
    id: &str,
    actor: &str,
) -> Result<VerifyReport, Error> {
    let (b, m) = backup::find(rt, tenant_key, id).await?;
    backup::restore::usable(&b, m)?;
    let params = VerifyParams {
        backup: b.id,
        actor: actor.to_string(),
    };
    let v = run_kind(rt, VERIFY, Some(b.tenant_id), &b.tenant, &params).await?;
    Ok(serde_json::from_value(v).map_err(service::Error::from)?)
}

/// 1. The restore into a scratch database (it and the role declared first) and the
///    comparison.
fn check<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: VerifyParams = run.params()?;
        let (b, m) = usable(rt, p.backup).await?;
        let scratch = verify::Scratch::new();
        run.intend(
            vec![
                Object::scratch("database", scratch.database.as_str(), None),
                Object::scratch(
                    "role",
                    scratch.role.as_str(),
                    Some(scratch.database.as_str()),
                ),
            ],
            Value::Null,
        )
        .await?;
        let report = verify::check(rt, &b, &m, &scratch)
            .await
            .map_err(backup_error)?;
        serde_json::to_value(&report).map_err(failed)
    })
}

/// 2. The verification's audit entry.
fn record_verified<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let p: VerifyParams = run.params()?;
        let report: VerifyReport = run
            .outcome("check")
            .ok_or_else(|| StepError::Fenced("no report to record".into()))?;
        let tenant = run.tenant_id.expect("a verification names its tenant");
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        verify::record(&tx, &report, tenant, &p.actor, Some(run.id))
            .await
            .map_err(backup_error)?;
        let outcome = serde_json::to_value(&report).map_err(failed)?;
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// The backup worker's round: due scheduled backups (one `backup.take` each, `jobs` at
/// a time, at most [`worker::MAX_PER_ROUND`]), then the objects of expired backups
/// deleted. Only one instance runs it at a time.
pub async fn worker_round(rt: &Runtime, jobs: usize) -> Result<worker::Report, Error> {
    let Some(leader) = worker::lead(rt).await? else {
        return Ok(worker::Report::default());
    };
    let mut report = worker::Report {
        leader: true,
        ..worker::Report::default()
    };
    // Each lane claims the next due policy when its backup ends: a slow tenant (a large
    // one, or one whose session holds its tables locked) holds up one lane only.
    let claimed = std::sync::atomic::AtomicUsize::new(0);
    let lane = || async {
        let (mut taken, mut failed) = (0, 0);
        while claimed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < worker::MAX_PER_ROUND {
            let Some(due) = worker::claim_due(rt).await? else {
                break;
            };
            match scheduled_backup(rt, &due).await? {
                Some(true) => taken += 1,
                Some(false) => failed += 1,
                None => {}
            }
        }
        Ok::<_, Error>((taken, failed))
    };
    let lanes = futures_util::future::join_all((0..jobs.max(1)).map(|_| lane())).await;
    for lane in lanes {
        let (taken, failed) = lane?;
        report.backups_taken += taken;
        report.backups_failed += failed;
    }
    // One stuck file must not stop the rest of the worker: log and go on.
    report.backups_expired = match worker::expire(rt).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "expiring old backups failed; retried next round");
            0
        }
    };
    leader.release().await?;
    Ok(report)
}
