//! The tenant template: an ordered, checksummed set of SQL migrations that every
//! tenant's schema (or database) is built from. The default one ships in the binary.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// How a schema's comment says the template version its objects are at (a tenant's
/// schema, or a shared pool on a server other than `default`), set with their DDL.
pub const VERSION_MARKER: &str = "berqenas template_version=";

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
    #[error("reading the tenant template directory {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tenant template file {file}: {problem}")]
    BadFile { file: String, problem: String },
    #[error("the tenant template directory {0} holds no NNNN_name.sql files")]
    Empty(String),
    #[error("tenant template migration {name} (version {version}) was applied but is missing from the template; a template directory holds every file, the built-in ones too (`berqenas template export DIR` writes them)")]
    Missing { name: String, version: i32 },
    #[error("tenant template migration {name} was changed after it was applied (checksum {found}, recorded {recorded})")]
    Tampered {
        name: String,
        found: String,
        recorded: String,
    },
    #[error(transparent)]
    Db(#[from] crate::store::Error),
}

const BUILTIN_REALTIME: &str = include_str!("../templates/tenant/0002_realtime.sql");
const BUILTIN_SHARED_TRIGGERS: &str =
    include_str!("../templates/tenant/0003_shared_realtime_triggers.sql");

/// Whether `from` starts with the built-in 0002 and 0003, unchanged.
fn builtin_realtime_pair(from: &[TemplateMigration]) -> bool {
    static SUMS: LazyLock<[String; 2]> = LazyLock::new(|| {
        [BUILTIN_REALTIME, BUILTIN_SHARED_TRIGGERS]
            .map(|sql| hex::encode(Sha256::digest(sql.as_bytes())))
    });
    matches!(from, [a, b, ..] if a.version == 2 && b.version == 3
        && a.checksum == SUMS[0] && b.checksum == SUMS[1])
}

/// The built-in 0002 and 0003 as one, for a new tenant: 0002 with 0003's triggers in
/// place of the three trigger functions it made per tenant (and 0003 then dropped).
/// Running both, a create made and dropped three functions whose names every tenant
/// shared, and PostgreSQL looks a function up among all the rows of its name, dead
/// ones of earlier creates included: a fifth of the machine's CPU at 9,000 tenants
/// (docs/scale.md). Both files are frozen (their checksums are recorded where they
/// ran), so the cut points below never move; tests/realtime_triggers.rs compares the
/// catalog this makes with the one 0002 then 0003 make.
fn fresh_realtime_sql() -> &'static str {
    static FRESH: LazyLock<String> = LazyLock::new(|| {
        let cut = |text: &str, marker: &str| {
            text.find(marker)
                .unwrap_or_else(|| panic!("the built-in template has {marker:?}"))
        };
        let functions = cut(BUILTIN_REALTIME, "CREATE FUNCTION realtime_gate()");
        let publish = cut(BUILTIN_REALTIME, "-- SELECT realtime_publish(");
        let triggers = cut(
            BUILTIN_SHARED_TRIGGERS,
            "CREATE OR REPLACE TRIGGER realtime_gate",
        );
        let drops = cut(BUILTIN_SHARED_TRIGGERS, "DROP FUNCTION realtime_gate();");
        format!(
            "{}{}{}",
            &BUILTIN_REALTIME[..functions],
            &BUILTIN_SHARED_TRIGGERS[triggers..drops],
            &BUILTIN_REALTIME[publish..]
        )
    });
    &FRESH
}

/// `NNNN_description.sql`: a number, an underscore, a name.
fn check_name(name: &str) -> Result<(), TemplateError> {
    let bad = |problem: &str| TemplateError::BadFile {
        file: name.to_string(),
        problem: problem.to_string(),
    };
    let (number, rest) = name
        .split_once('_')
        .ok_or_else(|| bad("the name must be NNNN_description.sql"))?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) || rest == ".sql" {
        return Err(bad("the name must be NNNN_description.sql"));
    }
    match number.parse::<i32>() {
        Ok(v) if v > 0 => Ok(()),
        _ => Err(bad("the version number must be between 1 and 2147483647")),
    }
}

