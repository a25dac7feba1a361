//! Restores, in pieces a workflow journals and calls from its steps (the
//! `backup.restore`, `backup.restore_as` and `tenant.rebuild` operations): a [`Plan`]
//! names everything a restore will make before it makes anything; [`stage`] loads the
//! backup beside the tenant's data; [`commit_in`] makes it the tenant's, in the
//! caller's control transaction; [`put_back`] undoes a stage; [`drop_replaced`]
//! removes what was replaced. Nothing here recovers from a crash: the operation
//! engine does, from the plan its step declared.
//!
//! Schema and database modes: the tenant's schema is renamed aside, an empty one with
//! the tenant's standard grants takes its place, `pg_restore` fills it in one
//! transaction as a throw-away role that holds only the tenant owner's privileges (see
//! [`crate::access::TempRole`]), and the old schema is renamed `done`. Another
//! tenant's archive is restored into a scratch database first (pg_restore cannot
//! rename a schema), renamed there, and dumped across. Shared mode: the archive's rows
//! are restored into a scratch schema of the control database and moved into the pool
//! in the caller's transaction.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::dump::Conn;
use super::feed::{run_restore, Input};
use super::{shared, Backup, BackupStatus, Error, Manifest, Result};
use crate::access::{Reach, TempRole};
use crate::names::DefaultRole;
use crate::names::Slug;
use crate::pg::Ident;
use crate::platform::Platform;
use crate::secrets::random_bytes;
use crate::store::tenants::{Isolation, Tenant};

/// `POST .../backups/{id}/restore`: empty for in place, or `{"as":"new-name"}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Restore into a new tenant of this name (same isolation, plan and quota) instead.
    #[serde(default, rename = "as")]
    pub as_name: Option<String>,
}

impl RestoreRequest {
    /// A new tenant's name must be one (`as` is the field named in the error).
    pub fn validate(&self) -> Result<()> {
        if let Some(name) = &self.as_name {
            Slug::parse(name).map_err(|e| Error::invalid("as", e.to_string()))?;
        }
        Ok(())
    }
}

/// A backup that can be restored: succeeded, with its manifest.
pub fn usable(backup: &Backup, manifest: Option<Manifest>) -> Result<Manifest> {
    if backup.status != BackupStatus::Succeeded {
        return Err(Error::conflict(
            "backup_unusable",
            format!(
                "backup {} is {}: only a succeeded backup can be restored or verified",
                backup.id,
                backup.status.as_str()
            ),
        ));
    }
    manifest.ok_or_else(|| Error::Integrity {
        id: backup.id,
        what: "the manifest is missing".into(),
    })
}

/// Everything a restore will make, named before it makes any of it: the caller
/// journals it (its operation's intent), so that a crash anywhere leaves nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The throw-away role pg_restore runs as (schema and database modes).
    pub role: Option<String>,
    /// The tenant's schema while the restore runs, and once it is replaced.
    pub aside: Option<String>,
    pub done: Option<String>,
    /// Another tenant's archive: restored first into this database, as this role.
    pub scratch_db: Option<String>,
    pub scratch_role: Option<String>,
    /// Shared mode: the archive's own schema name in the control database (one
    /// restore of an archive at a time, under its lock), and the name it is renamed to
    /// once restored, this restore's own.
    pub archive_schema: Option<String>,
    pub scratch_schema: Option<String>,
    /// Shared mode: another tenant's archive, whose rows get new ids.
    #[serde(default)]
    pub new_ids: bool,
}

/// A throw-away object of a plan: what its declaration names.
pub struct Scratch {
    /// `role`, `database`, `schema`, or [`ARCHIVE_SCHEMA`].
    pub kind: &'static str,
    pub name: String,
    pub database: Option<String>,
}

/// The kind of scratch object an archive's own schema name is: dropped only under the
/// archive's lock ([`drop_archive_schema`]), as another restore of it may be using it.
pub const ARCHIVE_SCHEMA: &str = "archive_schema";

