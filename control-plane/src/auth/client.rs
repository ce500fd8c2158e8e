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
            Some(h) => text(h).and_then(|v| from_forwarded(&v, state.cfg.trusted_proxy_hops)),
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

/// The client address in a forwarding header that `hops` trusted proxies
/// append to: the entry `hops` from the right. Entries to its left came
/// from the client and may be forged; a header with fewer entries than
/// `hops` yields its first.
fn from_forwarded(value: &str, hops: usize) -> Option<String> {
    let entries: Vec<&str> = value.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    let i = entries.len().saturating_sub(hops.max(1));
    entries.get(i).map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::from_forwarded;

    #[test]
    fn the_client_is_the_entry_the_trusted_proxies_added() {
        // The client sent "6.6.6.6" itself; our one proxy appended the real address.
        assert_eq!(from_forwarded("6.6.6.6, 203.0.113.9", 1).as_deref(), Some("203.0.113.9"));
        assert_eq!(from_forwarded("203.0.113.9", 1).as_deref(), Some("203.0.113.9"));
        // Two proxies: the CDN added the client, the load balancer added the CDN.
        assert_eq!(from_forwarded("6.6.6.6, 203.0.113.9, 198.51.100.1", 2).as_deref(), Some("203.0.113.9"));
        assert_eq!(from_forwarded("203.0.113.9", 3).as_deref(), Some("203.0.113.9"));
        assert_eq!(from_forwarded(" , ", 1), None);
    }
}
