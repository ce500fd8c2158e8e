//! `/v1/teams/{team_id}/keys…`, `/v1/whoami` and the legacy `POST /v1/keys`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::accounts::{check_name, normalize_email, MAX_NAME};
use crate::auth::{ClientMeta, Principal, SessionAuth};
use crate::error::ApiResult;
use crate::json::ApiJson;
use crate::keys::{self, Abilities};
use crate::teams::{require_role, Role};
use crate::AppState;

#[derive(Deserialize)]
pub struct CreateKeyBody {
    name: String,
    #[serde(default = "default_abilities")]
    abilities: Vec<String>,
}

fn default_abilities() -> Vec<String> {
    vec!["read".into(), "write".into()]
}

/// `POST /v1/teams/{team_id}/keys` (admin or owner).
pub async fn create(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path(team_id): Path<String>,
    ApiJson(body): ApiJson<CreateKeyBody>,
) -> ApiResult<Response> {
    require_role(&state, &team_id, &auth.user_id, Role::Admin).await?;
    let abilities = Abilities::parse(&body.abilities)?;
    let key = keys::create(&state, &team_id, &auth.user_id, auth.email_verified, &body.name, abilities).await?;
    Ok((StatusCode::CREATED, Json(key)).into_response())
}

/// `GET /v1/teams/{team_id}/keys` (any member): no secrets, ever.
pub async fn list(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path(team_id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_role(&state, &team_id, &auth.user_id, Role::Member).await?;
    Ok(Json(json!({ "object": "list", "data": keys::list(&state.db, &team_id).await? })))
}

/// `DELETE /v1/teams/{team_id}/keys/{key_id}` (admin or owner).
pub async fn revoke(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path((team_id, key_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    require_role(&state, &team_id, &auth.user_id, Role::Admin).await?;
    keys::revoke(&state.db, &team_id, &key_id, state.clock.unix_now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/whoami`: what the credential is (session or key).
pub async fn whoami(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    Ok(Json(match who {
        Principal::Key(k) => {
            json!({ "object": "whoami", "type": "api_key", "team_id": k.team_id, "key": keys::get_json(&state.db, &k.key_id).await? })
        }
        Principal::Session(s) => json!({ "object": "whoami", "type": "session", "user_id": s.user_id }),
    }))
}

#[derive(Deserialize)]
pub struct LegacyKeyBody {
    email: String,
    name: Option<String>,
}

/// Legacy `POST /v1/keys` `{email, name?}` → 201 with the key.
pub async fn legacy_create(
    State(state): State<AppState>,
    client: ClientMeta,
    ApiJson(body): ApiJson<LegacyKeyBody>,
) -> ApiResult<Response> {
    let email = normalize_email(&body.email)?;
    let name = match body.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => check_name(n)?,
        None => email.split('@').next().unwrap_or("me").chars().take(MAX_NAME).collect(),
    };
    let key = keys::legacy_create(&state, &email, &name, &client).await?;
    Ok((StatusCode::CREATED, Json(key)).into_response())
}
