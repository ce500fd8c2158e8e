//! The session cookie and its CSRF header.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::is_safe;
use crate::error::ApiError;
use crate::secrets::same;
use crate::AppState;

pub use crate::accounts::sessions::SESSION_COOKIE;
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A signed-in user, from the session cookie.
pub type SessionAuth = crate::accounts::sessions::Session;

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