impl Plan {
    pub fn new(target: &Tenant, manifest: &Manifest) -> Self {
        let tag = hex::encode(random_bytes::<4>());
        if target.isolation == Isolation::Shared {
            return Self {
                role: None,
                aside: None,
                done: None,
                scratch_db: None,
                scratch_role: None,
                archive_schema: Some(manifest.schema.clone()),
                scratch_schema: Some(format!("berqenas_restore_{tag}")),
                new_ids: manifest.tenant_id != target.id,
            };
        }
        let schema = target.name.schema();
        let foreign = manifest.schema != schema.as_str();
        Self {
            role: Some(TempRole::new_name("restore").as_str().to_string()),
            aside: Some(format!("{}_r{tag}", schema.as_str())),
            done: Some(format!("{}_d{tag}", schema.as_str())),
            scratch_db: foreign.then(|| format!("berqenas_restore_{tag}")),
            scratch_role: foreign.then(|| TempRole::new_name("restore").as_str().to_string()),
            archive_schema: None,
            scratch_schema: None,
            new_ids: false,
        }
    }

    /// The throw-away objects, for the caller to declare (all dropped when it ends).
    pub fn scratch(&self, p: &Platform, target: &Tenant) -> Vec<Scratch> {
        let control = Some(p.endpoint.database.clone());
        let mut out = Vec::new();
        if let (Some(db), Some(role)) = (&self.scratch_db, &self.scratch_role) {
            out.push(Scratch {
                kind: "database",
                name: db.clone(),
                database: None,
            });
            out.push(Scratch {
                kind: "role",
                name: role.clone(),
                database: Some(db.clone()),
            });
        }
        if let Some(role) = &self.role {
            out.push(Scratch {
                kind: "role",
                name: role.clone(),
                database: Some(target.database.as_str().to_string()),
            });
        }
        if let Some(s) = &self.archive_schema {
            out.push(Scratch {
                kind: ARCHIVE_SCHEMA,
                name: s.clone(),
                database: control.clone(),
            });
        }
        if let Some(s) = &self.scratch_schema {
            out.push(Scratch {
                kind: "schema",
                name: s.clone(),
                database: control,
            });
        }
        out
    }
}

fn ident(name: &Option<String>) -> Ident {
    Ident::new(name.clone().expect("the plan names it")).expect("plans hold valid names")
}

/// Loads the backup beside `target`'s data: shared mode into the plan's scratch
/// schema; schema and database modes into the tenant's schema, the old one kept as
/// the plan's `done` (put back if anything fails). The tenant's logins should be off.
pub async fn stage(
    p: &Platform,
    target: &Tenant,
    backup: &Backup,
    manifest: &Manifest,
    plan: &Plan,
) -> Result<()> {
    match target.isolation {
        Isolation::Shared => stage_shared(p, backup, manifest, plan).await,
        _ => stage_schema(p, target, backup, manifest, plan).await,
    }
}

/// Makes the staged data the tenant's, in the caller's transaction of the control
/// database: shared mode moves the rows into the pool (new ids for a copy of another
/// tenant's); schema mode on `default` drops the replaced schema (on another server
/// that schema is not in this transaction's cluster: [`drop_replaced`] drops it).
pub async fn commit_in(
    tx: &deadpool_postgres::Transaction<'_>,
    target: &Tenant,
    backup: &Backup,
    plan: &Plan,
) -> Result<()> {
    match target.isolation {
        Isolation::Shared if !elsewhere(target) => {
            let scratch = ident(&plan.scratch_schema);
            shared::move_in(&**tx, &scratch, target.id, target.id != backup.tenant_id).await?;
            tx.batch_execute(&format!("DROP SCHEMA {scratch} CASCADE"))
                .await?;
        }
        // The pool is on the tenant's server: [`drop_replaced`] moves the rows in there.
        Isolation::Shared => {}
        Isolation::Schema if !elsewhere(target) => {
            tx.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                ident(&plan.done)
            ))
            .await?;
        }
        Isolation::Schema | Isolation::Database => {}
    }
    Ok(())
}

/// Whether the tenant lives on a server other than `default` (`p` is then a view on
/// that server, and the control transaction is not on it).
fn elsewhere(target: &Tenant) -> bool {
    target.server != crate::store::servers::DEFAULT
}

