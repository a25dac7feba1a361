//! Authentication by a tenant's API key (`Authorization: Bearer bqk_...`). The tenant
//! always comes from the key, never from the request.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::apikey;
use crate::problem::{Kind, Problem};
use crate::store::tenants as store;
use crate::tenant::{Status, Tenant};

/// A request made with a valid key of a tenant that may use it.
pub struct TenantKey {
    pub key_id: Uuid,
    pub tenant: Tenant,
}

/// One answer for an unknown key, a wrong secret, and a revoked or expired key, so a
/// caller learns nothing about which keys exist.
fn unauthorized(message: &str) -> Response {
    let mut res =
        ApiError(Problem::new(Kind::Unauthorized, "unauthorized", message)).into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

const INVALID: &str =
    "missing, unknown, revoked or expired API key: send Authorization: Bearer bqk_...";

impl FromRequestParts<AppState> for TenantKey {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let presented =
            super::bearer::token(&parts.headers).ok_or_else(|| unauthorized(INVALID))?;
        let (public_id, secret) = apikey::parse(presented).ok_or_else(|| unauthorized(INVALID))?;
        let p = &state.platform;
        let client =
            p.pool.get().await.map_err(|e| {
                ApiError::from(crate::tenant::service::Error::Pool(e)).into_response()
            })?;
        let found = store::find_by_api_key(&client, public_id)
            .await
            .map_err(|e| ApiError::from(crate::tenant::service::Error::from(e)).into_response())?;
        // Verify the MAC even for an unknown id, so timing does not tell the two apart.
        let (hash, found) = match found {
            Some(k) => (k.hash.clone(), Some(k)),
            None => (vec![0; 32], None),
        };
        let matches = p.key.verify_mac(secret.as_bytes(), &hash);
        let key = match found {
            Some(k) if matches && k.usable => k,
            _ => return Err(unauthorized(INVALID)),
        };
        // The key is proven: from here on the request counts for its tenant.
        if let Some(slot) = parts.extensions.get::<super::metrics::TenantSlot>() {
            slot.set(key.tenant.name.as_str());
        }
        // The secret is proven: the holder may learn why its tenant is refused.
        match key.tenant.status {
            Status::Active | Status::Trial => {
                let t = &key.tenant;
                let ranges = crate::network::policy::allowed(
                    t.vpn_enabled,
                    t.public_api,
                    t.vpn_subnet.as_deref(),
                    key.api_ranges
                        .iter()
                        .map(|r| (r.as_str(), crate::network::Service::Api)),
                    crate::network::Service::Api,
                );
                if ranges.is_some() {
                    let addr = super::client_addr::of(parts, &p.network.trusted_proxies);
                    if !addr.is_some_and(|a| crate::network::policy::admits(&ranges, a)) {
                        let shown = addr
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| "an unknown address".into());
                        let vpn_only = t.access_mode == crate::tenant::AccessMode::VpnOnly;
                        let refused =
                            super::network::refuse_address(t.name.as_str(), vpn_only, &shown);
                        return Err(refused.into_response());
                    }
                }
                Ok(TenantKey {
                    key_id: key.id,
                    tenant: key.tenant,
                })
            }
            other => Err(unauthorized(&format!(
                "tenant {} is {}: its API keys do not work",
                key.tenant.name,
                other.as_str()
            ))),
        }
    }
}

/// The tenant an API key belongs to.
#[derive(Serialize, ToSchema)]
pub struct Me {
    pub tenant_id: Uuid,
    pub name: String,
    pub status: Status,
    pub plan: String,
    pub isolation: crate::tenant::Isolation,
    pub public_api: bool,
    pub key_id: Uuid,
}

#[utoipa::path(get, path = "/api/v1/me", tag = "data", security(("api_key" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(key: TenantKey) -> Json<Me> {
    let t = key.tenant;
    Json(Me {
        tenant_id: t.id,
        name: t.name.to_string(),
        status: t.status,
        plan: t.plan,
        isolation: t.isolation,
        public_api: t.public_api,
        key_id: key.key_id,
    })
}
