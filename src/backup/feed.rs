//! Feeding pg_restore: a stored backup (decrypted and checked on the way) or a live
//! pg_dump of another database, and pg_restore's own refusals told as the backup's.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;

use super::crypt::Opener;
use super::dump::{self, Conn};
use super::{Backup, Error, Manifest, Result};
use crate::platform::Platform;

/// What pg_restore reads: a stored backup, or a live pg_dump of another database.
pub enum Input<'a> {
    Backup(&'a Backup, &'a Manifest),
    Dump(Conn, &'a str),
}

/// Runs pg_restore on `conn` (as `role`, only `schema`) and feeds it `input`. A
/// failure of the input kills pg_restore before its transaction can commit.
pub async fn run_restore(
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
