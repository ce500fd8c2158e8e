//! The console's review queue: the open items (held uploads, reports, DMCA
//! notices), oldest first, each with its image's state, what the
//! classifiers said and a form per decision.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use imgcdn_shared::sync::TAKEDOWN_REASONS;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{chrome, failed, OperatorPage};
use crate::api::admin;
use crate::error::ApiError;
use crate::moderation::review::QueueFilter;
use crate::web::format::when;
use crate::web::forms::{api_body, optional};
use crate::web::layout;
use crate::web::session::see_other;
use crate::web::PageForm;
use crate::AppState;

/// Items shown at once. Each one shown is a logged view (the review log
/// records every view), so the page shows a screenful, not the whole queue.
const PAGE: i64 = 20;

/// The decisions on an item besides a takedown: (path segment, button, what it does).
const DECISIONS: [(&str, &str, &str); 4] = [
    ("approve", "Approve", "fine as it is: publish a held upload, or undo a takedown or removal"),
    ("restrict", "Restrict", "serve it marked restricted, behind the content warning"),
    ("remove", "Remove", "off public serving for breaking the rules; the file goes to the recovery store"),
    ("reject", "Reject", "the report was unfounded: close the item and change nothing"),
];

/// What the page says after a decision (`?done=…`; fixed texts only).
fn done_notice(done: &str) -> Option<&'static str> {
    Some(match done {
        "approve" => "Approved.",
        "restrict" => "Restricted.",
        "remove" => "Removed from public serving.",
        "reject" => "Closed without a change.",
        "takedown" => "Taken down.",
        _ => return None,
    })
}

#[derive(Deserialize, Default)]
pub(super) struct QueueQuery {
    source: Option<String>,
    category: Option<String>,
    done: Option<String>,
}

/// `GET /ops?source=&category=`: the review queue.
pub(super) async fn queue(State(state): State<AppState>, page: OperatorPage, Query(q): Query<QueueQuery>) -> Response {
    let (source, category) = (q.source.as_deref().and_then(optional), q.category.as_deref().and_then(optional));
    let filter = QueueFilter { category: category.clone(), source: source.clone(), limit: Some(PAGE) };
    let list = match admin::review_queue(State(state.clone()), page.op.clone(), Query(filter)).await {
        Ok(Json(v)) => v,
        Err(e) => return failed(e),
    };
    let mut items = Vec::new();
    for item in list["data"].as_array().into_iter().flatten() {
        let id = item["id"].as_str().unwrap_or_default().to_string();
        match admin::review_item(State(state.clone()), page.op.clone(), Path(id)).await {
            Ok(Json(v)) => items.push(v),
            // Decided or gone since the list was read.
            Err(ApiError::NotFound) => continue,
            Err(e) => return failed(e),
        }
    }
    let body = html! {
        p.muted { "Signed in as " strong { (page.op.name) } ". Opening this page records a view of each item shown in the review log." }
        form.row method="get" action="/ops" {
            label for="source" {
                "Source"
                select #source name="source" {
                    option value="" { "Any" }
                    @for s in ["classifier", "report", "dmca"] {
                        option value=(s) selected[source.as_deref() == Some(s)] { (s) }
                    }
                }
            }
            label for="category" {
                "Category"
                input #category type="text" name="category" value=(category.as_deref().unwrap_or(""));
            }
            button.secondary type="submit" { "Filter" }
        }
        @if items.is_empty() {
            p { "Nothing waits for a decision." }
        }
        @for item in &items {
            (item_panel(&page, item))
        }
    };
    let notice = q.done.as_deref().and_then(done_notice);
    layout::ok("Review queue", chrome().notice(notice), body)
}

