//! How client commands print: tables for people, the API's JSON for scripts, and
//! errors on stderr with a non-zero exit.

use std::process::ExitCode;

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde::Serialize;

use super::client::ClientError;
use super::{ClientArgs, Format};
use crate::tenant::Tenant;

/// A size for people, in binary units (`12.3 MiB`); `-o json` keeps the bytes.
pub fn human_size(bytes: i64) -> String {
    if bytes < 0 {
        return format!("{bytes} B");
    }
    humansize::format_size(bytes as u64, humansize::BINARY)
}

/// `1 tenant`, `2 tenants`: a count with its noun in the right number.
pub fn count(n: impl Into<i64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// After a page's table: how to ask for the next page (on stderr, so the table stays
/// clean for a pipe).
pub fn more(next_cursor: Option<&str>) {
    if let Some(c) = next_cursor {
        eprintln!("more: --cursor {c}");
    }
}

pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints a result in the chosen format; an API error goes to stderr (as JSON with
/// `-o json`) and exits 1.
pub fn finish<T: Serialize>(
    res: Result<T, ClientError>,
    format: Format,
    table: impl FnOnce(&T),
) -> anyhow::Result<ExitCode> {
    match res {
        Ok(v) => {
            match format {
                Format::Json => print_json(&v)?,
                Format::Table => table(&v),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::Api {
            code,
            message,
            field,
            status,
        }) if format == Format::Json => {
            let body = serde_json::json!({"error": {"code": code, "message": message, "field": field}, "status": status.as_u16()});
            eprintln!("{}", serde_json::to_string_pretty(&body)?);
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub fn tenant_table(t: &Tenant) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    let rows: Vec<(&str, String)> = vec![
        ("name", t.name.to_string()),
        ("id", t.id.to_string()),
        ("status", t.status.as_str().into()),
        ("plan", t.plan.clone()),
        ("isolation", t.isolation.as_str().into()),
        (
            "schema",
            t.schema
                .as_ref()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
        ),
        ("database", t.database.as_str().to_string()),
        ("role", t.role.as_str().to_string()),
        ("db_quota", human_size(t.db_quota_bytes)),
        (
            "access_mode",
            serde_json::to_value(t.access_mode)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
        ),
        (
            "vpn_subnet",
            t.vpn_subnet.clone().unwrap_or_else(|| "-".into()),
        ),
        ("template_version", t.template_version.to_string()),
        ("created_at", t.created_at.to_rfc3339()),
    ];
    let mut rows = rows;
    // Everything the JSON says about where the tenant is in its life, when it applies.
    let at = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339());
    if let Some(at) = at(t.trial_ends_at) {
        rows.push(("trial_ends_at", at));
    }
    if let Some(v) = &t.vector_store {
        rows.push(("vector_store", format!("{} {}", v.backend, v.collection)));
    }
    if let Some(at) = at(t.suspended_at) {
        rows.push(("suspended_at", at));
        rows.push((
            "suspension_reason",
            t.suspension_reason
                .clone()
                .unwrap_or_else(|| "(none given)".into()),
        ));
    }
    if let Some(s) = t.previous_status {
        rows.push(("previous_status", s.as_str().into()));
    }
    for (k, v) in [
        ("purge_after", at(t.purge_after)),
        ("purged_at", at(t.purged_at)),
        (
            "final_backup_id",
            t.final_backup_id.map(|id| id.to_string()),
        ),
        ("archive_expires_at", at(t.archive_expires_at)),
    ] {
        if let Some(v) = v {
            rows.push((k, v));
        }
    }
    for (k, v) in rows {
        table.add_row(vec![k.to_string(), v]);
    }
    println!("{table}");
}

pub fn tenants_table(tenants: &[Tenant]) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec![
        "NAME",
        "STATUS",
        "PLAN",
        "ISOLATION",
        "QUOTA",
        "CREATED",
    ]);
    for t in tenants {
        table.add_row(vec![
            t.name.to_string(),
            t.status.as_str().into(),
            t.plan.clone(),
            t.isolation.as_str().into(),
            human_size(t.db_quota_bytes),
            t.created_at.format("%Y-%m-%d %H:%M").to_string(),
        ]);
    }
    println!("{table}");
}

pub fn users_table(users: &[crate::tenant::users::TenantUser]) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec![
        "EMAIL",
        "ROLE",
        "STATUS",
        "TEAMS",
        "INVITED BY",
        "DB USER",
        "CREATED",
    ]);
    for u in users {
        table.add_row(vec![
            u.email.clone(),
            u.role.as_str().into(),
            u.status.clone(),
            u.teams.join(","),
            u.invited_by.clone().unwrap_or_else(|| "-".into()),
            u.db_user.as_str().to_string(),
            u.created_at.format("%Y-%m-%d %H:%M").to_string(),
        ]);
    }
    println!("{table}");
}

