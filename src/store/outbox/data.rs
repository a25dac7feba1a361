//! The `data` of every event type (docs/events.md): one struct per type, whose name
//! says which, built by the code that makes the change and serialised into the
//! outbox's `data` column. The OpenAPI document lists each as a schema, so the
//! documentation and the events cannot drift. No field holds a secret (key ids and
//! prefixes, never keys; role names, never passwords or DSNs), with one exception:
//! `user.invited` carries the invitation link a mail service must send.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::store::quotas::Quotas;
use crate::store::tenants::{AccessMode, Isolation, Status, Tenant};

/// The data of one event type: `TYPE` is its name on the wire.
pub trait EventData: Serialize {
    const TYPE: &'static str;
}

macro_rules! event_types {
    ($($ty:ident => $name:literal),* $(,)?) => {
        $(impl EventData for $ty { const TYPE: &'static str = $name; })*
        /// Every type and the name of the schema of its `data`, in the order of
        /// [`crate::events::TYPES`].
        pub const SCHEMAS: &[(&str, &str)] = &[$(($name, stringify!($ty))),*];
    };
}

event_types! {
    TenantCreated => "tenant.created",
    TenantUpdated => "tenant.updated",
    TenantActivated => "tenant.activated",
    TenantSuspended => "tenant.suspended",
    TenantResumed => "tenant.resumed",
    TenantDeleted => "tenant.deleted",
    TenantRestored => "tenant.restored",
    TenantPurged => "tenant.purged",
    TenantPlanChanged => "tenant.plan_changed",
    QuotaUpdated => "quota.updated",
    QuotaExceeded => "quota.exceeded",
    QuotaRecovered => "quota.recovered",
    ApiKeyCreated => "api_key.created",
    ApiKeyRevoked => "api_key.revoked",
    ApiKeyRotated => "api_key.rotated",
    UserInvited => "user.invited",
    UserRemoved => "user.removed",
    BackupCompleted => "backup.completed",
    BackupFailed => "backup.failed",
    RestoreCompleted => "restore.completed",
    MigrationCompleted => "migration.completed",
    MigrationFailed => "migration.failed",
    NetworkChanged => "network.changed",
    UsageReported => "usage.reported",
    TenantConfigChanged => "tenant.config_changed",
}

/// A tenant's settings as they are after the change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantState {
    pub status: Status,
    pub plan: String,
    pub isolation: Isolation,
    pub db_quota_bytes: i64,
    pub public_api: bool,
    pub vpn_enabled: bool,
    pub vpn_subnet: Option<String>,
    pub access_mode: AccessMode,
    pub template_version: i32,
    pub trial_ends_at: Option<DateTime<Utc>>,
    /// The tenant's metadata, as the admin set it.
    #[schema(value_type = Object)]
    pub metadata: Value,
}

impl TenantState {
    pub fn of(t: &Tenant) -> Self {
        Self {
            status: t.status,
            plan: t.plan.clone(),
            isolation: t.isolation,
            db_quota_bytes: t.db_quota_bytes,
            public_api: t.public_api,
            vpn_enabled: t.vpn_enabled,
            vpn_subnet: t.vpn_subnet.clone(),
            access_mode: t.access_mode,
            template_version: t.template_version,
            trial_ends_at: t.trial_ends_at,
            metadata: t.metadata.clone(),
        }
    }
}

/// An API key, by id and public prefix (never the key).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyRef {
    pub id: Uuid,
    /// `bqk_<16 hex>`: the key's public start.
    pub prefix: String,
}

/// `tenant.created`: a tenant exists and can be used (also one a backup was restored
/// into: `restored_from` names the backup).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantCreated {
    #[serde(flatten)]
    pub tenant: TenantState,
    /// Its first API key.
    pub api_key: KeyRef,
    /// The backup it was restored from (`POST .../backups/{id}/restore` with `as`).
    pub restored_from: Option<Uuid>,
}

/// `tenant.updated`: fields of the tenant changed (`PATCH`), or its login password
/// was rotated (`changed: ["credentials"]`; the password is never in an event).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantUpdated {
    /// The fields that changed: `db_quota_bytes`, `public_api`, `vpn_enabled`,
    /// `vpn_subnet`, `access_mode`, `plan`, `metadata`, or `credentials`.
    pub changed: Vec<String>,
    /// Each changed field's value before (not for `credentials`).
    #[schema(value_type = Object)]
    pub previous: BTreeMap<String, Value>,
    /// The tenant after the change.
    pub tenant: TenantState,
}

/// `tenant.activated`: a trial became `active`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantActivated {
    pub from: Status,
    /// `admin` (`POST .../activate`) or `trial_ended` (the trial ended on a paid plan).
    pub cause: String,
    pub plan: String,
}

/// `tenant.suspended`: logins off, sessions ended, API keys refused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantSuspended {
    pub from: Status,
    /// `admin`, `trial_ended` (a free trial ended) or `security_violation` (the worker
    /// found a role with more than berqenas gives it).
    pub cause: String,
    pub reason: Option<String>,
}

