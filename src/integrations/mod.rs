//! L3: external onboarding steps (docs/onboarding-steps.md). An operator registers an
//! HTTP endpoint that a tenant create must hear back from before the tenant is active
//! (a Git manager, a cloud provider, a billing agent); this module validates and keeps
//! the registrations, and holds what a call to one is on the wire. The workflow that
//! calls them is `workflows::create`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::store::onboarding::{self as store, StepRow};

pub mod call;
pub mod target;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's mistake, naming the field; nothing was stored.
    #[error("{}", .0.message)]
    Rejected(Problem),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Store(e.into())
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::Rejected(Problem::bad_field(field, message))
}

/// Which creates run a step: both unset, every one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// Only tenants on this plan (`GET /api/v1/plans`).
    #[serde(default)]
    pub plan: Option<String>,
    /// Only tenants in this isolation mode: `schema`, `database` or `shared`.
    #[serde(default)]
    pub isolation: Option<String>,
}

/// `POST /api/v1/onboarding-steps`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStep {
    /// 1 to 40 characters, `[a-z][a-z0-9_-]*`: the key of its answer under the
    /// tenant's `integrations`.
    pub name: String,
    /// `http(s)://...`, called with a signed POST by every matching create.
    pub url: String,
    #[serde(default)]
    pub when: When,
    /// How long a create waits for the step's answer (or, after a 202, its callback):
    /// `30s`, `5m`, 1 s to 1 h [default: 30s].
    #[serde(default)]
    pub timeout: Option<String>,
    /// Called (signed the same way) to undo the step: when a later step of the create
    /// fails, and when the tenant is purged.
    #[serde(default)]
    pub compensate_url: Option<String>,
}

/// A registered step as the API shows it (never its secret, except once: [`Registered`]).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OnboardingStep {
    pub id: Uuid,
    pub name: String,
    pub url: String,
    pub when: When,
    /// Seconds.
    pub timeout_secs: f64,
    pub compensate_url: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The answer to a registration: the step and its signing secret, shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Registered {
    #[serde(flatten)]
    pub step: OnboardingStep,
    /// `whsec_...`: verifies the signature of every call to the step (Standard
    /// Webhooks), and signs the step's callbacks. Shown only here.
    #[serde(serialize_with = "crate::secrets::serialize_exposed")]
    #[schema(value_type = String)]
    pub secret: SecretString,
}

/// The steps' list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepList {
    pub onboarding_steps: Vec<OnboardingStep>,
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

pub fn view(r: &StepRow) -> OnboardingStep {
    OnboardingStep {
        id: r.id,
        name: r.name.clone(),
        url: r.url.clone(),
        when: When {
            plan: r.when_plan.clone(),
            isolation: r.when_isolation.clone(),
        },
        timeout_secs: r.timeout_ms as f64 / 1000.0,
        compensate_url: r.compensate_url.clone(),
        created_at: r.created_at,
    }
}

/// A step's name: the key of its answer on the tenant, and a path segment.
pub fn check_name(name: &str) -> Result<()> {
    let ok = (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!("name must be 1 to 40 characters, [a-z][a-z0-9_-]*, got {name:?}"),
        ))
    }
}

fn timeout(given: Option<&str>) -> Result<Duration> {
    let Some(t) = given else {
        return Ok(DEFAULT_TIMEOUT);
    };
    let d = crate::duration::parse("timeout", t).map_err(Error::Rejected)?;
    if d < Duration::from_secs(1) || d > MAX_TIMEOUT {
        return Err(invalid(
            "timeout",
            format!("timeout must be between 1s and 1h, got {t:?}"),
        ));
    }
    Ok(d)
}

/// Registers a step: every field checked (the URLs resolved, private addresses refused
/// unless the server allows them), then stored with a new secret, sealed.
pub async fn register(p: &Platform, req: &NewStep) -> Result<Registered> {
    check_name(&req.name)?;
    target::check(&req.url, "url", p.onboarding_allow_private).await?;
    if let Some(c) = &req.compensate_url {
        target::check(c, "compensate_url", p.onboarding_allow_private).await?;
    }
    let timeout = timeout(req.timeout.as_deref())?;
    match req.when.isolation.as_deref() {
        Some("database") | Some("schema") | Some("shared") | None => {}
        Some(i) => {
            return Err(invalid(
                "when.isolation",
                format!("when.isolation must be \"schema\", \"database\" or \"shared\", got {i:?}"),
            ))
        }
    }
    let c = p.pool.get().await?;
    if let Some(plan) = req.when.plan.as_deref() {
        if crate::store::plans::find(&c, plan).await?.is_none() {
            return Err(invalid(
                "when.plan",
                format!("plan {plan:?} does not exist; see GET /api/v1/plans"),
            ));
        }
    }
    let secret = crate::events::signature::generate();
    let row = StepRow {
        id: Uuid::now_v7(),
        name: req.name.clone(),
        url: req.url.clone(),
        when_plan: req.when.plan.clone(),
        when_isolation: req.when.isolation.clone(),
        timeout_ms: timeout.as_millis() as i32,
        compensate_url: req.compensate_url.clone(),
        sealed_secret: p.key.seal(secret.expose_secret().as_bytes()),
        created_at: Utc::now(),
    };
    let stored = match store::insert(&c, &row).await {
        Ok(r) => r,
        Err(e) if e.constraint().is_some() => {
            return Err(Error::Rejected(Problem {
                kind: Kind::Conflict,
                code: "name_taken".into(),
                message: format!("an onboarding step named {:?} exists", req.name),
                field: Some("name".into()),
            }))
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(step = %stored.name, url = %stored.url, "onboarding step registered");
    Ok(Registered {
        step: view(&stored),
        secret,
    })
}

pub async fn list(p: &Platform) -> Result<StepList> {
    let c = p.pool.get().await?;
    Ok(StepList {
        onboarding_steps: store::list(&c).await?.iter().map(view).collect(),
    })
}

fn not_found(name: &str) -> Error {
    Error::Rejected(Problem::new(
        Kind::NotFound,
        "onboarding_step_not_found",
        format!("onboarding step {name:?} not found"),
    ))
}

pub async fn get(p: &Platform, name: &str) -> Result<OnboardingStep> {
    let c = p.pool.get().await?;
    store::find(&c, name)
        .await?
        .map(|r| view(&r))
        .ok_or_else(|| not_found(name))
}

/// Removes a registration: creates from now on do not call it, and a purge no longer
/// calls its compensation (how an operator gives up on an endpoint that is gone).
pub async fn remove(p: &Platform, name: &str) -> Result<()> {
    let c = p.pool.get().await?;
    if store::delete(&c, name).await? {
        tracing::info!(step = %name, "onboarding step removed");
        Ok(())
    } else {
        Err(not_found(name))
    }
}

/// A registered step's secret, opened.
pub fn secret(p: &Platform, r: &StepRow) -> Result<SecretString> {
    let bytes = p.key.open(&r.sealed_secret)?;
    Ok(String::from_utf8(bytes)
        .map_err(|_| crate::secrets::SecretError::Open)?
        .into())
}
