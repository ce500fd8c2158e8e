//! A team's people: `GET /dashboard/team?team=…` (members and their roles,
//! pending invitations, the invite form, leaving, creating a team) and
//! accepting an invitation (`GET /accept-invite?token=…`, where the mail
//! links, then `POST /dashboard/invitations/accept`). Every change goes
//! through the teams API's handlers, so roles are checked by the domain
//! (owner > admin > member) and its refusals are shown on the page.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{fixable, notice, TeamChoice};
use crate::accounts::sessions::Session;
use crate::api;
use crate::error::{ApiError, ApiResult};
use crate::teams::Role;
use crate::web::format::when;
use crate::web::forms::{api_body, csrf_field, enc, json_of, TokenQuery};
use crate::web::layout::{self, Chrome};
use crate::web::session::{local_path, see_other, SignedForm, SignedIn, Visitor};
use crate::AppState;

const ROLES: [Role; 3] = [Role::Member, Role::Admin, Role::Owner];

/// A refused form, shown again on the page with the domain's message.
struct Refusal {
    error: ApiError,
    /// The address the invite form was sent with.
    email: String,
}

/// `GET /dashboard/team?team=…`
pub async fn team_page(
    State(state): State<AppState>,
    SignedIn(s): SignedIn,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match TeamChoice::of(&state, &s, q.get("team")).await {
        Ok(choice) => team_view(&state, &s, &choice, notice(&q).as_deref(), None).await,
        Err(e) => layout::error(e, Chrome::signed_in(&s)),
    }
}

async fn team_view(
    state: &AppState,
    s: &Session,
    choice: &TeamChoice,
    notice: Option<&str>,
    refusal: Option<Refusal>,
) -> Response {
    match team_body(state, s, choice, refusal.as_ref()).await {
        Ok(body) => {
            let status = refusal.map_or(StatusCode::OK, |r| r.error.status());
            layout::respond(status, "Team", Chrome::signed_in(s).notice(notice), body)
        }
        Err(e) => layout::error(e, Chrome::signed_in(s)),
    }
}

async fn team_body(state: &AppState, s: &Session, choice: &TeamChoice, refusal: Option<&Refusal>) -> ApiResult<Markup> {
    let Json(members) = api::teams::members(State(state.clone()), s.clone(), Path(choice.id.clone())).await?;
    let invitations = if choice.role >= Role::Admin && !choice.personal {
        let Json(list) = api::teams::invitations(State(state.clone()), s.clone(), Path(choice.id.clone())).await?;
        Some(list)
    } else {
        None
    };
    let empty = Vec::new();
    let members = members["data"].as_array().unwrap_or(&empty);
    let manage = choice.role >= Role::Admin && !choice.personal;
    Ok(html! {
        (choice.switcher("/dashboard/team"))
        @if let Some(r) = refusal { p.error role="alert" { (r.error.to_string()) } }
        p {
            "You are " strong { (choice.role.as_str()) } " of " strong { (choice.name) } "."
            @if choice.personal { " This is your personal team: your own images and keys, for you alone. To work with other people, create a team below." }
        }
        h2 #members-h { "Members" }
        div.table-wrap {
            table aria-labelledby="members-h" {
                thead { tr { th { "Name" } th { "Email" } th { "Role" } @if manage { th { "Remove" } } } }
                tbody { @for m in members { (member_row(s, choice, m, manage)) } }
            }
        }
        @if let Some(list) = &invitations {
            h2 #invitations-h { "Invitations" }
            @match list["data"].as_array().filter(|l| !l.is_empty()) {
                None => { p.muted { "No pending invitations." } }
                Some(pending) => {
                    div.table-wrap {
                        table aria-labelledby="invitations-h" {
                            thead { tr { th { "Email" } th { "Role" } th { "Expires" } th { "Revoke" } } }
                            tbody { @for i in pending { (invitation_row(s, choice, i)) } }
                        }
                    }
                }
            }
        }
        @if !choice.personal {
            @if manage {
                (invite_form(s, choice, refusal.map_or("", |r| r.email.as_str())))
            } @else {
                p.muted { "Admins and owners of this team invite people." }
            }
        }
        @if choice.role == Role::Owner {
            p { a href=(choice.link("/dashboard/requests", "")) { "API requests made with this team's keys" } }
        }
        h2 #create-h { "Create a team" }
        form method="post" action="/dashboard/team/create" aria-labelledby="create-h" {
            (csrf_field(s))
            (choice.field())
            label { "Team name" input type="text" name="name" required maxlength="100"; }
            button type="submit" { "Create team" }
        }
        @if !choice.personal {
            section.panel.danger-zone aria-labelledby="leave-h" {
                h2 #leave-h { "Leave " (choice.name) }
                p { "You lose access to its images and keys; the keys you created for it stop working." }
                form method="post" action="/dashboard/team/leave" {
                    (csrf_field(s))
                    (choice.field())
                    button.danger type="submit" data-confirm=(format!("Leave {}?", choice.name)) { "Leave team" }
                }
            }
        }
    })
}

