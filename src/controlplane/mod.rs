//! The control plane's own schema (`berqenas`): versioned migrations embedded in the
//! binary and applied at start.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::pg::PgError;

struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init.sql",
        sql: include_str!("../../migrations/control/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_tenant_users.sql",
        sql: include_str!("../../migrations/control/0002_tenant_users.sql"),
    },
    Migration {
        version: 3,
        name: "0003_step_intent.sql",
        sql: include_str!("../../migrations/control/0003_step_intent.sql"),
    },
    Migration {
        version: 4,
        name: "0004_plans_trials.sql",
        sql: include_str!("../../migrations/control/0004_plans_trials.sql"),
    },
    Migration {
        version: 5,
        name: "0005_api_key_expiry.sql",
        sql: include_str!("../../migrations/control/0005_api_key_expiry.sql"),
    },
    Migration {
        version: 6,
        name: "0006_migration_runs.sql",
        sql: include_str!("../../migrations/control/0006_migration_runs.sql"),
    },
    Migration {
        version: 7,
        name: "0007_lifecycle_audit_keys.sql",
        sql: include_str!("../../migrations/control/0007_lifecycle_audit_keys.sql"),
    },
    Migration {
        version: 8,
        name: "0008_backups.sql",
        sql: include_str!("../../migrations/control/0008_backups.sql"),
    },
    Migration {
        version: 9,
        name: "0009_quotas_usage.sql",
        sql: include_str!("../../migrations/control/0009_quotas_usage.sql"),
    },
    Migration {
        version: 10,
        name: "0010_offboarding_memberships.sql",
        sql: include_str!("../../migrations/control/0010_offboarding_memberships.sql"),
    },
    Migration {
        version: 11,
        name: "0011_operation_undo.sql",
        sql: include_str!("../../migrations/control/0011_operation_undo.sql"),
    },
    Migration {
        version: 12,
        name: "0012_scratch_objects.sql",
        sql: include_str!("../../migrations/control/0012_scratch_objects.sql"),
    },
    Migration {
        version: 13,
        name: "0013_security.sql",
        sql: include_str!("../../migrations/control/0013_security.sql"),
    },
    Migration {
        version: 14,
        name: "0014_transaction_timeout.sql",
        sql: include_str!("../../migrations/control/0014_transaction_timeout.sql"),
    },
    Migration {
        version: 15,
        name: "0015_operation_engine.sql",
        sql: include_str!("../../migrations/control/0015_operation_engine.sql"),
    },
    Migration {
        version: 16,
        name: "0016_engine_only.sql",
        sql: include_str!("../../migrations/control/0016_engine_only.sql"),
    },
    Migration {
        version: 17,
        name: "0017_migration_runs_operations.sql",
        sql: include_str!("../../migrations/control/0017_migration_runs_operations.sql"),
    },
    Migration {
        version: 18,
        name: "0018_network.sql",
        sql: include_str!("../../migrations/control/0018_network.sql"),
    },
    Migration {
        version: 19,
        name: "0019_login_role_index.sql",
        sql: include_str!("../../migrations/control/0019_login_role_index.sql"),
    },
    Migration {
        version: 20,
        name: "0020_outbox.sql",
        sql: include_str!("../../migrations/control/0020_outbox.sql"),
    },
    Migration {
        version: 21,
        name: "0021_webhooks.sql",
        sql: include_str!("../../migrations/control/0021_webhooks.sql"),
    },
    Migration {
        version: 22,
        name: "0022_onboarding_steps.sql",
        sql: include_str!("../../migrations/control/0022_onboarding_steps.sql"),
    },
    Migration {
        version: 23,
        name: "0023_event_emission.sql",
        sql: include_str!("../../migrations/control/0023_event_emission.sql"),
    },
    Migration {
        version: 24,
        name: "0024_onboarding_callbacks.sql",
        sql: include_str!("../../migrations/control/0024_onboarding_callbacks.sql"),
    },
    Migration {
        version: 25,
        name: "0025_config_auth_invitations.sql",
        sql: include_str!("../../migrations/control/0025_config_auth_invitations.sql"),
    },
    Migration {
        version: 26,
        name: "0026_realtime.sql",
        sql: include_str!("../../migrations/control/0026_realtime.sql"),
    },
    Migration {
        version: 27,
        name: "0027_vector_store.sql",
        sql: include_str!("../../migrations/control/0027_vector_store.sql"),
    },
    Migration {
        version: 28,
        name: "0028_monitoring_level.sql",
        sql: include_str!("../../migrations/control/0028_monitoring_level.sql"),
    },
    Migration {
        version: 29,
        name: "0029_usage_samples.sql",
        sql: include_str!("../../migrations/control/0029_usage_samples.sql"),
    },
    Migration {
        version: 30,
        name: "0030_warm_pool.sql",
        sql: include_str!("../../migrations/control/0030_warm_pool.sql"),
    },
    Migration {
        version: 32,
        name: "0032_servers.sql",
        sql: include_str!("../../migrations/control/0032_servers.sql"),
    },
    Migration {
        version: 34,
        name: "0034_instances.sql",
        sql: include_str!("../../migrations/control/0034_instances.sql"),
    },
    Migration {
        version: 35,
        name: "0035_realtime_counts.sql",
        sql: include_str!("../../migrations/control/0035_realtime_counts.sql"),
    },
    Migration {
        version: 39,
        name: "0039_operation_abort.sql",
        sql: include_str!("../../migrations/control/0039_operation_abort.sql"),
    },
    Migration {
        version: 40,
        name: "0040_disk_signatures.sql",
        sql: include_str!("../../migrations/control/0040_disk_signatures.sql"),
    },
    Migration {
        version: 41,
        name: "0041_record_template_version.sql",
        sql: include_str!("../../migrations/control/0041_record_template_version.sql"),
    },
    Migration {
        version: 42,
        name: "0042_warm_pool_credentials.sql",
        sql: include_str!("../../migrations/control/0042_warm_pool_credentials.sql"),
    },
    Migration {
        version: 43,
        name: "0043_server_pgbouncer_admin.sql",
        sql: include_str!("../../migrations/control/0043_server_pgbouncer_admin.sql"),
    },
    Migration {
        version: 44,
        name: "0044_operation_steps.sql",
        sql: include_str!("../../migrations/control/0044_operation_steps.sql"),
    },
    Migration {
        version: 45,
        name: "0045_usage_sample_runs.sql",
        sql: include_str!("../../migrations/control/0045_usage_sample_runs.sql"),
    },
];

