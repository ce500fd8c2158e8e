//! Settings: "Your data" (exports, with their download links) and the
//! danger zone (deleting the account, reversible for the grace period).

use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::{problem_in, refused, Done, Problem, Section};
use crate::accounts::sessions::{self, Session};
use crate::auth::ClientMeta;
use crate::web::format::{bytes, when, when_unix};
use crate::web::forms::{csrf_field, NoFields};
use crate::web::layout::{self, Chrome};
use crate::web::session::SignedForm;
use crate::AppState;

fn state_label(state: &str) -> &str {
    match state {
        "queued" | "building" => "Being prepared",
        "ready" => "Ready",
        "failed" => "Failed",
        "expired" => "Expired",
        other => other,
    }
}

/// The "Your data" and danger-zone sections.
pub(super) fn sections(state: &AppState, session: &Session, exports: &[Value], problem: Option<&Problem>) -> Markup {
    let grace = state.cfg.privacy.deletion_grace_days;
    let ttl = state.cfg.privacy.export_ttl_days;
    html! {
        section.panel #data aria-labelledby="data-h" {
            h2 #data-h { "Your data" }
            p {
                "An export is an archive (tar) of everything we hold about you: your account, consent records, "
                "sessions, API keys (never their secrets), teams, every image you uploaded with its original file, "
                "what our moderation recorded about your images, and your API request log. We email you when it "
                "is ready; it can be downloaded for " (ttl) " days."
            }
            (problem_in(problem, Section::Data))
            form method="post" action="/settings/export" {
                (csrf_field(session))
                button type="submit" { "Export my data" }
            }
            @if !exports.is_empty() {
                div.table-wrap {
                    table {
                        caption.muted { "Your exports" }
                        thead { tr {
                            th scope="col" { "Requested" }
                            th scope="col" { "State" }
                            th scope="col" { "Size" }
                            th scope="col" { "Download until" }
                            th scope="col" { "Archive" }
                        } }
                        tbody {
                            @for e in exports {
                                @let id = e["id"].as_str().unwrap_or("");
                                tr {
                                    td { (when(e["created_at"].as_str().unwrap_or(""))) }
                                    td { (state_label(e["state"].as_str().unwrap_or(""))) }
                                    td { @if let Some(n) = e["bytes"].as_u64() { (bytes(n)) } @else { "—" } }
                                    td {
                                        @if let Some(at) = e["expires_at"].as_str() { (when(at)) } @else { "—" }
                                    }
                                    td {
                                        @if e["download_url"].is_string() {
                                            a href=(format!("/v1/me/exports/{id}/download")) download {
                                                "Download " span.mono { (id) ".tar" }
                                            }
                                        } @else { "—" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.panel.danger-zone #delete aria-labelledby="delete-h" {
            h2 #delete-h { "Danger zone: delete your account" }
            p { "When you ask:" }
            ul {
                li { "every session is signed out, this one too, and nobody can sign in to the account;" }
                li { "your API keys, and the keys of your personal team, stop working;" }
                li { "we email " strong { (session.email) } " a link that cancels the deletion." }
            }
            p { "If you do not cancel within " strong { (grace) " days" } ", the next sweep erases the account:" }
            ul {
                li { "your personal team and its images go: they leave every edge at once, and their files are deleted from our recovery store when its window ends;" }
                li { "a team you alone own passes to its longest-standing admin, or, without one, is dissolved and its members are told;" }
                li { "your profile, sessions, memberships, consent records, email links and exports are deleted;" }
                li { "abuse reports and copyright notices about your images stay, as the law requires, with your name and address removed from them." }
            }
            (problem_in(problem, Section::Delete))
            form method="post" action="/settings/delete" {
                (csrf_field(session))
                label for="delete-password" { "Your password" }
                input #delete-password type="password" name="password" autocomplete="current-password"
                    aria-describedby="delete-hint";
                p.hint #delete-hint { "Not needed if you signed in during the last 10 minutes." }
                button.danger type="submit"
                    data-confirm=(format!("Delete your account? You can cancel from the email we send for {grace} days."))
                    { "Delete my account" }
            }
        }
    }
}

/// `POST /settings/export`: as `POST /v1/me/export` (one at a time).
pub(super) async fn export(
    State(state): State<AppState>,
    client: ClientMeta,
    SignedForm(session, _): SignedForm<NoFields>,
) -> Response {
    match crate::privacy::export::request(&state, &session.user_id).await {
        Ok(_) => Done::Export.back(),
        Err(e) => refused(&state, &session, &client, Section::Data, e).await,
    }
}

#[derive(Deserialize)]
pub(super) struct DeleteForm {
    #[serde(default)]
    password: String,
}

/// `POST /settings/delete`: as `POST /v1/me/deletion`. The session is gone
/// after it, so the answer is a page of its own (and the cookie is cleared):
/// when the account will be erased, and how to keep it.
pub(super) async fn delete_account(
    State(state): State<AppState>,
    client: ClientMeta,
    SignedForm(session, f): SignedForm<DeleteForm>,
) -> Response {
    let password = Some(f.password).filter(|p| !p.is_empty());
    let due = match crate::privacy::deletion::request(&state, &session, password).await {
        Ok(due) => due,
        Err(e) => return refused(&state, &session, &client, Section::Delete, e).await,
    };
    let body = html! {
        p {
            "Your account is scheduled for deletion on "
            strong { (when_unix(due)) } "."
        }
        p { "Every session was signed out, and your API keys no longer work." }
        h2 { "Changed your mind?" }
        p {
            "We emailed " strong { (session.email) } " a link to keep your account. Open it before that date and "
            "confirm on the page it leads to (" span.mono { "/cancel-deletion" } "): your account, keys and images "
            "come back as they were."
        }
        p.muted { "Without it, the account and its data are erased after that date, as described in " a href="/privacy" { "our privacy notice" } "." }
    };
    let mut response = layout::ok("Your account will be deleted", Chrome::default(), body);
    response.headers_mut().insert(header::SET_COOKIE, sessions::clear_cookie(&state));
    response
}
