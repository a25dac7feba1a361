//! `GET /api/v1/invitations/{token}`: an invitee takes their credentials, once. No
//! authentication: the token is the secret (only its keyed hash is stored).

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::tenant::invitations::AcceptedInvitation;

#[utoipa::path(get, path = "/api/v1/invitations/{token}", tag = "users",
    params(("token" = String, Path, description = "the invitation link's token")),
    responses((status = 200, body = AcceptedInvitation, description = "the credentials, this once; the user is active"),
        (status = 404, body = ErrorBody, description = "no such invitation"),
        (status = 409, body = ErrorBody, description = "the tenant is suspended or deleted"),
        (status = 410, body = ErrorBody, description = "used already, or expired")))]
pub async fn accept(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let accepted = crate::workflows::settings::accept_invitation(&state.platform, &token).await?;
    let mut res = Json(accepted).into_response();
    // Credentials: no cache anywhere may keep them.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
