//! The client's address and user agent.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

pub use crate::client::ClientMeta;
use crate::error::ApiError;
use crate::AppState;

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
