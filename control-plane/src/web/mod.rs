//! The HTML pages the control plane serves: the viewer page of an image,
//! the pages behind the links in our mail (verify, reset, invitation) and
//! the takedown policy an edge's `451` links to.
//!
//! Pages are plain server-rendered HTML: no script, no third-party
//! request, `no-referrer` (links carry one-time tokens).

pub mod account_pages;
pub mod viewer;

use axum::extract::{FromRequest, Request};
use axum::response::{Html, IntoResponse, Response};

/// axum's `Form` for a page's form: a body that is not a form (wrong
/// content type, unreadable fields) gets a page saying so with the right
/// status (415, 422, 400), not a bare text line.
pub struct PageForm<T>(pub T);

impl<S, T> FromRequest<S> for PageForm<T>
where
    axum::Form<T>: FromRequest<S, Rejection = axum::extract::rejection::FormRejection>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(PageForm(v)),
            Err(rejection) => {
                let status = rejection.status();
                let message = if status == axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE {
                    "This form must be sent as application/x-www-form-urlencoded.".to_string()
                } else {
                    rejection.body_text()
                };
                let body = page("The form could not be read", &format!("<p>{}</p>", html_escape(&message)));
                Err((status, Html(body)).into_response())
            }
        }
    }
}

/// Escape text for HTML element content and quoted attribute values.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A whole page with `title` and `body` (already HTML).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{title} · imgcdn</title></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>"
    )
}

/// `GET /legal/takedowns`: where a `451` from an edge links
/// (`Link: <…>; rel="blocked-by"`).
pub async fn takedown_policy_page() -> impl IntoResponse {
    Html(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Removed content · imgcdn</title></head>\
         <body><main><h1>This image is not available</h1>\
         <p>An image answers <code>451 Unavailable For Legal Reasons</code> when we removed it from public serving \
         after a legal request or for breaking our Acceptable Use Policy. We do not say which, or who asked.</p>\
         <p>If you uploaded it and think this is a mistake, contact us from the account that owns it: removed \
         images are kept in our recovery store for a limited window, so a contested removal can be undone.</p>\
         </main></body></html>",
    )
}

/// `GET /accept-invite?token=…`: where an invitation mail links.
pub async fn accept_invite_page() -> impl IntoResponse {
    Html(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"referrer\" content=\"no-referrer\">\
         <title>Team invitation · imgcdn</title></head><body><main><h1>Team invitation</h1>\
         <p>Sign in with the address this invitation was sent to, then accept it from your dashboard \
         (API: <code>POST /v1/invitations/accept</code> with the token from this link).</p></main></body></html>",
    )
}

/// `GET /privacy`: what this service promises about personal data, in
/// short, and where each right is exercised.
pub async fn privacy_page(axum::extract::State(state): axum::extract::State<crate::AppState>) -> impl IntoResponse {
    let grace = state.cfg.privacy.deletion_grace_days;
    Html(page(
        "Privacy",
        &format!(
            "<p>We do not track visitors of the images we serve: the CDN keeps no visitor IP address and no access log.</p>\
             <p>What we keep about account holders, and for how long, is in our retention table; API request logs are \
             kept 30 days, sessions (with the sign-in IP address and user agent) only while they live.</p>\
             <h2>Your rights</h2><ul>\
             <li>Access and portability: <code>POST /v1/me/export</code> builds a copy of all your data.</li>\
             <li>Rectification: change your name or email address in Settings (<code>PATCH /v1/me</code>, \
             <code>POST /v1/me/email</code>).</li>\
             <li>Erasure: <code>POST /v1/me/deletion</code>; reversible for {grace} days with the link we email.</li>\
             <li>Restriction and objection: <code>PATCH /v1/me</code> with <code>restrict_processing</code> or \
             <code>object_to_processing</code>; withdraw marketing consent with <code>marketing_emails: false</code>.</li>\
             </ul><p>You must be at least 16 to have an account. The companies that process data for us are listed on \
             <a href=\"/subprocessors\">/subprocessors</a>.</p>"
        ),
    ))
}