fn role_options(up_to: Role, selected: &str) -> Markup {
    html! {
        @for r in ROLES.into_iter().filter(|r| *r <= up_to) {
            option value=(r.as_str()) selected[r.as_str() == selected] { (r.as_str()) }
        }
    }
}

fn member_row(s: &Session, choice: &TeamChoice, m: &Value, manage: bool) -> Markup {
    let user_id = m["user_id"].as_str().unwrap_or_default();
    let name = m["name"].as_str().unwrap_or_default();
    let role = m["role"].as_str().unwrap_or_default();
    let theirs: Role = role.parse().unwrap_or(Role::Member);
    // Only roles up to one's own can be changed or granted (the domain says so too).
    let can_change = manage && theirs <= choice.role;
    html! {
        tr {
            td { (name) @if user_id == s.user_id { " (you)" } }
            td { (m["email"].as_str().unwrap_or_default()) }
            td {
                @if can_change {
                    form.row method="post" action=(format!("/dashboard/team/members/{}/role", enc(user_id))) {
                        (csrf_field(s))
                        (choice.field())
                        select name="role" aria-label=(format!("Role of {name}")) { (role_options(choice.role, role)) }
                        button.small.secondary type="submit" { "Change" }
                    }
                } @else {
                    (role)
                }
            }
            @if manage {
                td {
                    @if can_change && user_id != s.user_id {
                        form.inline method="post" action=(format!("/dashboard/team/members/{}/remove", enc(user_id))) {
                            (csrf_field(s))
                            (choice.field())
                            button.danger.small type="submit" aria-label=(format!("Remove {name}"))
                                data-confirm=(format!("Remove {name} from {}?", choice.name)) { "Remove" }
                        }
                    }
                }
            }
        }
    }
}

fn invitation_row(s: &Session, choice: &TeamChoice, i: &Value) -> Markup {
    let id = i["id"].as_str().unwrap_or_default();
    let email = i["email"].as_str().unwrap_or_default();
    html! {
        tr {
            td { (email) }
            td { (i["role"].as_str().unwrap_or_default()) }
            td { (when(i["expires_at"].as_str().unwrap_or_default())) }
            td {
                form.inline method="post" action=(format!("/dashboard/team/invitations/{}/revoke", enc(id))) {
                    (csrf_field(s))
                    (choice.field())
                    button.danger.small type="submit" aria-label=(format!("Revoke the invitation of {email}")) { "Revoke" }
                }
            }
        }
    }
}

fn invite_form(s: &Session, choice: &TeamChoice, email: &str) -> Markup {
    html! {
        h2 #invite-h { "Invite someone" }
        form method="post" action="/dashboard/team/invite" aria-labelledby="invite-h" {
            (csrf_field(s))
            (choice.field())
            label { "Email address" input type="email" name="email" value=(email) required autocomplete="off"; }
            label { "Role" select name="role" { (role_options(choice.role, "member")) } }
            p.hint { "We email them a link; it works for that address only and expires." }
            button type="submit" { "Send invitation" }
        }
    }
}

/// The fields of every team form (each uses some).
#[derive(Deserialize)]
pub struct TeamForm {
    #[serde(default)]
    team: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    token: String,
}

/// What every team form does: check the token, find the team (one of the
/// user's), run `action`, then `303` to the team page with `done`, or show
/// the page again with the domain's refusal.
async fn act<F, Fut>(state: AppState, s: Session, f: TeamForm, done: &str, action: F) -> Response
where
    F: FnOnce(AppState, Session, String, TeamForm) -> Fut,
    Fut: std::future::Future<Output = ApiResult<Option<String>>>,
{
    let choice = match TeamChoice::of(&state, &s, Some(&f.team)).await {
        Ok(c) => c,
        Err(e) => return layout::error(e, Chrome::signed_in(&s)),
    };
    let email = f.email.clone();
    match action(state.clone(), s.clone(), choice.id.clone(), f).await {
        // The team to show next: the one acted on, or another one.
        Ok(next) => {
            let team = next.unwrap_or_else(|| choice.id.clone());
            see_other(&format!("/dashboard/team?team={}&done={done}", enc(&team)))
        }
        Err(error) if fixable(&error) => team_view(&state, &s, &choice, None, Some(Refusal { error, email })).await,
        Err(e) => layout::error(e, Chrome::signed_in(&s)),
    }
}

/// `POST /dashboard/team/create` (`name`) → `POST /v1/teams`.
pub async fn create(State(state): State<AppState>, SignedForm(s, f): SignedForm<TeamForm>) -> Response {
    act(state, s, f, "team-created", |state, s, _, f| async move {
        let answer = api::teams::create(State(state), s, api_body(json!({ "name": f.name }))?).await?;
        Ok(json_of(answer).await?["id"].as_str().map(str::to_string))
    })
    .await
}

