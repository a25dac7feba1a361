//! The OpenAPI document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    api_keys, audit, auth_providers, backups, config, data, error, events, health, invitations,
    lifecycle, metrics, migrations, monitoring, moves, network, onboarding_steps, operations,
    quotas, realtime, servers, tenant_key, tenants, users, vectors, webhooks,
};
use crate::events::data as ed;
use crate::tenant::{self, service};

#[derive(OpenApi)]
#[openapi(
    info(title = "berqenas", description = "Tenant control plane for PostgreSQL"),
    paths(
        health::health, health::status, document,
        tenants::create, tenants::list, tenants::get, tenants::update, tenants::delete,
        tenants::credentials, tenants::rotate_credentials, tenants::plans, users::add, users::list, users::remove,
        tenant_key::me, migrations::start, migrations::get, migrations::status,
        backups::create, backups::list, backups::get, backups::get_by_id, backups::restore,
        backups::verify, backups::verify_by_id, backups::get_policy, backups::put_policy,
        backups::delete_policy, backups::get_plan_policy, backups::put_plan_policy,
        backups::restore_tenant,
        lifecycle::suspend, lifecycle::resume, lifecycle::activate,
        api_keys::create, api_keys::list, api_keys::revoke, api_keys::rotate,
        audit::list, audit::tenant, audit::verify, events::list,
        quotas::limits, quotas::update, quotas::summary, quotas::resources, quotas::increment,
        data::query, metrics::scrape, vectors::upsert, vectors::query,
        network::view, network::list, network::add, network::replace, network::remove,
        network::add_peer, network::peers, network::remove_peer,
        operations::get, operations::list, operations::complete_step, operations::abort,
        onboarding_steps::create, onboarding_steps::list, onboarding_steps::get, onboarding_steps::remove,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::rotate, webhooks::ping, webhooks::deliveries, webhooks::replay_one,
        webhooks::replay_range,
        config::get, config::patch, config::history, config::get_plan_defaults,
        config::put_plan_defaults, config::me,
        auth_providers::put, auth_providers::get, auth_providers::delete, auth_providers::test,
        auth_providers::integration, invitations::accept,
        monitoring::rules, monitoring::targets, monitoring::dashboard, monitoring::get,
        monitoring::put,
        realtime::publish, realtime::stream, realtime::admin_publish, realtime::admin_stream,
        realtime::tables,
        servers::add, servers::list, servers::get, servers::update, servers::remove,
        moves::start,
    ),
    components(schemas(
        crate::monitoring::Level, crate::monitoring::service::TenantMonitoring,
        crate::monitoring::service::LevelRequest, crate::monitoring::targets::TargetGroup,
        crate::workflows::servers::AddServer, crate::workflows::servers::UpdateServer,
        crate::workflows::servers::ServerInfo, crate::workflows::servers::ServerList,
        crate::workflows::move_tenant::MoveRequest,
        error::ErrorBody, error::ErrorDetail, health::Health, health::Status, health::PostgresInfo, health::NetworkInfo, health::WarmPoolMembers, health::InstanceInfo,
        tenant::Tenant, tenant::Plan, tenant::Status, tenant::Isolation, tenant::AccessMode,
        service::CreateTenant, service::UpdateTenant, service::CreatedTenant, service::Credentials,
        service::TenantPage, crate::tenant::users::AddUser, crate::tenant::users::AddedUser,
        crate::tenant::users::TenantUser, crate::tenant::users::UserList, crate::tenant::roles::DefaultRole,
        tenant_key::Me, crate::migrate::MigrateRequest, crate::migrate::MigrationPlan,
        crate::migrate::PendingTenant, crate::migrate::MigrationRun, crate::migrate::TenantFailure, crate::migrate::ServerFailure,
        crate::migrate::MigrationStatus, crate::migrate::VersionCount,
        backups::BackupList, crate::backup::Backup, crate::backup::BackupKind, crate::backup::BackupStatus,
        crate::backup::TableStat, crate::backup::restore::RestoreRequest, crate::backup::verify::VerifyReport,
        crate::backup::verify::TableCheck, crate::backup::policy::BackupPolicy, crate::backup::policy::PolicyRequest,
        crate::tenant::offboarding::DeleteRequest,
        crate::tenant::suspension::SuspendTenant,
        crate::tenant::api_keys::CreateApiKey, crate::tenant::api_keys::RotateApiKey,
        crate::tenant::api_keys::ApiKey, crate::tenant::api_keys::NewApiKey,
        crate::tenant::api_keys::RotatedApiKey, crate::tenant::api_keys::ApiKeyList,
        crate::tenant::api_keys::KeyState,
        crate::audit::query::AuditEntry, crate::audit::query::AuditPage,
        crate::audit::chain::Verification, crate::audit::chain::BrokenLink,
        crate::quota::Quotas, crate::quota::service::QuotaUpdate, crate::quota::service::Limits,
        crate::quota::usage::UsageSummary, crate::quota::usage::Resources, crate::quota::usage::Resource,
        crate::quota::usage::Increment, crate::quota::usage::Counted,
        crate::dataapi::QueryRequest, crate::dataapi::QueryResult, crate::dataapi::Column,
        crate::store::tenants::VectorStoreRef, crate::vector::UpsertRequest, crate::vector::UpsertResult,
        crate::vector::QueryRequest, crate::vector::QueryResult, crate::vector::records::Match,
        network::Rules, network::AddPeer, network::Peers, crate::network::rules::NewRule,
        crate::network::rules::RuleList, crate::network::Service,
        crate::workflows::network::NetworkView, crate::workflows::network::NewPeer,
        crate::events::Event, crate::events::TenantRef, crate::events::query::EventPage,
        crate::events::query::ListedEvent,
        ed::TenantState, ed::KeyRef, ed::QuotaChange, ed::QuotaState, ed::RuleRef, ed::PeerRef,
        ed::TenantCreated, ed::TenantUpdated, ed::TenantActivated, ed::TenantSuspended,
        ed::TenantResumed, ed::TenantDeleted, ed::TenantRestored, ed::TenantPurged,
        ed::TenantPlanChanged, ed::QuotaUpdated, ed::QuotaExceeded, ed::QuotaRecovered,
        ed::ApiKeyCreated, ed::ApiKeyRevoked, ed::ApiKeyRotated, ed::UserInvited, ed::UserRemoved,
        ed::BackupCompleted, ed::BackupFailed, ed::RestoreCompleted, ed::MigrationCompleted,
        ed::MigrationFailed, ed::NetworkChanged, ed::UsageReported,
        crate::workflows::operations::Operation, crate::workflows::operations::OperationStep,
        crate::workflows::operations::OperationTenant, crate::workflows::operations::OperationPage,
        crate::workflows::onboarding_callback::StepCallback, crate::workflows::onboarding_callback::CallbackReceived,
        crate::integrations::NewStep, crate::integrations::When, crate::integrations::OnboardingStep,
        crate::integrations::Registered, crate::integrations::StepList,
        crate::events::webhooks::CreateWebhook, crate::events::webhooks::UpdateWebhook,
        crate::events::webhooks::NewWebhook, crate::events::webhooks::RotateSecret,
        crate::events::webhooks::WebhookList, crate::events::webhooks::DeliveryList,
        crate::events::webhooks::ReplayRange, crate::events::webhooks::Replayed,
        crate::events::webhooks::Webhook, crate::events::webhooks::Delivery,
        crate::events::webhooks::Attempt,
        ed::TenantConfigChanged,
        crate::tenantconfig::TenantConfig, crate::tenantconfig::ConfigHistory,
        crate::tenantconfig::PlanConfigDefaults, crate::tenantconfig::ConfigVersion,
        crate::auth_providers::AuthProvider, crate::auth_providers::ProviderRequest,
        crate::auth_providers::CheckResult, crate::auth_providers::IntegrationView,
        crate::auth_providers::ProviderWithSecret,
        crate::tenant::invitations::AcceptedInvitation,
        crate::realtime::PublishRequest, crate::realtime::Published, crate::realtime::TableRequest,
        crate::realtime::PublishedTable, crate::realtime::Event,
    )),
    modifiers(&AdminAuth, &SingularAliases, &EventTypes),
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
        // `--metrics-token`: what Prometheus sends (/metrics, the monitoring rules and
        // targets).
        components.add_security_scheme(
            "metrics",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // A tenant's own API key (`bqk_...`), for the tenant-facing endpoints.
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // `--integration-token`: the platform's auth service (sign-in secrets).
        components.add_security_scheme(
            "integration",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // An onboarding step's callback: Standard Webhooks headers (webhook-id,
        // webhook-timestamp, webhook-signature) signed with the step's own secret.
        components.add_security_scheme(
            "step_signature",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "webhook-signature",
                    "v1,<base64 HMAC-SHA256 of \"{webhook-id}.{webhook-timestamp}.{body}\"> with the onboarding step's secret (Standard Webhooks)",
                ),
            )),
        );
    }
}

