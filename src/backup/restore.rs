//! Restores: in place (the tenant's data replaced by the backup's) or into a new
//! tenant (`{"as":"new-name"}`, same isolation). The tenant's logins are off while it
//! runs. In schema and database modes the current schema is moved aside, an empty one
//! with the tenant's standard grants takes its place, `pg_restore` fills it in one
//! transaction as a throw-away role that holds only the tenant owner's privileges (see
//! [`super::temp`]), and the old schema is dropped, or moved back if anything failed.

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::crypt::Opener;
use super::dump::{self, Conn};
use super::journal::{self, Journal, Undo};
use super::temp::ScratchDb;
use super::{shared, Backup, BackupStatus, Error, Manifest, Result};
use crate::access::{Reach, TempRole};
use crate::pg::Ident;
use crate::platform::Platform;
use crate::store::tenants as store;
use crate::tenant::roles::DefaultRole;
use crate::tenant::service::{self, CreateTenant, CreatedTenant};
use crate::tenant::{access, Isolation, Slug, Status, Tenant};
use crate::{audit, ops};

/// `POST .../backups/{id}/restore`: empty for in place, or `{"as":"new-name"}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Restore into a new tenant of this name (same isolation, plan and quota) instead.
    #[serde(default, rename = "as")]
    pub as_name: Option<String>,
}

pub enum Restored {
    InPlace(Tenant),
    New(CreatedTenant),
}

