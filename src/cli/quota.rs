//! `berqenas quota show|set|usage`: a tenant's quotas and its usage against them.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};

use super::client::ClientError;
use super::output;
use super::{ClientArgs, TenantArgs};
use crate::quota::service::{Limits, QuotaUpdate};
use crate::quota::usage::UsageSummary;

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Show the quotas in force for a tenant, and which are its own (the rest: its plan's).
    Show(TenantArgs),
    /// Change quotas: FIELD=VALUE pairs, e.g. max_connections=10; FIELD=plan puts the
    /// plan's value back. A quota below current usage needs --force.
    Set(SetArgs),
    /// Show usage against each quota; at_risk above 90%.
    Usage(TenantArgs),
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// Tenant name or id.
    pub tenant: String,
    /// FIELD=VALUE (db_quota_bytes, max_connections, statement_timeout_ms,
    /// api_calls_per_minute, realtime_events_per_minute, max_users,
    /// max_llm_tokens_per_day, max_agents, max_concurrent_agents, max_data_retention_days,
    /// transaction_timeout_ms, realtime_events_per_hour, realtime_max_subscribers).
    #[arg(required = true, value_parser = parse_pair)]
    pub quotas: Vec<(String, serde_json::Value)>,
    /// Accept quotas below what the tenant uses now; they are enforced at once.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn parse_pair(s: &str) -> Result<(String, serde_json::Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not FIELD=VALUE"))?;
    let value = match v {
        "plan" | "null" => serde_json::Value::Null,
        n => serde_json::Value::from(
            n.parse::<i64>()
                .map_err(|_| format!("{k}: {n:?} is not a whole number (or `plan`)"))?,
        ),
    };
    Ok((k.to_string(), value))
}

/// The pairs as the API's own request type: a field it does not know is refused here,
/// by the same rules the server applies.
fn update(pairs: Vec<(String, serde_json::Value)>, force: bool) -> Result<QuotaUpdate, String> {
    let mut body: serde_json::Map<String, serde_json::Value> = pairs.into_iter().collect();
    body.insert("force".into(), force.into());
    serde_json::from_value(serde_json::Value::Object(body)).map_err(|e| e.to_string())
}

fn limits_table(l: &Limits) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec!["QUOTA", "VALUE", "FROM"]);
    let values = serde_json::to_value(&l.limits).unwrap_or_default();
    for (field, _, _) in crate::quota::FIELDS {
        let from = if l.overridden.iter().any(|o| o == field) {
            "tenant"
        } else {
            "plan"
        };
        let value = match values[field].as_i64() {
            Some(bytes) if *field == "db_quota_bytes" => output::human_size(bytes),
            _ => values[field].to_string(),
        };
        table.add_row(vec![field.to_string(), value, from.to_string()]);
        if *field == "db_quota_bytes" {
            table.add_row(vec![
                "max_storage_gb".to_string(),
                l.limits.max_storage_gb.to_string(),
                from.to_string(),
            ]);
        }
    }
    println!("tenant {} (plan {})", l.tenant, l.plan);
    println!("{table}");
}

/// The quota each usage metric is measured against (`GET .../resources` pairs them
/// the same way).
fn quota_of(metric: &str) -> Option<&'static str> {
    Some(match metric {
        "storage_bytes" => "db_quota_bytes",
        "connections" => "max_connections",
        "users" => "max_users",
        "api_calls" => "api_calls_per_minute",
        "realtime_events" => "realtime_events_per_minute",
        "realtime_events_hour" => "realtime_events_per_hour",
        "realtime_subscribers" => "realtime_max_subscribers",
        "llm_tokens" => "max_llm_tokens_per_day",
        "agents" => "max_agents",
        "concurrent_agents" => "max_concurrent_agents",
        _ => return None,
    })
}

fn usage_table(u: &UsageSummary) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec!["METRIC", "USED", "LIMIT", "USED %"]);
    let quotas = serde_json::to_value(&u.quotas).unwrap_or_default();
    for (metric, used) in &u.usage {
        let pct = u.utilization_percent.get(metric).copied().unwrap_or(0.0);
        let limit = quota_of(metric).and_then(|q| quotas[q].as_i64());
        let (used, limit) = if metric == "storage_bytes" {
            (
                output::human_size(*used),
                limit.map(output::human_size).unwrap_or_default(),
            )
        } else {
            (
                used.to_string(),
                limit.map(|l| l.to_string()).unwrap_or_default(),
            )
        };
        table.add_row(vec![metric.clone(), used, limit, format!("{pct:.1}%")]);
    }
    println!(
        "tenant {} (plan {}, {})",
        u.tenant_slug,
        u.tier,
        u.status.as_str()
    );
    println!("{table}");
    if u.at_risk {
        println!("at risk: a metric is above 90% of its quota");
    }
    if u.writes_blocked {
        println!("writes blocked: over the disk quota");
    }
}

/// The API tells a script to send `"force": true`; a person at the CLI has a flag.
fn in_cli_words(e: ClientError) -> ClientError {
    match e {
        ClientError::Api {
            status,
            code,
            message,
            field,
        } if code == "quota_below_usage" => ClientError::Api {
            message: message.replace("send \"force\": true", "use --force"),
            status,
            code,
            field,
        },
        e => e,
    }
}

pub async fn run(cmd: QuotaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        QuotaCommand::Show(a) => {
            let res = a.client.client().limits(&a.tenant).await;
            output::finish(res, a.client.output, limits_table)
        }
        QuotaCommand::Set(a) => {
            let req = match update(a.quotas, a.force) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let res = a.client.client().set_quotas(&a.tenant, &req).await;
            output::finish(res.map_err(in_cli_words), a.client.output, limits_table)
        }
        QuotaCommand::Usage(a) => {
            let res = a.client.client().usage(&a.tenant).await;
            output::finish(res, a.client.output, usage_table)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_become_the_api_request() {
        let req = update(
            vec![
                parse_pair("max_connections=10").unwrap(),
                parse_pair("max_agents=plan").unwrap(),
            ],
            true,
        )
        .unwrap();
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"max_connections": 10, "max_agents": null, "force": true})
        );
        assert!(parse_pair("max_connections").is_err());
        assert!(parse_pair("max_connections=many").is_err());
        assert!(update(vec![parse_pair("colour=1").unwrap()], false)
            .unwrap_err()
            .contains("colour"));
    }
}
