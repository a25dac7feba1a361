//! Rendering the registry into what enforces it, and applying it: pg_hba.conf
//! (written atomically, checked with `pg_hba_file_rules` before the reload, the
//! previous file put back on any error), the sessions the new rules no longer allow
//! ended, and the VPN's WireGuard and nftables files. One render at a time
//! (an advisory lock), and none when a render that started after the caller's change
//! committed has already covered it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use deadpool_postgres::GenericClient;
use ipnet::IpNet;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{hba, nft, vpn, Error, Settings};
use crate::store::network::{self as store, Restricted};

/// Any constant: only renders take it.
pub(super) const LOCK: i64 = 0x6265_7271_6e65_7477; // "berqnetw"

/// What a render did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// False when a later render had already covered the change.
    pub rendered: bool,
    pub generation: i64,
    pub tenants: usize,
    pub hba_lines: usize,
    pub hba_bytes: usize,
    pub sessions_ended: i64,
    /// `enforced`, or why not.
    pub postgres: String,
    /// `applied`, or `rendered, not applied` and why.
    pub vpn: String,
    /// The other servers' pg_hba.conf (`network::remote`), rendered by the workflow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<super::remote::ServerReport>,
}

/// One render at a time in this process, waiting without a connection (the advisory
/// lock below keeps other processes' renders apart); and, per set of rendered files,
/// the generation its last render read.
static RENDERED: tokio::sync::Mutex<BTreeMap<PathBuf, i64>> =
    tokio::sync::Mutex::const_new(BTreeMap::new());

/// Renders and applies the registry as of now. Unless `force`d, a render of the same
/// files that started after every change committed so far has covered them already,
/// and this one does nothing. `after_write` runs between writing pg_hba.conf and
/// reloading it (a crash test's failpoint).
pub async fn enforce(
    pool: &deadpool_postgres::Pool,
    s: &Settings,
    force: bool,
    after_write: impl Fn(),
) -> Result<Report, Error> {
    let seen = store::generation(&pool.get().await.map_err(pool_error)?).await?;
    let mut rendered = RENDERED.lock().await;
    let last = rendered.get(&s.files_dir).copied();
    if !force && last.is_some_and(|g| g >= seen) {
        return Ok(Report {
            generation: last.unwrap_or_default(),
            ..Report::default()
        });
    }
    let mut c = pool.get().await.map_err(pool_error)?;
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_catalog.pg_advisory_xact_lock($1)", &[&LOCK])
        .await?;
    let generation = store::generation(&tx).await?;
    let tenants = store::snapshot(&tx).await?;
    // pg_hba.conf here carries the lines of the tenants on `default`; the VPN files
    // every restricted tenant's.
    let here: Vec<Restricted> = tenants
        .iter()
        .filter(|t| t.server == crate::store::servers::DEFAULT)
        .cloned()
        .collect();
    let mut report = Report {
        rendered: true,
        generation,
        tenants: tenants.len(),
        ..Report::default()
    };
    match &s.hba_file {
        Some(path) => {
            let control = control_ranges(&tx).await?;
            let block = hba::render(&here, &control);
            report.hba_lines = block.lines().filter(|l| l.starts_with("host")).count();
            report.hba_bytes = block.len();
            apply_hba(&tx, path, &block, after_write).await?;
            report.sessions_ended = end_sessions(&tx, &here).await?;
            report.postgres = "enforced".into();
        }
        None => report.postgres = NOT_ENFORCED.into(),
    }
    let servers = super::reach::of_tenants(&tx, &tenants).await?;
    report.vpn = render_vpn(s, &tenants, &servers)?;
    tx.commit().await?;
    rendered.insert(s.files_dir.clone(), generation);
    Ok(report)
}

/// The registry generation this process last rendered `s`'s files at (`None`: not
/// yet).
pub async fn last_rendered(s: &Settings) -> Option<i64> {
    RENDERED.lock().await.get(&s.files_dir).copied()
}

fn pool_error(e: deadpool_postgres::PoolError) -> Error {
    Error::Pool(e.to_string())
}

pub const NOT_ENFORCED: &str =
    "not enforced: berqenas cannot write this server's pg_hba.conf (give --pg-hba-file where berqenas runs beside PostgreSQL)";

/// What berqenas itself connects as a tenant from (the data API over TCP to an
/// external server): always allowed for live tenants' roles.
pub(super) async fn control_ranges(c: &impl GenericClient) -> Result<Vec<IpNet>, Error> {
    let addr: Option<std::net::IpAddr> = c
        .query_one("SELECT pg_catalog.inet_client_addr()", &[])
        .await?
        .get(0);
    Ok(addr.map(IpNet::from).into_iter().collect())
}

/// Puts `block` in place of berqenas's block of the file at `path`, checks the
/// whole file with `pg_hba_file_rules` (the previous file back on any error), and
/// reloads the server's configuration.
pub async fn apply_hba(
    c: &impl GenericClient,
    path: &Path,
    block: &str,
    after_write: impl Fn(),
) -> Result<(), Error> {
    let old = std::fs::read_to_string(path).map_err(Error::io("reading", path))?;
    let new = hba::splice(&old, block);
    if new != old {
        hba::write_atomically(path, &new)?;
        after_write();
        let errors = hba_errors(c).await?;
        if !errors.is_empty() {
            hba::write_atomically(path, &old)?;
            return Err(Error::Invalid(errors.join("; ")));
        }
    }
    reload(c).await
}

