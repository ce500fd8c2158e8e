//! Operator review: a queue of what waits for a person (uploads held or
//! removed by a classifier, reports, DMCA notices), oldest first, and the
//! review log: every view and every decision, who, when, on which image,
//! the state before and after, and why. The log is append-only: nothing
//! here updates or deletes it, and the database refuses to (triggers, see
//! `db::APPEND_ONLY`).

use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};

use super::config::Outcome;
use super::decisions::{apply_reaching_copies, decide_upload, state_json};
use crate::dates::iso;
use crate::error::{ApiError, ApiResult};
use crate::images::lifecycle::Edit;
use crate::images::queries;
use crate::images::row::{ImageRow, ImageStatus};
use crate::operators::Operator;
use crate::secrets::new_sortable_id;
use crate::AppState;

/// Append to the review log.
#[allow(clippy::too_many_arguments)]
async fn log(
    conn: &mut AnyConnection,
    op: &Operator,
    image_id: &str,
    item_id: Option<&str>,
    action: &str,
    before: Option<&Value>,
    after: Option<&Value>,
    reason: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO review_log (id, at, operator_id, image_id, item_id, action, before_state, after_state, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(new_sortable_id("rlg"))
    .bind(now)
    .bind(&op.id)
    .bind(image_id)
    .bind(item_id.map(str::to_string))
    .bind(action)
    .bind(before.map(Value::to_string))
    .bind(after.map(Value::to_string))
    .bind(reason.map(str::to_string))
    .execute(conn)
    .await?;
    Ok(())
}

/// What operators filter the queue by.
#[derive(Debug, Default, Deserialize)]
pub struct QueueFilter {
    pub category: Option<String>,
    pub source: Option<String>,
    pub limit: Option<i64>,
}

/// The open items, oldest first.
pub async fn queue(state: &AppState, filter: &QueueFilter) -> ApiResult<Vec<Value>> {
    let limit = filter.limit.unwrap_or(50).clamp(1, 500);
    let rows = sqlx::query(
        "SELECT id, image_id, source, category, source_id, created_at FROM review_items \
         WHERE resolved_at IS NULL AND ($1 IS NULL OR category = $1) AND ($2 IS NULL OR source = $2) \
         ORDER BY created_at, id LIMIT $3",
    )
    .bind(filter.category.clone())
    .bind(filter.source.clone())
    .bind(limit)
    .fetch_all(&state.db.pool)
    .await?;
    Ok(rows.iter().map(item_json).collect())
}

fn item_json(r: &sqlx::any::AnyRow) -> Value {
    json!({
        "id": r.get::<String, _>("id"), "object": "review_item", "image_id": r.get::<String, _>("image_id"),
        "source": r.get::<String, _>("source"), "category": r.get::<String, _>("category"),
        "source_id": r.get::<Option<String>, _>("source_id"), "created_at": iso(r.get("created_at")),
    })
}

/// The state of an image as the log records it.
fn snapshot(row: &ImageRow, now: i64) -> Value {
    json!({
        "status": row.status.as_str(),
        "visibility": state_json(row, now),
        "classification": row.classification,
        "bytes_in": row.bytes_in.as_str(),
    })
}

async fn item(state: &AppState, item_id: &str) -> ApiResult<sqlx::any::AnyRow> {
    sqlx::query("SELECT id, image_id, source, category, source_id, created_at, resolved_at, resolution FROM review_items WHERE id = $1")
        .bind(item_id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or(ApiError::NotFound)
}

/// An item with its image and what the classifiers said; the view is logged.
pub async fn view(state: &AppState, op: &Operator, item_id: &str) -> ApiResult<Value> {
    let r = item(state, item_id).await?;
    let image_id: String = r.get("image_id");
    let row = queries::fetch(&state.db, &image_id).await?.ok_or(ApiError::NotFound)?;
    let now = state.clock.unix_now();
    let verdicts = super::pipeline::load(&state.db, &image_id).await?;
    let mut conn = state.db.pool.acquire().await?;
    log(&mut conn, op, &image_id, Some(item_id), "view", Some(&snapshot(&row, now)), None, None, now).await?;
    let mut out = item_json(&r);
    out["resolved_at"] = json!(r.get::<Option<i64>, _>("resolved_at").map(iso));
    out["resolution"] = json!(r.get::<Option<String>, _>("resolution"));
    out["image"] = json!({
        "team_id": row.team_id, "format": row.format, "width": row.width, "height": row.height,
        "state": snapshot(&row, now), "nsfw": row.nsfw, "sha256": row.sha256, "pdq": row.pdq,
    });
    out["verdicts"] = json!(verdicts);
    Ok(out)
}

/// What an operator decides on a queue item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Fine as it is: publish a held upload, undo a takedown or removal.
    Approve,
    /// Serve it marked restricted.
    Restrict,
    /// Off public serving for breaking the rules (not a legal takedown):
    /// never served, bytes to recovery.
    Remove,
    /// A legal or policy takedown with a reason code (451).
    Takedown,
    /// The report was unfounded: close the item, change nothing.
    Reject,
}

impl std::str::FromStr for Decision {
    type Err = ApiError;

    fn from_str(s: &str) -> ApiResult<Decision> {
        Ok(match s {
            "approve" => Decision::Approve,
            "restrict" => Decision::Restrict,
            "remove" => Decision::Remove,
            "takedown" => Decision::Takedown,
            "reject" => Decision::Reject,
            _ => return Err(ApiError::NotFound),
        })
    }
}

/// Decide an item (and every other open item of the same image): applied
/// through the lifecycle, logged with the state before and after.
pub async fn decide(
    state: &AppState,
    op: &Operator,
    item_id: &str,
    decision: Decision,
    reason: Option<String>,
    note: &str,
) -> ApiResult<Value> {
    let r = item(state, item_id).await?;
    if r.get::<Option<i64>, _>("resolved_at").is_some() {
        return Err(ApiError::Conflict("This item was already decided.".into()));
    }
    let image_id: String = r.get("image_id");
    let before = queries::fetch(&state.db, &image_id).await?.ok_or(ApiError::NotFound)?;
    let now = state.clock.unix_now();
    let actor = op.actor();
    let held = matches!(before.status, ImageStatus::Review | ImageStatus::Processing | ImageStatus::Blocked);
    let after = match decision {
        Decision::Reject => before.clone(),
        Decision::Takedown => {
            let edit = super::parse_decision("takedown", reason.clone())?;
            apply_reaching_copies(state, &image_id, &actor, note, edit).await?.row
        }
        Decision::Approve if held => {
            decide_upload(state, &image_id, &actor, note, Outcome::Publish, Some("clean".into()), None).await?.row
        }
        Decision::Approve => apply_reaching_copies(state, &image_id, &actor, note, Edit::Restore).await?.row,
        Decision::Restrict if held => {
            decide_upload(state, &image_id, &actor, note, Outcome::Restrict, before.classification.clone(), None)
                .await?
                .row
        }
        Decision::Restrict => apply_reaching_copies(state, &image_id, &actor, note, Edit::Warn).await?.row,
        Decision::Remove => {
            let classification = before.classification.clone().filter(|c| c != "clean");
            decide_upload(state, &image_id, &actor, note, Outcome::Remove, classification, None).await?.row
        }
    };
    let action = match decision {
        Decision::Approve => "approve",
        Decision::Restrict => "restrict",
        Decision::Remove => "remove",
        Decision::Takedown => "takedown",
        Decision::Reject => "reject",
    };
    let mut tx = state.db.begin_write().await?;
    let (b, a) = (snapshot(&before, now), snapshot(&after, now));
    let why = reason.as_deref().or((!note.is_empty()).then_some(note));
    log(&mut tx, op, &image_id, Some(item_id), action, Some(&b), Some(&a), why, now).await?;
    sqlx::query(
        "UPDATE review_items SET resolved_at = $1, resolution = $2 WHERE image_id = $3 AND resolved_at IS NULL",
    )
    .bind(now)
    .bind(action)
    .bind(&image_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(json!({ "item_id": item_id, "image_id": image_id, "decision": action, "before": b, "after": a }))
}

/// The log, newest first (optionally of one image).
pub async fn history(state: &AppState, image_id: Option<&str>, limit: i64) -> ApiResult<Vec<Value>> {
    let rows = sqlx::query(
        "SELECT id, at, operator_id, image_id, item_id, action, before_state, after_state, reason FROM review_log \
         WHERE ($1 IS NULL OR image_id = $1) ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(image_id.map(str::to_string))
    .bind(limit.clamp(1, 1000))
    .fetch_all(&state.db.pool)
    .await?;
    let parse = |t: Option<String>| t.and_then(|t| serde_json::from_str::<Value>(&t).ok());
    Ok(rows
        .iter()
        .map(|r| {
            json!({
                "id": r.get::<String, _>("id"), "at": iso(r.get("at")), "operator_id": r.get::<String, _>("operator_id"),
                "image_id": r.get::<String, _>("image_id"), "item_id": r.get::<Option<String>, _>("item_id"),
                "action": r.get::<String, _>("action"), "before": parse(r.get("before_state")),
                "after": parse(r.get("after_state")), "reason": r.get::<Option<String>, _>("reason"),
            })
        })
        .collect())
}
