//! `berqenas plan list`: the plans `--plan` takes, with their main quotas.

use std::process::ExitCode;

use clap::Subcommand;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};

use super::{output, ClientArgs};
use crate::tenant::Plan;

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// List the plans with their storage, connections, users, trial and isolation.
    List(ClientArgs),
    /// Show a plan's configuration defaults for new tenants, or set them (and a JSON
    /// Schema every tenant configuration must satisfy) with --defaults [--schema].
    ConfigDefaults(super::config::PlanDefaultsArgs),
}

pub async fn run(cmd: PlanCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PlanCommand::List(a) => {
            let res = a.client().plans().await;
            output::finish(res, a.output, |plans| plans_table(plans))
        }
        PlanCommand::ConfigDefaults(a) => super::config::plan_defaults(a).await,
    }
}

fn plans_table(plans: &[Plan]) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec![
        "NAME",
        "STORAGE",
        "CONNECTIONS",
        "USERS",
        "TRIAL DAYS",
        "ISOLATION",
    ]);
    for p in plans {
        table.add_row(vec![
            p.name.clone(),
            output::human_size(p.quotas.db_quota_bytes),
            p.quotas.max_connections.to_string(),
            p.quotas.max_users.to_string(),
            p.trial_days.to_string(),
            p.default_isolation
                .map_or("schema", |i| i.as_str())
                .to_string(),
        ]);
    }
    println!("{table}");
}
