//! `berqenas migrate`: bring tenants to the latest template version and report.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};

use super::output::{self, count, print_json};
use super::{ClientArgs, Format};
use crate::migrate::{MigrateRequest, MigrationPlan, MigrationRun};
use crate::tenant::Isolation;

/// Migrate every tenant (or a subset) to the latest tenant template version.
///
/// Each tenant runs in its own transaction as its owner role, `--jobs` at a time; one
/// tenant's failure leaves it at its old version and does not stop the others. The
/// exit code is non-zero if any tenant failed. Running again continues where a run
/// stopped. Shared-mode tenants share tables, so they move together.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: Option<MigrateCommand>,
    /// Only this tenant (name or id).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only tenants on this plan (`berqenas plan list`).
    #[arg(long)]
    pub plan: Option<String>,
    /// Only tenants in this isolation mode.
    #[arg(long, value_parser = super::ISOLATIONS)]
    pub isolation: Option<String>,
    /// Tenants migrated at once [default: from the server's spare connections].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=crate::migrate::MAX_JOBS as i64))]
    pub jobs: Option<u32>,
    /// Print what would run; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Migrate N tenants first and stop if any of them fails.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub canary: Option<u32>,
    /// Start the run and print it without waiting for it to finish.
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Count tenants per template version.
    Status(ClientArgs),
    /// Show a run by id.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn run(a: MigrateArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        Some(MigrateCommand::Status(c)) => {
            let res = c.client().migration_status().await;
            output::finish(res, c.output, |s| {
                println!("latest template version {}", s.latest_version);
                println!("tenants below it: {}", s.pending);
                for v in &s.tenants_by_version {
                    println!("  version {:>4}: {}", v.version, count(v.tenants, "tenant"));
                }
                if let Some(id) = s.running {
                    println!("run in progress: {id}");
                }
            })
        }
        Some(MigrateCommand::Show { id, client }) => {
            let res = client.client().migration_run(&id).await;
            output::finish(res, client.output, report_table)
        }
        None => migrate(a).await,
    }
}

async fn migrate(a: MigrateArgs) -> anyhow::Result<ExitCode> {
    let client = a.client.client();
    let req = MigrateRequest {
        tenant: a.tenant,
        plan: a.plan,
        isolation: a.isolation.as_deref().and_then(Isolation::parse),
        jobs: a.jobs,
        dry_run: a.dry_run,
        canary: a.canary,
    };
    if a.dry_run {
        let res = client.plan_migration(&req).await;
        return output::finish(res, a.client.output, plan_table);
    }
    let started = match client.start_migration(&req).await {
        Ok(run) => run,
        Err(e) => return output::finish::<MigrationRun>(Err(e), a.client.output, |_| {}),
    };
    if a.detach {
        return output::finish(Ok(started), a.client.output, |r| {
            println!(
                "started migration run {} ({})",
                r.id,
                count(r.total, "tenant")
            )
        });
    }
    let initially_current = started.already_current;
    let started_at = std::time::Instant::now();
    let bar = (a.client.output == Format::Table && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(started.total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} tenants  {msg}  [{elapsed}]",
            )
            .expect("valid template"),
        );
        bar
    });
    let mut last_done = -1;
    let run = loop {
        let run = match client.migration_run(&started.id.to_string()).await {
            Ok(r) => r,
            Err(e) => return output::finish::<MigrationRun>(Err(e), a.client.output, |_| {}),
        };
        let done =
            run.migrated + run.failed + run.not_attempted + run.already_current - initially_current;
        // Every tenant the position counts is in one of these, so they add up to it.
        let skipped = done - run.migrated - run.failed;
        let msg = if skipped > 0 {
            format!(
                "migrated {}, failed {}, skipped {skipped}",
                run.migrated, run.failed
            )
        } else {
            format!("migrated {}, failed {}", run.migrated, run.failed)
        };
        match &bar {
            Some(bar) => {
                bar.set_position(done.max(0) as u64);
                bar.set_message(msg);
            }
            None if done != last_done && a.client.output == Format::Table => {
                eprintln!(
                    "migrate: {done}/{} done, {msg} [{}s]",
                    count(run.total, "tenant"),
                    started_at.elapsed().as_secs()
                );
            }
            None => {}
        }
        last_done = done;
        if run.state != "running" {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let ok = run.state == "succeeded";
    match a.client.output {
        Format::Json => print_json(&run)?,
        Format::Table => report_table(&run),
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn plan_table(plan: &MigrationPlan) {
    println!(
        "target version {}: {} to migrate, {} already current",
        plan.target_version,
        count(plan.pending.len() as i64, "tenant"),
        plan.already_current
    );
    if plan.pending.is_empty() {
        return;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(["TENANT", "SERVER", "ISOLATION", "FROM", "MIGRATIONS"]);
    for t in &plan.pending {
        table.add_row([
            t.tenant.to_string(),
            t.server.clone(),
            t.isolation.as_str().to_string(),
            t.from_version.to_string(),
            t.migrations.join(", "),
        ]);
    }
    println!("{table}");
}

fn report_table(run: &MigrationRun) {
    println!(
        "migration run {}: {} (target version {})",
        run.id, run.state, run.target_version
    );
    println!(
        "  migrated {}, already current {}, failed {}, not attempted {}",
        run.migrated, run.already_current, run.failed, run.not_attempted
    );
    // Tenants migrated per server.
    let mut per_server: std::collections::BTreeMap<&str, usize> = Default::default();
    for t in &run.migrated_tenants {
        let server = run.tenant_servers.get(t).map_or("default", String::as_str);
        *per_server.entry(server).or_default() += 1;
    }
    if per_server.keys().any(|s| *s != "default") {
        let parts: Vec<String> = per_server.iter().map(|(s, n)| format!("{s} {n}")).collect();
        println!("  migrated per server: {}", parts.join(", "));
    }
    for f in &run.template_failures {
        println!(
            "  template database on server {} not brought up to date: {}",
            f.server, f.error
        );
    }
    if let Some(e) = &run.error {
        println!("  error: {e}");
    }
    if run.failures.is_empty() {
        return;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(["FAILED TENANT", "SERVER", "AT VERSION", "ERROR"]);
    for f in &run.failures {
        table.add_row([
            f.tenant.clone(),
            f.server.clone().unwrap_or_else(|| "default".into()),
            f.from_version.to_string(),
            f.error.clone(),
        ]);
    }
    println!("{table}");
}
