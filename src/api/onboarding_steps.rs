//! `/api/v1/onboarding-steps`: the HTTP steps every matching tenant create calls
//! before the tenant is active (docs/onboarding-steps.md).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::AppState;
use crate::integrations::{self, NewStep, OnboardingStep, Registered, StepList};

impl From<integrations::Error> for ApiError {
    fn from(e: integrations::Error) -> Self {
        match e {
            integrations::Error::Rejected(p) => Self(p),
            integrations::Error::Pool(e) => Self::unavailable(&e),
            other => Self::internal(&other, "onboarding-step request"),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/onboarding-steps", tag = "onboarding", security(("admin" = [])),
    request_body = NewStep,
    responses((status = 201, body = Registered, description = "registered; its secret is shown only here"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "a step of this name exists")))]
pub async fn create(
    State(state): State<AppState>,
    body: JsonBody<NewStep>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(integrations::register(&state.platform, &body.value).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/onboarding-steps", tag = "onboarding", security(("admin" = [])),
    responses((status = 200, body = StepList, description = "in the order a create calls them"),
        (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<StepList>, ApiError> {
    Ok(Json(integrations::list(&state.platform).await?))
}

#[utoipa::path(get, path = "/api/v1/onboarding-steps/{name}", tag = "onboarding", security(("admin" = [])),
    params(("name" = String, Path, description = "the step's name")),
    responses((status = 200, body = OnboardingStep), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<OnboardingStep>, ApiError> {
    Ok(Json(integrations::get(&state.platform, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/onboarding-steps/{name}", tag = "onboarding", security(("admin" = [])),
    params(("name" = String, Path, description = "the step's name")),
    responses((status = 204, description = "removed: creates from now on do not call it"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    integrations::remove(&state.platform, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
