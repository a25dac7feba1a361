//! The OpenAPI document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{data, error, health, metrics, quotas, tenant_key, tenants, users};
use crate::tenant::{self, service};

#[derive(OpenApi)]
#[openapi(
    info(title = "berqenas", description = "Tenant control plane for PostgreSQL"),
    paths(
        health::health, health::status, document,
        tenants::create, tenants::list, tenants::get, tenants::update, tenants::delete,
        tenants::credentials, tenants::plans, users::add, users::list, users::remove,
        tenant_key::me,
        quotas::limits, quotas::update, quotas::summary, quotas::resources, quotas::increment,
        data::query, metrics::scrape,
    ),
    components(schemas(
        error::ErrorBody, error::ErrorDetail, health::Health, health::Status, health::PostgresInfo,
        tenant::Tenant, tenant::Plan, tenant::Status, tenant::Isolation, tenant::AccessMode,
        service::CreateTenant, service::UpdateTenant, service::CreatedTenant, service::Credentials,
        service::TenantPage, crate::tenant::users::AddUser, crate::tenant::users::AddedUser,
        crate::tenant::users::TenantUser, crate::tenant::users::UserList, crate::tenant::roles::DefaultRole,
        tenant_key::Me,
        crate::quota::Quotas, crate::quota::service::QuotaUpdate, crate::quota::service::Limits,
        crate::quota::usage::UsageSummary, crate::quota::usage::Resources, crate::quota::usage::Resource,
        crate::quota::usage::Increment, crate::quota::usage::Counted,
        crate::dataapi::QueryRequest, crate::dataapi::QueryResult, crate::dataapi::Column,
    )),
    modifiers(&AdminAuth),
)]
pub struct ApiDoc;

struct AdminAuth;

impl Modify for AdminAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // A tenant's own API key (`bqk_...`), for the tenant-facing endpoints.
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses((status = 200, description = "this document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