/// `/api/v1/tenant` and `/api/v1/tenant/{name}` (seed 000 spells it singular) are the
/// plural routes' handlers; the document lists them under both spellings, each with an
/// operation id of its own, as OpenAPI requires.
struct SingularAliases;

impl Modify for SingularAliases {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let aliases = [
            ("/api/v1/tenants", "/api/v1/tenant"),
            ("/api/v1/tenants/{name}", "/api/v1/tenant/{name}"),
        ];
        for (plural, singular) in aliases {
            let Some(item) = doc.paths.paths.get(plural) else {
                continue;
            };
            let mut alias = item.clone();
            // The singular collection only creates; listing is the plural's alone.
            if singular == "/api/v1/tenant" {
                alias.get = None;
            }
            for op in [
                &mut alias.get,
                &mut alias.post,
                &mut alias.patch,
                &mut alias.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.operation_id = op.operation_id.take().map(|id| format!("{id}_singular"));
                op.description = Some(format!("Alias of `{plural}`, same request and answer."));
            }
            doc.paths.paths.insert(singular.to_string(), alias);
        }
    }
}

/// One schema per event type, `<DataSchema>Event`: the envelope (`Event`) with its
/// `type` fixed and its `data` that type's schema, so a consumer (or a webhook
/// receiver) finds every type's full shape here.
struct EventTypes;

