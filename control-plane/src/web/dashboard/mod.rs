//! The signed-in dashboard: the user's images ([`images`]: usage, upload,
//! the grid, one image's page, edits and deletes), a team's API keys
//! ([`keys`]), its members and invitations ([`team`], with the page an
//! invitation mail links to) and its API request log ([`requests`]).
//!
//! Every page acts as the browser's session through the API's handlers
//! (`Principal::Session` or the session itself), so a page can do exactly
//! what the API lets the same user do, with the same messages. Every form
//! that changes something carries the session's CSRF token and is answered
//! with a `303` back to a page that says what happened (`?done=…`).

pub mod images;
pub mod keys;
pub mod requests;
pub mod team;

use std::collections::HashMap;

use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde_json::Value;

use super::format::plural;
use super::forms::enc;
use crate::accounts::sessions::Session;
use crate::error::{ApiError, ApiResult};
use crate::teams::Role;
use crate::AppState;

pub use team::accept_invite_page;

/// The dashboard's pages and forms.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(images::dashboard))
        .route("/dashboard/images/delete", post(images::delete_selected))
        .route("/dashboard/images/{id}", get(images::image_page).post(images::save))
        .route("/dashboard/images/{id}/delete", post(images::delete))
        .route("/dashboard/keys", get(keys::keys_page).post(keys::create))
        .route("/dashboard/keys/{key_id}/revoke", post(keys::revoke))
        .route("/dashboard/team", get(team::team_page))
        .route("/dashboard/team/create", post(team::create))
        .route("/dashboard/team/invite", post(team::invite))
        .route("/dashboard/team/invitations/{invitation_id}/revoke", post(team::revoke_invitation))
        .route("/dashboard/team/members/{user_id}/role", post(team::change_role))
        .route("/dashboard/team/members/{user_id}/remove", post(team::remove_member))
        .route("/dashboard/team/leave", post(team::leave))
        .route("/dashboard/invitations/accept", post(team::accept))
        .route("/dashboard/requests", get(requests::requests_page))
}

/// The team a page is about: `?team=` if the user is a member of it (404
/// otherwise, as the API answers), else their personal team; with every
/// team of theirs for the switcher.
pub struct TeamChoice {
    pub teams: Vec<Value>,
    pub id: String,
    pub name: String,
    pub personal: bool,
    /// The user's role in it (what the page offers; the domain decides).
    pub role: Role,
}

impl TeamChoice {
    pub async fn of(state: &AppState, session: &Session, requested: Option<&String>) -> ApiResult<TeamChoice> {
        let teams = crate::teams::list(&state.db, &session.user_id).await?;
        let id = match requested.map(|t| t.trim()).filter(|t| !t.is_empty()) {
            Some(t) => t.to_string(),
            None => crate::accounts::personal_team(&state.db, &session.user_id).await?,
        };
        let current = teams.iter().find(|t| t["id"].as_str() == Some(id.as_str())).ok_or(ApiError::NotFound)?;
        let role: Role = current["role"].as_str().unwrap_or_default().parse()?;
        let name = current["name"].as_str().unwrap_or_default().to_string();
        let personal = current["personal"].as_bool().unwrap_or(false);
        Ok(TeamChoice { id, name, personal, role, teams })
    }

    /// `path?team=…` for this team (plus `extra`, already encoded).
    pub fn link(&self, path: &str, extra: &str) -> String {
        let sep = if extra.is_empty() { "" } else { "&" };
        format!("{path}?team={}{sep}{extra}", enc(&self.id))
    }

    /// A GET form choosing the team `action` shows (nothing to choose from
    /// with one team).
    pub fn switcher(&self, action: &str) -> Markup {
        html! {
            @if self.teams.len() > 1 {
                form.row method="get" action=(action) {
                    label for="team-switch" { "Team" }
                    select #team-switch name="team" {
                        @for t in &self.teams {
                            @let id = t["id"].as_str().unwrap_or_default();
                            option value=(id) selected[id == self.id] { (team_label(t)) }
                        }
                    }
                    button.secondary.small type="submit" { "Show" }
                }
            } @else {
                p.muted { "Team: " (self.name) @if self.personal { " (personal)" } }
            }
        }
    }

    /// The hidden field that says which team a form acts for.
    pub fn field(&self) -> Markup {
        html! { input type="hidden" name="team" value=(self.id); }
    }
}

fn team_label(t: &Value) -> String {
    let name = t["name"].as_str().unwrap_or_default();
    let role = t["role"].as_str().unwrap_or_default();
    if t["personal"].as_bool().unwrap_or(false) {
        format!("{name} (personal)")
    } else {
        format!("{name} ({role})")
    }
}

/// The first value of `name` in a form sent as pairs (forms with repeated
/// fields, such as checkboxes, are read as pairs).
pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

/// Every value of `name` in a form sent as pairs.
pub fn fields<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
}

/// The line at the top of a page after a form did something: only our
/// own fixed texts (a link cannot make the page say anything else).
pub fn notice(q: &HashMap<String, String>) -> Option<String> {
    let count = |k: &str| q.get(k).and_then(|n| n.parse::<u32>().ok());
    if let Some(n) = count("uploaded") {
        return Some(format!("{} uploaded.", plural(n.into(), "image")));
    }
    if let Some(n) = count("deleted") {
        return Some(format!("{} deleted.", plural(n.into(), "image")));
    }
    let text = match q.get("done")?.as_str() {
        "saved" => "Saved.",
        "deleted" => "The image is deleted.",
        "none-selected" => "Nothing was deleted: select images first.",
        "key-revoked" => "The key is revoked: it stops working at once.",
        "team-created" => "Your team is created. Invite people below.",
        "invited" => "The invitation is sent.",
        "invitation-revoked" => "The invitation is revoked.",
        "role-changed" => "The role is changed.",
        "member-removed" => "The member is removed.",
        "left" => "You left the team.",
        "joined" => "You joined the team.",
        _ => return None,
    };
    Some(text.to_string())
}

/// Whether a failed form is shown again with the message (the person can
/// fix it) rather than as an error page.
pub fn fixable(e: &ApiError) -> bool {
    matches!(e, ApiError::Validation { .. } | ApiError::Conflict(_) | ApiError::Forbidden(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_only_our_own_texts() {
        let q = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(notice(&q("uploaded", "2")).as_deref(), Some("2 images uploaded."));
        assert_eq!(notice(&q("done", "saved")).as_deref(), Some("Saved."));
        assert_eq!(notice(&q("done", "<script>")), None);
        assert_eq!(notice(&q("uploaded", "lots")), None);
    }
}
