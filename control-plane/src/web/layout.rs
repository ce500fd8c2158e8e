//! The frame every page shares: head (stylesheet, script, CSRF token for
//! the script), the header with the site's navigation, a notice, the
//! footer. Templates are `maud` markup: checked at compile time, every
//! value escaped (nothing in the website is marked `PreEscaped`).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::{assets, forms};
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
                                (forms::csrf_field(user))
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
        return super::nav::to_login(None);
    }
    let title = match &e {
        ApiError::NotFound => "Not found",
        ApiError::Internal(_) | ApiError::UploadFailed(_) => "Something went wrong",
        ApiError::Validation { .. } => "Please check the form",
        ApiError::RateLimited { .. } => "Too many attempts",
        _ => "That did not work",
    };
    let body = html! { p.error role="alert" { (message_of(&e)) } };
    with_retry_after(respond(status, title, chrome, body), &e)
}

/// What to tell a person about a failure: the domain's message, or a
/// generic one for a failure of ours, whose cause is logged here and never
/// shown.
pub fn message_of(e: &ApiError) -> String {
    match e {
        ApiError::Internal(cause) | ApiError::UploadFailed(cause) => {
            tracing::error!(%cause, "a page failed");
            "We could not do that. Please try again in a moment.".to_string()
        }
        ApiError::NotFound => "There is nothing here, or it is not yours to see.".to_string(),
        ApiError::RateLimited { retry_after_secs } => {
            format!("Too many attempts. Please wait {retry_after_secs} seconds and try again.")
        }
        e => e.to_string(),
    }
}

/// `Retry-After` on a page answering a rate limit or an overload.
pub fn with_retry_after(mut response: Response, e: &ApiError) -> Response {
    if let ApiError::RateLimited { retry_after_secs } | ApiError::Overloaded { retry_after_secs } = e {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, (*retry_after_secs).into());
    }
    response
}
