//! The check of an Entra ID or OIDC issuer: its discovery document
//! (`<issuer>/.well-known/openid-configuration`) must load and name the issuer, and
//! its `jwks_uri` must load as a JSON Web Key Set with at least one key. Neither URL
//! may point into the server's own network unless `--auth-allow-private` says so.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{json, Value};

use super::settings::IssuerCheck;
use crate::problem::{Kind, Problem};

const TIMEOUT: Duration = Duration::from_secs(10);
/// A discovery document or key set larger than this is refused, not read.
const MAX_BYTES: usize = 512 * 1024;

fn unusable(message: String) -> Problem {
    let mut p = Problem::new(Kind::Unprocessable, "issuer_check_failed", message);
    p.field = Some("issuer".into());
    p
}

fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => private(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80
            }
        },
    }
}

async fn fetch(
    http: &reqwest::Client,
    url: &str,
    what: &str,
    allow_private: bool,
) -> Result<Value, Problem> {
    let parsed =
        url::Url::parse(url).map_err(|_| unusable(format!("{what} {url:?} is not a URL")))?;
    if !matches!(parsed.scheme(), "https" | "http") || (parsed.scheme() == "http" && !allow_private)
    {
        return Err(unusable(format!("{what} {url:?} must be https")));
    }
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|_| unusable(format!("{what}: host {host:?} does not resolve")))?
        .collect();
    if !allow_private && addrs.iter().any(|a| private(a.ip())) {
        return Err(unusable(format!(
            "{what}: host {host:?} is a loopback or private address (refused; see --auth-allow-private)"
        )));
    }
    let res = http
        .get(parsed)
        .send()
        .await
        .map_err(|_| unusable(format!("{what} {url} could not be fetched")))?;
    if !res.status().is_success() {
        return Err(unusable(format!("{what} {url} answered {}", res.status())));
    }
    let body = res
        .bytes()
        .await
        .map_err(|_| unusable(format!("{what} {url} could not be read")))?;
    if body.len() > MAX_BYTES {
        return Err(unusable(format!(
            "{what} {url} is larger than {MAX_BYTES} bytes"
        )));
    }
    serde_json::from_slice(&body).map_err(|_| unusable(format!("{what} {url} is not JSON")))
}

/// Whether the document's `issuer` is the one expected; Entra's multi-tenant
/// documents say `.../{tenantid}/v2.0`, and a tenant named by its domain is issued
/// under its GUID.
fn issuer_matches(found: &str, c: &IssuerCheck) -> bool {
    let found = found.trim_end_matches('/');
    if found == c.issuer {
        return true;
    }
    let Some(tenant) = &c.entra_tenant else {
        return false;
    };
    if found.replace("{tenantid}", tenant) == c.issuer {
        return true;
    }
    // A domain-named tenant: `<authority>/<guid>/v2.0`.
    let authority = c
        .issuer
        .trim_end_matches("/v2.0")
        .trim_end_matches(tenant.as_str());
    uuid::Uuid::parse_str(tenant).is_err()
        && found
            .strip_prefix(authority)
            .and_then(|rest| rest.strip_suffix("/v2.0"))
            .is_some_and(|guid| uuid::Uuid::parse_str(guid).is_ok())
}

/// Runs the check; what it found (the issuer, the JWKS address and its key ids).
pub async fn check(c: &IssuerCheck, allow_private: bool) -> Result<Value, Problem> {
    let http = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|_| unusable("no HTTP client".into()))?;
    let doc = fetch(
        &http,
        &c.discovery_url,
        "the discovery document",
        allow_private,
    )
    .await?;
    let issuer = doc["issuer"].as_str().unwrap_or_default();
    if !issuer_matches(issuer, c) {
        return Err(unusable(format!(
            "the discovery document at {} names issuer {issuer:?}, not {:?}",
            c.discovery_url, c.issuer
        )));
    }
    let Some(jwks_uri) = doc["jwks_uri"].as_str() else {
        return Err(unusable(format!(
            "the discovery document at {} has no jwks_uri",
            c.discovery_url
        )));
    };
    let jwks = fetch(&http, jwks_uri, "the JWKS", allow_private).await?;
    let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
    if keys.is_empty() || keys.iter().any(|k| !k["kty"].is_string()) {
        return Err(unusable(format!(
            "{jwks_uri} is not a JSON Web Key Set (a \"keys\" array of keys with \"kty\")"
        )));
    }
    Ok(json!({
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "keys": keys.iter().map(|k| k["kid"].clone()).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entra(tenant: &str) -> IssuerCheck {
        IssuerCheck {
            discovery_url: String::new(),
            issuer: format!("https://login.microsoftonline.com/{tenant}/v2.0"),
            entra_tenant: Some(tenant.into()),
        }
    }

    #[test]
    fn entra_issuer_templates_and_domains_match() {
        let guid = "9188040d-6c67-4c5b-b112-36a304b66dad";
        assert!(issuer_matches(
            "https://login.microsoftonline.com/{tenantid}/v2.0",
            &entra(guid)
        ));
        assert!(issuer_matches(
            &format!("https://login.microsoftonline.com/{guid}/v2.0"),
            &entra(guid)
        ));
        assert!(issuer_matches(
            &format!("https://login.microsoftonline.com/{guid}/v2.0"),
            &entra("contoso.onmicrosoft.com")
        ));
        assert!(!issuer_matches(
            "https://evil.example.com/x/v2.0",
            &entra(guid)
        ));
        let plain = IssuerCheck {
            discovery_url: String::new(),
            issuer: "https://id.example.com".into(),
            entra_tenant: None,
        };
        assert!(issuer_matches("https://id.example.com/", &plain));
        assert!(!issuer_matches("https://id.example.com.evil", &plain));
    }
}
