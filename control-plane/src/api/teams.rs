//! `/v1/teams…` and `/v1/invitations/accept`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::accounts::check_name;
use crate::api::cursor;
use crate::auth::SessionAuth;
use crate::error::ApiResult;
use crate::json::ApiJson;
use crate::requestlog;
use crate::teams::{self, require_role, Role};
use crate::AppState;

#[derive(Deserialize)]
pub struct CreateTeamBody {
    name: String,
}

/// `POST /v1/teams`
pub async fn create(
    State(state): State<AppState>,
    auth: SessionAuth,
    ApiJson(body): ApiJson<CreateTeamBody>,
) -> ApiResult<Response> {
    let name = check_name(&body.name)?;
    let id = teams::create(&state, &auth.user_id, &name).await?;
    Ok((StatusCode::CREATED, Json(teams::team_json(&state.db, &id, Role::Owner).await?)).into_response())
}

/// `GET /v1/teams`: the caller's teams.
pub async fn list(State(state): State<AppState>, auth: SessionAuth) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "object": "list", "data": teams::list(&state.db, &auth.user_id).await? })))
}

/// `GET /v1/teams/{id}`
pub async fn get(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path(team_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let role = require_role(&state, &team_id, &auth.user_id, Role::Member).await?;
    Ok(Json(teams::team_json(&state.db, &team_id, role).await?))
}

/// `GET /v1/teams/{id}/members`
pub async fn members(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path(team_id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_role(&state, &team_id, &auth.user_id, Role::Member).await?;
    Ok(Json(json!({ "object": "list", "data": teams::members(&state.db, &team_id).await? })))
}

#[derive(Deserialize)]
pub struct InviteBody {
    email: String,
    #[serde(default = "default_role")]
    role: String,
}

fn default_role() -> String {
    "member".into()
}

/// `POST /v1/teams/{id}/invitations` (admin or owner).
pub async fn invite(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path(team_id): Path<String>,
    ApiJson(body): ApiJson<InviteBody>,
) -> ApiResult<Response> {
    let invitation = teams::invite(&state, &team_id, &auth.user_id, &body.email, &body.role).await?;
    Ok((StatusCode::CREATED, Json(invitation)).into_response())
}

/// `GET /v1/teams/{id}/invitations` (admin or owner): pending invitations.
pub async fn invitations(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path(team_id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "object": "list", "data": teams::invitations(&state, &team_id, &auth.user_id).await? })))
}

/// `DELETE /v1/teams/{id}/invitations/{invitation_id}` (admin or owner).
pub async fn revoke_invitation(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path((team_id, invitation_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    teams::revoke_invitation(&state, &team_id, &auth.user_id, &invitation_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct AcceptBody {
    token: String,
}

/// `POST /v1/invitations/accept` `{token}`
pub async fn accept(
    State(state): State<AppState>,
    auth: SessionAuth,
    ApiJson(body): ApiJson<AcceptBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(teams::accept(&state, &auth.user_id, &auth.email, &body.token).await?))
}

#[derive(Deserialize)]
pub struct RoleBody {
    role: String,
}

/// `PATCH /v1/teams/{id}/members/{user_id}` `{role}`.
pub async fn change_role(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path((team_id, user_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<RoleBody>,
) -> ApiResult<Json<Value>> {
    let new = teams::change_role(&state, &team_id, &auth.user_id, &user_id, &body.role).await?;
    Ok(Json(json!({ "object": "team_member", "team_id": team_id, "user_id": user_id, "role": new.as_str() })))
}

/// `DELETE /v1/teams/{id}/members/{user_id}` (admin or owner).
pub async fn remove_member(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path((team_id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    teams::remove_member(&state, &team_id, &auth.user_id, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/teams/{id}/leave`
pub async fn leave(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path(team_id): Path<String>,
) -> ApiResult<StatusCode> {
    teams::leave(&state, &team_id, &auth.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/teams/{id}/requests?limit=&cursor=` (owners): the team's API
/// request log, newest first.
pub async fn requests(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path(team_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    require_role(&state, &team_id, &auth.user_id, Role::Owner).await?;
    let limit = cursor::limit(q.get("limit"))?;
    let after = q.get("cursor").map(|c| cursor::decode(c)).transpose()?;
    let mut rows = requestlog::page(&state.db, &team_id, after.as_ref(), limit as i64 + 1).await?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let next = if has_more { rows.last().map(|(at, id, _)| cursor::encode(*at, id)) } else { None };
    let data: Vec<Value> = rows.into_iter().map(|(_, _, v)| v).collect();
    Ok(Json(json!({ "object": "list", "data": data, "pagination": { "next_cursor": next, "has_more": has_more } })))
}
