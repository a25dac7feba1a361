//! What each kind of provider takes (seed 001's `GitHubAuthConfig`,
//! `EntraIDAuthConfig`, and a generic OIDC client), checked for shape before anything
//! is fetched or stored.

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::problem::{Kind, Problem};

/// `github`, `entra_id` or `oidc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Github,
    EntraId,
    Oidc,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 3] = [Self::Github, Self::EntraId, Self::Oidc];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::EntraId => "entra_id",
            Self::Oidc => "oidc",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Problem> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Problem::new(
                    Kind::NotFound,
                    "unknown_auth_provider",
                    format!("no auth provider kind {s:?}: use github, entra_id or oidc"),
                )
            })
    }
}

/// The body of `PUT .../auth-providers/{kind}`: the fields of its kind (see
/// docs/auth-providers.md). Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProviderRequest {
    pub client_id: Option<String>,
    /// Sealed at rest; never shown again (`client_secret_set: true`).
    #[schema(value_type = Option<String>)]
    pub client_secret: Option<SecretString>,
    /// GitHub: the organization members must belong to.
    pub organization: Option<String>,
    /// GitHub: teams of the organization allowed in.
    pub teams: Option<Vec<String>>,
    /// Entra ID: the directory (tenant) id, a GUID or a verified domain.
    pub tenant_id: Option<String>,
    /// Entra ID: groups allowed in.
    pub groups: Option<Vec<String>>,
    /// Entra ID: the login authority [default: https://login.microsoftonline.com].
    pub authority: Option<String>,
    /// OIDC: the issuer; `<issuer>/.well-known/openid-configuration` must name it.
    pub issuer: Option<String>,
    /// OIDC: scopes to request [default: openid, email, profile].
    pub scopes: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Github {
    client_id: String,
    client_secret: SecretString,
    #[serde(default)]
    organization: Option<String>,
    #[serde(default)]
    teams: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntraId {
    tenant_id: String,
    client_id: String,
    client_secret: SecretString,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    authority: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Oidc {
    issuer: String,
    client_id: String,
    client_secret: SecretString,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

/// Where the issuer's discovery document is, and what its `issuer` must say.
#[derive(Debug, Clone, Serialize)]
pub struct IssuerCheck {
    pub discovery_url: String,
    /// The issuer expected; Entra's multi-tenant `{tenantid}` template is filled in
    /// with the tenant id before comparing.
    pub issuer: String,
    /// Entra ID's directory id (to fill `{tenantid}` in).
    pub entra_tenant: Option<String>,
}

/// A provider whose settings have the right shape.
pub struct Validated {
    pub kind: ProviderKind,
    /// Everything but the secret, as stored and shown.
    pub settings: Value,
    pub client_secret: SecretString,
    pub issuer: Option<IssuerCheck>,
}

pub const ENTRA_AUTHORITY: &str = "https://login.microsoftonline.com";

fn decode<T: DeserializeOwned>(body: &Value) -> Result<T, Problem> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names a missing or unknown field in backquotes.
        let field = match path.as_str() {
            "." | "" => inner.split('`').nth(1).unwrap_or("body").to_string(),
            p => p.split('[').next().unwrap_or(p).to_string(),
        };
        Problem::bad_field(&field, format!("{field}: {inner}"))
    })
}

fn required(field: &str, value: &str) -> Result<String, Problem> {
    let v = value.trim();
    if v.is_empty() || v.len() > 512 || v.chars().any(char::is_control) {
        return Err(Problem::bad_field(
            field,
            format!("{field} must be 1 to 512 characters without control characters"),
        ));
    }
    Ok(v.to_string())
}

fn names(field: &str, values: &[String]) -> Result<Vec<String>, Problem> {
    if values.len() > 100 {
        return Err(Problem::bad_field(
            field,
            format!("{field}: at most 100 entries"),
        ));
    }
    values.iter().map(|v| required(field, v)).collect()
}

fn secret(s: &SecretString) -> Result<(), Problem> {
    let v = s.expose_secret();
    if v.is_empty() || v.len() > 1024 || v.chars().any(char::is_control) {
        return Err(Problem::bad_field(
            "client_secret",
            "client_secret must be 1 to 1024 characters without control characters",
        ));
    }
    Ok(())
}

