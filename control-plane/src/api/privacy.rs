//! `/v1/me/deletion…`, `/v1/me/export…`, `/v1/me/email…`: the rights the
//! privacy policy promises, as routes.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::accounts::{sessions, user_json};
use crate::auth::SessionAuth;
use crate::dates::iso;
use crate::error::ApiResult;
use crate::json::ApiJson;
use crate::privacy::{deletion, export, rectify};
use crate::AppState;

#[derive(Deserialize)]
pub struct DeletionBody {
    /// The account's password; not needed within 10 minutes of signing in.
    password: Option<String>,
}

/// `POST /v1/me/deletion`: sign out everywhere, lock the account, mail a
/// cancel link; erased after the grace period.
pub async fn request_deletion(
    State(state): State<AppState>,
    auth: SessionAuth,
    ApiJson(body): ApiJson<DeletionBody>,
) -> ApiResult<Response> {
    let due = deletion::request(&state, &auth, body.password).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::SET_COOKIE, sessions::clear_cookie(&state))],
        Json(json!({
            "object": "deletion", "status": "scheduled", "erased_at": iso(due),
            "message": "Every session was signed out. The email we sent has a link that cancels the deletion until then.",
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct TokenBody {
    token: String,
}

/// `POST /v1/me/deletion/cancel` `{token}`: the account is restored.
pub async fn cancel_deletion(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TokenBody>,
) -> ApiResult<Json<Value>> {
    deletion::cancel(&state, &body.token).await?;
    Ok(Json(json!({ "object": "deletion", "status": "cancelled" })))
}

/// `POST /v1/me/export` → 202: an export is being built; mailed when ready.
pub async fn request_export(State(state): State<AppState>, auth: SessionAuth) -> ApiResult<Response> {
    let body = export::request(&state, &auth.user_id).await?;
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// `GET /v1/me/exports/{id}`
pub async fn export_status(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(export::status(&state, &auth.user_id, &id).await?))
}

/// `GET /v1/me/exports/{id}/download`: the archive (tar), streamed.
pub async fn download_export(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let (len, stream) = export::download(&state, &auth.user_id, &id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"imgcdn-export-{id}.tar\"")),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct EmailChangeBody {
    email: String,
    password: String,
}

/// `POST /v1/me/email` `{email, password}` → 202: a link goes to the new address.
pub async fn request_email_change(
    State(state): State<AppState>,
    auth: SessionAuth,
    ApiJson(body): ApiJson<EmailChangeBody>,
) -> ApiResult<StatusCode> {
    rectify::request_email_change(&state, &auth, &body.email, body.password).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `POST /v1/me/email/confirm` `{token}`: the new address is the account's.
pub async fn confirm_email_change(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TokenBody>,
) -> ApiResult<Json<Value>> {
    let user_id = rectify::confirm_email_change(&state, &body.token).await?;
    let mut conn = state.db.pool.acquire().await?;
    Ok(Json(user_json(&mut conn, &user_id).await?))
}