/// The replaced schema: database mode in the tenant's database; schema mode on a
/// server other than `default` in that server's database (`p` a view on it). Shared
/// mode on another server: the staged rows moved into that server's pool. Idempotent.
pub async fn drop_replaced(p: &Platform, target: &Tenant, plan: &Plan) -> Result<()> {
    let sql = || format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(&plan.done));
    match target.isolation {
        Isolation::Database => {
            super::connect_to(p, target.database.as_str())
                .await?
                .batch_execute(&sql())
                .await?
        }
        Isolation::Schema if elsewhere(target) => p.pool.get().await?.batch_execute(&sql()).await?,
        Isolation::Shared if elsewhere(target) => {
            // The staged rows replace the tenant's in its server's pool, and their
            // scratch schema goes, in one transaction there: run again, it finds no
            // scratch schema and changes nothing.
            let scratch = ident(&plan.scratch_schema);
            let mut c = p.pool.get().await?;
            let tx = c.transaction().await?;
            let staged = tx
                .query_opt(
                    "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
                    &[&scratch.as_str()],
                )
                .await?
                .is_some();
            if staged {
                shared::move_in(&*tx, &scratch, target.id, plan.new_ids).await?;
                tx.batch_execute(&format!("DROP SCHEMA {scratch} CASCADE"))
                    .await?;
                tx.commit().await?;
            }
        }
        Isolation::Schema | Isolation::Shared => {}
    }
    Ok(())
}

/// Undoes a [`stage`] however far it got: the tenant's own schema back where it was.
/// Idempotent (shared mode stages nothing of the tenant's).
pub async fn put_back(p: &Platform, target: &Tenant, plan: &Plan) -> Result<()> {
    if target.isolation == Isolation::Shared {
        return Ok(());
    }
    let schema = target.name.schema();
    let (pooled, own);
    let admin: &tokio_postgres::Client = if target.isolation == Isolation::Database {
        own = super::connect_to(p, target.database.as_str()).await?;
        &own
    } else {
        pooled = p.pool.get().await?;
        &pooled
    };
    for old in [&plan.aside, &plan.done] {
        let old = ident(old);
        let there = admin
            .query_opt(
                "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
                &[&old.as_str()],
            )
            .await?
            .is_some();
        if there {
            admin
                .batch_execute(&format!(
                    "BEGIN;\nDROP SCHEMA IF EXISTS {schema} CASCADE;\nALTER SCHEMA {old} RENAME TO {schema};\nCOMMIT;"
                ))
                .await?;
            break;
        }
    }
    Ok(())
}

/// A restore into a tenant nobody uses yet (one just made for it, or rebuilt from its
/// archive): staged and committed at once; its caller undoes it by dropping the tenant.
pub async fn load_fresh(
    p: &Platform,
    target: &Tenant,
    backup: &Backup,
    manifest: &Manifest,
    plan: &Plan,
) -> Result<()> {
    stage(p, target, backup, manifest, plan).await?;
    let mut c = p.pool.get().await?;
    let tx = c.transaction().await?;
    commit_in(&tx, target, backup, plan).await?;
    tx.commit().await?;
    drop_replaced(p, target, plan).await
}

fn archive_lock(schema: &str) -> String {
    format!("berqenas.archive_schema:{schema}")
}

async fn stage_shared(
    p: &Platform,
    backup: &Backup,
    manifest: &Manifest,
    plan: &Plan,
) -> Result<()> {
    let (archive, scratch) = (ident(&plan.archive_schema), ident(&plan.scratch_schema));
    debug_assert_eq!(archive.as_str(), manifest.schema);
    // The archive's schema name is the same for every restore of it: one at a time,
    // and renamed to this restore's own name before the lock goes (with the session).
    let admin = super::connect_to(p, &p.endpoint.database).await?;
    admin
        .execute(
            "SELECT pg_advisory_lock(hashtextextended($1, 0))",
            &[&archive_lock(archive.as_str())],
        )
        .await?;
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {archive} CASCADE; CREATE SCHEMA {archive}; REVOKE ALL ON SCHEMA {archive} FROM PUBLIC;"
        ))
        .await?;
    // The archive holds only berqenas's own plain tables: the control role restores it.
    let conn = Conn::control(&p.config, &p.endpoint.database);
    let restored = run_restore(
        p,
        &conn,
        None,
        archive.as_str(),
        Input::Backup(backup, manifest),
    )
    .await;
    let sql = match &restored {
        Ok(()) => format!("ALTER SCHEMA {archive} RENAME TO {scratch}"),
        Err(_) => format!("DROP SCHEMA IF EXISTS {archive} CASCADE"),
    };
    admin.batch_execute(&sql).await?;
    restored
}