/// An issuer or authority URL: absolute, `https` (plain `http` only where private
/// addresses are allowed: tests), no query, fragment or credentials.
pub fn url_shape(field: &str, raw: &str, allow_http: bool) -> Result<String, Problem> {
    let bad = |why: &str| Problem::bad_field(field, format!("{field} {raw:?} {why}"));
    let u = url::Url::parse(raw.trim()).map_err(|_| bad("is not an absolute URL"))?;
    match u.scheme() {
        "https" => {}
        "http" if allow_http => {}
        _ => return Err(bad("must be an https URL")),
    }
    if u.host_str().is_none() || u.query().is_some() || u.fragment().is_some() {
        return Err(bad("must have a host and no query or fragment"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    Ok(raw.trim().trim_end_matches('/').to_string())
}

/// Entra's directory id: a GUID, or a domain such as contoso.onmicrosoft.com.
fn entra_tenant(raw: &str) -> Result<String, Problem> {
    let v = raw.trim().to_lowercase();
    let guid = uuid::Uuid::parse_str(&v).is_ok();
    let domain = v.len() <= 253
        && v.contains('.')
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    match guid || domain {
        true => Ok(v),
        false => Err(Problem::bad_field(
            "tenant_id",
            format!("tenant_id {raw:?} is neither a GUID nor a domain name"),
        )),
    }
}

/// Checks a request's shape for `kind`.
pub fn validate(kind: ProviderKind, body: &Value, allow_http: bool) -> Result<Validated, Problem> {
    if !body.is_object() {
        return Err(Problem::bad_field("body", "the body must be a JSON object"));
    }
    match kind {
        ProviderKind::Github => {
            let g: Github = decode(body)?;
            secret(&g.client_secret)?;
            let organization = g
                .organization
                .as_deref()
                .map(|o| {
                    let ok = !o.is_empty()
                        && o.len() <= 39
                        && o.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !o.starts_with('-');
                    match ok {
                        true => Ok(o.to_string()),
                        false => Err(Problem::bad_field(
                            "organization",
                            format!("organization {o:?} is not a GitHub organization name"),
                        )),
                    }
                })
                .transpose()?;
            if !g.teams.is_empty() && organization.is_none() {
                return Err(Problem::bad_field(
                    "teams",
                    "teams belong to an organization: give organization too",
                ));
            }
            Ok(Validated {
                kind,
                settings: json!({
                    "client_id": required("client_id", &g.client_id)?,
                    "organization": organization,
                    "teams": names("teams", &g.teams)?,
                }),
                client_secret: g.client_secret,
                issuer: None,
            })
        }
        ProviderKind::EntraId => {
            let e: EntraId = decode(body)?;
            secret(&e.client_secret)?;
            let tenant = entra_tenant(&e.tenant_id)?;
            let authority = match &e.authority {
                Some(a) => url_shape("authority", a, allow_http)?,
                None => ENTRA_AUTHORITY.to_string(),
            };
            let issuer = format!("{authority}/{tenant}/v2.0");
            Ok(Validated {
                kind,
                settings: json!({
                    "tenant_id": tenant,
                    "client_id": required("client_id", &e.client_id)?,
                    "groups": names("groups", &e.groups)?,
                    "authority": authority,
                    "issuer": issuer,
                }),
                client_secret: e.client_secret,
                issuer: Some(IssuerCheck {
                    discovery_url: format!("{issuer}/.well-known/openid-configuration"),
                    issuer,
                    entra_tenant: Some(tenant),
                }),
            })
        }
        ProviderKind::Oidc => {
            let o: Oidc = decode(body)?;
            secret(&o.client_secret)?;
            let issuer = url_shape("issuer", &o.issuer, allow_http)?;
            let scopes = match &o.scopes {
                Some(s) => names("scopes", s)?,
                None => vec!["openid".into(), "email".into(), "profile".into()],
            };
            if !scopes.iter().any(|s| s == "openid") {
                return Err(Problem::bad_field("scopes", "scopes must include openid"));
            }
            Ok(Validated {
                kind,
                settings: json!({
                    "issuer": issuer,
                    "client_id": required("client_id", &o.client_id)?,
                    "scopes": scopes,
                }),
                client_secret: o.client_secret,
                issuer: Some(IssuerCheck {
                    discovery_url: format!("{issuer}/.well-known/openid-configuration"),
                    issuer,
                    entra_tenant: None,
                }),
            })
        }
    }
}

/// The check a stored provider's settings need again (`POST .../test`).
pub fn issuer_of(kind: ProviderKind, settings: &Value) -> Option<IssuerCheck> {
    let issuer = settings["issuer"].as_str()?.to_string();
    Some(IssuerCheck {
        discovery_url: format!("{issuer}/.well-known/openid-configuration"),
        issuer,
        entra_tenant: match kind {
            ProviderKind::EntraId => settings["tenant_id"].as_str().map(str::to_string),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_unknown_fields_are_named() {
        let e = validate(
            ProviderKind::Oidc,
            &json!({"issuer": "https://id.example.com", "client_secret": "s"}),
            false,
        )
        .err()
        .unwrap();
        assert_eq!(e.field.as_deref(), Some("client_id"), "{}", e.message);
        let e = validate(
            ProviderKind::Github,
            &json!({"client_id": "a", "client_secret": "s", "colour": 1}),
            false,
        )
        .err()
        .unwrap();
        assert_eq!(e.field.as_deref(), Some("colour"), "{}", e.message);
        let e = validate(
            ProviderKind::Oidc,
            &json!({"issuer": "ftp://x", "client_id": "a", "client_secret": "s"}),
            false,
        )
        .err()
        .unwrap();
        assert_eq!(e.field.as_deref(), Some("issuer"));
    }

    #[test]
    fn the_secret_stays_out_of_the_settings() {
        let v = validate(
            ProviderKind::EntraId,
            &json!({"tenant_id": "contoso.onmicrosoft.com", "client_id": "a", "client_secret": "hunter2-secret"}),
            false,
        )
        .unwrap();
        assert!(!v.settings.to_string().contains("hunter2"));
        assert_eq!(
            v.issuer.unwrap().discovery_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration"
        );
    }
}
