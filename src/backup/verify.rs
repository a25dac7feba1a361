//! `berqenas backup verify <id>`: the backup restored into a scratch database (as a
//! throw-away role that can touch nothing else), its tables' row counts and checksums
//! compared with the manifest, the scratch dropped.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::manifest::{self, TableStat};
use super::restore::{create_scratch_db, drop_scratch_db, restore_into_scratch};
use super::{Backup, Error, Manifest, Result};
use crate::access::TempRole;
use crate::audit;
use crate::pg::Ident;
use crate::platform::Platform;
use crate::secrets::random_bytes;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyReport {
    pub backup_id: Uuid,
    pub tenant: String,
    /// Every table restored with the manifest's row count and checksum.
    pub ok: bool,
    /// Why the backup could not be restored at all (then `ok` is false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub tables: Vec<TableCheck>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TableCheck {
    pub table: String,
    pub expected_rows: Option<i64>,
    pub restored_rows: Option<i64>,
    pub expected_checksum: Option<String>,
    pub restored_checksum: Option<String>,
    pub ok: bool,
}

/// Pairs the manifest's tables with the restored ones (a table on one side only fails).
pub fn compare(expected: &[TableStat], restored: &[TableStat]) -> Vec<TableCheck> {
    let mut names: Vec<&str> = expected
        .iter()
        .chain(restored)
        .map(|t| t.table.as_str())
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let e = expected.iter().find(|t| t.table == name);
            let r = restored.iter().find(|t| t.table == name);
            TableCheck {
                table: name.to_string(),
                expected_rows: e.map(|t| t.rows),
                restored_rows: r.map(|t| t.rows),
                expected_checksum: e.map(|t| t.checksum.clone()),
                restored_checksum: r.map(|t| t.checksum.clone()),
                ok: matches!((e, r), (Some(e), Some(r)) if e == r),
            }
        })
        .collect()
}

/// The names a verification will make, for its caller to declare first.
pub struct Scratch {
    pub database: Ident,
    pub role: Ident,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            database: Ident::new(format!(
                "berqenas_verify_{}",
                hex::encode(random_bytes::<6>())
            ))
            .expect("fits"),
            role: TempRole::new_name("verify"),
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// Restores the backup into the scratch database, compares its tables with the
/// manifest, and drops the scratch (its caller's operation drops it too, however it
/// ends). A backup pg_restore refuses is a report that says why, not an error.
pub async fn check(
    p: &Platform,
    backup: &Backup,
    manifest: &Manifest,
    scratch: &Scratch,
) -> Result<VerifyReport> {
    let started = std::time::Instant::now();
    create_scratch_db(p, &scratch.database).await?;
    let checked: Result<Vec<TableStat>> = async {
        let role =
            restore_into_scratch(p, &scratch.database, scratch.role.clone(), backup, manifest)
                .await?;
        let stats = async {
            let c = super::connect_to(p, scratch.database.as_str()).await?;
            c.batch_execute(manifest::STABLE_TEXT).await?;
            Ok::<_, Error>(
                manifest::table_stats(&c, &manifest.schema, Some(&manifest.tables)).await?,
            )
        }
        .await;
        role.drop(p, &[scratch.database.as_str()]).await?;
        stats
    }
    .await;
    if let Err(e) = drop_scratch_db(p, &scratch.database).await {
        tracing::warn!(database = %scratch.database.as_str(), error = %e, "could not drop a scratch database yet");
    }
    let (tables, error) = match checked {
        Ok(restored) => (compare(&manifest.tables, &restored), None),
        Err(Error::Unrestorable { reason }) => (vec![], Some(reason)),
        Err(e) => return Err(e),
    };
    Ok(VerifyReport {
        backup_id: backup.id,
        tenant: backup.tenant.clone(),
        ok: error.is_none() && tables.iter().all(|t| t.ok),
        error,
        tables,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// The verification's audit entry, in the caller's transaction.
pub async fn record(
    c: &impl deadpool_postgres::GenericClient,
    report: &VerifyReport,
    tenant_id: Uuid,
    actor: &str,
    operation_id: Option<Uuid>,
) -> Result<()> {
    audit::record(
        c,
        &audit::Entry {
            actor,
            action: "backup_verified",
            tenant_id: Some(tenant_id),
            tenant_name: Some(&report.tenant),
            operation_id,
            details: serde_json::json!({"backup_id": report.backup_id, "ok": report.ok, "error": report.error}),
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(t: &str, rows: i64, sum: &str) -> TableStat {
        TableStat {
            table: t.into(),
            rows,
            checksum: sum.into(),
            method: Default::default(),
        }
    }

    #[test]
    fn every_difference_fails_its_table() {
        let expected = [stat("a", 2, "x"), stat("b", 1, "y"), stat("c", 0, "0")];
        let restored = [stat("a", 2, "x"), stat("b", 1, "z"), stat("d", 0, "0")];
        let checks = compare(&expected, &restored);
        let ok: Vec<(&str, bool)> = checks.iter().map(|c| (c.table.as_str(), c.ok)).collect();
        assert_eq!(ok, [("a", true), ("b", false), ("c", false), ("d", false)]);
    }
}
