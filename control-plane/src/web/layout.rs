//! The frame every page shares: head (stylesheet, script, CSRF token for
//! the script), the header with the site's navigation, a notice, the
//! footer. Templates are `maud` markup: checked at compile time, text
//! escaped unless marked `PreEscaped`.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::assets;
use crate::accounts::sessions::Session;
use crate::error::ApiError;

/// Who is looking at a page, for its navigation.
#[derive(Clone, Default)]
pub struct Chrome<'a> {
    /// The signed-in user (navigation, log-out form, the script's CSRF token).
    pub user: Option<&'a Session>,
    /// A one-line message at the top (after a form did something).
    pub notice: Option<&'a str>,
    /// Extra `<head>` content (Open Graph tags, robots).
    pub head: Option<Markup>,
    /// The operator console's navigation instead of the site's.
    pub operator: bool,
}

impl<'a> Chrome<'a> {
    pub fn user(user: Option<&'a Session>) -> Chrome<'a> {
        Chrome { user, ..Chrome::default() }
    }

    pub fn signed_in(user: &'a Session) -> Chrome<'a> {
        Chrome { user: Some(user), ..Chrome::default() }
    }

    pub fn notice(mut self, notice: Option<&'a str>) -> Chrome<'a> {
        self.notice = notice;
        self
    }
}

/// The whole page: `title` in the tab and as the heading, `body` below it.
pub fn page(title: &str, chrome: Chrome<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · imgcdn" }
                link rel="stylesheet" href=(assets::css_url());
                @if let Some(user) = chrome.user {
                    meta name="csrf-token" content=(user.csrf_token);
                }
                script src=(assets::js_url()) defer {}
                @if let Some(head) = chrome.head { (head) }
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.site {
                    nav aria-label="Site" {
                        a.brand href=(if chrome.operator { "/ops" } else { "/" }) { "imgcdn" }
                        @if chrome.operator {
                            a href="/ops" { "Review" }
                            a href="/ops/takedowns" { "Takedowns" }
                            a href="/ops/edges" { "Edges" }
                            a href="/ops/reports" { "Reports" }
                            form.inline method="post" action="/ops/logout" {
                                button.link type="submit" { "Sign out" }
                            }
                        } @else if let Some(user) = chrome.user {
                            a href="/dashboard" { "Images" }
                            a href="/dashboard/keys" { "API keys" }
                            a href="/dashboard/team" { "Team" }
                            a href="/settings" { "Settings" }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(user.csrf_token);
                                button.link type="submit" { "Log out" }
                            }
                        } @else {
                            a href="/login" { "Log in" }
                            a.button href="/signup" { "Sign up" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    @if let Some(n) = chrome.notice {
                        p.notice role="status" { (n) }
                    }
                    (body)
                }
                footer.site {
                    a href="/privacy" { "Privacy" }
                    a href="/subprocessors" { "Subprocessors" }
                    a href="/legal/takedowns" { "Removed content" }
                    a href="/report" { "Report an image" }
                }
            }
        }
    }
}

/// A page as a response with `status`.
pub fn respond(status: StatusCode, title: &str, chrome: Chrome<'_>, body: Markup) -> Response {
    (status, Html(page(title, chrome, body).into_string())).into_response()
}

/// A page as a 200 response.
pub fn ok(title: &str, chrome: Chrome<'_>, body: Markup) -> Response {
    respond(StatusCode::OK, title, chrome, body)
}

/// The page for an error of the domain: its message (never an internal
/// cause) and status. A missing or ended session sends the browser to log in.
pub fn error(e: ApiError, chrome: Chrome<'_>) -> Response {
    let status = e.status();
    if status == StatusCode::UNAUTHORIZED {
        return super::session::to_login(None);
    }
    let (title, message) = match &e {
        ApiError::NotFound => {
            ("Not found".to_string(), "There is nothing here, or it is not yours to see.".to_string())
        }
        ApiError::Internal(_) | ApiError::UploadFailed(_) => {
            ("Something went wrong".to_string(), "We could not do that. Please try again in a moment.".to_string())
        }
        ApiError::Validation { .. } => ("Please check the form".to_string(), e.to_string()),
        ApiError::RateLimited { retry_after_secs } => {
            ("Too many attempts".to_string(), format!("Please wait {retry_after_secs} seconds and try again."))
        }
        _ => ("That did not work".to_string(), e.to_string()),
    };
    let mut response = respond(status, &title, chrome, html! { p.error role="alert" { (message) } });
    if let ApiError::RateLimited { retry_after_secs } | ApiError::Overloaded { retry_after_secs } = e {
        if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after_secs.to_string()) {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
    }
    response
}

/// Text that is already HTML (the older string-built pages).
pub fn raw(html: &str) -> Markup {
    PreEscaped(html.to_string())
}
