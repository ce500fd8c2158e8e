//! API keys on requests: resolved once by the [`key_abilities`] middleware,
//! which also writes each call made with a key to the request log.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::IntoResponse;

use super::is_safe;
use super::ClientMeta;
use crate::error::ApiError;
use crate::keys::{self, KEY_PREFIX};
use crate::requestlog::Entry;
use crate::AppState;

/// An API key, as [`key_abilities`] resolved it.
pub type KeyAuth = keys::ActiveKey;

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
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
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
    if own_auth && !token.trim().starts_with(KEY_PREFIX) {
        return next.run(req).await;
    }
    let key = match keys::authenticate(&state.db, token.trim(), state.clock.unix_now()).await {
        Ok(Some(k)) => k,
        Ok(None) => return ApiError::Unauthorized("This API key is not valid.".into()).into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let safe = is_safe(req.method());
    if !(if safe { key.can_read } else { key.can_write }) {
        let need = if safe { "read" } else { "write" };
        return ApiError::Forbidden(format!("This API key does not have the {need} ability.")).into_response();
    }
    // The request log: who called which route (its template, never the
    // query string), how it went, from where.
    let started = std::time::Instant::now();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let (mut parts, body) = req.into_parts();
    let client = ClientMeta::from_request_parts(&mut parts, &state).await.ok().and_then(|c| c.ip);
    let mut req = axum::extract::Request::from_parts(parts, body);
    let (team_id, key_id) = (key.team_id.clone(), key.key_id.clone());
    req.extensions_mut().insert(key);
    let response = next.run(req).await;
    state.request_log.record(Entry {
        team_id,
        key_id,
        method,
        route,
        status: response.status().as_u16(),
        latency_ms: started.elapsed().as_millis() as u64,
        ip: client,
        at: state.clock.unix_now(),
    });
    response
}
