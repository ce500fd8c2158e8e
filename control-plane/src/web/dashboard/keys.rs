//! A team's API keys: `GET /dashboard/keys?team=…` lists them (never a
//! secret), creates one (its secret shown on the answer page, once, with a
//! curl command for this deployment) and revokes them, through the keys
//! API's handlers (any member lists; admins and owners create and revoke).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{field, fields, fixable, notice, TeamChoice};
use crate::accounts::sessions::Session;
use crate::api;
use crate::error::{ApiError, ApiResult};
use crate::teams::Role;
use crate::web::format::when;
use crate::web::forms::{api_body, copy_row, csrf_field, enc, json_of};
use crate::web::layout::{self, Chrome};
use crate::web::session::{see_other, SignedForm, SignedIn};
use crate::AppState;

/// What the page answers besides the list.
enum Answer {
    Nothing,
    /// A key was just created: the key object with its secret.
    Created(Value),
    /// The create form was refused: the message, and the name sent.
    Refused(ApiError, String),
}

/// `GET /dashboard/keys?team=…`
pub async fn keys_page(
    State(state): State<AppState>,
    SignedIn(s): SignedIn,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let choice = match TeamChoice::of(&state, &s, q.get("team")).await {
        Ok(c) => c,
        Err(e) => return layout::error(e, Chrome::signed_in(&s)),
    };
    keys_view(&state, &s, &choice, notice(&q).as_deref(), Answer::Nothing).await
}

async fn keys_view(
    state: &AppState,
    s: &Session,
    choice: &TeamChoice,
    notice: Option<&str>,
    answer: Answer,
) -> Response {
    let list = match api::keys::list(State(state.clone()), s.clone(), Path(choice.id.clone())).await {
        Ok(Json(list)) => list,
        Err(e) => return layout::error(e, Chrome::signed_in(s)),
    };
    let status = match &answer {
        Answer::Nothing => StatusCode::OK,
        Answer::Created(_) => StatusCode::CREATED,
        Answer::Refused(e, _) => e.status(),
    };
    let empty = Vec::new();
    let keys = list["data"].as_array().unwrap_or(&empty);
    let body = html! {
        (choice.switcher("/dashboard/keys"))
        @match &answer {
            Answer::Created(key) => { (new_key(state, key)) }
            Answer::Refused(e, _) => { p.error role="alert" { (e.to_string()) } }
            Answer::Nothing => {}
        }
        h2 #keys-h { "Keys of " (choice.name) }
        @if keys.is_empty() {
            p.muted { "This team has no API keys yet." }
        } @else {
            div.table-wrap {
                table aria-labelledby="keys-h" {
                    thead { tr { th { "Name" } th { "Key" } th { "Abilities" } th { "Created" } th { "Last used" } th { "Revoke" } } }
                    tbody { @for key in keys { (key_row(s, choice, key)) } }
                }
            }
        }
        @if choice.role >= Role::Admin {
            (create_form(s, choice, match &answer { Answer::Refused(_, name) => name.as_str(), _ => "" }))
        } @else {
            p.muted { "Admins and owners of this team create and revoke its keys." }
        }
        @if choice.role == Role::Owner {
            p { a href=(choice.link("/dashboard/requests", "")) { "Requests made with this team's keys" } }
        }
    };
    layout::respond(status, "API keys", Chrome::signed_in(s).notice(notice), body)
}

fn key_row(s: &Session, choice: &TeamChoice, key: &Value) -> Markup {
    let id = key["id"].as_str().unwrap_or_default();
    let name = key["name"].as_str().unwrap_or_default();
    let abilities: Vec<&str> =
        key["abilities"].as_array().map_or(Vec::new(), |a| a.iter().filter_map(Value::as_str).collect());
    html! {
        tr {
            td { (name) }
            td { code { (key["prefix"].as_str().unwrap_or_default()) "…" } }
            td { (abilities.join(", ")) }
            td { (when(key["created"].as_str().unwrap_or_default())) }
            td {
                @match key["last_used"].as_str() {
                    Some(day) => (when(day)),
                    None => "never",
                }
            }
            td {
                @if key["revoked"] == true {
                    "Revoked"
                } @else if choice.role >= Role::Admin {
                    form.inline method="post" action=(format!("/dashboard/keys/{}/revoke", enc(id))) {
                        (csrf_field(s))
                        (choice.field())
                        button.danger.small type="submit" aria-label=(format!("Revoke {name}"))
                            data-confirm=(format!("Revoke the key \u{201c}{name}\u{201d}? Programs using it stop working at once.")) {
                            "Revoke"
                        }
                    }
                } @else {
                    span.muted { "Active" }
                }
            }
        }
    }
}

