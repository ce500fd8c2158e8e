//! The pages behind the links in account mail: confirm an email address
//! (or a new one), choose a new password, cancel an account's deletion. A
//! GET only shows a form (mail scanners fetch links); only a deliberate
//! POST uses the single-use token.
//!
//! Their routes are documented in the OpenAPI table (`http/openapi.rs`):
//! the forms' fields are `token` and, for a reset, `password`; the reset
//! page also sends `password_confirm`, checked only when sent (API clients
//! post without it).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::account::password_rules;
use super::forms::TokenQuery;
use super::layout::{self, Chrome};
use super::PageForm;
use crate::auth::ClientMeta;
use crate::error::ApiError;
use crate::AppState;
use crate::{accounts, privacy};

/// A failed form: the validation message on a page (422), any other
/// error as its page (a rate limit with `Retry-After`).
fn refused(title: &str, e: ApiError) -> Response {
    match e {
        ApiError::Validation { message, .. } => layout::respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            title,
            Chrome::default(),
            html! { p.error role="alert" { (message) } },
        ),
        e => layout::error(e, Chrome::default()),
    }
}

/// A page with one button that POSTs the link's token back to `action`.
fn button_page(title: &str, action: &str, token: &str, label: &str) -> Response {
    layout::ok(
        title,
        Chrome::default(),
        html! {
            form method="post" action=(action) {
                input type="hidden" name="token" value=(token);
                button type="submit" { (label) }
            }
        },
    )
}

/// A short page saying what happened.
fn done(title: &str, body: Markup) -> Response {
    layout::ok(title, Chrome::default(), body)
}

/// `GET /verify-email?token=…`: a page with a button.
pub async fn verify_page(Query(q): Query<TokenQuery>) -> Response {
    button_page("Confirm your email", "/verify-email", &q.token, "Confirm my email address")
}

/// `POST /verify-email` (the page's form).
pub async fn verify_form(State(state): State<AppState>, PageForm(body): PageForm<TokenQuery>) -> Response {
    match accounts::verify_email(&state, &body.token).await {
        Ok(_) => done(
            "Email confirmed",
            html! {
                p { "Thank you. Your email address is confirmed." }
                p { a.button href="/dashboard" { "Go to your images" } }
            },
        ),
        Err(e) => refused("Link not valid", e),
    }
}

/// The new-password form, with the rules and the problem, if any.
fn reset_markup(state: &AppState, token: &str, error: Option<&str>) -> Markup {
    let min = state.cfg.passwords.min_length;
    html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
        form method="post" action="/reset-password" {
            input type="hidden" name="token" value=(token);
            label {
                "New password"
                span.hint.block #password-rules { (password_rules(state)) }
                input type="password" name="password" autocomplete="new-password" required minlength=(min)
                    aria-describedby="password-rules";
            }
            label {
                "New password again"
                input type="password" name="password_confirm" autocomplete="new-password" required minlength=(min);
            }
            button type="submit" { "Set password" }
        }
        p.hint { "Every session of your account is signed out when the password changes." }
    }
}

/// `GET /reset-password?token=…`: a form for the new password.
pub async fn reset_page(State(state): State<AppState>, Query(q): Query<TokenQuery>) -> Response {
    layout::ok("Choose a new password", Chrome::default(), reset_markup(&state, &q.token, None))
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    /// Sent by the page; API clients may leave it out.
    password_confirm: Option<String>,
}

/// `POST /reset-password` (the page's form).
pub async fn reset_form(
    State(state): State<AppState>,
    client: ClientMeta,
    PageForm(f): PageForm<ResetForm>,
) -> Response {
    let again = |status, message: &str| {
        layout::respond(
            status,
            "Choose a new password",
            Chrome::default(),
            reset_markup(&state, &f.token, Some(message)),
        )
    };
    if f.password_confirm.as_ref().is_some_and(|c| *c != f.password) {
        return again(StatusCode::UNPROCESSABLE_ENTITY, "The two passwords are not the same.");
    }
    match accounts::confirm_reset(&state, &f.token, f.password.clone(), &client).await {
        Ok(_) => done(
            "Password changed",
            html! {
                p { "Your password is set. Log in with it now." }
                p { a.button href="/login" { "Log in" } }
            },
        ),
        // A password the rules refuse: the form again (the link still works).
        Err(ApiError::Validation { message, details }) if details.get("password").is_some() => {
            again(StatusCode::UNPROCESSABLE_ENTITY, &message)
        }
        Err(e) => refused("Not changed", e),
    }
}

/// `GET /confirm-email?token=…`: confirm a new email address.
pub async fn confirm_email_page(Query(q): Query<TokenQuery>) -> Response {
    button_page("Confirm your new email", "/confirm-email", &q.token, "Use this address for my account")
}

/// `POST /confirm-email` (the page's form).
pub async fn confirm_email_form(State(state): State<AppState>, PageForm(body): PageForm<TokenQuery>) -> Response {
    match privacy::rectify::confirm_email_change(&state, &body.token).await {
        Ok(_) => done("Email changed", html! { p { "This is now your account's email address." } }),
        Err(e) => refused("Link not valid", e),
    }
}

/// `GET /cancel-deletion?token=…`: keep the account.
pub async fn cancel_deletion_page(Query(q): Query<TokenQuery>) -> Response {
    button_page("Keep your account", "/cancel-deletion", &q.token, "Cancel the deletion of my account")
}

/// `POST /cancel-deletion` (the page's form).
pub async fn cancel_deletion_form(State(state): State<AppState>, PageForm(body): PageForm<TokenQuery>) -> Response {
    match privacy::deletion::cancel(&state, &body.token).await {
        Ok(()) => done(
            "Deletion cancelled",
            html! {
                p { "Your account is as it was, and your API keys work again." }
                p { a.button href="/login" { "Log in" } }
            },
        ),
        Err(e) => refused("Link not valid", e),
    }
}