impl Modify for EventTypes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Ref, Type};
        let components = doc.components.get_or_insert_with(Default::default);
        for (event_type, data) in crate::events::data::SCHEMAS {
            let fixed = ObjectBuilder::new()
                .property(
                    "type",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([*event_type])),
                )
                .property("data", Ref::from_schema_name(*data))
                .required("type")
                .required("data");
            let schema = AllOfBuilder::new()
                .item(Ref::from_schema_name("Event"))
                .item(fixed)
                .description(Some(format!("The `{event_type}` event.")))
                .build();
            components.schemas.insert(
                format!("{data}Event"),
                utoipa::openapi::schema::Schema::AllOf(schema).into(),
            );
        }
    }
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses((status = 200, description = "this document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_has_its_data_and_envelope_schemas() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        assert!(schemas["Event"].is_object());
        assert_eq!(
            crate::events::data::SCHEMAS.len(),
            crate::events::TYPES.len()
        );
        for (event_type, data) in crate::events::data::SCHEMAS {
            assert!(schemas[*data].is_object(), "{event_type}: no schema {data}");
            let envelope = &schemas[format!("{data}Event")];
            assert!(
                envelope.to_string().contains(event_type),
                "{event_type}: {envelope}"
            );
        }
        assert!(doc["paths"]["/api/v1/events"]["get"].is_object());
    }

    #[test]
    fn the_singular_aliases_are_documented_with_their_own_operation_ids() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = &doc["paths"];
        assert!(paths["/api/v1/tenant"]["post"].is_object());
        assert!(
            paths["/api/v1/tenant"]["get"].is_null(),
            "no list under the alias"
        );
        for m in ["get", "patch", "delete"] {
            assert!(paths["/api/v1/tenant/{name}"][m].is_object(), "{m}");
        }
        for (path, m) in [
            ("/api/v1/tenant", "post"),
            ("/api/v1/tenant/{name}", "get"),
            ("/api/v1/tenant/{name}", "patch"),
            ("/api/v1/tenant/{name}", "delete"),
        ] {
            let id = paths[path][m]["operationId"].as_str().unwrap();
            assert!(id.ends_with("_singular"), "{m} {path}: {id}");
        }
    }
}
