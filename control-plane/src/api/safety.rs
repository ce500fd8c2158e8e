//! `POST /v1/reports`, `POST /v1/dmca`, `POST /v1/dmca/counter`: anyone can
//! report an image; a copyright holder can file a notice; an uploader can
//! answer a takedown with a counter-notice.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::ClientMeta;
use crate::error::ApiResult;
use crate::json::ApiJson;
use crate::moderation::reports::{self, CounterNotice, Notice, Report};
use crate::AppState;

/// `POST /v1/reports` `{image, reason, details?, contact_email?}` → 202.
pub async fn report(
    State(state): State<AppState>,
    client: ClientMeta,
    ApiJson(body): ApiJson<Report>,
) -> ApiResult<Response> {
    let id = reports::report(&state, body, &client).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id, "object": "report", "status": "received" }))).into_response())
}

/// `POST /v1/dmca` with the statutory fields → 202.
pub async fn dmca(
    State(state): State<AppState>,
    client: ClientMeta,
    ApiJson(body): ApiJson<Notice>,
) -> ApiResult<Response> {
    let id = reports::notice(&state, body, &client).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id, "object": "dmca_notice", "status": "received" }))).into_response())
}

/// `POST /v1/dmca/counter` with the token from the takedown mail.
pub async fn counter(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CounterNotice>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(reports::counter(&state, body).await?))
}
