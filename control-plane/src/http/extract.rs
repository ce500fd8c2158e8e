//! Request extractors: who is calling and from where.
//!
//! - [`SessionAuth`]: a browser session from the `imgcdn_session` cookie.
//!   State-changing methods also need `X-CSRF-Token` equal to the
//!   session's token (a cross-site form cannot read or send it).
//! - [`KeyAuth`]: `Authorization: Bearer img_live_…`, checked against the
//!   key's abilities by method (GET/HEAD need `read`, others `write`).
//! - [`ClientMeta`]: the client address (socket, or a configured proxy
//!   header) and user agent, for sign-in records and rate limits only.
//!
//! Extractors run before the body is read, so a bad credential is refused
//! without reading the body.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method};
use sqlx::Row;

use crate::error::ApiError;
use crate::secrets::{hash_token, same};
use crate::AppState;

pub const SESSION_COOKIE: &str = "imgcdn_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A signed-in user, from the session cookie.
#[derive(Debug, Clone)]
pub struct SessionAuth {
    pub user_id: String,
    pub session_id: String,
    pub csrf_token: String,
    pub email: String,
    pub email_verified: bool,
}

/// The value of cookie `name`, if sent.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    cookie_in(&parts.headers, name)
}

/// The value of cookie `name` in `headers`, if sent.
pub fn cookie_in<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequestParts<AppState> for SessionAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = cookie(parts, SESSION_COOKIE).ok_or_else(|| ApiError::Unauthorized("Sign in first.".into()))?;
        let session = crate::accounts::sessions::lookup(state, token)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("Your session has ended. Sign in again.".into()))?;
        if !is_safe(&parts.method) {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            if !same(sent, &session.csrf_token) {
                return Err(ApiError::Forbidden("Missing or wrong X-CSRF-Token header.".into()));
            }
        }
        Ok(session)
    }
}

/// An API key.
#[derive(Debug, Clone)]
pub struct KeyAuth {
    pub key_id: String,
    pub team_id: String,
    pub can_read: bool,
    pub can_write: bool,
}

/// The bearer token, if the request has one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

impl FromRequestParts<AppState> for KeyAuth {
    type Rejection = ApiError;

    /// The key was already resolved and checked by [`key_abilities`].
    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<KeyAuth>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("Send an API key as Authorization: Bearer img_live_….".into()))
    }
}

/// Middleware for every route: a request carrying a bearer key has it
/// resolved and checked against the method before routing, so a key
/// outside its abilities gets 403 before any body is read, on any route.
pub async fn key_abilities(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(token) =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
    else {
        return next.run(req).await;
    };
    // Operator and edge tokens are checked by their own extractors, on
    // their own routes only; anywhere else a bearer that is not a valid key
    // is a 401 (never, say, an anonymous upload).
    let path = req.uri().path();
    let own_auth = path.starts_with("/v1/admin/") || path.starts_with("/v1/edge/");
    if own_auth && !token.trim().starts_with(crate::keys::KEY_PREFIX) {
        return next.run(req).await;
    }
    let key = match lookup_key(&state, token.trim()).await {
        Ok(Some(k)) => k,
        Ok(None) => return ApiError::Unauthorized("This API key is not valid.".into()).into_response(),
        Err(e) => return e.into_response(),
    };
    let safe = is_safe(req.method());
    if !(if safe { key.can_read } else { key.can_write }) {
        let need = if safe { "read" } else { "write" };
        return ApiError::Forbidden(format!("This API key does not have the {need} ability.")).into_response();
    }
    req.extensions_mut().insert(key);
    next.run(req).await
}

async fn lookup_key(state: &AppState, token: &str) -> Result<Option<KeyAuth>, ApiError> {
    if !token.starts_with(crate::keys::KEY_PREFIX) {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT id, team_id, can_read, can_write, last_used_day FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash_token(token))
    .fetch_optional(&state.db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let key = KeyAuth {
        key_id: row.get("id"),
        team_id: row.get("team_id"),
        can_read: row.get::<i64, _>("can_read") != 0,
        can_write: row.get::<i64, _>("can_write") != 0,
    };
    // Day granularity: at most one write per key per day.
    let today = crate::keys::day(state.clock.unix_now());
    if row.get::<Option<i64>, _>("last_used_day") != Some(today) {
        sqlx::query("UPDATE api_keys SET last_used_day = $1 WHERE id = $2")
            .bind(today)
            .bind(&key.key_id)
            .execute(&state.db.pool)
            .await?;
    }
    Ok(Some(key))
}

/// Either credential: routes usable from the dashboard and the API.
#[derive(Debug, Clone)]
pub enum Principal {
    Session(SessionAuth),
    Key(KeyAuth),
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if bearer(parts).is_some() {
            KeyAuth::from_request_parts(parts, state).await.map(Principal::Key)
        } else {
            SessionAuth::from_request_parts(parts, state).await.map(Principal::Session)
        }
    }
}

impl Principal {
    /// How the edge-sync log names who made a change.
    pub fn actor(&self) -> String {
        match self {
            Principal::Session(s) => format!("user:{}", s.user_id),
            Principal::Key(k) => format!("key:{}", k.key_id),
        }
    }
}

/// Client address and user agent. The address is used for sign-in records
/// (kept while the session lives) and hashed rate limits, nothing else.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub country: Option<String>,
    pub gpc: bool,
}

impl FromRequestParts<AppState> for ClientMeta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let text = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let ip = match &state.cfg.client_ip_header {
            Some(h) => text(h).and_then(|v| v.split(',').next().map(|s| s.trim().to_string())),
            None => parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()),
        };
        let country = state
            .cfg
            .country_header
            .as_deref()
            .and_then(text)
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
            .map(|c| c.to_ascii_uppercase());
        Ok(ClientMeta {
            ip,
            user_agent: text(header::USER_AGENT.as_str()).map(|ua| ua.chars().take(512).collect()),
            country,
            gpc: parts.headers.get("sec-gpc").is_some_and(|v| v.as_bytes() == b"1"),
        })
    }
}
