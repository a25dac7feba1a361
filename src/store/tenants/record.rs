//! The tenant as the registry holds it (`berqenas.tenants`): one representation, read
//! by every layer above the store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::isolation::warm::Mode;
use crate::names::Slug;
use crate::pg::Ident;
use crate::store::quotas::Quotas;

/// Lifecycle states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Provisioning,
    Trial,
    Active,
    Suspended,
    Deleted,
    Purged,
    Failed,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Provisioning,
        Status::Trial,
        Status::Active,
        Status::Suspended,
        Status::Deleted,
        Status::Purged,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Provisioning => "provisioning",
            Status::Trial => "trial",
            Status::Active => "active",
            Status::Suspended => "suspended",
            Status::Deleted => "deleted",
            Status::Purged => "purged",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

crate::pg::from_text_column!(Status, "tenant status");

/// How a tenant's data is kept apart from other tenants'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    Schema,
    Database,
    Shared,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Schema => "schema",
            Isolation::Database => "database",
            Isolation::Shared => "shared",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Isolation::Schema, Isolation::Database, Isolation::Shared]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

crate::pg::from_text_column!(Isolation, "isolation mode");

/// Every mode has a warm pool (docs/warm_pool.md), on every server.
impl From<Isolation> for Mode {
    fn from(isolation: Isolation) -> Self {
        match isolation {
            Isolation::Schema => Mode::Schema,
            Isolation::Database => Mode::Database,
            Isolation::Shared => Mode::Shared,
        }
    }
}

impl From<Mode> for Isolation {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Schema => Isolation::Schema,
            Mode::Database => Isolation::Database,
            Mode::Shared => Isolation::Shared,
        }
    }
}

/// Derived from the two network flags: VPN off is `public`; VPN on is `hybrid` when
/// the public API is also on, `vpn-only` when it is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AccessMode {
    Public,
    Hybrid,
    VpnOnly,
}

impl AccessMode {
    pub fn derive(vpn_enabled: bool, public_api: bool) -> Self {
        match (vpn_enabled, public_api) {
            (false, _) => AccessMode::Public,
            (true, true) => AccessMode::Hybrid,
            (true, false) => AccessMode::VpnOnly,
        }
    }
}

/// A tenant as the registry knows it, and as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub id: Uuid,
    #[schema(value_type = String)]
    pub name: Slug,
    pub status: Status,
    pub plan: String,
    pub isolation: Isolation,
    /// The tenant's schema (schema mode).
    #[schema(value_type = Option<String>)]
    pub schema: Option<Ident>,
    /// The database holding the tenant's data.
    #[schema(value_type = String)]
    pub database: Ident,
    /// The login role the tenant's application connects as.
    #[schema(value_type = String)]
    pub role: Ident,
    #[schema(value_type = String)]
    pub owner_role: Ident,
    pub db_quota_bytes: i64,
    pub vpn_enabled: bool,
    /// The tenant's VPN subnet while VPN is on (kept while suspended or deleted,
    /// freed by a purge).
    #[serde(default)]
    pub vpn_subnet: Option<String>,
    pub public_api: bool,
    pub access_mode: AccessMode,
    pub template_version: i32,
    /// While `status` is `trial`: when the trial ends.
    pub trial_ends_at: Option<DateTime<Utc>>,
    /// While `status` is `suspended`: since when, and why (null when no reason was given).
    #[serde(default)]
    pub suspended_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub suspension_reason: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    // What `DELETE /api/v1/tenants/{name}` recorded, shown while the tenant is
    // `deleted` or `purged` (as the delete answered); every field is null otherwise.
    /// While deleted or purged: what `POST .../restore` brings back.
    #[serde(default)]
    pub previous_status: Option<Status>,
    /// While deleted or purged: when the worker purges it (restore brings it back
    /// exactly until then).
    #[serde(default)]
    pub purge_after: Option<DateTime<Utc>>,
    #[serde(default)]
    pub purged_at: Option<DateTime<Utc>>,
    /// While deleted or purged: the final backup, the archive a purged tenant is
    /// restored from.
    #[serde(default)]
    pub final_backup_id: Option<Uuid>,
    /// While deleted or purged: when the archive is deleted and the name freed.
    #[serde(default)]
    pub archive_expires_at: Option<DateTime<Utc>>,
    /// What each external onboarding step answered, by the step's name
    /// (docs/onboarding-steps.md); `{}` when none ran.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub integrations: serde_json::Value,
    /// The sign-in providers configured for the tenant (`github`, `entra_id`, `oidc`;
    /// docs/auth-providers.md).
    #[serde(default)]
    pub auth_providers: Vec<String>,
    /// The tenant's vector store (docs/vector-store.md); null when it has none.
    #[serde(default)]
    pub vector_store: Option<VectorStoreRef>,
    /// The PostgreSQL server the tenant lives on (docs/servers.md); `default` is the
    /// one berqenas started with.
    #[serde(default = "default_server")]
    pub server: String,
}

fn default_server() -> String {
    crate::store::servers::DEFAULT.to_string()
}

/// Where a tenant's vectors live: the backend and the collection (Chroma) or table
/// (pgvector) that holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VectorStoreRef {
    /// `chroma` or `pgvector`.
    pub backend: String,
    /// Chroma: the collection's name (`tenant_<id>`); pgvector: `schema.table`.
    pub collection: String,
}

/// A plan (seed 002's tiers): its quotas, under the names `GET .../limits`,
/// `PUT .../quotas` and `GET .../usage` use (`db_quota_bytes` is the plan's storage).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Plan {
    pub name: String,
    #[serde(flatten)]
    pub quotas: Quotas,
    pub trial_days: i32,
    /// The isolation mode of this plan's tenants when the request names none.
    pub default_isolation: Option<Isolation>,
    /// Whether this plan's tenants get a vector store when the request does not say.
    #[serde(default)]
    pub vector_store: bool,
}
