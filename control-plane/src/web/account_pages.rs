//! The pages behind the links in account mail: confirm an email address
//! (or a new one), choose a new password, cancel an account's deletion. A
//! GET only shows a form (mail scanners fetch links); only a deliberate
//! POST uses the single-use token.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::{html_escape, page, PageForm};
use crate::auth::ClientMeta;
use crate::error::ApiError;
use crate::AppState;
use crate::{accounts, privacy};

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// A failed form: the validation message on the page, anything else as the API error.
fn refused(title: &str, e: ApiError) -> Response {
    match e {
        ApiError::Validation { message, .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, Html(page(title, &format!("<p>{}</p>", html_escape(&message)))))
                .into_response()
        }
        e => e.into_response(),
    }
}

/// A page with one button that POSTs the link's token back to `action`.
fn button_page(title: &str, action: &str, token: &str, label: &str) -> Html<String> {
    let token = html_escape(token);
    Html(page(
        title,
        &format!(
            "<form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"token\" value=\"{token}\">\
             <button type=\"submit\">{label}</button></form>"
        ),
    ))
}

/// `GET /verify-email?token=…`: a page with a button.
pub async fn verify_page(Query(q): Query<TokenQuery>) -> Html<String> {
    button_page("Confirm your email", "/verify-email", &q.token, "Confirm my email address")
}

/// `POST /verify-email` (the page's form).
pub async fn verify_form(State(state): State<AppState>, PageForm(body): PageForm<TokenQuery>) -> Response {
    match accounts::verify_email(&state, &body.token).await {
        Ok(_) => Html(page("Email confirmed", "<p>Thank you. Your email address is confirmed.</p>")).into_response(),
        Err(e) => refused("Link not valid", e),
    }
}

/// `GET /reset-password?token=…`: a form for the new password.
pub async fn reset_page(Query(q): Query<TokenQuery>) -> Html<String> {
    let token = html_escape(&q.token);
    Html(page(
        "Choose a new password",
        &format!(
            "<form method=\"post\" action=\"/reset-password\"><input type=\"hidden\" name=\"token\" value=\"{token}\">\
             <label>New password <input type=\"password\" name=\"password\" autocomplete=\"new-password\" required></label>\
             <button type=\"submit\">Set password</button></form>"
        ),
    ))
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

/// `POST /reset-password` (the page's form).
pub async fn reset_form(
    State(state): State<AppState>,
    client: ClientMeta,
    PageForm(f): PageForm<ResetForm>,
) -> Response {
    match accounts::confirm_reset(&state, &f.token, f.password, &client).await {
        Ok(_) => Html(page("Password changed", "<p>Your password is set. Sign in with it now.</p>")).into_response(),
        Err(e) => refused("Not changed", e),
    }
}

/// `GET /confirm-email?token=…`: confirm a new email address.
pub async fn confirm_email_page(Query(q): Query<TokenQuery>) -> Html<String> {
    button_page("Confirm your new email", "/confirm-email", &q.token, "Use this address for my account")
}

/// `POST /confirm-email` (the page's form).
pub async fn confirm_email_form(State(state): State<AppState>, PageForm(body): PageForm<TokenQuery>) -> Response {
    match privacy::rectify::confirm_email_change(&state, &body.token).await {
        Ok(_) => Html(page("Email changed", "<p>This is now your account's email address.</p>")).into_response(),
        Err(e) => refused("Link not valid", e),
    }
}

/// `GET /cancel-deletion?token=…`: keep the account.
pub async fn cancel_deletion_page(Query(q): Query<TokenQuery>) -> Html<String> {
    button_page("Keep your account", "/cancel-deletion", &q.token, "Cancel the deletion of my account")
}

/// `POST /cancel-deletion` (the page's form).
pub async fn cancel_deletion_form(State(state): State<AppState>, PageForm(body): PageForm<TokenQuery>) -> Response {
    match privacy::deletion::cancel(&state, &body.token).await {
        Ok(()) => Html(page(
            "Deletion cancelled",
            "<p>Your account is as it was, and your API keys work again. Sign in to continue.</p>",
        ))
        .into_response(),
        Err(e) => refused("Link not valid", e),
    }
}
