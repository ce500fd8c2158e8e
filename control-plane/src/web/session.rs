//! Who is looking at a page: the session cookie read without failing
//! ([`Visitor`]) or required ([`SignedIn`], which sends the browser to log
//! in and back), and the CSRF check every page form goes through: the
//! session's token in a hidden `csrf` field (the API takes it as the
//! `X-CSRF-Token` header instead).

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;

use super::forms;
use super::layout::{self, Chrome};
pub use super::nav::{local_path, see_other, to_login};
use super::PageForm;
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

/// A signed-in user's page form (`T`) whose `csrf` field is the session's
/// token: the token is checked before the handler runs, so no form of a
/// signed-in user can skip it. Anyone not signed in is sent to log in; a
/// wrong or missing token gets the "form expired" page (`403`).
pub struct SignedForm<T>(pub Session, pub T);

impl<T> FromRequest<AppState> for SignedForm<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let SignedIn(session) = SignedIn::from_request_parts(&mut parts, state).await?;
        let request = Request::from_parts(parts.clone(), body);
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            let body = maud::html! { p { (rejection.body_text()) } };
            layout::respond(rejection.status(), "The form could not be read", Chrome::signed_in(&session), body)
        })?;
        let sent = url::form_urlencoded::parse(&bytes).find(|(k, _)| k == "csrf").map(|(_, v)| v.into_owned());
        check_csrf(&session, sent.as_deref().unwrap_or(""))?;
        let PageForm(form) = PageForm::<T>::from_request(Request::from_parts(parts, Body::from(bytes)), state).await?;
        Ok(SignedForm(session, form))
    }
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

/// The no-script upload form's `t` must be the session's
/// [`forms::upload_token`]; the refusal is the same page as a form with a
/// wrong CSRF token.
#[allow(clippy::result_large_err)]
pub fn check_upload_token(session: &Session, sent: &str) -> Result<(), Response> {
    if same(sent, &forms::upload_token(session)) {
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
