//! Settings: the live sessions (when and where each was signed in, this
//! device marked), revoking one, and signing out every other one.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::Value;

use super::{problem_in, Done, Problem, Section};
use crate::accounts::sessions::{self, Session};
use crate::web::format::{plural, when};
use crate::web::forms::{csrf_field, NoFields};
use crate::web::layout::{self, Chrome};
use crate::web::session::{see_other, SignedForm};
use crate::AppState;

/// The sessions table and its forms.
pub(super) fn section(session: &Session, list: &[Value], problem: Option<&Problem>) -> Markup {
    let others = list.iter().filter(|s| s["current"] != true).count();
    html! {
        section.panel #sessions aria-labelledby="sessions-h" {
            h2 #sessions-h { "Sessions" }
            p.muted { "Where your account is signed in. We keep the address and browser of a sign-in only while its session lives." }
            (problem_in(problem, Section::Sessions))
            div.table-wrap {
                table {
                    caption.muted { (plural(list.len() as i64, "live session")) }
                    thead { tr {
                        th scope="col" { "Device" }
                        th scope="col" { "Signed in" }
                        th scope="col" { "Last seen" }
                        th scope="col" { "Sign-in address" }
                        th scope="col" { "Action" }
                    } }
                    tbody {
                        @for s in list {
                            @let id = s["id"].as_str().unwrap_or("");
                            @let current = s["current"] == true;
                            tr {
                                td {
                                    (s["user_agent"].as_str().unwrap_or("Unknown browser"))
                                    @if current { " " span.badge { "this device" } }
                                }
                                td { (when(s["created_at"].as_str().unwrap_or(""))) }
                                td { (when(s["last_seen_at"].as_str().unwrap_or(""))) }
                                td.mono { (s["ip_address"].as_str().unwrap_or("unknown")) }
                                td {
                                    @if current {
                                        span.muted { "Log out from the menu" }
                                    } @else {
                                        form.inline method="post" action=(format!("/settings/sessions/{id}/revoke")) {
                                            (csrf_field(session))
                                            button.small.secondary type="submit" { "Sign out" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if others > 0 {
                form method="post" action="/settings/sessions/revoke-others" {
                    (csrf_field(session))
                    button.secondary type="submit" { "Sign out everywhere else" }
                }
            }
        }
    }
}

/// `POST /settings/sessions/{id}/revoke`: as `DELETE /v1/sessions/{id}`.
/// Revoking this device's own session signs it out.
pub(super) async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm(session, _): SignedForm<NoFields>,
) -> Response {
    match crate::api::sessions::revoke(State(state.clone()), session.clone(), Path(id.clone())).await {
        Ok(_) if id == session.session_id => {
            let mut r = see_other("/login");
            r.headers_mut().insert(header::SET_COOKIE, sessions::clear_cookie(&state));
            r.into_response()
        }
        Ok(_) => Done::Revoked.back(),
        Err(e) => layout::error(e, Chrome::signed_in(&session)),
    }
}

/// `POST /settings/sessions/revoke-others`: every session but this one ends.
pub(super) async fn revoke_others(
    State(state): State<AppState>,
    SignedForm(session, _): SignedForm<NoFields>,
) -> Response {
    let ended = async {
        let mut conn = state.db.pool.acquire().await?;
        sessions::end_all(&mut conn, &session.user_id, Some(&session.session_id)).await
    }
    .await;
    match ended {
        Ok(_) => Done::Others.back(),
        Err(e) => layout::error(e.into(), Chrome::signed_in(&session)),
    }
}
