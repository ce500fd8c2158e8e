//! Who is calling: the extractors every route takes its caller from. They
//! sit below the routes and above the domain: they read credentials from
//! the request and ask the domain what they are.
//!
//! - [`SessionAuth`]: a browser session from the `imgcdn_session` cookie.
//!   State-changing methods also need `X-CSRF-Token` equal to the
//!   session's token (a cross-site form cannot read or send it).
//! - [`KeyAuth`]: `Authorization: Bearer img_live_…`, checked against the
//!   key's abilities by method (GET/HEAD need `read`, others `write`) by the
//!   [`key_abilities`] middleware, before routing and before any body is read.
//! - [`Principal`]: either of those, for routes the dashboard and the API share.
//! - [`OperatorAuth`]: an operator token (`img_op_…`), for `/v1/admin/…`.
//! - [`EdgeAuth`]: an edge token from config, for `/v1/edge/…`.
//! - [`ClientMeta`]: the client address (socket, or a configured proxy
//!   header) and user agent, for sign-in records and rate limits only.
//!
//! Extractors run before the body is read, so a bad credential is refused
//! without reading the body.

mod client;
mod edge;
mod key;
mod operator;
mod session;

use axum::http::header;
use axum::http::request::Parts;
use axum::http::Method;

pub use client::ClientMeta;
pub use edge::EdgeAuth;
pub use key::{key_abilities, KeyAuth};
pub use operator::OperatorAuth;
pub use session::{cookie, cookie_in, SessionAuth, CSRF_HEADER, SESSION_COOKIE};

use crate::error::{ApiError, ApiResult};
use crate::images::lifecycle::Actor;
use crate::AppState;

/// The bearer token, if the request has one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Either credential: routes usable from the dashboard and the API.
#[derive(Debug, Clone)]
pub enum Principal {
    Session(SessionAuth),
    Key(KeyAuth),
}

impl axum::extract::FromRequestParts<AppState> for Principal {
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
    pub fn actor(&self) -> Actor {
        match self {
            Principal::Session(s) => Actor::User(s.user_id.clone()),
            Principal::Key(k) => Actor::Key(k.key_id.clone()),
        }
    }

    /// The team this credential acts for: a key's team, or the user's personal team.
    pub async fn team(&self, state: &AppState) -> ApiResult<String> {
        match self {
            Principal::Key(k) => Ok(k.team_id.clone()),
            Principal::Session(s) => crate::accounts::personal_team(&state.db, &s.user_id).await,
        }
    }
}