/// Drops an archive's schema left by a restore that died (see [`ARCHIVE_SCHEMA`]),
/// under the archive's lock. Idempotent.
pub async fn drop_archive_schema(p: &Platform, name: &Ident) -> Result<()> {
    let admin = super::connect_to(p, &p.endpoint.database).await?;
    admin
        .execute(
            "SELECT pg_advisory_lock(hashtextextended($1, 0))",
            &[&archive_lock(name.as_str())],
        )
        .await?;
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
        .await?;
    Ok(())
}

async fn stage_schema(
    p: &Platform,
    target: &Tenant,
    backup: &Backup,
    manifest: &Manifest,
    plan: &Plan,
) -> Result<()> {
    let schema = target.name.schema();
    let Some(scratch_db) = plan.scratch_db.as_ref().map(|d| ident(&Some(d.clone()))) else {
        return replace_schema(p, target, plan, Input::Backup(backup, manifest)).await;
    };
    create_scratch_db(p, &scratch_db).await?;
    let role =
        restore_into_scratch(p, &scratch_db, ident(&plan.scratch_role), backup, manifest).await?;
    let renamed = super::connect_to(p, scratch_db.as_str())
        .await?
        .batch_execute(&format!(
            "ALTER SCHEMA {} RENAME TO {schema}",
            Ident::new(manifest.schema.clone()).expect("manifest names are valid")
        ))
        .await;
    let copied = match renamed {
        Ok(()) => {
            let from = Conn::control(&p.config, scratch_db.as_str());
            replace_schema(p, target, plan, Input::Dump(from, schema.as_str())).await
        }
        Err(e) => Err(e.into()),
    };
    // The operation drops them too, whatever happens; dropping them now frees them.
    let dropped = async {
        drop_scratch_db(p, &scratch_db).await?;
        Ok(role.drop(p, &[]).await?)
    }
    .await;
    kept_despite(copied, dropped)
}

/// A scratch database (declared by the caller) nobody but the control role reaches.
pub async fn create_scratch_db(p: &Platform, name: &Ident) -> Result<()> {
    let c = p.pool.get().await?;
    c.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
        .await?;
    c.batch_execute(&format!(
        "REVOKE CONNECT, TEMPORARY ON DATABASE {name} FROM PUBLIC"
    ))
    .await?;
    // An archive's realtime triggers fire the shared functions (template 0003).
    super::connect_to(p, name.as_str())
        .await?
        .batch_execute(crate::isolation::realtime_triggers::INSTALL_SQL)
        .await?;
    Ok(())
}

pub async fn drop_scratch_db(p: &Platform, name: &Ident) -> Result<()> {
    p.pool
        .get()
        .await?
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    Ok(())
}

/// Restores `backup` into the scratch database as the throw-away role `role` (declared
/// by the caller), which owns nothing else. Returns that role.
pub async fn restore_into_scratch(
    p: &Platform,
    scratch: &Ident,
    role: Ident,
    backup: &Backup,
    manifest: &Manifest,
) -> Result<TempRole> {
    let role = TempRole::create(p, role, &[], Reach::Database(scratch)).await?;
    let admin = super::connect_to(p, scratch.as_str()).await?;
    let schema = Ident::new(manifest.schema.clone()).expect("manifest names are valid");
    admin
        .batch_execute(&format!(
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC; CREATE SCHEMA {schema} AUTHORIZATION {}",
            role.name
        ))
        .await?;
    let conn = role.conn(&Conn::control(&p.config, scratch.as_str()));
    if let Err(e) = run_restore(
        p,
        &conn,
        None,
        schema.as_str(),
        Input::Backup(backup, manifest),
    )
    .await
    {
        drop(admin);
        let _ = role.drop(p, &[scratch.as_str()]).await;
        return Err(e);
    }
    Ok(role)
}

