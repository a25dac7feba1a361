//! The tenant template: an ordered, checksummed set of SQL migrations that every
//! tenant's schema (or database) is built from. The default one ships in the binary.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

#[derive(Debug, Clone)]
pub struct TemplateMigration {
    pub version: i32,
    pub name: String,
    pub sql: String,
    pub checksum: String,
}

/// The template's migrations in version order.
#[derive(Debug, Clone)]
pub struct Template {
    migrations: Vec<TemplateMigration>,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("tenant template migration {name} was changed after it was applied (checksum {found}, recorded {recorded})")]
    Tampered {
        name: String,
        found: String,
        recorded: String,
    },
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

impl Template {
    /// The default template (seed 001 section 3.2).
    pub fn builtin() -> Self {
        Self::from_files(&[(
            "0001_init.sql",
            include_str!("../templates/tenant/0001_init.sql"),
        )])
    }

    /// Files named `NNNN_description.sql`; the number is the version.
    pub fn from_files(files: &[(&str, &str)]) -> Self {
        let mut migrations: Vec<TemplateMigration> = files
            .iter()
            .map(|(name, sql)| TemplateMigration {
                version: name
                    .split('_')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("template migration names start with a number"),
                name: name.to_string(),
                sql: sql.to_string(),
                checksum: hex::encode(Sha256::digest(sql.as_bytes())),
            })
            .collect();
        migrations.sort_by_key(|m| m.version);
        Self { migrations }
    }

    pub fn latest_version(&self) -> i32 {
        self.migrations.last().map_or(0, |m| m.version)
    }

    /// One checksum for the whole template: changes when any migration does.
    pub fn checksum(&self) -> String {
        let mut h = Sha256::new();
        for m in &self.migrations {
            h.update(m.checksum.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// All migrations concatenated: what a new tenant runs to reach the latest version.
    pub fn full_sql(&self) -> String {
        self.migrations
            .iter()
            .map(|m| m.sql.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Records each migration's checksum the first time it is seen and refuses a file
    /// whose content changed since.
    pub async fn register(&self, client: &Client) -> Result<(), TemplateError> {
        for m in &self.migrations {
            let row = client
                .query_one(
                    "INSERT INTO berqenas.template_migrations (version, name, checksum) VALUES ($1, $2, $3)
                     ON CONFLICT (version) DO UPDATE SET version = EXCLUDED.version
                     RETURNING checksum",
                    &[&m.version, &m.name, &m.checksum],
                )
                .await?;
            let recorded: String = row.get(0);
            if recorded != m.checksum {
                return Err(TemplateError::Tampered {
                    name: m.name.clone(),
                    found: m.checksum.clone(),
                    recorded,
                });
            }
        }
        Ok(())
    }
}
