//! `berqenas tenant config get|set|history` and `berqenas plan config-defaults`: a
//! tenant's configuration document and its plan's defaults (docs/config.md).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value};

use super::client::{tenant_path, Client, ClientError};
use super::{output, ClientArgs};
use crate::tenantconfig::{ConfigHistory, PlanConfigDefaults, TenantConfig};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Show the tenant's configuration (its current version).
    Get(ConfigTenantArgs),
    /// Change settings: each KEY=VALUE is merged in (a JSON merge patch). A VALUE that
    /// parses as JSON is taken as JSON (2000, true, {"a":1}, null removes the key),
    /// anything else as a string; a dotted KEY sets a nested one (features.basic_chat=false).
    Set(ConfigSetArgs),
    /// Every version of the tenant's configuration, newest first.
    History(ConfigTenantArgs),
}

#[derive(Debug, Args)]
pub struct ConfigTenantArgs {
    /// Tenant name or id.
    pub tenant: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ConfigSetArgs {
    /// Tenant name or id.
    pub tenant: String,
    /// KEY=VALUE pairs, e.g. max_tokens=2000 model=gpt-4o features.basic_chat=false
    #[arg(required = true, value_parser = parse_pair)]
    pub settings: Vec<(String, Value)>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `berqenas plan config-defaults <plan>`: show, or set with --defaults/--schema.
#[derive(Debug, Args)]
pub struct PlanDefaultsArgs {
    /// The plan.
    pub plan: String,
    /// The defaults as a JSON object, or @file to read it from a file; with it the
    /// plan's defaults are replaced (PUT), without it they are shown.
    #[arg(long)]
    pub defaults: Option<String>,
    /// A JSON Schema (or @file) every configuration of the plan's tenants must
    /// satisfy; only with --defaults (left out: the plan has no schema).
    #[arg(long, requires = "defaults")]
    pub schema: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `KEY=VALUE`: the value as JSON if it parses, else as a string.
fn parse_pair(s: &str) -> Result<(String, Value), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(format!(
            "{s:?}: the key is empty or has an empty dotted part"
        ));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((key.to_string(), value))
}

/// The merge patch the pairs make: `a.b=1` is `{"a": {"b": 1}}`.
pub fn patch_of(pairs: &[(String, Value)]) -> Value {
    let mut patch = Map::new();
    for (key, value) in pairs {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().expect("split yields one part at least");
        let mut at = &mut patch;
        for p in parts {
            let entry = at
                .entry(p.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            at = entry.as_object_mut().expect("made an object above");
        }
        at.insert(last.to_string(), value.clone());
    }
    Value::Object(patch)
}

fn json_arg(flag: &str, raw: &str) -> anyhow::Result<Value> {
    let text = match raw.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{flag} {path}: {e}"))?
        }
        None => raw.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{flag} is not JSON: {e}"))
}

impl Client {
    pub async fn tenant_config(&self, tenant: &str) -> Result<TenantConfig, ClientError> {
        self.call::<(), _>(Method::GET, &tenant_path(tenant, "/config"), None, &[])
            .await
    }

    pub async fn patch_tenant_config(
        &self,
        tenant: &str,
        patch: &Value,
    ) -> Result<TenantConfig, ClientError> {
        self.call(
            Method::PATCH,
            &tenant_path(tenant, "/config"),
            Some(patch),
            &[],
        )
        .await
    }

    pub async fn tenant_config_history(&self, tenant: &str) -> Result<ConfigHistory, ClientError> {
        self.call::<(), _>(
            Method::GET,
            &tenant_path(tenant, "/config/history"),
            None,
            &[],
        )
        .await
    }

    pub async fn plan_config_defaults(
        &self,
        plan: &str,
        set: Option<&PlanConfigDefaults>,
    ) -> Result<PlanConfigDefaults, ClientError> {
        let path = format!(
            "/api/v1/plans/{}/config-defaults",
            url::form_urlencoded::byte_serialize(plan.as_bytes()).collect::<String>()
        );
        match set {
            Some(body) => self.call(Method::PUT, &path, Some(body), &[]).await,
            None => self.call::<(), _>(Method::GET, &path, None, &[]).await,
        }
    }
}

fn show(c: &TenantConfig) {
    println!(
        "tenant {} configuration, version {} ({})",
        c.tenant, c.version, c.changed_at
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&c.config).unwrap_or_default()
    );
}

pub async fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Get(a) => {
            let res = a.client.client().tenant_config(&a.tenant).await;
            output::finish(res, a.client.output, show)
        }
        ConfigCommand::Set(a) => {
            let patch = patch_of(&a.settings);
            let res = a
                .client
                .client()
                .patch_tenant_config(&a.tenant, &patch)
                .await;
            output::finish(res, a.client.output, show)
        }
        ConfigCommand::History(a) => {
            let res = a.client.client().tenant_config_history(&a.tenant).await;
            output::finish(res, a.client.output, |h| {
                for v in &h.versions {
                    let what = v
                        .patch
                        .as_ref()
                        .map_or("(the plan's defaults)".to_string(), Value::to_string);
                    println!(
                        "v{}  {}  {}  {what}",
                        v.version,
                        v.changed_at.format("%Y-%m-%d %H:%M:%S"),
                        v.actor
                    );
                }
            })
        }
    }
}

pub async fn plan_defaults(a: PlanDefaultsArgs) -> anyhow::Result<ExitCode> {
    let set = match &a.defaults {
        Some(d) => Some(PlanConfigDefaults {
            defaults: json_arg("--defaults", d)?,
            schema: a
                .schema
                .as_deref()
                .map(|s| json_arg("--schema", s))
                .transpose()?,
        }),
        None => None,
    };
    let res = a
        .client
        .client()
        .plan_config_defaults(&a.plan, set.as_ref())
        .await;
    output::finish(res, a.client.output, |d| {
        println!(
            "defaults: {}",
            serde_json::to_string_pretty(&d.defaults).unwrap_or_default()
        );
        if let Some(s) = &d.schema {
            println!(
                "schema: {}",
                serde_json::to_string_pretty(s).unwrap_or_default()
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pairs_make_a_merge_patch() {
        let pairs: Vec<_> = [
            "max_tokens=2000",
            "model=gpt-4o",
            "features.basic_chat=false",
            "features.x=null",
            "note=a=b",
        ]
        .into_iter()
        .map(|p| parse_pair(p).unwrap())
        .collect();
        assert_eq!(
            patch_of(&pairs),
            json!({"max_tokens": 2000, "model": "gpt-4o", "features": {"basic_chat": false, "x": null}, "note": "a=b"})
        );
        assert!(parse_pair("novalue").is_err());
        assert!(parse_pair("a..b=1").is_err());
    }
}
