//! Edges on requests: the bearer token configured for each edge.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::bearer;
use crate::error::ApiError;
use crate::secrets::same;
use crate::AppState;

/// An edge, by the token configured for it.
pub struct EdgeAuth {
    pub name: String,
}

impl FromRequestParts<AppState> for EdgeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let sent = bearer(parts).unwrap_or("");
        // Compare against every token, each in constant time.
        let mut found = None;
        for (name, token) in &state.cfg.edge_sync.edges {
            if same(sent, token) && !sent.is_empty() {
                found = Some(name.clone());
            }
        }
        found.map(|name| EdgeAuth { name }).ok_or_else(|| ApiError::Unauthorized("Edge token required.".into()))
    }
}
