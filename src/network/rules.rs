//! Firewall allow rules as requests carry them, validated strictly before anything
//! changes: every refusal names the field (`cidr`, or `rules[2].cidr` in a list).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::cidr;
use super::policy::Service;
use crate::problem::Problem;

/// One allow rule: clients from `cidr` may reach `service` of the tenant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    /// A canonical range (`203.0.113.0/24`) or one address.
    pub cidr: String,
    /// `postgres`, `api` or `all` (the default).
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `PUT /api/v1/tenants/{name}/firewall`: the whole list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleList {
    pub rules: Vec<NewRule>,
}

/// A rule that passed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub cidr: IpNet,
    pub service: Service,
    pub description: String,
}

pub const MAX_RULES: usize = 100;
const MAX_DESCRIPTION: usize = 200;

pub fn validate(prefix: &str, r: &NewRule) -> Result<Rule, Problem> {
    let field = |f: &str| {
        if prefix.is_empty() {
            f.to_string()
        } else {
            format!("{prefix}.{f}")
        }
    };
    let cidr = cidr::parse(&field("cidr"), r.cidr.trim_end_matches(' '))?;
    if r.cidr != r.cidr.trim() {
        return Err(Problem::bad_field(
            &field("cidr"),
            format!("{}: {:?} has spaces around it", field("cidr"), r.cidr),
        ));
    }
    let service = match r.service.as_deref() {
        None => Service::All,
        Some(s) => Service::parse(s).ok_or_else(|| {
            Problem::bad_field(
                &field("service"),
                format!(
                    "{}: {s:?} is not one of postgres, api, all",
                    field("service")
                ),
            )
        })?,
    };
    let description = r.description.clone().unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION || description.chars().any(char::is_control) {
        return Err(Problem::bad_field(
            &field("description"),
            format!(
                "{}: at most {MAX_DESCRIPTION} characters, on one line",
                field("description")
            ),
        ));
    }
    Ok(Rule {
        cidr,
        service,
        description,
    })
}

pub fn validate_list(list: &RuleList) -> Result<Vec<Rule>, Problem> {
    if list.rules.len() > MAX_RULES {
        return Err(Problem::bad_field(
            "rules",
            format!(
                "rules: at most {MAX_RULES} rules per tenant ({} given)",
                list.rules.len()
            ),
        ));
    }
    list.rules
        .iter()
        .enumerate()
        .map(|(i, r)| validate(&format!("rules[{i}]"), r))
        .collect()
}