impl Template {
    /// The default template (seed 001 section 3.2).
    pub fn builtin() -> Self {
        Self::from_files(&[
            (
                "0001_init.sql",
                include_str!("../templates/tenant/0001_init.sql"),
            ),
            ("0002_realtime.sql", BUILTIN_REALTIME),
            ("0003_shared_realtime_triggers.sql", BUILTIN_SHARED_TRIGGERS),
        ])
    }

    /// An operator's template: every `NNNN_description.sql` file in `dir`, in version
    /// order. Other files are ignored; a malformed or duplicate number is an error.
    pub fn from_dir(dir: &std::path::Path) -> Result<Self, TemplateError> {
        let io = |source| TemplateError::Io {
            dir: dir.display().to_string(),
            source,
        };
        let mut files: Vec<(String, String)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name.ends_with(".sql") {
                continue;
            }
            check_name(name)?;
            let sql = std::fs::read_to_string(&path).map_err(|e| TemplateError::BadFile {
                file: name.to_string(),
                problem: e.to_string(),
            })?;
            files.push((name.to_string(), sql));
        }
        if files.is_empty() {
            return Err(TemplateError::Empty(dir.display().to_string()));
        }
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_str()))
            .collect();
        let t = Self::from_files(&refs);
        for pair in t.migrations.windows(2) {
            if pair[0].version == pair[1].version {
                return Err(TemplateError::BadFile {
                    file: pair[1].name.clone(),
                    problem: format!(
                        "version {} is also used by {}",
                        pair[0].version, pair[0].name
                    ),
                });
            }
        }
        Ok(t)
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

    /// What a new tenant runs to reach the latest version: every migration, in order,
    /// except that the built-in 0002 and 0003, when the template holds both unchanged,
    /// run as one ([`fresh_realtime_sql`]).
    pub fn full_sql(&self) -> String {
        let mut parts: Vec<&str> = Vec::with_capacity(self.migrations.len());
        let fresh = fresh_realtime_sql();
        let mut i = 0;
        while i < self.migrations.len() {
            if builtin_realtime_pair(&self.migrations[i..]) {
                parts.push(fresh);
                i += 2;
            } else {
                parts.push(&self.migrations[i].sql);
                i += 1;
            }
        }
        parts.join("\n")
    }

    pub fn migrations(&self) -> &[TemplateMigration] {
        &self.migrations
    }

    /// The migrations after `version`, in order: what a tenant at `version` still needs.
    pub fn pending(&self, version: i32) -> &[TemplateMigration] {
        let start = self.migrations.partition_point(|m| m.version <= version);
        &self.migrations[start..]
    }

    /// The SQL that takes a tenant from `version` to the latest.
    pub fn sql_after(&self, version: i32) -> String {
        self.sql_between(version, self.latest_version())
    }

    /// The migrations after `from` up to `to`, in order: what a run to `to` still does
    /// for a tenant at `from` (a run finished after a restart keeps its target, even
    /// if the new process has a newer template).
    pub fn pending_until(&self, from: i32, to: i32) -> &[TemplateMigration] {
        let pending = self.pending(from);
        let end = pending.partition_point(|m| m.version <= to);
        &pending[..end]
    }

    /// The SQL that takes a tenant from `from` to `to`.
    pub fn sql_between(&self, from: i32, to: i32) -> String {
        self.pending_until(from, to)
            .iter()
            .map(|m| m.sql.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Records each migration's checksum the first time it is seen and refuses a file
    /// whose content changed since, or a recorded one that has gone.
    pub async fn register(
        &self,
        client: &impl deadpool_postgres::GenericClient,
    ) -> Result<(), TemplateError> {
        for (version, name) in crate::store::templates::recorded(client).await? {
            if !self.migrations.iter().any(|m| m.version == version) {
                return Err(TemplateError::Missing { name, version });
            }
        }
        for m in &self.migrations {
            let recorded =
                crate::store::templates::record(client, m.version, &m.name, &m.checksum).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory removed on drop, also when the test panics.
    struct TempDir(std::path::PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = std::path::Path;
        fn deref(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir_with(files: &[(&str, &str)]) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "berqenas-template-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, sql) in files {
            std::fs::write(dir.join(name), sql).unwrap();
        }
        TempDir(dir)
    }

    #[test]
    fn a_new_tenant_runs_the_builtin_realtime_versions_as_one() {
        let fresh = Template::builtin().full_sql();
        for gone in [
            "CREATE FUNCTION realtime_gate()",
            "CREATE FUNCTION realtime_immutable()",
            "CREATE FUNCTION realtime_wake()",
            "DROP FUNCTION",
            "EXECUTE FUNCTION realtime_gate()",
        ] {
            assert!(!fresh.contains(gone), "{gone}");
        }
        for kept in [
            "CREATE TABLE applications",
            "CREATE TABLE realtime_events",
            "CREATE FUNCTION realtime_next_id()",
            "CREATE FUNCTION realtime_publish(",
            "CREATE FUNCTION realtime_table_changes()",
            "EXECUTE FUNCTION berqenas_realtime.event_gate()",
            "EXECUTE FUNCTION berqenas_realtime.event_immutable()",
            "EXECUTE FUNCTION berqenas_realtime.event_wake()",
        ] {
            assert_eq!(fresh.matches(kept).count(), 1, "{kept}");
        }
        // A template that changed either file, or lacks 0003, runs them as written.
        let files = |realtime: &str| {
            Template::from_files(&[
                (
                    "0001_init.sql",
                    include_str!("../templates/tenant/0001_init.sql"),
                ),
                ("0002_realtime.sql", realtime),
                ("0003_shared_realtime_triggers.sql", BUILTIN_SHARED_TRIGGERS),
            ])
        };
        let changed = format!("{BUILTIN_REALTIME}\n-- changed\n");
        assert!(files(&changed)
            .full_sql()
            .contains("DROP FUNCTION realtime_gate();"));
        assert_eq!(files(BUILTIN_REALTIME).full_sql(), fresh);
        let v2 = Template::from_files(&[("0002_realtime.sql", BUILTIN_REALTIME)]);
        assert_eq!(v2.full_sql(), BUILTIN_REALTIME);
    }

    #[test]
    fn a_missing_file_names_the_command_that_writes_the_builtin_ones() {
        let e = TemplateError::Missing {
            name: "0001_init.sql".into(),
            version: 1,
        };
        assert!(
            e.to_string().contains("berqenas template export DIR"),
            "{e}"
        );
    }

    #[test]
    fn a_directory_is_read_in_version_order_and_other_files_are_ignored() {
        let dir = dir_with(&[
            ("0010_later.sql", "SELECT 10;"),
            ("0002_second.sql", "SELECT 2;"),
            ("0001_first.sql", "SELECT 1;"),
            ("README.md", "not sql"),
        ]);
        let t = Template::from_dir(&dir).unwrap();
        let names: Vec<&str> = t.migrations().iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["0001_first.sql", "0002_second.sql", "0010_later.sql"]
        );
        assert_eq!(t.latest_version(), 10);
        assert_eq!(t.sql_after(1), "SELECT 2;\nSELECT 10;");
        assert!(t.pending(10).is_empty());
    }

    #[test]
    fn bad_directories_name_the_file() {
        for (files, needle) in [
            (vec![("first.sql", "x")], "first.sql"),
            (
                vec![("0001_a.sql", "x"), ("01_b.sql", "y")],
                "version 1 is also used",
            ),
            (vec![("0_zero.sql", "x")], "0_zero.sql"),
            (vec![("notes.txt", "x")], "holds no NNNN_name.sql files"),
        ] {
            let dir = dir_with(&files);
            let err = Template::from_dir(&dir).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        let err = Template::from_dir(std::path::Path::new("/nonexistent/berqenas"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/berqenas"), "{err}");
    }
}
