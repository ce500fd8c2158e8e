//! The edge endpoints of edge sync (`/v1/edge/…`, edge tokens). Not part
//! of the public API document; the wire format is in
//! [`imgcdn_shared::sync`].

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use imgcdn_shared::sync::{Ack, ChangesPage, Snapshot};
use serde::Deserialize;

use crate::auth::EdgeAuth;
use crate::error::ApiResult;
use crate::json::ApiJson;
use crate::sync::{self, edges};
use crate::AppState;

#[derive(Deserialize)]
pub struct ChangesQuery {
    after: u64,
    #[serde(default)]
    wait_ms: u64,
}

/// `GET /v1/edge/changes?after=SEQ&wait_ms=MS`
pub async fn changes(
    State(state): State<AppState>,
    edge: EdgeAuth,
    Query(q): Query<ChangesQuery>,
) -> ApiResult<Json<ChangesPage>> {
    Ok(Json(edges::poll_changes(&state, &edge.name, q.after, q.wait_ms).await?))
}

/// `GET /v1/edge/snapshot`
pub async fn snapshot(State(state): State<AppState>, edge: EdgeAuth) -> ApiResult<Json<Snapshot>> {
    edges::seen(&state, &edge.name).await?;
    Ok(Json(sync::snapshot(&state.db.pool).await?))
}

/// `POST /v1/edge/ack {seq}`: the edge applied and persisted up to `seq`.
pub async fn ack(State(state): State<AppState>, edge: EdgeAuth, ApiJson(body): ApiJson<Ack>) -> ApiResult<StatusCode> {
    edges::ack(&state, &edge.name, body.seq).await?;
    Ok(StatusCode::NO_CONTENT)
}