fn item_panel(page: &OperatorPage, item: &Value) -> Markup {
    let id = item["id"].as_str().unwrap_or("");
    let image_id = item["image_id"].as_str().unwrap_or("");
    let image = &item["image"];
    let state = &image["state"];
    let verdicts = item["verdicts"].as_array().cloned().unwrap_or_default();
    let str_of = |v: &Value| v.as_str().unwrap_or("—").to_string();
    html! {
        article.panel id=(format!("item-{id}")) aria-labelledby=(format!("item-{id}-h")) {
            h2 id=(format!("item-{id}-h")) {
                (str_of(&item["category"])) " · from " (str_of(&item["source"]))
            }
            div.table-wrap { table {
                tbody {
                    tr { th scope="row" { "Item" } td.mono { (id) } }
                    tr { th scope="row" { "Opened" } td { (when(item["created_at"].as_str().unwrap_or(""))) } }
                    tr {
                        th scope="row" { "Image" }
                        td {
                            span.mono { (image_id) } " · " (str_of(&image["format"])) " "
                            (image["width"].as_i64().unwrap_or(0)) "×" (image["height"].as_i64().unwrap_or(0))
                            " · " a href=(format!("/{image_id}")) { "public page" } " (if it is served)"
                        }
                    }
                    tr {
                        th scope="row" { "State" }
                        td {
                            (str_of(&state["status"])) "; edges: " (str_of(&state["visibility"]["edge"]))
                            @if let Some(r) = state["visibility"]["reason"].as_str() { " (" (r) ")" }
                            @if let Some(c) = state["classification"].as_str() { "; classified " (c) }
                            @if image["nsfw"] == true { " " span.badge.warn { "nsfw" } }
                        }
                    }
                    @if let Some(sid) = item["source_id"].as_str() {
                        tr { th scope="row" { "Filed as" } td { span.mono { (sid) } " — details under " a href="/ops/reports" { "Reports" } } }
                    }
                }
            } }
            @if verdicts.is_empty() {
                p.muted { "No classifier verdicts." }
            } @else {
                div.table-wrap { table {
                    caption.muted { "Classifier verdicts" }
                    thead { tr {
                        th scope="col" { "Classifier" } th scope="col" { "Verdict" } th scope="col" { "Category" }
                        th scope="col" { "Score" } th scope="col" { "Detail" }
                    } }
                    tbody { @for v in &verdicts { tr {
                        td { (str_of(&v["classifier"])) }
                        td { (str_of(&v["kind"])) }
                        td { (str_of(&v["category"])) }
                        td { @if let Some(s) = v["score"].as_f64() { (format!("{s:.2}")) } @else { "—" } }
                        td { (str_of(&v["detail"])) }
                    } } }
                } }
            }
            form method="post" action=(format!("/ops/review/{id}/reject")) {
                (page.csrf_field())
                label for=(format!("note-{id}")) { "Note for the log (optional)" }
                textarea id=(format!("note-{id}")) name="note" maxlength="2000" rows="2" {}
                ul.hint {
                    @for (_, label, what) in DECISIONS { li { strong { (label) } ": " (what) "." } }
                }
                div.row {
                    @for (decision, label, _) in DECISIONS {
                        @let action = format!("/ops/review/{id}/{decision}");
                        @if decision == "remove" {
                            button.danger type="submit" formaction=(action) data-confirm="Remove this image from public serving?" { (label) }
                        } @else {
                            button.secondary type="submit" formaction=(action) { (label) }
                        }
                    }
                }
            }
            form method="post" action=(format!("/ops/review/{id}/takedown")) {
                (page.csrf_field())
                label for=(format!("reason-{id}")) {
                    "Takedown reason"
                    select id=(format!("reason-{id}")) name="reason" required {
                        @for r in TAKEDOWN_REASONS { option value=(r) { (r) } }
                    }
                }
                label for=(format!("tnote-{id}")) { "Note for the log (optional)" }
                textarea id=(format!("tnote-{id}")) name="note" maxlength="2000" rows="2" {}
                p.hint { "A legal or policy takedown: every edge answers 451. A prohibited reason also lists the image's hashes and takes down every copy." }
                button.danger type="submit" data-confirm="Take this image down on every edge?" { "Take down" }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct DecideForm {
    #[serde(default)]
    csrf: String,
    reason: Option<String>,
    note: Option<String>,
}

/// `POST /ops/review/{item_id}/{decision}`: as `POST
/// /v1/admin/review/{item_id}/{decision}`, then back to the queue.
pub(super) async fn decide(
    State(state): State<AppState>,
    page: OperatorPage,
    Path((item_id, decision)): Path<(String, String)>,
    PageForm(f): PageForm<DecideForm>,
) -> Response {
    if let Err(r) = page.check_csrf(&f.csrf) {
        return r;
    }
    let body = json!({
        "reason": f.reason.as_deref().and_then(optional),
        "note": f.note.as_deref().and_then(optional),
    });
    let body = match api_body(body) {
        Ok(b) => b,
        Err(e) => return failed(e),
    };
    match admin::review_decide(State(state), page.op, Path((item_id, decision.clone())), body).await {
        Ok(_) => see_other(&format!("/ops?done={}", if done_notice(&decision).is_some() { &decision } else { "" })),
        Err(e) => failed(e),
    }
}
