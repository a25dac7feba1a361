//! A typed client of the REST API. The CLI uses only this, with the API's own
//! request and response types, so the two cannot drift apart.

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::backups::BackupList;
use crate::api::health::{Health, Status};
use crate::backup::policy::{BackupPolicy, PolicyRequest};
use crate::backup::restore::RestoreRequest;
use crate::backup::verify::VerifyReport;
use crate::backup::Backup;
use crate::migrate::{MigrateRequest, MigrationPlan, MigrationRun, MigrationStatus};
use crate::quota::service::{Limits, QuotaUpdate};
use crate::quota::usage::UsageSummary;
use crate::tenant::offboarding::DeleteRequest;
use crate::tenant::service::{CreateTenant, CreatedTenant, Credentials, TenantPage, UpdateTenant};
use crate::tenant::users::{AddUser, AddedUser, TenantUser, UserList};
use crate::tenant::{Plan, Tenant};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{message}{}", field.as_ref().map(|f| format!(" (field: {f})")).unwrap_or_default())]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        field: Option<String>,
    },
    #[error("cannot reach the berqenas server at {url}: {source}. Is `berqenas serve` running? (set --server or BERQENAS_URL)")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("unexpected answer from the server: {0}")]
    Decode(#[source] reqwest::Error),
    /// The server wants the admin token and the CLI found none: say where it looked.
    #[error("{0}")]
    NotConfigured(String),
}

#[derive(serde::Deserialize)]
struct ErrorEnvelope {
    error: ErrorFields,
}

#[derive(serde::Deserialize)]
struct ErrorFields {
    code: String,
    message: String,
    field: Option<String>,
}

pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    /// Why no token was found, told instead of the server's bare 401.
    no_token_hint: Option<String>,
    /// The URL is the built-in default, not one the user or the data directory gave.
    guessed_url: bool,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
            no_token_hint: None,
            guessed_url: false,
        }
    }

    /// What to tell the user if the server refuses the request for want of a token.
    pub fn with_no_token_hint(mut self, hint: Option<String>, guessed_url: bool) -> Self {
        self.no_token_hint = hint;
        self.guessed_url = guessed_url;
        self
    }

    /// A GET whose answer is read as it arrives (a realtime stream): the response
    /// once its status is a success, else the API's error.
    pub(crate) async fn open(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = res.status();
        if status.is_success() {
            return Ok(res);
        }
        let text = res.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorEnvelope>(&text) {
            Ok(e) => ClientError::Api {
                status,
                code: e.error.code,
                message: e.error.message,
                field: e.error.field,
            },
            Err(_) => ClientError::Api {
                status,
                code: "http".into(),
                message: format!("HTTP {status}: {text}"),
                field: None,
            },
        })
    }

    pub(crate) async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = match req.send().await {
            Ok(res) => res,
            // Nothing configured and nothing at the default address: the hint says why.
            Err(e) if self.token.is_none() && self.no_token_hint.is_some() && self.guessed_url => {
                return Err(ClientError::NotConfigured(format!(
                    "cannot reach a berqenas server at {} ({e}); {}",
                    self.base,
                    self.no_token_hint.as_deref().unwrap_or_default()
                )));
            }
            Err(source) => {
                return Err(ClientError::Unreachable {
                    url: self.base.clone(),
                    source,
                })
            }
        };
        let status = res.status();
        // No content: what `()` (or an `Option`) reads as.
        if status == StatusCode::NO_CONTENT {
            return serde_json::from_value(serde_json::Value::Null).map_err(|e| ClientError::Api {
                status,
                code: "http".into(),
                message: format!("HTTP {status} where an answer was expected: {e}"),
                field: None,
            });
        }
        if status.is_success() || (status == StatusCode::SERVICE_UNAVAILABLE && path == "/health") {
            return res.json().await.map_err(ClientError::Decode);
        }
        if status == StatusCode::UNAUTHORIZED && self.token.is_none() {
            if let Some(hint) = &self.no_token_hint {
                return Err(ClientError::NotConfigured(hint.clone()));
            }
        }
        let text = res.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorEnvelope>(&text) {
            Ok(e) => ClientError::Api {
                status,
                code: e.error.code,
                message: e.error.message,
                field: e.error.field,
            },
            Err(_) => ClientError::Api {
                status,
                code: "http".into(),
                message: format!("HTTP {status}: {text}"),
                field: None,
            },
        })
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call::<(), _>(Method::GET, "/health", None, &[]).await
    }

    pub async fn status(&self) -> Result<Status, ClientError> {
        self.call::<(), _>(Method::GET, "/api/v1/status", None, &[])
            .await
    }

    pub async fn create_tenant(
        &self,
        req: &CreateTenant,
        idempotency_key: Option<&str>,
    ) -> Result<CreatedTenant, ClientError> {
        let headers: Vec<(&str, &str)> = idempotency_key
            .map(|k| ("Idempotency-Key", k))
            .into_iter()
            .collect();
        self.call(Method::POST, "/api/v1/tenants", Some(req), &headers)
            .await
    }

    pub async fn get_tenant(&self, name: &str) -> Result<Tenant, ClientError> {
        self.call::<(), _>(Method::GET, &tenant_path(name, ""), None, &[])
            .await
    }

    pub async fn list_tenants(
        &self,
        status: Option<&str>,
        plan: Option<&str>,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<TenantPage, ClientError> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("status", status), ("plan", plan), ("cursor", cursor)] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        if let Some(l) = limit {
            q.append_pair("limit", &l.to_string());
        }
        let q = q.finish();
        let path = if q.is_empty() {
            "/api/v1/tenants".to_string()
        } else {
            format!("/api/v1/tenants?{q}")
        };
        self.call::<(), _>(Method::GET, &path, None, &[]).await
    }

    pub async fn update_tenant(
        &self,
        name: &str,
        req: &UpdateTenant,
    ) -> Result<Tenant, ClientError> {
        self.call(Method::PATCH, &tenant_path(name, ""), Some(req), &[])
            .await
    }

    /// Soft delete (restorable for `retention` days), or with `purge_now` a purge
    /// right after the final backup (`confirm` must be the tenant's name).
    pub async fn delete_tenant(
        &self,
        name: &str,
        retention: Option<i64>,
        purge_now: bool,
        confirm: Option<&str>,
    ) -> Result<Tenant, ClientError> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(r) = retention {
            q.append_pair("retention", &r.to_string());
        }
        if purge_now {
            q.append_pair("purge", "now");
        }
        let q = q.finish();
        let path = if q.is_empty() {
            tenant_path(name, "")
        } else {
            format!("{}?{q}", tenant_path(name, ""))
        };
        let body = DeleteRequest {
            retention_days: None,
            confirm: confirm.map(String::from),
        };
        self.call(Method::DELETE, &path, Some(&body), &[]).await
    }

    /// Brings a deleted (or purged) tenant back.
    pub async fn restore_tenant(&self, name: &str) -> Result<Tenant, ClientError> {
        self.call::<(), _>(Method::POST, &tenant_path(name, "/restore"), None, &[])
            .await
    }

    pub async fn create_backup(&self, tenant: &str) -> Result<Backup, ClientError> {
        self.call::<(), _>(Method::POST, &tenant_path(tenant, "/backups"), None, &[])
            .await
    }

    pub async fn backups(&self, tenant: &str) -> Result<BackupList, ClientError> {
        self.call::<(), _>(Method::GET, &tenant_path(tenant, "/backups"), None, &[])
            .await
    }

    pub async fn backup(&self, id: &str) -> Result<Backup, ClientError> {
        self.call::<(), _>(
            Method::GET,
            &format!("/api/v1/backups/{}", segment(id)),
            None,
            &[],
        )
        .await
    }

    /// In place (`as_name` None: the tenant as restored), or into a new tenant (the
    /// created tenant with its secrets).
    pub async fn restore_backup(
        &self,
        tenant: &str,
        id: &str,
        as_name: Option<&str>,
    ) -> Result<serde_json::Value, ClientError> {
        let path = tenant_path(tenant, &format!("/backups/{}/restore", segment(id)));
        let body = RestoreRequest {
            as_name: as_name.map(String::from),
        };
        self.call(Method::POST, &path, Some(&body), &[]).await
    }

    pub async fn verify_backup(&self, id: &str) -> Result<VerifyReport, ClientError> {
        let path = format!("/api/v1/backups/{}/verify", segment(id));
        self.call::<(), _>(Method::POST, &path, None, &[]).await
    }

    pub async fn backup_policy(&self, tenant: &str) -> Result<BackupPolicy, ClientError> {
        self.call::<(), _>(
            Method::GET,
            &tenant_path(tenant, "/backup-policy"),
            None,
            &[],
        )
        .await
    }

    pub async fn set_backup_policy(
        &self,
        tenant: &str,
        req: &PolicyRequest,
    ) -> Result<BackupPolicy, ClientError> {
        self.call(
            Method::PUT,
            &tenant_path(tenant, "/backup-policy"),
            Some(req),
            &[],
        )
        .await
    }

    pub async fn remove_backup_policy(&self, tenant: &str) -> Result<BackupPolicy, ClientError> {
        self.call::<(), _>(
            Method::DELETE,
            &tenant_path(tenant, "/backup-policy"),
            None,
            &[],
        )
        .await
    }

    pub async fn credentials(&self, name: &str) -> Result<Credentials, ClientError> {
        self.call::<(), _>(Method::GET, &tenant_path(name, "/credentials"), None, &[])
            .await
    }

    pub async fn rotate_credentials(&self, name: &str) -> Result<Credentials, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &tenant_path(name, "/credentials/rotate"),
            None,
            &[],
        )
        .await
    }

    pub async fn add_user(&self, tenant: &str, req: &AddUser) -> Result<AddedUser, ClientError> {
        self.call(Method::POST, &tenant_path(tenant, "/users"), Some(req), &[])
            .await
    }

    pub async fn users(&self, tenant: &str) -> Result<UserList, ClientError> {
        self.call::<(), _>(Method::GET, &tenant_path(tenant, "/users"), None, &[])
            .await
    }

    pub async fn remove_user(&self, tenant: &str, email: &str) -> Result<TenantUser, ClientError> {
        let email: String = url::form_urlencoded::byte_serialize(email.as_bytes()).collect();
        self.call::<(), _>(
            Method::DELETE,
            &tenant_path(tenant, &format!("/users/{email}")),
            None,
            &[],
        )
        .await
    }

    /// A dry run: what `start_migration` would do.
    pub async fn plan_migration(&self, req: &MigrateRequest) -> Result<MigrationPlan, ClientError> {
        let req = MigrateRequest {
            dry_run: true,
            ..req.clone()
        };
        self.call(Method::POST, "/api/v1/migrations", Some(&req), &[])
            .await
    }

    pub async fn start_migration(&self, req: &MigrateRequest) -> Result<MigrationRun, ClientError> {
        self.call(Method::POST, "/api/v1/migrations", Some(req), &[])
            .await
    }

    pub async fn migration_run(&self, id: &str) -> Result<MigrationRun, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/api/v1/migrations/{id}"), None, &[])
            .await
    }

    pub async fn migration_status(&self) -> Result<MigrationStatus, ClientError> {
        self.call::<(), _>(Method::GET, "/api/v1/migrations/status", None, &[])
            .await
    }

    pub async fn plans(&self) -> Result<Vec<Plan>, ClientError> {
        self.call::<(), _>(Method::GET, "/api/v1/plans", None, &[])
            .await
    }
}

fn segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(crate) fn tenant_path(name: &str, rest: &str) -> String {
    let name: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
    format!("/api/v1/tenants/{name}{rest}")
}

/// Quotas and usage (`berqenas quota`).
impl Client {
    pub async fn limits(&self, tenant: &str) -> Result<Limits, ClientError> {
        self.call::<(), _>(Method::GET, &tenant_path(tenant, "/limits"), None, &[])
            .await
    }

    pub async fn set_quotas(&self, tenant: &str, req: &QuotaUpdate) -> Result<Limits, ClientError> {
        self.call(Method::PUT, &tenant_path(tenant, "/quotas"), Some(req), &[])
            .await
    }

    pub async fn usage(&self, tenant: &str) -> Result<UsageSummary, ClientError> {
        self.call::<(), _>(Method::GET, &tenant_path(tenant, "/usage"), None, &[])
            .await
    }
}
