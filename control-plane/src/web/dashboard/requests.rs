//! `GET /dashboard/requests?team=…[&cursor=…]`: a team's API request log
//! (the calls made with its keys, newest first, 50 a page), for its owners,
//! through `GET /v1/teams/{team}/requests`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use maud::{html, Markup};
use serde_json::Value;

use super::TeamChoice;
use crate::accounts::sessions::Session;
use crate::api;
use crate::dates::days_text;
use crate::error::ApiResult;
use crate::web::format::when;
use crate::web::forms::enc;
use crate::web::layout::{self, Chrome};
use crate::web::session::SignedIn;
use crate::AppState;

/// Requests on one page.
const PER_PAGE: usize = 50;

/// `GET /dashboard/requests?team=…[&cursor=…]` (owners).
pub async fn requests_page(
    State(state): State<AppState>,
    SignedIn(s): SignedIn,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match requests_body(&state, &s, &q).await {
        Ok(body) => layout::ok("API requests", Chrome::signed_in(&s), body),
        Err(e) => layout::error(e, Chrome::signed_in(&s)),
    }
}

async fn requests_body(state: &AppState, s: &Session, q: &HashMap<String, String>) -> ApiResult<Markup> {
    let choice = TeamChoice::of(state, s, q.get("team")).await?;
    let mut page_q = HashMap::from([("limit".to_string(), PER_PAGE.to_string())]);
    let cursor = q.get("cursor").filter(|c| !c.is_empty());
    if let Some(c) = cursor {
        page_q.insert("cursor".into(), c.clone());
    }
    let Json(log) =
        api::teams::requests(State(state.clone()), s.clone(), Path(choice.id.clone()), Query(page_q)).await?;
    // Keys by id, to name them (an owner may list them).
    let Json(keys) = api::keys::list(State(state.clone()), s.clone(), Path(choice.id.clone())).await?;
    let names: HashMap<&str, &Value> =
        keys["data"].as_array().into_iter().flatten().filter_map(|k| Some((k["id"].as_str()?, k))).collect();
    let empty = Vec::new();
    let rows = log["data"].as_array().unwrap_or(&empty);
    let next = log["pagination"]["next_cursor"].as_str();
    Ok(html! {
        (choice.switcher("/dashboard/requests"))
        p.hint {
            "Calls made with this team's API keys, newest first. They are kept "
            (days_text(state.cfg.retention.request_log_days))
            "; calls from the website are not logged."
        }
        @if rows.is_empty() {
            p.muted { @if cursor.is_some() { "No older requests." } @else { "No requests yet." } }
        } @else {
            div.table-wrap {
                table {
                    caption.muted { "API requests of " (choice.name) }
                    thead { tr { th { "Time" } th { "Method" } th { "Path" } th { "Status" } th { "Key" } } }
                    tbody {
                        @for r in rows {
                            @let key_id = r["key_id"].as_str().unwrap_or_default();
                            tr {
                                td { (when(r["created_at"].as_str().unwrap_or_default())) }
                                td { (r["method"].as_str().unwrap_or_default()) }
                                td { code { (r["route"].as_str().unwrap_or_default()) } }
                                td { (r["status"]) }
                                td {
                                    @match names.get(key_id) {
                                        Some(k) => { (k["name"].as_str().unwrap_or_default()) " " code.muted { (k["prefix"].as_str().unwrap_or_default()) "…" } }
                                        None => { code { (key_id) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if cursor.is_some() || next.is_some() {
            nav.row aria-label="More requests" {
                @if cursor.is_some() { a href=(choice.link("/dashboard/requests", "")) { "Newest requests" } }
                @if let Some(next) = next {
                    a href=(choice.link("/dashboard/requests", &format!("cursor={}", enc(next)))) { "Older requests" }
                }
            }
        }
    })
}
