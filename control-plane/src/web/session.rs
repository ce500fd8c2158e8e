//! Who is looking at a page: the session cookie read without failing
//! ([`Visitor`]) or required ([`SignedIn`], which sends the browser to log
//! in and back), and the CSRF check every page form goes through: the
//! session's token in a hidden `csrf` field (the API takes it as the
//! `X-CSRF-Token` header instead).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::layout::{self, Chrome};
use crate::accounts::sessions::{self, Session, SESSION_COOKIE};
use crate::auth::cookie;
use crate::error::ApiError;
use crate::secrets::same;
use crate::AppState;

/// The signed-in user, if any. Never refuses.
pub struct Visitor(pub Option<Session>);

impl FromRequestParts<AppState> for Visitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // A page anyone may see is shown even when the session cannot be
        // read (as to someone signed out); the cause is logged.
        let session = current(parts, state).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading the session of a page failed");
            None
        });
        Ok(Visitor(session))
    }
}

/// The session the cookie names, if it is live.
async fn current(parts: &Parts, state: &AppState) -> Result<Option<Session>, ApiError> {
    match cookie(parts, SESSION_COOKIE) {
        Some(token) => sessions::lookup(state, token).await,
        None => Ok(None),
    }
}

/// A signed-in user; anyone else is sent to `/login?next=…` and back.
pub struct SignedIn(pub Session);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        // Unlike a public page, a failure to read the session is not "signed
        // out": that would send a signed-in person to log in again.
        let session = current(parts, state).await.map_err(|e| layout::error(e, Chrome::default()))?;
        match session {
            Some(s) => Ok(SignedIn(s)),
            None => {
                let next = if parts.method == axum::http::Method::GET {
                    parts.uri.path_and_query().map(|p| p.as_str().to_string())
                } else {
                    None
                };
                Err(to_login(next.as_deref()))
            }
        }
    }
}

/// `303` to the login page, coming back to `next` (a path of ours) after.
pub fn to_login(next: Option<&str>) -> Response {
    let location = match next.and_then(local_path) {
        Some(n) => format!("/login?next={}", super::forms::enc(n)),
        None => "/login".to_string(),
    };
    see_other(&location)
}

/// `303 See Other` to `location` (after a form: the browser GETs it).
pub fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location.to_string())]).into_response()
}

/// `next` if it is a path on this site (`/…`, not `//host` or `/\host`),
/// so a login link cannot send anyone elsewhere.
pub fn local_path(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\');
    ok.then_some(next)
}

/// A page form's `csrf` field must be the session's token.
// The refusal is the page itself: handlers return it with `?`.
#[allow(clippy::result_large_err)]
pub fn check_csrf(session: &Session, sent: &str) -> Result<(), Response> {
    if same(sent, &session.csrf_token) {
        Ok(())
    } else {
        Err(form_expired(session))
    }
}

/// The `403` page for a form whose token is missing or wrong.
pub fn form_expired(session: &Session) -> Response {
    layout::respond(
        StatusCode::FORBIDDEN,
        "Form expired",
        Chrome::signed_in(session),
        maud::html! {
            p.error role="alert" { "This form was not sent from our page, or it is too old. Reload the page and try again." }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_our_own_paths_are_followed_after_login() {
        assert_eq!(local_path("/dashboard?x=1"), Some("/dashboard?x=1"));
        for hostile in
            ["//evil.example/", "/\\evil.example", "https://evil.example/", "evil", "/a\r\nSet-Cookie: x", ""]
        {
            assert_eq!(local_path(hostile), None, "{hostile:?}");
        }
    }
}