/// `tenant.resumed`: back to `active` after a suspension.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantResumed {
    pub suspended_at: Option<DateTime<Utc>>,
    /// The suspension's reason.
    pub reason: Option<String>,
}

/// `tenant.deleted`: soft-deleted, restorable until `purge_after`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantDeleted {
    pub previous_status: Status,
    pub purge_after: DateTime<Utc>,
    /// The final backup: the tenant's archive.
    pub final_backup_id: Uuid,
    pub archive_expires_at: DateTime<Utc>,
}

/// `tenant.restored`: a deleted tenant back as it was, or a purged one rebuilt from
/// its archive.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantRestored {
    /// `deleted` or `purged`.
    pub from: Status,
    /// The status it is back in.
    pub status: Status,
    /// The archive a purged tenant was rebuilt from.
    pub archive_id: Option<Uuid>,
}

/// `tenant.purged`: its data and roles are gone; its archive is kept.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantPurged {
    pub archive_id: Option<Uuid>,
}

/// `tenant.plan_changed`: the tenant moved to another plan.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantPlanChanged {
    pub from: String,
    pub to: String,
    /// The quotas in force after the change (the new plan's, and the tenant's own
    /// overrides).
    pub quotas: Quotas,
}

/// One quota's value before and after a change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuotaChange {
    pub from: i64,
    pub to: i64,
}

/// `quota.updated`: the quotas in force changed (`PUT .../quotas`, or a `PATCH` of
/// `db_quota` or `plan`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuotaUpdated {
    /// By quota name, e.g. `max_connections`.
    #[schema(value_type = Object)]
    pub changes: BTreeMap<String, QuotaChange>,
    /// The change was forced below current usage.
    pub force: bool,
    pub quotas: Quotas,
}

/// A quota's state when it was crossed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuotaState {
    /// `disk`, `connections`, `rate` (API calls) or `realtime` (realtime events).
    pub quota: String,
    /// The quota's name: `db_quota_bytes`, `max_connections`, `api_calls_per_minute`
    /// or `realtime_events_per_minute`.
    pub limit_name: String,
    pub limit: i64,
    /// Bytes on disk, open sessions; for the rates, what was asked for when refused
    /// (exceeded) or what is left of the minute's budget (recovered).
    pub used: i64,
}

/// `quota.exceeded`: disk over its quota (writes revoked), connections at their limit
/// (the next is refused), or a rate refused calls or realtime events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuotaExceeded {
    #[serde(flatten)]
    pub state: QuotaState,
}

/// `quota.recovered`: back under the quota (writes given back, a session free, the
/// rate's budget half full again).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuotaRecovered {
    #[serde(flatten)]
    pub state: QuotaState,
}

/// `api_key.created`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyCreated {
    pub key_id: Uuid,
    pub prefix: String,
    pub name: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// `api_key.revoked`: it stopped working.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyRevoked {
    pub key_id: Uuid,
    pub prefix: String,
    pub name: Option<String>,
}

/// `api_key.rotated`: a new key; the replaced one works until `replaced_expires_at`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyRotated {
    pub key_id: Uuid,
    pub prefix: String,
    pub name: Option<String>,
    pub replaced_key_id: Uuid,
    pub replaced_prefix: String,
    pub replaced_expires_at: Option<DateTime<Utc>>,
}

/// `user.invited`: a person's login role in one of the tenant's default roles.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserInvited {
    pub email: String,
    /// `tenant_admin`, `application_manager`, `developer` or `auditor`.
    pub role: String,
    /// The PostgreSQL login role.
    pub db_user: String,
    /// The teams the user belongs to (absent when none were given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<String>,
    /// Who invited the user (absent when added directly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
    /// The one-time link that hands the invitee their credentials, for a mail service
    /// to send (null when the user was added directly). The one secret an event
    /// carries: whoever holds it can take the user's credentials once, until
    /// `invitation_expires_at`. Absent when the user was added directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation_expires_at: Option<DateTime<Utc>>,
}

/// `tenant.config_changed`: a new version of the tenant's configuration document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantConfigChanged {
    pub version: i32,
    /// The merge patch (RFC 7396) that made it.
    #[schema(value_type = Object)]
    pub patch: Value,
    /// The whole document as it now is.
    #[schema(value_type = Object)]
    pub config: Value,
}

/// `user.removed`: the login role is gone (what it owned passed to the tenant).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserRemoved {
    pub email: String,
    pub role: String,
    pub db_user: String,
}

/// `backup.completed` (a delete's final backup is announced with the delete, just
/// before `tenant.deleted`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupCompleted {
    pub backup_id: Uuid,
    /// `manual`, `scheduled` or `final`.
    pub kind: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub encrypted: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub template_version: i32,
}

/// `backup.failed`: the backup was not taken (what it stored is deleted).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupFailed {
    pub backup_id: Uuid,
    pub kind: String,
    pub error: String,
}

