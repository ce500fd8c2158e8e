//! `/v1/auth/logout…` and `/v1/sessions…`: a user's own sessions.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::accounts::sessions;
use crate::auth::SessionAuth;
use crate::error::ApiResult;
use crate::AppState;

/// `POST /v1/auth/logout`
pub async fn logout(State(state): State<AppState>, auth: SessionAuth) -> ApiResult<Response> {
    sessions::end(&state.db, &auth.session_id).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, sessions::clear_cookie(&state))]).into_response())
}

/// `POST /v1/auth/logout-all`
pub async fn logout_all(State(state): State<AppState>, auth: SessionAuth) -> ApiResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    sessions::end_all(&mut conn, &auth.user_id, None).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, sessions::clear_cookie(&state))]).into_response())
}

/// `GET /v1/sessions`: the caller's own sessions.
pub async fn list(State(state): State<AppState>, auth: SessionAuth) -> ApiResult<Json<Value>> {
    let data = sessions::list(&state.db, &auth.user_id, &auth.session_id, state.clock.unix_now()).await?;
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// `DELETE /v1/sessions/{id}`: revoke one of the caller's sessions.
pub async fn revoke(State(state): State<AppState>, auth: SessionAuth, Path(id): Path<String>) -> ApiResult<StatusCode> {
    sessions::revoke(&state.db, &auth.user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
