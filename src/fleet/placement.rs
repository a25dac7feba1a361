//! Which server a new tenant goes to: the one the create names (`server`), or the
//! one a policy picks (`placement`): least tenants (the default), least disk, or the
//! servers whose labels match a selector (`{"region": "eu"}`; least tenants among
//! them). Drained and down servers are never picked.

use std::collections::BTreeMap;

/// A create's `placement`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    LeastTenants,
    LeastDisk,
    /// Every label must match.
    Labels(BTreeMap<String, String>),
}

/// `"least_tenants"`, `"least_disk"`, or an object of labels. The message names the
/// field.
pub fn parse(value: Option<&serde_json::Value>) -> Result<Policy, String> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(Policy::LeastTenants),
        Some(serde_json::Value::String(s)) => match s.as_str() {
            "least_tenants" => Ok(Policy::LeastTenants),
            "least_disk" => Ok(Policy::LeastDisk),
            other => Err(format!(
                "placement must be \"least_tenants\", \"least_disk\" or an object of labels such as {{\"region\": \"eu\"}}, got {other:?}"
            )),
        },
        Some(serde_json::Value::Object(m)) => {
            let mut labels = BTreeMap::new();
            for (k, v) in m {
                let serde_json::Value::String(v) = v else {
                    return Err(format!("placement: label {k:?} must be a string"));
                };
                check_label(k, v).map_err(|e| format!("placement: {e}"))?;
                labels.insert(k.clone(), v.clone());
            }
            if labels.is_empty() {
                return Err("placement: a label selector names at least one label".into());
            }
            Ok(Policy::Labels(labels))
        }
        Some(_) => Err(
            "placement must be \"least_tenants\", \"least_disk\" or an object of labels".into(),
        ),
    }
}

/// A label's key and value: 1 to 63 characters of `[a-z0-9._-]`, starting with a
/// letter or digit (what `--labels region=eu,tier=gold` can carry).
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    let ok = |s: &str| {
        (1..=63).contains(&s.len())
            && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
    };
    if !ok(key) {
        return Err(format!(
            "label key {key:?} must be 1 to 63 characters of a-z, 0-9, '.', '_' or '-'"
        ));
    }
    if !ok(value) {
        return Err(format!(
            "label {key:?}: value {value:?} must be 1 to 63 characters of a-z, 0-9, '.', '_' or '-'"
        ));
    }
    Ok(())
}

/// `region=eu,tier=gold` (the CLI's `--labels`).
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in s.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("labels: {pair:?} is not key=value"));
        };
        check_label(k.trim(), v.trim()).map_err(|e| format!("labels: {e}"))?;
        labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(labels)
}

/// A server a tenant could go to, as the registry and a live look know it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub tenants: i64,
    /// Filled for `least_disk` only.
    pub disk_bytes: Option<i64>,
    pub labels: serde_json::Value,
    pub draining: bool,
    pub down_reason: Option<String>,
}

/// The server the policy picks, or why none can take the tenant.
pub fn choose(policy: &Policy, candidates: &[Candidate]) -> Result<String, String> {
    let mut open: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !c.draining && c.down_reason.is_none())
        .collect();
    if let Policy::Labels(want) = policy {
        open.retain(|c| {
            want.iter()
                .all(|(k, v)| c.labels.get(k).and_then(|x| x.as_str()) == Some(v.as_str()))
        });
        if open.is_empty() {
            let shown: Vec<String> = want.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return Err(format!(
                "placement: no server that takes new tenants has the labels {}{}",
                shown.join(","),
                excluded(candidates)
            ));
        }
    }
    if open.is_empty() {
        return Err(format!(
            "placement: no server takes new tenants{}",
            excluded(candidates)
        ));
    }
    let pick = match policy {
        Policy::LeastDisk => open
            .iter()
            .min_by_key(|c| (c.disk_bytes.unwrap_or(i64::MAX), c.tenants, c.name.clone())),
        _ => open.iter().min_by_key(|c| (c.tenants, c.name.clone())),
    };
    Ok(pick.expect("not empty").name.clone())
}

/// Why the servers left out were left out (`; pg2 is draining, pg3 is down: ...`).
fn excluded(candidates: &[Candidate]) -> String {
    let why: Vec<String> = candidates
        .iter()
        .filter_map(|c| match (&c.down_reason, c.draining) {
            (Some(r), _) => Some(format!("{} is down ({r})", c.name)),
            (None, true) => Some(format!("{} is draining", c.name)),
            _ => None,
        })
        .collect();
    if why.is_empty() {
        String::new()
    } else {
        format!(" ({})", why.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(name: &str, tenants: i64, labels: serde_json::Value) -> Candidate {
        Candidate {
            name: name.into(),
            tenants,
            disk_bytes: Some(tenants * 10),
            labels,
            draining: false,
            down_reason: None,
        }
    }

    #[test]
    fn picks_by_policy_and_skips_drained_and_down_servers() {
        let mut all = vec![
            c("default", 5, json!({})),
            c("pg2", 1, json!({"region": "eu"})),
            c("pg3", 0, json!({"region": "us"})),
        ];
        assert_eq!(choose(&Policy::LeastTenants, &all).unwrap(), "pg3");
        let eu = parse(Some(&json!({"region": "eu"}))).unwrap();
        assert_eq!(choose(&eu, &all).unwrap(), "pg2");
        all[1].draining = true;
        let e = choose(&eu, &all).unwrap_err();
        assert!(
            e.contains("region=eu") && e.contains("pg2 is draining"),
            "{e}"
        );
        all[2].down_reason = Some("connection refused".into());
        assert_eq!(choose(&Policy::LeastDisk, &all).unwrap(), "default");
    }

    #[test]
    fn bad_policies_and_labels_are_refused_naming_the_field() {
        assert!(parse(Some(&json!("most")))
            .unwrap_err()
            .contains("placement"));
        assert!(parse(Some(&json!({"region": 1})))
            .unwrap_err()
            .contains("placement"));
        assert!(parse(Some(&json!({}))).is_err());
        assert!(parse_labels("region").unwrap_err().starts_with("labels"));
        assert!(parse_labels("Region=EU").unwrap_err().starts_with("labels"));
        assert_eq!(parse_labels("region=eu,tier=gold").unwrap().len(), 2);
    }
}