/// A backup that can be restored: succeeded, with its manifest.
pub(crate) fn usable(backup: &Backup, manifest: Option<Manifest>) -> Result<Manifest> {
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

/// `create`: how a new tenant is made (the caller's workflow), for a restore into one.
pub async fn restore(
    p: &Platform,
    tenant_key: &str,
    backup_id: &str,
    req: &RestoreRequest,
    actor: &str,
    create: impl AsyncFnOnce(CreateTenant) -> std::result::Result<CreatedTenant, service::Error>,
) -> Result<Restored> {
    if let Some(name) = &req.as_name {
        Slug::parse(name).map_err(|e| Error::invalid("as", e.to_string()))?;
    }
    let (backup, manifest) = super::find(p, Some(tenant_key), backup_id).await?;
    let manifest = usable(&backup, manifest)?;
    match &req.as_name {
        None => in_place(p, tenant_key, &backup, &manifest, actor)
            .await
            .map(Restored::InPlace),
        Some(name) => as_new(p, &backup, &manifest, name, actor, create)
            .await
            .map(Restored::New),
    }
}

async fn in_place(
    p: &Platform,
    key: &str,
    backup: &Backup,
    manifest: &Manifest,
    actor: &str,
) -> Result<Tenant> {
    journal::settle(p, key).await?;
    let mut guard = p.pool.get().await?;
    let g = guard.transaction().await?;
    let tenant = store::find_for_update(&g, key)
        .await?
        .ok_or_else(|| service::Error::not_found(key))?;
    let slug = tenant.name.clone();
    service::lock_name(&g, &slug).await?;
    if !matches!(
        tenant.status,
        Status::Active | Status::Trial | Status::Suspended
    ) {
        return Err(Error::conflict(
            "invalid_state",
            format!(
                "cannot restore a backup into tenant {}: it is {}; bring the tenant back first (POST /api/v1/tenants/{}/restore)",
                tenant.name,
                tenant.status.as_str(),
                tenant.name
            ),
        ));
    }
    let undo = Undo {
        backup_id: Some(backup.id),
        template_version: manifest.template_version,
        ..Undo::default()
    };
    let mut journal = Journal::begin(p, journal::IN_PLACE, &tenant, undo).await?;
    let done = match load_into(p, &tenant, backup, manifest, Some(&mut journal)).await {
        Ok(done) => done,
        Err(e) => {
            drop(g);
            journal.settle_after_error(p).await;
            return Err(e);
        }
    };
    ops::failpoint("restore.swapped");
    let op = journal.id;
    // In the control database the replaced schema goes, and the operation closes, in
    // the transaction that records the restore: nothing is left for afterwards.
    let in_control_db = tenant.isolation != Isolation::Database;
    let recorded = async {
        journal::record_restored(&g, op, &tenant, &mut journal.undo, actor).await?;
        if in_control_db {
            if let Some(done) = &done {
                g.batch_execute(&format!("DROP SCHEMA {done} CASCADE"))
                    .await?;
            }
            ops::succeed(&g, op, &[], None).await?;
        }
        g.commit().await?;
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = recorded {
        journal.settle_after_error(p).await;
        return Err(e);
    }
    if in_control_db {
        drop(journal);
        tracing::info!(tenant.name = %tenant.name, backup.id = %backup.id, "backup restored in place");
        return Ok(tenant);
    }
    ops::failpoint("restore.recorded");
    if let Some(done) = done {
        let dropped = async {
            super::connect_to(p, tenant.database.as_str())
                .await?
                .batch_execute(&format!("DROP SCHEMA {done} CASCADE"))
                .await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = dropped {
            tracing::warn!(tenant.name = %tenant.name, error = %e, "could not drop the replaced schema yet");
            journal.settle_after_error(p).await;
            return Ok(tenant);
        }
    }
    journal.succeed(p).await?;
    tracing::info!(tenant.name = %tenant.name, backup.id = %backup.id, "backup restored in place");
    Ok(tenant)
}

async fn as_new(
    p: &Platform,
    backup: &Backup,
    manifest: &Manifest,
    name: &str,
    actor: &str,
    create: impl AsyncFnOnce(CreateTenant) -> std::result::Result<CreatedTenant, service::Error>,
) -> Result<CreatedTenant> {
    let client = p.pool.get().await?;
    let source = store::find(&client, &backup.tenant_id.to_string())
        .await?
        .ok_or_else(|| service::Error::not_found(&backup.tenant_id.to_string()))?;
    drop(client);
    let undo = Undo {
        backup_id: Some(backup.id),
        template_version: manifest.template_version,
        ..Undo::default()
    };
    let mut journal = Journal::begin_named(p, journal::AS_NEW, None, name, undo).await?;
    let created = create(CreateTenant {
        name: name.to_string(),
        db_quota: Some(source.db_quota_bytes.to_string()),
        vpn_enabled: source.vpn_enabled,
        public_api: source.public_api,
        plan: Some(source.plan.clone()),
        isolation: Some(source.isolation.as_str().to_string()),
        trial_days: Some(0),
        metadata: Some(source.metadata.clone()),
        ..Default::default()
    })
    .await;
    let created = match created {
        Ok(created) => created,
        Err(e) => {
            // Nothing of this restore's exists. A request refused (the name is taken,
            // say) leaves no trace at all; an outage is recorded as a failure.
            let c = p.pool.get().await?;
            if matches!(e, service::Error::Rejected(_)) {
                c.execute(
                    "DELETE FROM berqenas.operations WHERE id = $1",
                    &[&journal.id],
                )
                .await?;
            } else {
                ops::fail(&c, journal.id, &e.to_string(), None).await?;
            }
            return Err(match e {
                service::Error::Rejected(mut p) if p.field.as_deref() == Some("name") => {
                    p.field = Some("as".into());
                    Error::Rejected(p)
                }
                other => other.into(),
            });
        }
    };
    let target = created.tenant.clone();
    journal.undo.new_tenant = Some(target.id);
    let loaded = async {
        journal.save(&p.pool.get().await?).await?;
        ops::failpoint("restore_as.created");
        load_into(p, &target, backup, manifest, None).await?;
        let mut c = p.pool.get().await?;
        let tx = c.transaction().await?;
        crate::migrate::set_restored_version(&tx, &target, manifest.template_version).await?;
        audit::record(
            &tx,
            &audit::Entry {
                actor,
                action: "backup_restored",
                tenant_id: Some(target.id),
                tenant_name: Some(&target.name),
                operation_id: Some(journal.id),
                details: serde_json::json!({"backup_id": backup.id, "into": "new_tenant", "source": source.name}),
            },
        )
        .await?;
        journal.undo.committed = true;
        journal.save(&tx).await?;
        tx.commit().await?;
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = loaded {
        // The request leaves nothing behind: the new tenant goes again.
        journal.settle_after_error(p).await;
        return Err(e);
    }
    journal.succeed(p).await?;
    tracing::info!(tenant.name = %target.name, backup.id = %backup.id, source = %source.name, "backup restored into a new tenant");
    let mut created = created;
    if target.isolation != crate::tenant::Isolation::Shared {
        created.tenant.template_version = manifest.template_version;
    }
    Ok(created)
}

/// Replaces `target`'s data by the backup's, logins off meanwhile. The caller holds
/// the tenant's name lock (and must not touch its registry row from elsewhere).
/// With a journal, what changes is journaled first, and the tenant's old schema is
/// not dropped but renamed to the journal's `done` name (returned), for the caller to
/// drop once the registry records the restore.
pub(crate) async fn load_into(
    p: &Platform,
    target: &Tenant,
    backup: &Backup,
    manifest: &Manifest,
    mut journal: Option<&mut Journal>,
) -> Result<Option<Ident>> {
    let mut c = p.pool.get().await?;
    // As a suspension: an application's pool role must not write in between either.
    let tx = c.transaction().await?;
    let cut = crate::tenant::suspension::cut(&tx, target, p.caps.superuser).await?;
    if let Some(j) = journal.as_deref_mut() {
        j.undo.roles = cut.roles.clone();
        j.undo.memberships = cut.memberships.clone();
        j.save(&tx).await?;
    }
    tx.commit().await?;
    access::end_sessions(&c, &cut.roles).await?;
    ops::failpoint("restore.logins_cut");
    let result = match target.isolation {
        Isolation::Shared => load_shared(p, target, backup, manifest)
            .await
            .map(|()| None),
        _ => load_schema(p, target, backup, manifest, journal).await,
    };
    crate::tenant::suspension::restore(&c, &cut.roles, &cut.memberships, p.caps.superuser).await?;
    result
}

async fn load_shared(
    p: &Platform,
    target: &Tenant,
    backup: &Backup,
    manifest: &Manifest,
) -> Result<()> {
    let scratch = Ident::new(manifest.schema.clone()).expect("manifest names are valid");
    let admin = super::connect_to(p, &p.endpoint.database).await?;
    // One restore of this backup at a time: they share its scratch schema's name.
    admin
        .execute(
            "SELECT pg_advisory_lock(hashtextextended($1, 0))",
            &[&format!("berqenas.backup:{}", backup.id)],
        )
        .await?;
    let registered =
        super::temp::ScratchSchema::register(p, &scratch, &p.endpoint.database).await?;
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {scratch} CASCADE; CREATE SCHEMA {scratch}; REVOKE ALL ON SCHEMA {scratch} FROM PUBLIC;"
        ))
        .await?;
    // The archive holds only berqenas's own plain tables: the control role restores it.
    let conn = Conn::control(&p.config, &p.endpoint.database);
    let mut result = run_restore(
        p,
        &conn,
        None,
        scratch.as_str(),
        Input::Backup(backup, manifest),
    )
    .await;
    ops::failpoint("restore.shared.after_scratch");
    if result.is_ok() {
        result = async {
            admin.batch_execute("BEGIN").await?;
            shared::move_in(&admin, &scratch, target.id, target.id != backup.tenant_id).await?;
            admin
                .batch_execute(&format!("DROP SCHEMA {scratch} CASCADE; COMMIT;"))
                .await?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = admin.batch_execute("ROLLBACK").await;
        }
    }
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {scratch} CASCADE"))
        .await?;
    registered.release().await?;
    result
}

async fn load_schema(
    p: &Platform,
    target: &Tenant,
    backup: &Backup,
    manifest: &Manifest,
    journal: Option<&mut Journal>,
) -> Result<Option<Ident>> {
    let slug = target.name.clone();
    let schema = slug.schema();
    if manifest.schema == schema.as_str() {
        return replace_schema(p, target, &slug, Input::Backup(backup, manifest), journal).await;
    }
    // Another tenant's archive: pg_restore cannot rename a schema, so the archive is
    // restored into a scratch database, renamed there, and dumped across.
    let scratch = ScratchDb::create(p, "restore").await?;
    let result = async {
        let role = restore_into_scratch(p, &scratch, backup, manifest).await?;
        let admin = super::connect_to(p, scratch.name.as_str()).await?;
        let renamed = admin
            .batch_execute(&format!(
                "ALTER SCHEMA {} RENAME TO {schema}",
                Ident::new(manifest.schema.clone()).expect("manifest names are valid")
            ))
            .await;
        drop(admin);
        let copied = match renamed {
            Ok(()) => {
                let from = Conn::control(&p.config, scratch.name.as_str());
                replace_schema(
                    p,
                    target,
                    &slug,
                    Input::Dump(from, schema.as_str()),
                    journal,
                )
                .await
            }
            Err(e) => Err(e.into()),
        };
        let dropped = role.drop(p, &[scratch.name.as_str()]).await;
        kept_despite(copied, dropped)
    }
    .await;
    scratch.drop(p).await?;
    result
}

/// Restores `backup` into `scratch` as a throw-away role that owns nothing else.
/// Returns that role (the caller drops it after the scratch database).
pub(crate) async fn restore_into_scratch(
    p: &Platform,
    scratch: &ScratchDb,
    backup: &Backup,
    manifest: &Manifest,
) -> Result<TempRole> {
    let role = TempRole::create(
        p,
        TempRole::new_name("restore"),
        &[],
        Reach::Database(&scratch.name),
    )
    .await?;
    let admin = super::connect_to(p, scratch.name.as_str()).await?;
    let schema = Ident::new(manifest.schema.clone()).expect("manifest names are valid");
    admin
        .batch_execute(&format!(
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC; CREATE SCHEMA {schema} AUTHORIZATION {}",
            role.name
        ))
        .await?;
    let conn = role.conn(&Conn::control(&p.config, scratch.name.as_str()));
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
        let _ = role.drop(p, &[scratch.name.as_str()]).await;
        return Err(e);
    }
    Ok(role)
}

/// What pg_restore reads: a stored backup, or a live pg_dump of another database.
pub(crate) enum Input<'a> {
    Backup(&'a Backup, &'a Manifest),
    Dump(Conn, &'a str),
}

/// Moves the tenant's schema aside, restores `input` into an empty one with the
/// standard grants, then drops the old schema, or puts it back on failure.
async fn replace_schema(
    p: &Platform,
    target: &Tenant,
    slug: &Slug,
    input: Input<'_>,
    journal: Option<&mut Journal>,
) -> Result<Option<Ident>> {
    let (schema, owner) = (slug.schema(), slug.owner_role());
    let tag = hex::encode(crate::secrets::random_bytes::<4>());
    let aside = Ident::new(format!("{}_r{tag}", schema.as_str())).expect("fits");
    let done = Ident::new(format!("{}_d{tag}", schema.as_str())).expect("fits");
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
    // Everything that can fail before the swap happens first: once the schema is set
    // aside, every error path puts it back.
    let c = p.pool.get().await?;
    let reach = if in_control_db {
        Reach::ControlDatabase
    } else {
        Reach::Database(&database)
    };
    let role = TempRole::create(p, TempRole::new_name("restore"), &[&owner], reach).await?;
    let keep = journal.is_some();
    if let Some(j) = journal {
        j.undo.aside = Some(aside.as_str().to_string());
        j.undo.done = Some(done.as_str().to_string());
        if let Err(e) = j.save(&c).await {
            let _ = role.drop(p, &other_db).await;
            return Err(e);
        }
    }
    drop(c);
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
    ops::failpoint("restore.loaded");
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
            // Journaled: renamed, not dropped, so a crash before the registry records
            // the restore can tell a finished restore from an unfinished one.
            let retire = if keep {
                format!("ALTER SCHEMA {aside} RENAME TO {done};")
            } else {
                format!("DROP SCHEMA {aside} CASCADE;")
            };
            admin
                .batch_execute(&format!(
                    "BEGIN;\n{}{retire}\nCOMMIT;",
                    grants_sql(slug, &tables)
                ))
                .await
                .map(|()| keep.then(|| done.clone()))
                .map_err(Error::from)
        }
        Err(e) => {
            admin
                .batch_execute(&format!(
                    "BEGIN;\nDROP SCHEMA IF EXISTS {schema} CASCADE;\nALTER SCHEMA {aside} RENAME TO {schema};\nCOMMIT;"
                ))
                .await?;
            Err(e)
        }
    };
    let dropped = role.drop(p, &other_db).await;
    kept_despite(finished, dropped)
}

