//! The console's view of edge sync: current takedowns with, per change,
//! which edges applied it; and every edge with its lag.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use maud::{html, Markup};
use serde_json::Value;

use super::{chrome, failed, OperatorPage};
use crate::api::admin;
use crate::web::format::{plural, when};
use crate::web::layout;
use crate::AppState;

/// Takedowns shown with their propagation (one query each).
const SHOWN: usize = 100;

fn edge_state(e: &Value) -> Markup {
    let name = e["edge"].as_str().unwrap_or("?");
    html! {
        li {
            strong { (name) } ": "
            @if e["applied"] == true {
                "applied"
                @if let Some(at) = e["applied_at"].as_str() { " " (when(at)) }
            } @else if e["last_seen_at"].is_null() {
                span.badge.warn { "never called in" }
            } @else {
                span.badge.warn { "not yet" }
                " (up to #" (e["applied_seq"].as_i64().unwrap_or(0)) ")"
            }
        }
    }
}

/// `GET /ops/takedowns`: images taken down, and for the change that took
/// each down, which edges applied it.
pub(super) async fn takedowns(State(state): State<AppState>, page: OperatorPage) -> Response {
    let list = match admin::takedowns(State(state.clone()), page.op.clone()).await {
        Ok(Json(v)) => v,
        Err(e) => return failed(e),
    };
    let all = list["data"].as_array().cloned().unwrap_or_default();
    let mut rows = Vec::new();
    for t in all.iter().take(SHOWN) {
        let change = match t["seq"].as_i64() {
            Some(seq) => match admin::change_propagation(State(state.clone()), page.op.clone(), Path(seq)).await {
                Ok(Json(c)) => Some(c),
                Err(e) => return failed(e),
            },
            None => None,
        };
        rows.push((t, change));
    }
    let body = html! {
        @if rows.is_empty() {
            p { "No image is taken down." }
        } @else {
            @if all.len() > SHOWN { p.muted { "The first " (SHOWN) " of " (all.len()) " takedowns." } }
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "Image" }
                    th scope="col" { "Reason" }
                    th scope="col" { "Change" }
                    th scope="col" { "Edges" }
                } }
                tbody { @for (t, change) in &rows { tr {
                    td.mono { (t["image_id"].as_str().unwrap_or("")) }
                    td { (t["reason"].as_str().unwrap_or("")) }
                    @if let Some(c) = change {
                        td {
                            "#" (c["seq"].as_i64().unwrap_or(0)) " "
                            (when(c["created_at"].as_str().unwrap_or("")))
                            br;
                            span.muted { "by " (c["actor"].as_str().unwrap_or("")) }
                            @if let Some(n) = c["note"].as_str().filter(|n| !n.is_empty()) { br; span.muted { (n) } }
                        }
                        td { ul { @for e in c["edges"].as_array().into_iter().flatten() { (edge_state(e)) } } }
                    } @else {
                        td { "—" }
                        td.muted { "No change recorded for it." }
                    }
                } } }
            } }
        }
    };
    layout::ok("Takedowns", chrome(), body)
}

/// `GET /ops/edges`: every edge, how far it applied the change log, and
/// when it last called in.
pub(super) async fn edges(State(state): State<AppState>, page: OperatorPage) -> Response {
    let list = match admin::edges(State(state), page.op).await {
        Ok(Json(v)) => v,
        Err(e) => return failed(e),
    };
    let head = list["head"].as_i64().unwrap_or(0);
    let body = html! {
        p { "The change log is at #" (head) "." }
        div.table-wrap { table {
            thead { tr {
                th scope="col" { "Edge" }
                th scope="col" { "Applied up to" }
                th scope="col" { "Behind by" }
                th scope="col" { "Last called in" }
            } }
            tbody { @for e in list["data"].as_array().into_iter().flatten() { tr {
                td { (e["edge"].as_str().unwrap_or("")) }
                td { @if let Some(s) = e["applied_seq"].as_i64() { "#" (s) } @else { "—" } }
                td {
                    @match e["lag"].as_i64() {
                        Some(0) => "up to date",
                        Some(n) => { span.badge.warn { (plural(n, "change")) } },
                        None => "—",
                    }
                }
                td {
                    @if let Some(at) = e["last_seen_at"].as_str() { (when(at)) }
                    @else { span.badge.warn { "never" } }
                }
            } } }
        } }
    };
    layout::ok("Edges", chrome(), body)
}
