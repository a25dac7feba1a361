//! `berqenas backup create|list|get|restore|verify`.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::output;
use super::progress;
use super::{ClientArgs, TenantArgs};

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back a tenant up now (pg_dump custom format, encrypted, with a manifest).
    Create(TenantArgs),
    /// List a tenant's backups, newest first.
    List(TenantArgs),
    /// Show one backup and its manifest's tables.
    Get(IdArgs),
    /// Restore a backup into its tenant (its data replaced), or with --as into a new
    /// tenant of that name.
    Restore(RestoreArgs),
    /// Restore a backup into a scratch database and compare every table's row count
    /// and checksum with its manifest.
    Verify(IdArgs),
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// Backup id.
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Tenant name or id the backup belongs to.
    pub tenant: String,
    /// Backup id.
    pub id: String,
    /// Restore into a new tenant of this name instead (same isolation, plan, quota).
    #[arg(long = "as", value_name = "NEW_NAME")]
    pub as_name: Option<String>,
    /// Restore in place without asking: the tenant's current data is replaced. Without
    /// it the command asks for the tenant's name on a terminal, and refuses elsewhere.
    #[arg(short = 'y', long)]
    pub yes: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(cmd: BackupCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BackupCommand::Create(a) => {
            let work = a.client.client();
            let res = progress::during(
                &format!("backing up {}", a.tenant),
                a.client.output,
                work.create_backup(&a.tenant),
                |b| {
                    format!(
                        "{} in {}",
                        b.size_bytes.map(output::human_size).unwrap_or_default(),
                        output::count(b.tables.len() as i64, "table")
                    )
                },
            )
            .await;
            output::finish(res, a.client.output, |b| {
                output::backups_table(std::slice::from_ref(b))
            })
        }
        BackupCommand::List(a) => {
            let res = a.client.client().backups(&a.tenant).await;
            output::finish(res, a.client.output, |l| output::backups_table(&l.backups))
        }
        BackupCommand::Get(a) => {
            let res = a.client.client().backup(&a.id).await;
            output::finish(res, a.client.output, |b| {
                output::backups_table(std::slice::from_ref(b));
                if let Some(sha) = &b.sha256 {
                    println!("sha256 {sha}");
                }
                for t in &b.tables {
                    println!(
                        "  {:<32} {:>12} rows  checksum {}",
                        t.table, t.rows, t.checksum
                    );
                }
                if let Some(e) = &b.error {
                    println!("error: {e}");
                }
            })
        }
        BackupCommand::Restore(a) => {
            if a.as_name.is_none() && !a.yes && !confirmed(&a.tenant, &a.id)? {
                return Ok(ExitCode::FAILURE);
            }
            let work = a.client.client();
            let label = match &a.as_name {
                Some(new) => format!("restoring backup {} into new tenant {new}", a.id),
                None => format!("restoring backup {} into {}", a.id, a.tenant),
            };
            let res = progress::during(
                &label,
                a.client.output,
                work.restore_backup(&a.tenant, &a.id, a.as_name.as_deref()),
                |_| String::new(),
            )
            .await;
            output::finish(res, a.client.output, |v| match v.get("api_key") {
                Some(key) => {
                    println!(
                        "restored into new tenant {}",
                        v["name"].as_str().unwrap_or("")
                    );
                    println!("\nShown once; store them now:");
                    println!("  api_key:  {}", key.as_str().unwrap_or(""));
                    println!(
                        "  password: {}",
                        v["credentials"]["password"].as_str().unwrap_or("")
                    );
                    println!(
                        "  dsn:      {}",
                        v["credentials"]["dsn"].as_str().unwrap_or("")
                    );
                }
                None => println!(
                    "restored backup {} into tenant {}",
                    a.id,
                    v["name"].as_str().unwrap_or("")
                ),
            })
        }
        BackupCommand::Verify(a) => {
            let work = a.client.client();
            let res = progress::during(
                &format!("verifying backup {}", a.id),
                a.client.output,
                work.verify_backup(&a.id),
                |r| output::count(r.tables.len() as i64, "table"),
            )
            .await;
            let ok = matches!(&res, Ok(r) if r.ok);
            let code = output::finish(res, a.client.output, |r| {
                for t in &r.tables {
                    println!(
                        "{} {:<32} rows {:>10} / {:<10} checksum {}",
                        if t.ok { "ok  " } else { "FAIL" },
                        t.table,
                        t.expected_rows.map(|n| n.to_string()).unwrap_or("-".into()),
                        t.restored_rows.map(|n| n.to_string()).unwrap_or("-".into()),
                        if t.ok { "matches" } else { "differs" },
                    );
                }
                println!(
                    "backup {} {} ({} ms)",
                    r.backup_id,
                    if r.ok {
                        "verified"
                    } else {
                        "FAILED verification"
                    },
                    r.duration_ms
                );
            })?;
            // A backup that does not verify is a failure for scripts too.
            Ok(if ok { code } else { ExitCode::FAILURE })
        }
    }
}

/// An in-place restore replaces the tenant's data, so it is confirmed the way a purge
/// is: the tenant's name typed on a terminal, or `--yes` (a script cannot answer).
fn confirmed(tenant: &str, id: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "error: restoring backup {id} in place replaces all of {tenant}'s data; pass --yes to do it \
             (or --as NEW_NAME to restore beside it). Nothing was changed."
        );
        return Ok(false);
    }
    eprint!(
        "Restoring backup {id} replaces all of {tenant}'s current data. Type {tenant} to go on: "
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() == tenant {
        return Ok(true);
    }
    eprintln!("error: the name did not match; nothing was changed");
    Ok(false)
}