/// `restore.completed`: a backup was restored, in place or into a new tenant (then
/// this event is the new tenant's, after its `tenant.created`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RestoreCompleted {
    pub backup_id: Uuid,
    /// `in_place` or `new_tenant`.
    pub into: String,
    /// Whose backup it was (restores into a new tenant).
    pub source_tenant: Option<String>,
    /// The tenant template version the tenant is at now (the backup's).
    pub template_version: i32,
}

/// `migration.completed`: the tenant's objects are at the template's new version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MigrationCompleted {
    pub run_id: Uuid,
    pub from_version: i32,
    pub to_version: i32,
}

/// `migration.failed`: the run could not migrate this tenant (nothing of it stayed;
/// the next run tries again).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MigrationFailed {
    pub run_id: Uuid,
    pub from_version: i32,
    pub to_version: i32,
    pub error: String,
    /// PostgreSQL's SQLSTATE, when the database refused it.
    pub sqlstate: Option<String>,
}

/// A firewall rule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RuleRef {
    pub cidr: String,
    /// `postgres` or `api`.
    pub service: String,
}

/// A VPN peer (its public key only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeerRef {
    pub name: String,
    pub address: String,
    pub public_key: String,
}

/// `network.changed`: what may reach the tenant changed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NetworkChanged {
    /// `firewall_rule_added`, `firewall_rule_removed`, `firewall_rules_replaced`,
    /// `vpn_peer_added`, `vpn_peer_removed` or `access_changed` (VPN or public API
    /// turned on or off).
    pub change: String,
    pub access_mode: AccessMode,
    pub vpn_enabled: bool,
    pub vpn_subnet: Option<String>,
    /// The rule added or removed.
    pub rule: Option<RuleRef>,
    /// The rules in force after the change (firewall changes).
    pub rules: Option<Vec<RuleRef>>,
    /// The peer added or removed.
    pub peer: Option<PeerRef>,
}

/// `usage.reported`: the tenant's usage over a period, for billing. Periods follow
/// each other without gaps or overlaps.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageReported {
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub plan: String,
    pub status: Status,
    /// By metric, as `GET .../usage` reports them: `storage_bytes` (last measured),
    /// `connections` (open now), `users`, `api_calls` and `realtime_events` (this
    /// minute, on the reporting server), `llm_tokens` (today, UTC), `agents`,
    /// `concurrent_agents`.
    #[schema(value_type = Object)]
    pub usage: BTreeMap<String, i64>,
    pub quotas: Quotas,
    pub writes_blocked: bool,
    pub disk_measured_at: Option<DateTime<Utc>>,
}

/// The quotas that differ between `before` and `after`, by name (`max_storage_gb`, a
/// view of `db_quota_bytes`, left out).
pub fn quota_changes(before: &Quotas, after: &Quotas) -> BTreeMap<String, QuotaChange> {
    let (b, a) = (
        serde_json::to_value(before).expect("quotas serialise"),
        serde_json::to_value(after).expect("quotas serialise"),
    );
    let (Some(b), Some(a)) = (b.as_object(), a.as_object()) else {
        return BTreeMap::new();
    };
    a.iter()
        .filter(|(k, _)| *k != "max_storage_gb")
        .filter_map(|(k, to)| {
            let (from, to) = (b.get(k)?.as_i64()?, to.as_i64()?);
            (from != to).then(|| (k.clone(), QuotaChange { from, to }))
        })
        .collect()
}

impl BackupCompleted {
    pub fn of(b: &crate::store::backups::Backup) -> Self {
        Self {
            backup_id: b.id,
            kind: b.kind.as_str().to_string(),
            size_bytes: b.size_bytes.unwrap_or(0),
            sha256: b.sha256.clone().unwrap_or_default(),
            encrypted: b.encrypted,
            expires_at: b.expires_at,
            template_version: b.template_version.unwrap_or(0),
        }
    }
}

/// An error's text for an event: a connection string's password (`://user:pw@`) and
/// a `password=` setting are masked, should a tool have echoed one.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(a), Some(c)) if c < a => {
                out.push_str(&authority[..c]);
                out.push_str(":***");
                out.push_str(&authority[a..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    let lower = out.to_ascii_lowercase();
    if let Some(i) = lower.find("password=") {
        let start = i + "password=".len();
        let end = out[start..]
            .find(char::is_whitespace)
            .map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_error_texts_are_masked() {
        assert_eq!(
            redact("connection to postgresql://admin:s3cret@db:5432/x failed"),
            "connection to postgresql://admin:***@db:5432/x failed"
        );
        assert_eq!(
            redact("host=db password=s3cret user=a"),
            "host=db password=*** user=a"
        );
        assert_eq!(redact("no secret here"), "no secret here");
        assert_eq!(
            redact("see http://example.com/x"),
            "see http://example.com/x"
        );
    }

    #[test]
    fn every_type_has_one_data_schema() {
        let names: Vec<&str> = SCHEMAS.iter().map(|(t, _)| *t).collect();
        assert_eq!(names, crate::events::TYPES);
    }
}
