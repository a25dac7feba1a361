//! `/api/v1/migrations`: run the tenant template over tenants, poll the run, count
//! tenants per version.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody};
use super::extract::OptionalJson;
use super::{AppState, ADMIN_ACTOR};
use crate::migrate::{self, MigrateRequest, MigrationPlan, MigrationRun, MigrationStatus, Started};
use crate::problem::Problem;

#[utoipa::path(post, path = "/api/v1/migrations", tag = "migrations", security(("admin" = [])),
    request_body = MigrateRequest,
    responses(
        (status = 202, body = MigrationRun, description = "started; poll GET /api/v1/migrations/{id} (also in Location)"),
        (status = 200, body = MigrationPlan, description = "dry run: what would run"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "a run is already in progress")))]
pub async fn start(
    State(state): State<AppState>,
    // No body at all means every tenant, with the defaults.
    OptionalJson(req): OptionalJson<MigrateRequest>,
) -> Result<Response, ApiError> {
    match crate::workflows::migrate::start(&state.platform, req, ADMIN_ACTOR).await? {
        Started::Plan(plan) => Ok(Json(plan).into_response()),
        Started::Run(run) => {
            let location = format!("/api/v1/migrations/{}", run.id);
            let mut res = (StatusCode::ACCEPTED, Json(run)).into_response();
            res.headers_mut().insert(
                header::LOCATION,
                HeaderValue::from_str(&location).expect("ASCII"),
            );
            Ok(res)
        }
    }
}

#[utoipa::path(get, path = "/api/v1/migrations/{id}", tag = "migrations", security(("admin" = [])),
    params(("id" = Uuid, Path, description = "the run's id")),
    responses((status = 200, body = MigrationRun), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<MigrationRun>, ApiError> {
    let id: Uuid = id.parse().map_err(|_| {
        Problem::bad_field("id", format!("{id:?} is not a migration run id (a UUID)"))
    })?;
    Ok(Json(migrate::get(&state.platform, id).await?))
}

#[utoipa::path(get, path = "/api/v1/migrations/status", tag = "migrations", security(("admin" = [])),
    responses((status = 200, body = MigrationStatus), (status = 401, body = ErrorBody)))]
pub async fn status(State(state): State<AppState>) -> Result<Json<MigrationStatus>, ApiError> {
    Ok(Json(migrate::status(&state.platform).await?))
}