/// Moves the tenant's schema aside, restores `input` into an empty one with the
/// standard grants, then renames the old schema `done`; or puts it back on failure.
async fn replace_schema(
    p: &Platform,
    target: &Tenant,
    plan: &Plan,
    input: Input<'_>,
) -> Result<()> {
    let slug = &target.name;
    let (schema, owner) = (slug.schema(), slug.owner_role());
    let (aside, done) = (ident(&plan.aside), ident(&plan.done));
    let database = target.database.clone();
    let in_control_db = target.isolation != Isolation::Database;
    // In the control database a pooled connection saves a connection setup.
    let (pooled, own);
    let admin: &tokio_postgres::Client = if in_control_db {
        pooled = p.pool.get().await?;
        &pooled
    } else {
        own = super::connect_to(p, database.as_str()).await?;
        &own
    };
    let other_db: Vec<&str> = if in_control_db {
        vec![]
    } else {
        vec![database.as_str()]
    };
    let reach = if in_control_db {
        Reach::ControlDatabase
    } else {
        Reach::Database(&database)
    };
    let role = TempRole::create(p, ident(&plan.role), &[&owner], reach).await?;
    if let Err(e) = admin
        .batch_execute(&format!(
            "BEGIN;\nALTER SCHEMA {schema} RENAME TO {aside};\n{}COMMIT;",
            shell_sql(slug)
        ))
        .await
    {
        let _ = role.drop(p, &other_db).await;
        return Err(e.into());
    }
    let conn = role.conn(&Conn::control(&p.config, database.as_str()));
    let restored = run_restore(p, &conn, Some(owner.as_str()), schema.as_str(), input).await;
    let finished = match restored {
        Ok(()) => {
            let tables: Vec<String> = admin
                .query(
                    "SELECT relname::text FROM pg_class WHERE relnamespace = to_regnamespace($1) AND relkind IN ('r','p')",
                    &[&schema.as_str()],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            admin
                .batch_execute(&format!(
                    "BEGIN;\n{}ALTER SCHEMA {aside} RENAME TO {done};\nCOMMIT;",
                    grants_sql(slug, &tables)
                ))
                .await
                .map_err(Error::from)
        }
        Err(e) => Err(e),
    };
    if finished.is_err() {
        let _ = admin.batch_execute("ROLLBACK").await;
        put_back(p, target, plan).await?;
    }
    let dropped = role.drop(p, &other_db).await.map_err(Error::from);
    kept_despite(finished, dropped)
}

/// The outcome of the work, unless only the cleanup after it failed: that is logged
/// (the operation drops what is left) and the work's result stands.
fn kept_despite<T>(work: Result<T>, cleanup: Result<()>) -> Result<T> {
    if let (Ok(_), Err(e)) = (&work, &cleanup) {
        tracing::warn!(error = %e, "could not drop a restore's throw-away objects yet");
    }
    work
}

/// An empty tenant schema with the grants and default privileges a new one gets.
fn shell_sql(slug: &Slug) -> String {
    let (schema, owner, login) = (slug.schema(), slug.owner_role(), slug.login_role());
    format!(
        "CREATE SCHEMA {schema} AUTHORIZATION {owner};\n\
         REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;\n\
         GRANT USAGE ON SCHEMA {schema} TO {login};\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {login};\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {login};\n"
    )
}

/// The default roles' grants (seed 001 3.3) on the restored tables, as the owner;
/// grants on a template table the tenant dropped are left out.
fn grants_sql(slug: &Slug, tables: &[String]) -> String {
    let (schema, owner, login) = (slug.schema(), slug.owner_role(), slug.login_role());
    let mut sql = format!(
        "SET LOCAL ROLE {owner};\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {login};\n\
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {login};\n"
    );
    for role in DefaultRole::ALL {
        let r = slug.group_role(role);
        if role == DefaultRole::TenantAdmin {
            sql.push_str(&format!(
                "GRANT USAGE, CREATE ON SCHEMA {schema} TO {r};\n\
                 GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {r};\n\
                 GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema} TO {r};\n\
                 ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT ALL ON TABLES TO {r};\n\
                 ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT ALL ON SEQUENCES TO {r};\n"
            ));
            continue;
        }
        sql.push_str(&format!("GRANT USAGE ON SCHEMA {schema} TO {r};\n"));
        for (privileges, table) in role.table_grants() {
            if tables.iter().any(|t| t == table) {
                let table = Ident::new(*table).expect("static table names are valid");
                sql.push_str(&format!("GRANT {privileges} ON {schema}.{table} TO {r};\n"));
            }
        }
    }
    sql.push_str("RESET ROLE;\n");
    sql
}
