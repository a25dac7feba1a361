//! The Prometheus rule file: one rule group per tenant (`berqenas-tenant-<name>`),
//! holding the alerts of its monitoring level (seed 001). Rendered whole from the
//! registry, so rendering it again is the only "update" there is.
//!
//! The file is YAML written with double-quoted scalars only (JSON strings, which YAML
//! reads as they are), so no tenant name or expression can change its structure.

use std::fmt::Write;

use super::{quoted, Alert, Monitored};

/// The rule file's name under `<data-dir>/monitoring/rules/`.
pub const FILE_NAME: &str = "berqenas-tenants.yml";

/// What an alert is: its expression, how long it must hold, and what it says.
pub struct Rule {
    pub expr: String,
    pub for_: &'static str,
    pub severity: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    /// Extra labels the seed gives this alert.
    pub extra: &'static [(&'static str, &'static str)],
}

/// The tenant's label matcher, as PromQL writes it.
fn t(tenant: &str) -> String {
    format!("tenant={}", quoted(tenant))
}

/// The rule for `alert` on `tenant`'s series (docs/monitoring.md#alert-rules).
pub fn rule(alert: Alert, tenant: &str) -> Rule {
    let t = t(tenant);
    match alert {
        // 5xx answers over 5 % of the tenant's requests, for 5 minutes.
        Alert::HighErrorRate => Rule {
            expr: format!(
                "sum(rate(http_requests_total{{{t},status=\"5xx\"}}[5m])) / sum(rate(http_requests_total{{{t}}}[5m])) > 0.05"
            ),
            for_: "5m",
            severity: "warning",
            summary: "High error rate detected for tenant",
            description: "Error rate is above 5% for 5 minutes",
            extra: &[],
        },
        // Open sessions of the tenant's login roles over 80 % of its connection limit.
        Alert::DbConnectionLimit => Rule {
            expr: format!(
                "tenant_resource_usage{{{t},resource_type=\"connections\"}} > 0.8 * tenant_resource_limit{{{t},resource_type=\"connections\"}}"
            ),
            for_: "2m",
            severity: "critical",
            summary: "Database connection limit approaching",
            description: "Database connections are at 80% of limit",
            extra: &[],
        },
        // The tenant's last backup failed.
        Alert::BackupFailed => Rule {
            expr: format!("backup_job_success{{{t}}} == 0"),
            for_: "1m",
            severity: "critical",
            summary: "The tenant's last backup failed",
            description: "The most recent backup of this tenant did not succeed",
            extra: &[("service", "backup")],
        },
        // Mean request duration over 0.5 s (over 5 minutes), for a minute.
        Alert::SlaBreach => Rule {
            expr: format!(
                "sum(rate(http_request_duration_seconds_sum{{{t}}}[5m])) / sum(rate(http_request_duration_seconds_count{{{t}}}[5m])) > 0.5"
            ),
            for_: "1m",
            severity: "critical",
            summary: "SLA breach: mean request duration over 0.5 s",
            description: "The tenant's mean request duration was above 0.5 s for a minute",
            extra: &[("sla", "true")],
        },
    }
}

/// The group name of a tenant's rules.
pub fn group_name(tenant: &str) -> String {
    format!("berqenas-tenant-{tenant}")
}

/// The whole rule file for these tenants (sorted by the caller for a stable file).
pub fn render(tenants: &[Monitored]) -> String {
    let mut out = String::with_capacity(256 + tenants.len() * 2048);
    out.push_str(
        "# Rendered by berqenas from its registry (docs/monitoring.md): one group per tenant,\n\
         # the alerts of its monitoring level. Rewritten whole on every change; do not edit.\n",
    );
    if tenants.is_empty() {
        out.push_str("groups: []\n");
        return out;
    }
    out.push_str("groups:\n");
    for m in tenants {
        let _ = writeln!(out, "  - name: {}", quoted(&group_name(&m.tenant)));
        out.push_str("    rules:\n");
        for alert in m.level.alerts() {
            let r = rule(*alert, &m.tenant);
            let _ = writeln!(out, "      - alert: {}", quoted(alert.name()));
            let _ = writeln!(out, "        expr: {}", quoted(&r.expr));
            let _ = writeln!(out, "        for: {}", r.for_);
            out.push_str("        labels:\n");
            let _ = writeln!(out, "          severity: {}", quoted(r.severity));
            let _ = writeln!(out, "          tenant: {}", quoted(&m.tenant));
            let _ = writeln!(
                out,
                "          monitoring_level: {}",
                quoted(m.level.as_str())
            );
            for (k, v) in r.extra {
                let _ = writeln!(out, "          {k}: {}", quoted(v));
            }
            out.push_str("        annotations:\n");
            let _ = writeln!(out, "          summary: {}", quoted(r.summary));
            let _ = writeln!(out, "          description: {}", quoted(r.description));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Level;
    use super::*;

    fn m(tenant: &str, level: Level) -> Monitored {
        Monitored {
            tenant: tenant.into(),
            level,
        }
    }

    #[test]
    fn empty_registry_is_a_valid_empty_file() {
        assert!(render(&[]).ends_with("groups: []\n"));
    }

    #[test]
    fn each_tenant_gets_its_levels_alerts_only() {
        let text = render(&[m("acme", Level::Basic), m("big-co", Level::Enterprise)]);
        let acme = text.split("berqenas-tenant-big-co").next().unwrap();
        assert_eq!(acme.matches("- alert:").count(), 2, "{text}");
        assert!(!acme.contains("sla-breach"));
        assert_eq!(text.matches("- alert:").count(), 6);
        assert!(text.contains(r#"tenant=\"big-co\""#), "{text}");
        assert!(text.contains(r#"sla: "true""#));
    }

    #[test]
    fn rules_are_plain_valid_json_scalars() {
        // Every value after `key: ` is a JSON string or a duration: nothing a name could
        // break out of.
        let text = render(&[m("a-1", Level::Enterprise)]);
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains(": "))
        {
            let value = line.split_once(": ").unwrap().1;
            let ok = serde_json::from_str::<String>(value).is_ok()
                || ["1m", "2m", "5m"].contains(&value);
            assert!(ok, "{line}");
        }
    }
}
