//! `POST /api/v1/vectors/upsert` and `/query`: a tenant's own vector collection
//! (docs/vector-store.md), authenticated by the tenant's API key. The collection comes
//! from the key's tenant, never from the request, so a tenant reaches its own only;
//! a suspended tenant's key is refused before this runs (`TenantKey`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::ratelimit;
use super::tenant_key::TenantKey;
use super::AppState;
use crate::problem::{Kind, Problem};
use crate::vector::{self, QueryRequest, QueryResult, Target, UpsertRequest, UpsertResult};

impl From<vector::Error> for ApiError {
    fn from(e: vector::Error) -> Self {
        if !matches!(e, vector::Error::Rejected(_)) {
            tracing::error!(error = %e, "vector store call failed");
        }
        Self(e.problem())
    }
}

/// The key's tenant's collection and the backend it is in; a tenant without one is
/// told so (404).
fn target(state: &AppState, key: &TenantKey) -> Result<(&'static str, Target), ApiError> {
    let t = &key.tenant;
    let configured = state.platform.vectors.as_deref().map(|b| b.name());
    match (&t.vector_store, configured) {
        (Some(s), Some(b)) if s.backend == b => Ok((b, Target::of(t))),
        (Some(s), _) => Err(ApiError(Problem::new(
            Kind::Unavailable,
            "vector_store_unavailable",
            format!(
                "tenant {}'s vector store ({}) is not configured on this server",
                t.name, s.backend
            ),
        ))),
        (None, _) => Err(ApiError(Problem::new(
            Kind::NotFound,
            "no_vector_store",
            format!(
                "tenant {} has no vector store: create it with vector_store: true",
                t.name
            ),
        ))),
    }
}

#[utoipa::path(post, path = "/api/v1/vectors/upsert", tag = "data", security(("api_key" = [])),
    request_body = UpsertRequest,
    responses(
        (status = 200, body = UpsertResult),
        (status = 400, body = ErrorBody, description = "a field is wrong (named in `field`): empty or mismatched embeddings, lists of different lengths, a dimension the collection refuses"),
        (status = 401, body = ErrorBody, description = "no valid key, or the tenant is suspended or deleted"),
        (status = 404, body = ErrorBody, description = "the tenant has no vector store"),
        (status = 429, body = ErrorBody, description = "over api_calls_per_minute; Retry-After"),
        (status = 502, body = ErrorBody, description = "the vector store failed"),
        (status = 503, body = ErrorBody, description = "the vector store did not answer")))]
pub async fn upsert(
    State(state): State<AppState>,
    key: TenantKey,
    body: JsonBody<UpsertRequest>,
) -> Result<Response, ApiError> {
    body.value.validate()?;
    let (_, target) = target(&state, &key)?;
    let target = target.reach(&state.platform).await?;
    let (_, decision) = match ratelimit::admit(&state, &key.tenant, "vectors.upsert").await? {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(refused),
    };
    let backend = state
        .platform
        .vectors
        .as_deref()
        .expect("checked by target");
    let done = backend.upsert(&target, &body.value).await?;
    Ok(ratelimit::with_headers(
        Json(done).into_response(),
        &decision,
    ))
}

#[utoipa::path(post, path = "/api/v1/vectors/query", tag = "data", security(("api_key" = [])),
    request_body = QueryRequest,
    responses(
        (status = 200, body = QueryResult),
        (status = 400, body = ErrorBody, description = "a field is wrong (named in `field`)"),
        (status = 401, body = ErrorBody, description = "no valid key, or the tenant is suspended or deleted"),
        (status = 404, body = ErrorBody, description = "the tenant has no vector store"),
        (status = 429, body = ErrorBody, description = "over api_calls_per_minute; Retry-After"),
        (status = 502, body = ErrorBody, description = "the vector store failed"),
        (status = 503, body = ErrorBody, description = "the vector store did not answer")))]
pub async fn query(
    State(state): State<AppState>,
    key: TenantKey,
    body: JsonBody<QueryRequest>,
) -> Result<Response, ApiError> {
    body.value.validate()?;
    let (_, target) = target(&state, &key)?;
    let target = target.reach(&state.platform).await?;
    let (_, decision) = match ratelimit::admit(&state, &key.tenant, "vectors.query").await? {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(refused),
    };
    let backend = state
        .platform
        .vectors
        .as_deref()
        .expect("checked by target");
    let found = backend.query(&target, &body.value).await?;
    Ok(ratelimit::with_headers(
        Json(found).into_response(),
        &decision,
    ))
}