/// The outcome of the work, unless only the cleanup after it failed: that is logged
/// (the sweep removes what is left) and the work's result stands.
fn kept_despite<T>(work: Result<T>, cleanup: Result<()>) -> Result<T> {
    if let (Ok(_), Err(e)) = (&work, &cleanup) {
        tracing::warn!(error = %e, "could not drop the restore's throw-away role");
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

/// Runs pg_restore on `conn` (as `role`, only `schema`) and feeds it `input`. A
/// failure of the input kills pg_restore before its transaction can commit.
pub(crate) async fn run_restore(
    p: &Platform,
    conn: &Conn,
    role: Option<&str>,
    schema: &str,
    input: Input<'_>,
) -> Result<()> {
    if let Input::Backup(backup, manifest) = &input {
        if manifest.encryption.is_none() {
            // Without authenticated chunks, the whole object is checked before use.
            check_digest(p, backup, manifest).await?;
        }
    }
    let cmd = dump::pg_restore(conn, role, Some(schema))?;
    let (mut child, stderr) = dump::spawn(cmd, "pg_restore")?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let fed = match input {
        Input::Backup(backup, manifest) => feed(p, backup, manifest, stdin).await,
        Input::Dump(from, schema) => feed_dump(&from, schema, stdin).await,
    };
    if fed.is_err() {
        let _ = child.start_kill();
    }
    let tool = dump::finish(child, stderr, "pg_restore").await;
    fed?;
    tool.map_err(refused)
}

/// pg_restore's own refusal (an `ERROR:` from PostgreSQL about the archive's objects)
/// is the backup's problem, told as such; anything else stays a tool failure.
fn refused(e: dump::ToolError) -> Error {
    if let dump::ToolError::Failed { stderr, .. } = &e {
        if let Some(line) = stderr.lines().find(|l| l.contains("ERROR:")) {
            let reason = line
                .split_once("ERROR:")
                .map_or(line, |(_, r)| r)
                .trim()
                .chars()
                .take(500)
                .collect();
            return Error::Unrestorable { reason };
        }
    }
    e.into()
}

fn data_key(p: &Platform, manifest: &Manifest) -> Result<Option<[u8; 32]>> {
    let Some(enc) = &manifest.encryption else {
        return Ok(None);
    };
    let sealed = B64.decode(&enc.data_key).map_err(|_| Error::Integrity {
        id: manifest.id,
        what: "the sealed data key is not base64".into(),
    })?;
    let key = p.key.open(&sealed)?;
    let key: [u8; 32] = key.try_into().map_err(|_| Error::Integrity {
        id: manifest.id,
        what: "the data key is not 32 bytes".into(),
    })?;
    Ok(Some(key))
}

async fn check_digest(p: &Platform, backup: &Backup, manifest: &Manifest) -> Result<()> {
    let mut r = p
        .backups
        .open(&location(backup)?)
        .await
        .map_err(Error::Store)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf).await.map_err(Error::Store)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    digest_matches(manifest, &hex::encode(hasher.finalize()))
}

fn digest_matches(manifest: &Manifest, found: &str) -> Result<()> {
    if found == manifest.sha256 {
        return Ok(());
    }
    Err(Error::Integrity {
        id: manifest.id,
        what: format!("SHA-256 is {found}, the manifest says {}", manifest.sha256),
    })
}

fn location(backup: &Backup) -> Result<String> {
    Ok(super::registry::object_key(backup.tenant_id, backup.id))
}

/// Streams the stored object, decrypted, into pg_restore. The digest is checked
/// before stdin closes, so a mismatch still aborts the restore.
async fn feed(
    p: &Platform,
    backup: &Backup,
    manifest: &Manifest,
    mut stdin: ChildStdin,
) -> Result<()> {
    let mut r = p
        .backups
        .open(&location(backup)?)
        .await
        .map_err(Error::Store)?;
    let mut opener = data_key(p, manifest)?.map(|k| Opener::new(&k, backup.id));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut out = Vec::new();
    loop {
        let n = r.read(&mut buf).await.map_err(Error::Store)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        let plain: &[u8] = match opener.as_mut() {
            Some(o) => {
                out.clear();
                o.push(&buf[..n], &mut out)?;
                &out
            }
            None => &buf[..n],
        };
        stdin
            .write_all(plain)
            .await
            .map_err(|e| Error::Pipe("pg_restore", e))?;
    }
    if let Some(o) = opener {
        o.finish()?;
    }
    digest_matches(manifest, &hex::encode(hasher.finalize()))?;
    stdin
        .shutdown()
        .await
        .map_err(|e| Error::Pipe("pg_restore", e))?;
    Ok(())
}

/// pg_dump of `schema` on `from`, piped into pg_restore.
async fn feed_dump(from: &Conn, schema: &str, mut stdin: ChildStdin) -> Result<()> {
    let cmd = dump::pg_dump(from, schema, None)?;
    let (mut child, stderr) = dump::spawn(cmd, "pg_dump")?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let copied = tokio::io::copy(&mut stdout, &mut stdin).await;
    dump::finish(child, stderr, "pg_dump").await?;
    copied.map_err(|e| Error::Pipe("pg_restore", e))?;
    stdin
        .shutdown()
        .await
        .map_err(|e| Error::Pipe("pg_restore", e))?;
    Ok(())
}
