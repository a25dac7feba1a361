//! `berqenas backup verify <id>`: the backup restored into a scratch database (as a
//! throw-away role that can touch nothing else), its tables' row counts and checksums
//! compared with the manifest, the scratch dropped.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::manifest::{self, TableStat};
use super::restore::{restore_into_scratch, usable};
use super::temp::ScratchDb;
use super::{Error, Result};
use crate::audit;
use crate::platform::Platform;

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

pub async fn verify(
    p: &Platform,
    tenant_key: Option<&str>,
    id: &str,
    actor: &str,
) -> Result<VerifyReport> {
    let started = std::time::Instant::now();
    let (backup, manifest) = super::find(p, tenant_key, id).await?;
    let manifest = usable(&backup, manifest)?;
    let scratch = ScratchDb::create(p, "verify").await?;
    let checked: Result<Vec<TableStat>> = async {
        let role = restore_into_scratch(p, &scratch, &backup, &manifest).await?;
        crate::ops::failpoint("verify.after_restore");
        let stats = async {
            let c = super::connect_to(p, scratch.name.as_str()).await?;
            c.batch_execute(manifest::STABLE_TEXT).await?;
            Ok::<_, Error>(
                manifest::table_stats(&c, &manifest.schema, Some(&manifest.tables)).await?,
            )
        }
        .await;
        role.drop(p, &[scratch.name.as_str()]).await?;
        stats
    }
    .await;
    if let Err(e) = scratch.drop(p).await {
        tracing::warn!(database = %scratch.name.as_str(), error = %e, "could not drop a scratch database");
    }
    let (tables, error) = match checked {
        Ok(restored) => (compare(&manifest.tables, &restored), None),
        Err(Error::Unrestorable { reason }) => (vec![], Some(reason)),
        Err(e) => return Err(e),
    };
    let report = VerifyReport {
        backup_id: backup.id,
        tenant: backup.tenant.clone(),
        ok: error.is_none() && tables.iter().all(|t| t.ok),
        error,
        tables,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    let client = p.pool.get().await?;
    audit::record(
        &client,
        &audit::Entry {
            actor,
            action: "backup_verified",
            tenant_id: Some(backup.tenant_id),
            tenant_name: Some(&backup.tenant),
            operation_id: None,
            details: serde_json::json!({"backup_id": backup.id, "ok": report.ok, "error": report.error}),
        },
    )
    .await?;
    Ok(report)
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
