//! The console's reports page: open abuse reports and DMCA notices (the
//! review items they opened), with what was filed, and the actions a
//! notice takes (act on it; record the claimant's court action).

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::{chrome, failed, OperatorPage};
use crate::api::admin;
use crate::error::ApiError;
use crate::moderation::review::QueueFilter;
use crate::web::format::when;
use crate::web::forms::CsrfForm;
use crate::web::layout;
use crate::web::session::see_other;
use crate::web::PageForm;
use crate::AppState;

/// Open items of `source`, each with what was filed (`None` if it is gone).
async fn filed(state: &AppState, page: &OperatorPage, source: &str) -> Result<Vec<(Value, Option<Value>)>, ApiError> {
    let filter = QueueFilter { source: Some(source.into()), category: None, limit: Some(100) };
    let Json(list) = admin::review_queue(State(state.clone()), page.op.clone(), Query(filter)).await?;
    let mut out = Vec::new();
    for item in list["data"].as_array().into_iter().flatten() {
        let Some(id) = item["source_id"].as_str().map(str::to_string) else {
            out.push((item.clone(), None));
            continue;
        };
        let details = match source {
            "dmca" => admin::dmca_get(State(state.clone()), page.op.clone(), Path(id)).await.map(|Json(v)| v),
            _ => crate::moderation::reports::get_report(state, &id).await,
        };
        match details {
            Ok(v) => out.push((item.clone(), Some(v))),
            Err(ApiError::NotFound) => out.push((item.clone(), None)),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("—")
}

fn report_row(item: &Value, report: Option<&Value>) -> Markup {
    let item_id = text(&item["id"]);
    html! {
        tr {
            td { (when(text(&item["created_at"]))) }
            td { span.mono { (text(&item["image_id"])) } }
            td { (text(&item["category"])) }
            @if let Some(r) = report {
                td { (r["details"].as_str().unwrap_or("")) }
                td { (r["contact_email"].as_str().unwrap_or("none left")) }
            } @else {
                td.muted colspan="2" { "No longer on file." }
            }
            td { a href=(format!("/ops#item-{item_id}")) { "Decide" } }
        }
    }
}

fn notice_panel(page: &OperatorPage, item: &Value, notice: Option<&Value>) -> Markup {
    let Some(n) = notice else {
        return html! { p.muted { "Notice " (text(&item["source_id"])) " is no longer on file." } };
    };
    let id = text(&n["id"]);
    let state = text(&n["state"]);
    html! {
        article.panel id=(format!("notice-{id}")) aria-labelledby=(format!("notice-{id}-h")) {
            h3 id=(format!("notice-{id}-h")) { "Notice " span.mono { (id) } " · " (state) }
            div.table-wrap { table { tbody {
                tr { th scope="row" { "Image" } td.mono { (text(&n["image_id"])) } }
                tr { th scope="row" { "Received" } td { (when(text(&n["created_at"]))) } }
                tr { th scope="row" { "Claimant" } td {
                    (text(&n["claimant_name"])) " · " (text(&n["claimant_email"])) br;
                    (text(&n["claimant_address"]))
                    @if let Some(p) = n["claimant_phone"].as_str() { " · " (p) }
                } }
                tr { th scope="row" { "Work" } td { (text(&n["work"])) } }
                tr { th scope="row" { "Signature" } td { (text(&n["signature"])) } }
                @if let Some(at) = n["countered_at"].as_str() {
                    tr { th scope="row" { "Counter-notice" } td {
                        (when(at)) " by " (text(&n["counter_name"])) ": " (text(&n["counter_statement"]))
                        @if let Some(r) = n["restore_after"].as_str() { br; "Restored after " (when(r)) " unless the claimant went to court." }
                    } }
                }
            } } }
            div.row {
                @if state == "received" {
                    form.inline method="post" action=(format!("/ops/dmca/{id}/takedown")) {
                        (page.csrf_field())
                        button.danger type="submit"
                            data-confirm="Take the image down for copyright, tell its uploader and record a strike?"
                            { "Act on the notice" }
                    }
                }
                @if state == "taken_down" || state == "countered" {
                    form.inline method="post" action=(format!("/ops/dmca/{id}/court-action")) {
                        (page.csrf_field())
                        button.secondary type="submit" { "Claimant went to court (keep it down)" }
                    }
                }
                a href=(format!("/ops#item-{}", text(&item["id"]))) { "Review item" }
            }
        }
    }
}

#[derive(Deserialize, Default)]
pub(super) struct ReportsQuery {
    done: Option<String>,
}

/// `GET /ops/reports`: open abuse reports and DMCA notices.
pub(super) async fn open(State(state): State<AppState>, page: OperatorPage, Query(q): Query<ReportsQuery>) -> Response {
    let (reports, notices) = match (filed(&state, &page, "report").await, filed(&state, &page, "dmca").await) {
        (Ok(r), Ok(n)) => (r, n),
        (Err(e), _) | (_, Err(e)) => return failed(e),
    };
    let body = html! {
        h2 { "Abuse reports" }
        @if reports.is_empty() {
            p { "No open report." }
        } @else {
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "Filed" } th scope="col" { "Image" } th scope="col" { "Reason" }
                    th scope="col" { "Details" } th scope="col" { "Reporter's address" } th scope="col" { "Review" }
                } }
                tbody { @for (item, report) in &reports { (report_row(item, report.as_ref())) } }
            } }
        }
        h2 { "DMCA notices" }
        @if notices.is_empty() {
            p { "No open notice." }
        }
        @for (item, notice) in &notices { (notice_panel(&page, item, notice.as_ref())) }
    };
    let notice = match q.done.as_deref() {
        Some("takedown") => Some("The image is taken down; its uploader was told and a strike recorded."),
        Some("court-action") => Some("Recorded: the image stays down."),
        _ => None,
    };
    layout::ok("Reports", chrome().notice(notice), body)
}

/// `POST /ops/dmca/{id}/takedown` and `POST /ops/dmca/{id}/court-action`:
/// as the operator API's routes of the same names.
pub(super) async fn dmca_action(
    State(state): State<AppState>,
    page: OperatorPage,
    Path((id, action)): Path<(String, String)>,
    PageForm(f): PageForm<CsrfForm>,
) -> Response {
    if let Err(r) = page.check_csrf(&f.csrf) {
        return r;
    }
    let done = match action.as_str() {
        "takedown" => admin::dmca_takedown(State(state), page.op, Path(id)).await,
        "court-action" => admin::dmca_court_action(State(state), page.op, Path(id)).await,
        _ => Err(ApiError::NotFound),
    };
    match done {
        Ok(_) => see_other(&format!("/ops/reports?done={action}")),
        Err(e) => failed(e),
    }
}
