//! The operator API (`/v1/admin/…`, operator tokens): decisions on
//! images, their state and history, takedowns, and how changes reached the
//! edges. Not part of the public API document.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::OperatorAuth;
use crate::error::ApiResult;
use crate::json::ApiJson;
use crate::moderation;
use crate::sync::edges;
use crate::AppState;

#[derive(Deserialize, Default)]
pub struct Decision {
    reason: Option<String>,
    note: Option<String>,
}

/// `POST /v1/admin/images/{id}/takedown {reason, note?}`, `…/warn {note?}`,
/// `…/restore {note?}` (restore undoes takedown and warning).
pub async fn decision(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((id, decision)): Path<(String, String)>,
    ApiJson(d): ApiJson<Decision>,
) -> ApiResult<Json<Value>> {
    let note = d.note.unwrap_or_default();
    if note.len() > moderation::MAX_NOTE {
        return Err(crate::error::ApiError::validation("note", "At most 2000 characters."));
    }
    let edit = moderation::parse_decision(&decision, d.reason)?;
    Ok(Json(moderation::decide(&state, &op, &id, edit, &note).await?))
}

/// `GET /v1/admin/images/{id}`: what edges do with it, and its history.
pub async fn image_state(
    State(state): State<AppState>,
    _op: OperatorAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(moderation::image_state(&state, &id).await?))
}

/// `GET /v1/admin/takedowns`: images currently taken down.
pub async fn takedowns(State(state): State<AppState>, _op: OperatorAuth) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "object": "list", "data": moderation::takedowns(&state.db).await? })))
}

/// `GET /v1/admin/changes/{seq}`: a change and its propagation to each edge.
pub async fn change_propagation(
    State(state): State<AppState>,
    _op: OperatorAuth,
    Path(seq): Path<i64>,
) -> ApiResult<Json<Value>> {
    Ok(Json(edges::propagation(&state, seq).await?))
}

/// `GET /v1/admin/edges`: every edge and its lag.
pub async fn edges(State(state): State<AppState>, _op: OperatorAuth) -> ApiResult<Json<Value>> {
    Ok(Json(edges::list(&state).await?))
}
