//! Account settings (`/settings`): profile and email address, privacy
//! choices (marketing consent, Global Privacy Control, restriction of and
//! objection to processing), password, live sessions, data export and
//! account deletion.
//!
//! Each section is its own form posting to `/settings/…`; a form that
//! worked answers `303` back to the page with a notice, one the domain
//! refuses shows the page again with its message (`422`). The rules are the
//! API's: every form calls the same API handler or domain function as its
//! `/v1/…` route, with the browser's session as the caller.
//!
//! - [`profile`]: name, email address, privacy choices, password;
//! - [`sessions`]: the live sessions, revoking one or all the others;
//! - [`data`]: exports and the danger zone (account deletion).

mod data;
mod profile;
mod sessions;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::layout::{self, Chrome};
use super::session::SignedIn;
use crate::accounts::sessions::Session;
use crate::auth::ClientMeta;
use crate::error::ApiError;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/settings", get(show))
        .route("/settings/profile", post(profile::save_name))
        .route("/settings/email", post(profile::change_email))
        .route("/settings/privacy", post(profile::save_choices))
        .route("/settings/password", post(profile::change_password))
        .route("/settings/sessions/{id}/revoke", post(sessions::revoke))
        .route("/settings/sessions/revoke-others", post(sessions::revoke_others))
        .route("/settings/export", post(data::export))
        .route("/settings/delete", post(data::delete_account))
}

/// The sections of the page, for anchors and for where a form's error shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Profile,
    Email,
    Privacy,
    Password,
    Sessions,
    Data,
    Delete,
}

impl Section {
    fn anchor(self) -> &'static str {
        match self {
            Section::Profile => "profile",
            Section::Email => "email",
            Section::Privacy => "privacy",
            Section::Password => "password",
            Section::Sessions => "sessions",
            Section::Data => "data",
            Section::Delete => "delete",
        }
    }
}

/// What a form that worked says on the page it lands on (`?done=…`): a
/// fixed message per form, never text from the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    Name,
    Email,
    Choices,
    Password,
    Revoked,
    Others,
    Export,
}

impl Done {
    const ALL: [Done; 7] =
        [Done::Name, Done::Email, Done::Choices, Done::Password, Done::Revoked, Done::Others, Done::Export];

    fn key(self) -> &'static str {
        match self {
            Done::Name => "name",
            Done::Email => "email",
            Done::Choices => "privacy",
            Done::Password => "password",
            Done::Revoked => "revoked",
            Done::Others => "others",
            Done::Export => "export",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Done::Name => "Your name is saved.",
            Done::Email => {
                "We sent a confirmation link to the new address. Your address changes once you open it; \
                 until then you sign in with the current one."
            }
            Done::Choices => "Your privacy choices are saved.",
            Done::Password => {
                "Your password is changed. Every other session was signed out, and we emailed you about it."
            }
            Done::Revoked => "That session is signed out.",
            Done::Others => "Every other session is signed out.",
            Done::Export => "Your export is being prepared. We email you when it is ready to download.",
        }
    }

    fn section(self) -> Section {
        match self {
            Done::Name => Section::Profile,
            Done::Email => Section::Email,
            Done::Choices => Section::Privacy,
            Done::Password => Section::Password,
            Done::Revoked | Done::Others => Section::Sessions,
            Done::Export => Section::Data,
        }
    }

    /// `303` back to the settings page, at the section, with the notice.
    fn back(self) -> Response {
        super::session::see_other(&format!("/settings?done={}#{}", self.key(), self.section().anchor()))
    }
}

/// A form the domain refused: its message, shown in its section.
struct Problem {
    section: Section,
    message: String,
}

#[derive(Deserialize)]
struct ShowQuery {
    done: Option<String>,
}

/// `GET /settings`: every section, each with its own form.
async fn show(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    client: ClientMeta,
    Query(q): Query<ShowQuery>,
) -> Response {
    let done = q.done.as_deref().and_then(|k| Done::ALL.into_iter().find(|d| d.key() == k));
    render(&state, &session, &client, StatusCode::OK, done.map(Done::message), None).await
}

/// What a section is drawn from.
struct Account {
    user: Value,
    sessions: Vec<Value>,
    exports: Vec<Value>,
}

async fn load(state: &AppState, session: &Session) -> Result<Account, ApiError> {
    let axum::Json(user) = crate::api::accounts::me(State(state.clone()), session.clone()).await?;
    let axum::Json(list) = crate::api::sessions::list(State(state.clone()), session.clone()).await?;
    let sessions = list["data"].as_array().cloned().unwrap_or_default();
    let exports = crate::privacy::export::list(state, &session.user_id).await?;
    Ok(Account { user, sessions, exports })
}

/// The whole page with `status`, a notice, and a refused form's message.
async fn render(
    state: &AppState,
    session: &Session,
    client: &ClientMeta,
    status: StatusCode,
    notice: Option<&str>,
    problem: Option<Problem>,
) -> Response {
    let account = match load(state, session).await {
        Ok(a) => a,
        Err(e) => return layout::error(e, Chrome::signed_in(session)),
    };
    let problem = problem.as_ref();
    let body = html! {
        nav.row aria-label="Sections" {
            a href="#profile" { "Profile" }
            a href="#privacy" { "Privacy" }
            a href="#password" { "Password" }
            a href="#sessions" { "Sessions" }
            a href="#data" { "Your data" }
            a href="#delete" { "Delete account" }
        }
        (profile::sections(state, session, client, &account.user, problem))
        (sessions::section(session, &account.sessions, problem))
        (data::sections(state, session, &account.exports, problem))
    };
    layout::respond(status, "Settings", Chrome::signed_in(session).notice(notice), body)
}

/// A refused form: a validation message is shown in its section (`422`,
/// the rest of the page as it is); any other error gets its own page.
async fn refused(state: &AppState, session: &Session, client: &ClientMeta, section: Section, e: ApiError) -> Response {
    match e {
        ApiError::Validation { message, .. } => {
            let problem = Problem { section, message };
            render(state, session, client, StatusCode::UNPROCESSABLE_ENTITY, None, Some(problem)).await
        }
        e => layout::error(e, Chrome::signed_in(session)),
    }
}

/// The refused form's message, if it belongs to `section`.
fn problem_in(problem: Option<&Problem>, section: Section) -> Markup {
    html! {
        @if let Some(p) = problem.filter(|p| p.section == section) {
            p.error role="alert" { (p.message) }
        }
    }
}