/// Any constant works; it only keeps two starting servers from migrating at once.
const MIGRATION_LOCK: i64 = 0x6265_7271_656e_6173; // "berqenas"

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("control-plane migration {name} was changed after it was applied (checksum {found}, expected {expected})")]
    Tampered {
        name: String,
        found: String,
        expected: String,
    },
    #[error("the control-plane schema is at version {0}, newer than this binary knows: upgrade berqenas")]
    TooNew(i32),
    #[error(transparent)]
    Pg(#[from] PgError),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Pg(e.into())
    }
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Applies pending migrations, each in its own transaction, under an advisory lock.
pub async fn migrate(client: &mut Client) -> Result<usize, MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = apply(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    result
}

async fn apply(client: &mut Client) -> Result<usize, MigrateError> {
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS berqenas;
             REVOKE ALL ON SCHEMA berqenas FROM PUBLIC;
             CREATE TABLE IF NOT EXISTS berqenas.schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 checksum text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let applied = client
        .query(
            "SELECT version, name, checksum FROM berqenas.schema_migrations ORDER BY version",
            &[],
        )
        .await?;
    let mut count = 0;
    for row in &applied {
        let (version, name, sum): (i32, String, String) = (row.get(0), row.get(1), row.get(2));
        match MIGRATIONS.iter().find(|m| m.version == version) {
            None => return Err(MigrateError::TooNew(version)),
            Some(m) if checksum(m.sql) != sum => {
                return Err(MigrateError::Tampered {
                    name,
                    found: checksum(m.sql),
                    expected: sum,
                })
            }
            Some(_) => {}
        }
    }
    // Versions may have gaps (branches take numbers ahead of merging): pending ones
    // run in version order, whatever their place in the list.
    let mut pending: Vec<&Migration> = MIGRATIONS
        .iter()
        .filter(|m| !applied.iter().any(|r| r.get::<_, i32>(0) == m.version))
        .collect();
    pending.sort_by_key(|m| m.version);
    for m in pending {
        let tx = client.transaction().await?;
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO berqenas.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &checksum(m.sql)],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied control-plane migration"
        );
        count += 1;
    }
    Ok(count)
}