/// `POST /dashboard/team/invite` (`email`, `role`) →
/// `POST /v1/teams/{team}/invitations` (mails the link).
pub async fn invite(State(state): State<AppState>, SignedForm(s, f): SignedForm<TeamForm>) -> Response {
    act(state, s, f, "invited", |state, s, team, f| async move {
        let body = api_body(json!({ "email": f.email, "role": f.role }))?;
        api::teams::invite(State(state), s, Path(team), body).await?;
        Ok(None)
    })
    .await
}

/// `POST /dashboard/team/invitations/{invitation_id}/revoke` →
/// `DELETE /v1/teams/{team}/invitations/{invitation_id}`.
pub async fn revoke_invitation(
    State(state): State<AppState>,
    Path(invitation_id): Path<String>,
    SignedForm(s, f): SignedForm<TeamForm>,
) -> Response {
    act(state, s, f, "invitation-revoked", |state, s, team, _| async move {
        api::teams::revoke_invitation(State(state), s, Path((team, invitation_id))).await?;
        Ok(None)
    })
    .await
}

/// `POST /dashboard/team/members/{user_id}/role` (`role`) →
/// `PATCH /v1/teams/{team}/members/{user_id}`.
pub async fn change_role(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    SignedForm(s, f): SignedForm<TeamForm>,
) -> Response {
    act(state, s, f, "role-changed", |state, s, team, f| async move {
        let body = api_body(json!({ "role": f.role }))?;
        let Json(_changed) = api::teams::change_role(State(state), s, Path((team, user_id)), body).await?;
        Ok(None)
    })
    .await
}

/// `POST /dashboard/team/members/{user_id}/remove` →
/// `DELETE /v1/teams/{team}/members/{user_id}`.
pub async fn remove_member(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    SignedForm(s, f): SignedForm<TeamForm>,
) -> Response {
    act(state, s, f, "member-removed", |state, s, team, _| async move {
        api::teams::remove_member(State(state), s, Path((team, user_id))).await?;
        Ok(None)
    })
    .await
}

/// `POST /dashboard/team/leave` → `POST /v1/teams/{team}/leave`; then the
/// personal team's page.
pub async fn leave(State(state): State<AppState>, SignedForm(s, f): SignedForm<TeamForm>) -> Response {
    act(state, s, f, "left", |state, s, team, _| async move {
        let personal = crate::accounts::personal_team(&state.db, &s.user_id).await?;
        api::teams::leave(State(state), s, Path(team)).await?;
        Ok(Some(personal))
    })
    .await
}

/// `GET /accept-invite?token=…`, where an invitation mail links. Signed
/// in: a button that accepts it (a GET never uses the token: mail scanners
/// open links). Otherwise: sign in (or sign up) with the invited address
/// first, then come back here.
pub async fn accept_invite_page(Visitor(visitor): Visitor, Query(q): Query<TokenQuery>) -> Response {
    let title = "Team invitation";
    match &visitor {
        Some(s) => layout::ok(
            title,
            Chrome::signed_in(s),
            html! {
                p { "You are invited to join a team on imgcdn." }
                p { "You are signed in as " strong { (s.email) } ". The invitation works only for the address it was sent to." }
                form method="post" action="/dashboard/invitations/accept" {
                    (csrf_field(s))
                    input type="hidden" name="token" value=(q.token);
                    button type="submit" { "Accept the invitation" }
                }
            },
        ),
        None => {
            let back = format!("/accept-invite?token={}", enc(&q.token));
            let login = match local_path(&back) {
                Some(next) => format!("/login?next={}", enc(next)),
                None => "/login".to_string(),
            };
            layout::ok(
                title,
                Chrome::default(),
                html! {
                    p { "You are invited to join a team on imgcdn. To accept, sign in with the email address the invitation was sent to." }
                    p.row {
                        a.button href=(login) { "Sign in to accept" }
                        a.button.secondary href="/signup" { "Create an account" }
                    }
                    p.hint { "New here? Sign up with the invited address and confirm it, then open the link in the invitation mail again." }
                },
            )
        }
    }
}

/// `POST /dashboard/invitations/accept` (`token`) →
/// `POST /v1/invitations/accept`; then the team's page.
pub async fn accept(State(state): State<AppState>, SignedForm(s, f): SignedForm<TeamForm>) -> Response {
    let result = match api_body(json!({ "token": f.token })) {
        Ok(body) => api::teams::accept(State(state.clone()), s.clone(), body).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(Json(team)) => {
            let id = team["id"].as_str().unwrap_or_default();
            see_other(&format!("/dashboard/team?team={}&done=joined", enc(id)))
        }
        Err(e) => layout::error(e, Chrome::signed_in(&s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_roles_up_to_ones_own_are_offered() {
        let html = role_options(Role::Admin, "admin").into_string();
        assert!(html.contains("value=\"member\"") && html.contains("value=\"admin\" selected"));
        assert!(!html.contains("owner"), "{html}");
    }
}
