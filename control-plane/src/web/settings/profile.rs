//! Settings: the name, the email address, privacy choices (marketing
//! consent under Global Privacy Control, restriction and objection) and the
//! password.

use axum::extract::State;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{problem_in, refused, Done, Problem, Section};
use crate::accounts::sessions::Session;
use crate::auth::ClientMeta;
use crate::error::ApiError;
use crate::web::format::when;
use crate::web::forms::{api_body, csrf_field};
use crate::web::session::SignedForm;
use crate::AppState;

/// The profile, email, privacy and password sections.
pub(super) fn sections(
    state: &AppState,
    session: &Session,
    client: &ClientMeta,
    user: &Value,
    problem: Option<&Problem>,
) -> Markup {
    let text = |k: &str| user[k].as_str().unwrap_or("").to_string();
    let marketing = user["marketing_emails"].as_bool().unwrap_or(false);
    let restricted = user["processing_restricted_at"].as_str();
    let objected = user["objected_at"].as_str();
    let min = state.cfg.passwords.min_length;
    html! {
        section.panel #profile aria-labelledby="profile-h" {
            h2 #profile-h { "Profile" }
            (problem_in(problem, Section::Profile))
            form method="post" action="/settings/profile" {
                (csrf_field(session))
                label for="name" { "Name" }
                input #name type="text" name="name" value=(text("name")) maxlength=(crate::accounts::MAX_NAME)
                    autocomplete="name" required;
                p.hint { "Shown to the people in your teams." }
                button type="submit" { "Save name" }
            }
        }
        section.panel #email aria-labelledby="email-h" {
            h2 #email-h { "Email address" }
            p { "You sign in with " strong { (text("email")) } "." }
            @if let Some(pending) = user["pending_email"].as_str() {
                p.muted { "Waiting for confirmation: " strong { (pending) } ". Open the link we sent there to use it." }
            }
            (problem_in(problem, Section::Email))
            form method="post" action="/settings/email" {
                (csrf_field(session))
                label for="new-email" { "New email address" }
                input #new-email type="email" name="email" autocomplete="email" required;
                label for="email-password" { "Your password" }
                input #email-password type="password" name="password" autocomplete="current-password" required;
                p.hint { "We send a link to the new address; the change takes effect when it is opened. We also tell the current address." }
                button type="submit" { "Change email address" }
            }
        }
        section.panel #privacy aria-labelledby="privacy-h" {
            h2 #privacy-h { "Privacy choices" }
            @if client.gpc {
                p.notice role="note" {
                    "Your browser sends Global Privacy Control: we treat it as an opt-out of marketing email. "
                    "While it is on we record no marketing consent, whatever the box below says, and saving your "
                    "name or these choices records the signal and withdraws a consent you gave before."
                }
            }
            (problem_in(problem, Section::Privacy))
            form method="post" action="/settings/privacy" {
                (csrf_field(session))
                fieldset {
                    legend { "Email" }
                    label.check {
                        input type="checkbox" name="marketing_emails" value="on" checked[marketing];
                        span { "Send me news about imgcdn by email. You can stop them here at any time." }
                    }
                }
                fieldset {
                    legend { "Processing" }
                    label.check {
                        input type="checkbox" name="restrict_processing" value="on" checked[restricted.is_some()];
                        span {
                            "Restrict processing of my data while a question about it is resolved: nothing optional "
                            "is done with it (no marketing email)."
                            @if let Some(at) = restricted { " Set since " (when(at)) "." }
                        }
                    }
                    label.check {
                        input type="checkbox" name="object_to_processing" value="on" checked[objected.is_some()];
                        span {
                            "I object to processing based on legitimate interests (no marketing email). We do no "
                            "analytics or profiling of accounts."
                            @if let Some(at) = objected { " Set since " (when(at)) "." }
                        }
                    }
                }
                button type="submit" { "Save choices" }
            }
        }
        section.panel #password aria-labelledby="password-h" {
            h2 #password-h { "Password" }
            (problem_in(problem, Section::Password))
            form method="post" action="/settings/password" {
                (csrf_field(session))
                label for="current-password" { "Current password" }
                input #current-password type="password" name="current_password" autocomplete="current-password" required;
                label for="new-password" { "New password" }
                input #new-password type="password" name="new_password" autocomplete="new-password"
                    minlength=(min) aria-describedby="password-rules" required;
                p.hint #password-rules {
                    (crate::web::account::password_rules(state)) " Changing it signs out every other session."
                }
                label for="confirm-password" { "New password again" }
                input #confirm-password type="password" name="confirm_password" autocomplete="new-password" required;
                button type="submit" { "Change password" }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct NameForm {
    #[serde(default)]
    name: String,
}

