//! `/api/v1/tenants/{name}/network`, `/firewall` and `/vpn/peers`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::{AppState, ADMIN_ACTOR};
use crate::network::rules::{self, NewRule, RuleList};
use crate::problem::{Kind, Problem};
use crate::workflows::network::{self as flow, FirewallChanged, NetworkView, NewPeer};

#[utoipa::path(get, path = "/api/v1/tenants/{name}/network", tag = "network", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = NetworkView, description = "access mode, subnet, rules, peers, and whether they are enforced"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn view(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<NetworkView>, ApiError> {
    Ok(Json(flow::view(&state.platform, &name).await?))
}

/// A tenant's allow rules.
#[derive(Serialize, ToSchema)]
pub struct Rules {
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<crate::store::network::RuleRow>,
    /// The rule a POST added or a DELETE removed.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<crate::store::network::RuleRow>,
}

impl From<FirewallChanged> for Rules {
    fn from(c: FirewallChanged) -> Self {
        Self {
            rules: c.rules,
            rule: c.rule,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/firewall", tag = "network", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = Rules), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Rules>, ApiError> {
    Ok(Json(Rules {
        rules: flow::rules(&state.platform, &name).await?,
        rule: None,
    }))
}

#[utoipa::path(post, path = "/api/v1/tenants/{name}/firewall", tag = "network", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    request_body = NewRule,
    responses((status = 201, body = Rules, description = "added and in force (new connections meet it; sessions it no longer allows are ended)"),
        (status = 400, body = ErrorBody, description = "a bad cidr, service or description; nothing changed"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<NewRule>,
) -> Result<(StatusCode, Json<Rules>), ApiError> {
    let rule = rules::validate("", &body.value)?;
    let changed = flow::allow(&state.platform, &name, rule, ADMIN_ACTOR).await?;
    Ok((StatusCode::CREATED, Json(changed.into())))
}

#[utoipa::path(put, path = "/api/v1/tenants/{name}/firewall", tag = "network", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    request_body = RuleList,
    responses((status = 200, body = Rules, description = "the whole list replaced and in force"),
        (status = 400, body = ErrorBody, description = "a bad rule (the field names which); nothing changed"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn replace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<RuleList>,
) -> Result<Json<Rules>, ApiError> {
    let list = rules::validate_list(&body.value)?;
    let changed = flow::replace_rules(&state.platform, &name, list, ADMIN_ACTOR).await?;
    Ok(Json(changed.into()))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{name}/firewall/{id}", tag = "network", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id"), ("id" = String, Path, description = "the rule's id")),
    responses((status = 200, body = Rules, description = "removed; sessions from ranges no longer allowed are ended"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Rules>, ApiError> {
    let id = uuid::Uuid::parse_str(&id).map_err(|_| {
        ApiError(Problem::bad_field(
            "id",
            format!("id: {id:?} is not a rule id (a UUID from GET .../firewall)"),
        ))
    })?;
    let changed = flow::remove_rule(&state.platform, &name, id, ADMIN_ACTOR).await?;
    Ok(Json(changed.into()))
}

/// `POST /api/v1/tenants/{name}/vpn/peers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddPeer {
    /// 1 to 64 characters: letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// The peer's own WireGuard public key (base64); without it berqenas generates a
    /// key pair and returns the private key in `config`, once.
    #[serde(default)]
    pub public_key: Option<String>,
}

/// A tenant's peers.
#[derive(Serialize, ToSchema)]
pub struct Peers {
    #[schema(value_type = Vec<Object>)]
    pub peers: Vec<crate::store::network::PeerRow>,
}

#[utoipa::path(post, path = "/api/v1/tenants/{name}/vpn/peers", tag = "network", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    request_body = AddPeer,
    responses((status = 201, body = NewPeer, description = "the peer and its wg-quick file, shown once"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "VPN off, a peer of that name, or no free address")))]
pub async fn add_peer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<AddPeer>,
) -> Result<(StatusCode, Json<NewPeer>), ApiError> {
    let req = body.value;
    let ok_name = !req.name.is_empty()
        && req.name.len() <= 64
        && req
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok_name {
        return Err(ApiError(Problem::bad_field(
            "name",
            "name: 1 to 64 characters, letters, digits, '-', '_' or '.'",
        )));
    }
    if let Some(k) = &req.public_key {
        if !crate::network::vpn::valid_public_key(k) {
            return Err(ApiError(Problem::bad_field(
                "public_key",
                "public_key: not a WireGuard public key (44 characters of base64, as `wg pubkey` prints)",
            )));
        }
    }
    let peer = flow::add_peer(
        &state.platform,
        &name,
        &req.name,
        req.public_key.as_deref(),
        ADMIN_ACTOR,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(peer)))
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/vpn/peers", tag = "network", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = Peers, description = "never a private key"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn peers(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Peers>, ApiError> {
    Ok(Json(Peers {
        peers: flow::peers(&state.platform, &name).await?,
    }))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{name}/vpn/peers/{peer}", tag = "network", security(("admin" = [])),
    params(("name" = String, Path, description = "tenant name or id"), ("peer" = String, Path, description = "the peer's id or name")),
    responses((status = 200, body = Object, description = "revoked: gone from the server's WireGuard file"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_peer(
    State(state): State<AppState>,
    Path((name, peer)): Path<(String, String)>,
) -> Result<Json<crate::store::network::PeerRow>, ApiError> {
    Ok(Json(
        flow::remove_peer(&state.platform, &name, &peer, ADMIN_ACTOR).await?,
    ))
}

/// Refuses a data API request from an address the tenant's rules do not allow; the
/// code names the rule: `vpn_only` (the tenant's mode), or `firewall_rules` (its
/// allow list).
pub fn refuse_address(tenant: &str, vpn_only: bool, addr: &str) -> ApiError {
    let (code, rule) = if vpn_only {
        (
            "vpn_only",
            "is vpn-only: the data API answers its VPN subnet and the ranges its api rules allow",
        )
    } else {
        (
            "firewall_rules",
            "allows the data API only from the ranges its api rules name",
        )
    };
    ApiError(Problem::new(
        Kind::Forbidden,
        code,
        format!("tenant {tenant} {rule}, not {addr} (see GET /api/v1/tenants/{tenant}/network)"),
    ))
}
