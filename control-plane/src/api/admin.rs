//! The operator API (`/v1/admin/…`, operator tokens): decisions on
//! images, their state and history, takedowns, and how changes reached the
//! edges. Not part of the public API document.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::OperatorAuth;
use crate::error::ApiResult;
use crate::json::ApiJson;
use crate::moderation::{self, blocklist, reports, review};
use crate::privacy::deletion;
use crate::sync::edges;
use crate::AppState;

#[derive(Deserialize, Default)]
pub struct Decision {
    reason: Option<String>,
    note: Option<String>,
}

/// `POST /v1/admin/images/{id}/takedown {reason, note?}`, `…/warn {note?}`,
/// `…/restore {note?}` (restore undoes takedown and warning).
pub async fn decision(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((id, decision)): Path<(String, String)>,
    ApiJson(d): ApiJson<Decision>,
) -> ApiResult<Json<Value>> {
    let note = d.note.unwrap_or_default();
    if note.len() > moderation::MAX_NOTE {
        return Err(crate::error::ApiError::validation("note", "At most 2000 characters."));
    }
    let edit = moderation::parse_decision(&decision, d.reason)?;
    Ok(Json(moderation::decide(&state, &op, &id, edit, &note).await?))
}

/// `GET /v1/admin/images/{id}`: what edges do with it, and its history.
pub async fn image_state(
    State(state): State<AppState>,
    _op: OperatorAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(moderation::image_state(&state, &id).await?))
}

/// `GET /v1/admin/takedowns`: images currently taken down.
pub async fn takedowns(State(state): State<AppState>, _op: OperatorAuth) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "object": "list", "data": moderation::takedowns(&state.db).await? })))
}

/// `GET /v1/admin/changes/{seq}`: a change and its propagation to each edge.
pub async fn change_propagation(
    State(state): State<AppState>,
    _op: OperatorAuth,
    Path(seq): Path<i64>,
) -> ApiResult<Json<Value>> {
    Ok(Json(edges::propagation(&state, seq).await?))
}

/// `GET /v1/admin/edges`: every edge and its lag.
pub async fn edges(State(state): State<AppState>, _op: OperatorAuth) -> ApiResult<Json<Value>> {
    Ok(Json(edges::list(&state).await?))
}

/// `GET /v1/admin/review?category=&source=&limit=`: open items, oldest first.
pub async fn review_queue(
    State(state): State<AppState>,
    _op: OperatorAuth,
    axum::extract::Query(filter): axum::extract::Query<review::QueueFilter>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "object": "list", "data": review::queue(&state, &filter).await? })))
}

/// `GET /v1/admin/review/{item_id}`: the item, its image and verdicts (the view is logged).
pub async fn review_item(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(item_id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(review::view(&state, &op, &item_id).await?))
}

/// `POST /v1/admin/review/{item_id}/{approve|restrict|remove|takedown|reject}` `{reason?, note?}`.
pub async fn review_decide(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((item_id, decision)): Path<(String, String)>,
    ApiJson(d): ApiJson<Decision>,
) -> ApiResult<Json<Value>> {
    let note = d.note.unwrap_or_default();
    if note.len() > moderation::MAX_NOTE {
        return Err(crate::error::ApiError::validation("note", "At most 2000 characters."));
    }
    let decision: review::Decision = decision.parse()?;
    Ok(Json(review::decide(&state, &op, &item_id, decision, d.reason, &note).await?))
}

#[derive(Deserialize)]
pub struct LogQuery {
    image: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/admin/review-log?image=&limit=`: every view and decision, newest first.
pub async fn review_log(
    State(state): State<AppState>,
    _op: OperatorAuth,
    axum::extract::Query(q): axum::extract::Query<LogQuery>,
) -> ApiResult<Json<Value>> {
    let data = review::history(&state, q.image.as_deref(), q.limit.unwrap_or(100)).await?;
    Ok(Json(json!({ "object": "list", "data": data })))
}

#[derive(Deserialize)]
pub struct BlocklistEntry {
    kind: String,
    hash: String,
    category: String,
}

/// `POST /v1/admin/blocklist` `{kind: sha256|pdq, hash, category}`.
pub async fn blocklist_add(
    State(state): State<AppState>,
    op: OperatorAuth,
    ApiJson(e): ApiJson<BlocklistEntry>,
) -> ApiResult<Json<Value>> {
    let hash = blocklist::check_entry(&e.kind, &e.hash, &e.category)
        .map_err(|err| crate::error::ApiError::validation("hash", err.to_string()))?;
    let mut conn = state.db.pool.acquire().await?;
    let source = format!("operator:{}", op.id);
    let added = blocklist::add(&mut conn, &e.kind, &hash, &e.category, &source, state.clock.unix_now()).await?;
    Ok(Json(
        json!({ "object": "blocklist_entry", "kind": e.kind, "hash": hash, "category": e.category, "added": added }),
    ))
}

/// `GET /v1/admin/blocklist/matches`: refused uploads, newest first.
pub async fn blocklist_matches(State(state): State<AppState>, _op: OperatorAuth) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "object": "list", "data": blocklist::matches(&state.db, 500).await? })))
}

/// `GET /v1/admin/dmca/{id}`
pub async fn dmca_get(
    State(state): State<AppState>,
    _op: OperatorAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(reports::get(&state, &id).await?))
}

/// `POST /v1/admin/dmca/{id}/takedown`: act on a notice.
pub async fn dmca_takedown(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(reports::act_on_notice(&state, &op, &id).await?))
}

/// `POST /v1/admin/dmca/{id}/court-action`: the claimant went to court; no restore.
pub async fn dmca_court_action(
    State(state): State<AppState>,
    _op: OperatorAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(reports::court_action(&state, &id).await?))
}

#[derive(Deserialize)]
pub struct EraseBody {
    email: String,
    /// Why: `child` (reported as under 16; erased at once, no grace period).
    reason: String,
    note: Option<String>,
}

/// `POST /v1/admin/accounts/erase {email, reason: "child", note?}`: erase an
/// account reported as a child's now, recording why (and who decided).
pub async fn erase_account(
    State(state): State<AppState>,
    op: OperatorAuth,
    ApiJson(body): ApiJson<EraseBody>,
) -> ApiResult<Json<Value>> {
    if body.reason != "child" {
        return Err(crate::error::ApiError::validation(
            "reason",
            "child (an account reported as a child's). People delete their own accounts from Settings.",
        ));
    }
    let email = crate::accounts::normalize_email(&body.email)?;
    let user_id: String = sqlx::query("SELECT id FROM users WHERE email = $1")
        .bind(&email)
        .fetch_optional(&state.db.pool)
        .await?
        .map(|r| sqlx::Row::get(&r, 0))
        .ok_or(crate::error::ApiError::NotFound)?;
    let note = body.note.unwrap_or_default();
    let done = deletion::erase(&state, &user_id, deletion::Reason::Child, Some(&op.id), Some(&note)).await?;
    Ok(Json(json!({
        "object": "erasure", "reason": "child", "images": done.images,
        "teams_dissolved": done.teams_dissolved, "teams_handed_over": done.teams_handed_over,
    })))
}
