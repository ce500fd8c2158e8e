//! The website: server-rendered pages for everything the API allows
//! (landing and anonymous upload, accounts, the dashboard, settings, the
//! operator console), the viewer page of an image, and the pages behind
//! the links in our mail.
//!
//! - Pages call the API's handlers and the domain directly, with the
//!   caller the browser's session is: one set of rules for both.
//! - Every form works without script; `static/app.js` only adds drag and
//!   drop, paste, upload progress and copy buttons.
//! - [`page_guard`] puts a strict Content-Security-Policy (no inline
//!   script, nothing from another origin but the edge's images) and
//!   `Referrer-Policy: no-referrer` on every HTML answer, and refuses a
//!   page form posted from another origin. Page forms carry the session's
//!   CSRF token ([`session::check_csrf`]).

pub mod account;
pub mod account_pages;
pub mod assets;
pub mod dashboard;
pub mod format;
pub mod forms;
pub mod layout;
pub mod nav;
pub mod operator;
pub mod public;
pub mod session;
pub mod settings;
pub mod viewer;

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use maud::html;

use crate::AppState;

/// The website's routes (the pages that are not part of the API document).
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(assets::routes())
        .merge(public::routes())
        .merge(account::routes())
        .merge(dashboard::routes())
        .merge(settings::routes())
        .merge(operator::routes())
}

/// The origin of a base URL as browsers write it (`scheme://host[:port]`,
/// a default port left out); the config checks these are http(s) URLs.
fn origin_of(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| url.trim_end_matches('/').to_string(), |u| u.origin().ascii_serialization())
}

/// The Content-Security-Policy of every page: our own script and style
/// only (no inline script), images from us and the edge, forms only to us.
pub fn content_security_policy(state: &AppState) -> String {
    let edge = origin_of(&state.cfg.edge_base_url);
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' {edge} blob: data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// Security headers on every HTML answer (this guard's own refusal too); a
/// page form (any non-API path) posted from another origin is refused
/// before it runs.
pub async fn page_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method && !req.uri().path().starts_with("/v1/") {
        // Browsers say where a request comes from in `Sec-Fetch-Site`. Older
        // ones only send `Origin`, which is `null` on our own forms (our
        // pages are `no-referrer`), so only another site's origin counts.
        let ours = origin_of(&state.cfg.public_base_url);
        let foreign = match req.headers().get("sec-fetch-site") {
            Some(site) => !matches!(site.as_bytes(), b"same-origin" | b"none"),
            None => req
                .headers()
                .get(header::ORIGIN)
                .and_then(|o| o.to_str().ok())
                .is_some_and(|o| o != ours.as_str() && o != "null"),
        };
        if foreign {
            let body = html! { p { "This form was sent from another site." } };
            let refused = layout::respond(StatusCode::FORBIDDEN, "Refused", layout::Chrome::default(), body);
            return with_page_headers(&state, refused);
        }
    }
    with_page_headers(&state, next.run(req).await)
}

/// The security headers of an HTML answer (anything else as it is).
fn with_page_headers(state: &AppState, mut response: Response) -> Response {
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html {
        let h = response.headers_mut();
        if let Ok(csp) = HeaderValue::from_str(&content_security_policy(state)) {
            h.insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
        h.insert("permissions-policy", HeaderValue::from_static("camera=(), microphone=(), geolocation=()"));
    }
    response
}

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
                let body = html! { p { (message) } };
                Err(layout::respond(status, "The form could not be read", layout::Chrome::default(), body))
            }
        }
    }
}

/// The page for a path with nothing behind it.
pub fn not_found_page() -> Response {
    layout::respond(
        StatusCode::NOT_FOUND,
        "Not found",
        layout::Chrome::default(),
        maud::html! { p { "There is no page here. " a href="/" { "Go to the home page" } "." } },
    )
}

/// `GET /legal/takedowns`: where a `451` from an edge links
/// (`Link: <…>; rel="blocked-by"`).
pub async fn takedown_policy_page() -> Response {
    layout::ok(
        "This image is not available",
        layout::Chrome::default(),
        html! {
            p {
                "An image answers " code { "451 Unavailable For Legal Reasons" } " when we removed it from public serving "
                "after a legal request or for breaking our Acceptable Use Policy. We do not say which, or who asked."
            }
            p {
                "If you uploaded it and think this is a mistake, contact us from the account that owns it: removed "
                "images are kept in our recovery store for a limited window, so a contested removal can be undone."
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn origins_are_written_as_browsers_send_them() {
        assert_eq!(origin_of("http://127.0.0.1:8090"), "http://127.0.0.1:8090");
        assert_eq!(origin_of("https://img.example/"), "https://img.example");
        assert_eq!(origin_of("https://img.example:443/base/path"), "https://img.example");
        assert_eq!(origin_of("http://cdn.example:8080/x"), "http://cdn.example:8080");
    }
}