/// The secret, once, with a command to try it against this deployment.
fn new_key(state: &AppState, key: &Value) -> Markup {
    let secret = key["key"].as_str().unwrap_or_default();
    let base = state.cfg.public_base_url.trim_end_matches('/');
    let can_write = key["abilities"].as_array().is_some_and(|a| a.iter().any(|x| x == "write"));
    let command = if can_write {
        format!("curl -H \"Authorization: Bearer {secret}\" -F file=@photo.jpg {base}/v1/images")
    } else {
        format!("curl -H \"Authorization: Bearer {secret}\" {base}/v1/images")
    };
    html! {
        section.panel.new-key aria-labelledby="new-key-h" {
            h2 #new-key-h { "Your new key \u{201c}" (key["name"].as_str().unwrap_or_default()) "\u{201d}" }
            p { strong { "Copy it now: you will not see it again." } " We keep only a hash of it." }
            (copy_row("new-key", "API key", secret))
            p { @if can_write { "Upload an image with it:" } @else { "List your images with it:" } }
            pre { code #curl { (command) } }
            button.small.secondary type="button" data-copy-text=(command) hidden { "Copy command" }
        }
    }
}

fn create_form(s: &Session, choice: &TeamChoice, name: &str) -> Markup {
    html! {
        h2 #create-h { "Create a key" }
        form method="post" action="/dashboard/keys" aria-labelledby="create-h" {
            (csrf_field(s))
            (choice.field())
            label { "Name" span.hint { " What uses it, for example \u{201c}Blog uploads\u{201d}" }
                input type="text" name="name" value=(name) required maxlength="100"; }
            fieldset {
                legend { "Abilities" }
                label.check { input type="checkbox" name="abilities" value="read" checked; span { "Read: list and fetch images, usage" } }
                label.check { input type="checkbox" name="abilities" value="write" checked; span { "Write: upload, edit and delete images" } }
            }
            button type="submit" { "Create key" }
        }
    }
}

/// `POST /dashboard/keys` (`team`, `name`, `abilities` checked) →
/// `POST /v1/teams/{team}/keys`; the answer shows the key once.
pub async fn create(
    State(state): State<AppState>,
    SignedForm(s, pairs): SignedForm<Vec<(String, String)>>,
) -> Response {
    let choice = match TeamChoice::of(&state, &s, Some(&field(&pairs, "team").to_string())).await {
        Ok(c) => c,
        Err(e) => return layout::error(e, Chrome::signed_in(&s)),
    };
    let name = field(&pairs, "name").to_string();
    let body = json!({ "name": name, "abilities": fields(&pairs, "abilities") });
    match create_key(&state, &s, &choice.id, body).await {
        Ok(key) => keys_view(&state, &s, &choice, None, Answer::Created(key)).await,
        Err(e) if fixable(&e) => keys_view(&state, &s, &choice, None, Answer::Refused(e, name)).await,
        Err(e) => layout::error(e, Chrome::signed_in(&s)),
    }
}

async fn create_key(state: &AppState, s: &Session, team: &str, body: Value) -> ApiResult<Value> {
    let answer = api::keys::create(State(state.clone()), s.clone(), Path(team.to_string()), api_body(body)?).await?;
    json_of(answer).await
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    team: String,
}

/// `POST /dashboard/keys/{key_id}/revoke` (`team`) →
/// `DELETE /v1/teams/{team}/keys/{key_id}`.
pub async fn revoke(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
    SignedForm(s, f): SignedForm<RevokeForm>,
) -> Response {
    let choice = match TeamChoice::of(&state, &s, Some(&f.team)).await {
        Ok(c) => c,
        Err(e) => return layout::error(e, Chrome::signed_in(&s)),
    };
    match api::keys::revoke(State(state.clone()), s.clone(), Path((choice.id.clone(), key_id))).await {
        Ok(_) => see_other(&choice.link("/dashboard/keys", "done=key-revoked")),
        Err(e) => layout::error(e, Chrome::signed_in(&s)),
    }
}