/// `POST /settings/profile`: the name, as `PATCH /v1/me {name}`.
pub(super) async fn save_name(
    State(state): State<AppState>,
    client: ClientMeta,
    SignedForm(session, f): SignedForm<NameForm>,
) -> Response {
    let patch = api_body(json!({ "name": f.name }));
    let result = match patch {
        Ok(body) => crate::api::accounts::update_me(State(state.clone()), session.clone(), client.clone(), body).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Done::Name.back(),
        Err(e) => refused(&state, &session, &client, Section::Profile, e).await,
    }
}

#[derive(Deserialize)]
pub(super) struct EmailForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

/// `POST /settings/email`: ask for a new address, as `POST /v1/me/email`.
pub(super) async fn change_email(
    State(state): State<AppState>,
    client: ClientMeta,
    SignedForm(session, f): SignedForm<EmailForm>,
) -> Response {
    match crate::privacy::rectify::request_email_change(&state, &session, &f.email, f.password).await {
        Ok(()) => Done::Email.back(),
        Err(e) => refused(&state, &session, &client, Section::Email, e).await,
    }
}

#[derive(Deserialize)]
pub(super) struct ChoicesForm {
    /// Checkboxes: sent (`on`) when ticked, absent otherwise.
    marketing_emails: Option<String>,
    restrict_processing: Option<String>,
    object_to_processing: Option<String>,
}

/// `POST /settings/privacy`: marketing consent, restriction and objection,
/// as `PATCH /v1/me`. Marketing consent is sent only when it changed, so
/// saving the form as it was appends no consent record (unless the browser
/// sends GPC: the domain records that signal on every settings change).
pub(super) async fn save_choices(
    State(state): State<AppState>,
    client: ClientMeta,
    SignedForm(session, f): SignedForm<ChoicesForm>,
) -> Response {
    let result = async {
        let axum::Json(me) = crate::api::accounts::me(State(state.clone()), session.clone()).await?;
        let marketing = f.marketing_emails.is_some();
        let mut patch = json!({
            "restrict_processing": f.restrict_processing.is_some(),
            "object_to_processing": f.object_to_processing.is_some(),
        });
        if me["marketing_emails"].as_bool() != Some(marketing) {
            patch["marketing_emails"] = json!(marketing);
        }
        crate::api::accounts::update_me(State(state.clone()), session.clone(), client.clone(), api_body(patch)?).await
    }
    .await;
    match result {
        Ok(_) => Done::Choices.back(),
        Err(e) => refused(&state, &session, &client, Section::Privacy, e).await,
    }
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

/// `POST /settings/password`: as `POST /v1/auth/password` (other sessions
/// end, an alert is mailed), after the confirmation matched.
pub(super) async fn change_password(
    State(state): State<AppState>,
    client: ClientMeta,
    SignedForm(session, f): SignedForm<PasswordForm>,
) -> Response {
    if f.new_password != f.confirm_password {
        let e = ApiError::validation("confirm_password", "The new password and its confirmation are not the same.");
        return refused(&state, &session, &client, Section::Password, e).await;
    }
    match crate::accounts::change_password(&state, &session, f.current_password, f.new_password).await {
        Ok(()) => Done::Password.back(),
        Err(e) => refused(&state, &session, &client, Section::Password, e).await,
    }
}