/// `berqenas status`
pub async fn status(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let client = args.client();
    let res = client.status().await;
    finish(res, args.output, |s| {
        println!("berqenas {}", s.version);
        println!(
            "postgres {} ({}) at {}:{}/{}",
            s.postgres.version,
            s.postgres.mode,
            s.postgres.host,
            s.postgres.port,
            s.postgres.database
        );
        println!("tenant template version {}", s.template_version);
        println!("network: VPN pool {}", s.network.vpn_pool);
        println!("  database rules: {}", s.network.postgres);
        println!("  VPN: {}", s.network.vpn);
        println!("instance {}", s.instance.id);
        let jobs = if s.instance.elected.is_empty() {
            "(none: another instance runs them)".to_string()
        } else {
            s.instance.elected.join(", ")
        };
        println!("  elected jobs: {jobs}");
        let total: i64 = s.tenants.values().sum();
        println!("tenants: {total}");
        for (state, n) in &s.tenants {
            println!("  {state}: {n}");
        }
        if !s.warm_pool.is_empty() {
            let total: i64 = s.warm_pool.iter().map(|m| m.members).sum();
            println!("warm pool: {total} unclaimed");
            for m in &s.warm_pool {
                println!(
                    "  {} on {} at template version {}: {}",
                    m.isolation, m.server, m.template_version, m.members
                );
            }
            if s.warm_pool_sessions > 0 {
                println!(
                    "  sessions held in database members: {}",
                    s.warm_pool_sessions
                );
            }
        }
    })
}

pub fn policy_table(p: &crate::backup::policy::BackupPolicy) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    let next = p.next_run_at.map(|t| t.to_rfc3339()).unwrap_or_default();
    for (k, v) in [
        (
            "schedule",
            p.schedule.clone().unwrap_or_else(|| "(none)".into()),
        ),
        ("retention_days", p.retention_days.to_string()),
        ("encryption", p.encryption.to_string()),
        ("next_run_at", next),
    ] {
        table.add_row(vec![k.to_string(), v]);
    }
    println!("{table}");
}

pub fn backups_table(backups: &[crate::backup::Backup]) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec![
        "ID", "TENANT", "KIND", "STATUS", "SIZE", "CREATED", "EXPIRES",
    ]);
    for b in backups {
        table.add_row(vec![
            b.id.to_string(),
            b.tenant.clone(),
            b.kind.as_str().into(),
            b.status.as_str().into(),
            b.size_bytes.map(human_size).unwrap_or_default(),
            b.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            b.expires_at
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{table}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(super::count(1, "tenant"), "1 tenant");
        assert_eq!(super::count(0, "tenant"), "0 tenants");
        assert_eq!(super::count(2, "tenant"), "2 tenants");
    }

    #[test]
    fn sizes_are_in_binary_units() {
        assert_eq!(super::human_size(5 << 30), "5 GiB");
        assert_eq!(super::human_size(1536), "1.50 KiB");
        assert_eq!(super::human_size(12), "12 B");
    }
}
