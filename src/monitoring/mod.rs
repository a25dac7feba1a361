//! L3: per-tenant monitoring (docs/monitoring.md). Pure renderings over the registry:
//! the Prometheus alert rules per tenant and monitoring level ([`rules`]), the scrape
//! targets for Prometheus's HTTP service discovery ([`targets`]), and a Grafana
//! dashboard per tenant ([`dashboard`]). The series they read are in `crate::metrics`.

pub mod dashboard;
pub mod files;
pub mod rules;
pub mod service;
pub mod targets;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::Problem;

/// Which alert rules a tenant gets (seed 001's `monitoring_level`). Each level has the
/// rules of the one below it and more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// `high-error-rate`, `db-connection-limit`.
    Basic,
    /// Basic's and `backup-failed`.
    Standard,
    /// Standard's and `sla-breach`.
    Enterprise,
}

/// The accepted spellings, for error messages.
pub const LEVELS: &str = "basic, standard, enterprise";

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Basic => "basic",
            Level::Standard => "standard",
            Level::Enterprise => "enterprise",
        }
    }

    /// The level named `text`, or a 400 naming `field`.
    pub fn parse(text: &str, field: &str) -> Result<Self, Problem> {
        match text {
            "basic" => Ok(Level::Basic),
            "standard" => Ok(Level::Standard),
            "enterprise" => Ok(Level::Enterprise),
            other => Err(Problem {
                code: "invalid_monitoring_level".into(),
                ..Problem::bad_field(
                    field,
                    format!("{field}: unknown monitoring level {other:?}; one of {LEVELS}"),
                )
            }),
        }
    }

    /// The alerts a tenant at this level gets, in rule-file order.
    pub fn alerts(self) -> &'static [Alert] {
        const ALL: &[Alert] = &[
            Alert::HighErrorRate,
            Alert::DbConnectionLimit,
            Alert::BackupFailed,
            Alert::SlaBreach,
        ];
        match self {
            Level::Basic => &ALL[..2],
            Level::Standard => &ALL[..3],
            Level::Enterprise => ALL,
        }
    }
}

/// Seed 001's alerts (their names are the `alertname`; the tenant is a label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    HighErrorRate,
    DbConnectionLimit,
    BackupFailed,
    SlaBreach,
}

impl Alert {
    pub fn name(self) -> &'static str {
        match self {
            Alert::HighErrorRate => "high-error-rate",
            Alert::DbConnectionLimit => "db-connection-limit",
            Alert::BackupFailed => "backup-failed",
            Alert::SlaBreach => "sla-breach",
        }
    }
}

/// One tenant as the renderings see it: its name and effective level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitored {
    pub tenant: String,
    pub level: Level,
}

/// A PromQL (and YAML/JSON) double-quoted string: tenant names are slugs, but nothing
/// reaches a rendered file unquoted.
pub(crate) fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_stack() {
        assert_eq!(
            Level::parse("enterprise", "level").unwrap(),
            Level::Enterprise
        );
        let e = Level::parse("gold", "level").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("level"));
        assert!(e.message.contains("\"gold\""), "{}", e.message);
        let names = |l: Level| l.alerts().iter().map(|a| a.name()).collect::<Vec<_>>();
        assert_eq!(
            names(Level::Basic),
            ["high-error-rate", "db-connection-limit"]
        );
        assert_eq!(
            names(Level::Standard),
            ["high-error-rate", "db-connection-limit", "backup-failed"]
        );
        assert_eq!(names(Level::Enterprise).len(), 4);
        assert!(names(Level::Enterprise).contains(&"sla-breach"));
    }
}