/// What PostgreSQL finds wrong in the pg_hba.conf on disk (before a reload loads it).
pub(super) async fn hba_errors(c: &impl GenericClient) -> Result<Vec<String>, Error> {
    Ok(c
        .query(
            "SELECT format('line %s: %s', line_number, error) FROM pg_catalog.pg_hba_file_rules WHERE error IS NOT NULL",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Reloads the server's configuration and waits until this session has seen it: the
/// postmaster reloads pg_hba.conf before it accepts the next connection, so every
/// connection after this returns meets the new rules.
pub(super) async fn reload(c: &impl GenericClient) -> Result<(), Error> {
    let before: chrono::DateTime<chrono::Utc> = c
        .query_one("SELECT pg_catalog.pg_conf_load_time()", &[])
        .await?
        .get(0);
    c.execute("SELECT pg_catalog.pg_reload_conf()", &[]).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let now: chrono::DateTime<chrono::Utc> = c
            .query_one("SELECT pg_catalog.pg_conf_load_time()", &[])
            .await?
            .get(0);
        if now > before {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tracing::warn!("the server did not confirm the pg_hba.conf reload within 5 s");
    Ok(())
}

/// Ends every network session of a restricted tenant's login roles from an address
/// its rules no longer allow (local-socket sessions, the data API's on the embedded
/// cluster, have no address and are left alone).
pub(super) async fn end_sessions(
    c: &impl GenericClient,
    tenants: &[Restricted],
) -> Result<i64, Error> {
    let allowed: Vec<serde_json::Value> = tenants
        .iter()
        .filter_map(|t| {
            let ranges = hba::database_ranges(t)?;
            Some(serde_json::json!({
                "roles": t.logins,
                "ranges": ranges.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }))
        })
        .collect();
    if allowed.is_empty() {
        return Ok(0);
    }
    let row = c
        .query_one(
            "SELECT count(pg_catalog.pg_terminate_backend(a.pid))
               FROM pg_catalog.pg_stat_activity a
               JOIN jsonb_to_recordset($1::jsonb) AS x(roles text[], ranges text[])
                 ON a.usename = ANY (x.roles)
              WHERE a.client_addr IS NOT NULL
                AND a.pid <> pg_catalog.pg_backend_pid()
                AND NOT coalesce(a.client_addr <<= ANY (x.ranges::inet[]), false)",
            &[&serde_json::Value::Array(allowed)],
        )
        .await?;
    Ok(row.get(0))
}

/// The server's WireGuard key, made on first use, kept beside the rendered files.
pub fn server_key(dir: &Path) -> Result<SecretString, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("server.key");
    if let Ok(key) = std::fs::read_to_string(&path) {
        return Ok(SecretString::from(key.trim().to_string()));
    }
    std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    let (private, _) = vpn::keypair();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(Error::io("creating", &path))?;
    use secrecy::ExposeSecret;
    use std::io::Write;
    writeln!(f, "{}", private.expose_secret()).map_err(Error::io("writing", &path))?;
    f.sync_all().map_err(Error::io("syncing", &path))?;
    Ok(private)
}

pub const WG_FILE: &str = "wg-berqenas.conf";
pub const NFT_FILE: &str = "berqenas.nft";
pub const WG_PORT: u16 = 51820;

fn render_vpn(
    s: &Settings,
    tenants: &[Restricted],
    servers: &BTreeMap<String, super::reach::Reach>,
) -> Result<String, Error> {
    let dir = &s.files_dir;
    let key = server_key(dir)?;
    let wg = dir.join(WG_FILE);
    write_private(&wg, &vpn::server_config(&key, WG_PORT, tenants))?;
    let iface = s.vpn_interface.as_deref().unwrap_or("wg-berqenas");
    let nft_file = dir.join(NFT_FILE);
    hba::write_atomically(
        &nft_file,
        &nft::render(iface, s.postgres_port, s.api_port, tenants, servers),
    )?;
    let Some(iface) = &s.vpn_interface else {
        return Ok("rendered, not applied (no --vpn-interface)".into());
    };
    for (tool, args) in [
        (
            "wg",
            vec![
                "syncconf".to_string(),
                iface.clone(),
                wg.display().to_string(),
            ],
        ),
        (
            "nft",
            vec!["-f".to_string(), nft_file.display().to_string()],
        ),
    ] {
        let out = std::process::Command::new(tool)
            .args(&args)
            .output()
            .map_err(|e| Error::Apply(format!("{tool}: {e}")))?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
            tracing::warn!(tool, error = %why, "applying the VPN configuration failed");
            return Ok(format!("rendered, not applied ({tool} failed: {why})"));
        }
    }
    Ok(format!("applied to {iface}"))
}

/// A file only its owner reads (it holds the server's private key).
fn write_private(path: &Path, content: &str) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    if !path.exists() {
        std::fs::write(path, "").map_err(Error::io("creating", path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(Error::io("setting the mode of", path))?;
    }
    hba::write_atomically(path, content)
}
