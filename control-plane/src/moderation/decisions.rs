//! Decisions on images: an operator's (takedown for a legal or policy
//! reason, a restricted-content warning, restore) and classification's
//! (publish, restrict, hold, remove), applied through [`lifecycle::apply`]
//! and so synced to every edge at once; and what operators read back (an
//! image's state and history, current takedowns).
//!
//! A takedown for a prohibited reason (`moderation.prohibited_reasons`)
//! reaches further than the one upload: the image's hashes join the
//! blocklist (no copy can be uploaded again, on any surface) and every
//! other image with the same bytes, in any team, is taken down with it.

use imgcdn_shared::sync::{Change, TAKEDOWN_REASONS};
use imgcdn_shared::ImageId;
use serde_json::{json, Value};
use sqlx::Row;

use super::blocklist;
use super::config::Outcome;
use crate::dates::iso;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::images::lifecycle::{self, Actor, Edit};
use crate::images::queries;
use crate::images::row::ImageRow;
use crate::operators::Operator;
use crate::AppState;

/// Longest operator note.
pub const MAX_NOTE: usize = 2000;

/// An operator decision, by its name in the API.
pub fn parse_decision(decision: &str, reason: Option<String>) -> ApiResult<Edit> {
    match decision {
        "takedown" => {
            let reason = reason.unwrap_or_default();
            if !TAKEDOWN_REASONS.contains(&reason.as_str()) {
                return Err(ApiError::validation("reason", format!("One of {}.", TAKEDOWN_REASONS.join(", "))));
            }
            Ok(Edit::Takedown(reason))
        }
        "warn" => Ok(Edit::Warn),
        "restore" => Ok(Edit::Restore),
        _ => Err(ApiError::NotFound),
    }
}

/// Apply an operator's decision; the image's state and the change edges got.
pub async fn decide(state: &AppState, op: &Operator, id: &str, edit: Edit, note: &str) -> ApiResult<Value> {
    check_id(id)?;
    let actor = op.actor();
    let applied = apply_reaching_copies(state, id, &actor, note, edit).await?;
    let now = state.clock.unix_now();
    Ok(json!({
        "image_id": id,
        "state": state_json(&applied.row, now),
        "change": applied.change.map(|c| change_json(&c, note, &actor, now)),
    }))
}

/// Apply `edit`; a takedown for a prohibited reason also lists the image's
/// hashes and takes down every other image with the same bytes.
pub async fn apply_reaching_copies(
    state: &AppState,
    id: &str,
    actor: &Actor,
    note: &str,
    edit: Edit,
) -> ApiResult<lifecycle::Applied> {
    let prohibited = match &edit {
        Edit::Takedown(reason) => state.cfg.moderation.prohibited_reasons.contains(reason).then(|| reason.clone()),
        _ => None,
    };
    let applied = lifecycle::apply(state, id, actor, note, edit).await?;
    if let Some(reason) = prohibited {
        let row = &applied.row;
        let now = state.clock.unix_now();
        blocklist::add_image(&state.db, &row.sha256, row.pdq.as_deref(), &reason, &format!("takedown:{id}"), now)
            .await?;
        for copy in queries::same_sha256(&state.db, &row.sha256, id).await? {
            let note = format!("same bytes as {id}, taken down for {reason}");
            lifecycle::apply(state, &copy, actor, &note, Edit::Takedown(reason.clone())).await?;
        }
    }
    Ok(applied)
}

/// What classification (or an operator's review) decided for an upload:
/// applied through the lifecycle; a hold or removal waits in the review
/// queue; a removal for a prohibited category lists the image's hashes.
pub async fn decide_upload(
    state: &AppState,
    id: &str,
    actor: &Actor,
    note: &str,
    outcome: Outcome,
    classification: Option<String>,
    nsfw: Option<bool>,
) -> ApiResult<lifecycle::Applied> {
    let edit = Edit::Classified { outcome, classification: classification.clone(), nsfw };
    let applied = lifecycle::apply(state, id, actor, note, edit).await?;
    let now = state.clock.unix_now();
    if matches!(outcome, Outcome::Review | Outcome::Remove) && matches!(actor, Actor::System(_)) {
        let category = classification.as_deref().and_then(|c| c.split_once(':')).map_or("unclear", |(_, c)| c);
        let mut conn = state.db.pool.acquire().await?;
        super::queue::open(&mut conn, id, "classifier", category, None, now).await?;
    }
    if outcome == Outcome::Remove {
        if let Some(category) = classification.as_deref().and_then(|c| c.strip_prefix("prohibited:")) {
            let row = &applied.row;
            blocklist::add_image(
                &state.db,
                &row.sha256,
                row.pdq.as_deref(),
                category,
                &format!("classifier:{id}"),
                now,
            )
            .await?;
        }
    }
    Ok(applied)
}

/// An id from a path, or 404.
fn check_id(id: &str) -> ApiResult<ImageId> {
    id.parse().map_err(|_| ApiError::NotFound)
}

pub(super) fn state_json(row: &ImageRow, now: i64) -> Value {
    let visibility = row.visibility(now);
    json!({ "edge": visibility.label(), "reason": visibility.to_action().1 })
}

fn change_json(c: &Change, note: &str, actor: &Actor, at: i64) -> Value {
    json!({ "seq": c.seq, "action": c.action, "reason": c.reason, "note": note, "actor": actor.to_string(), "created_at": iso(at) })
}

/// What edges do with an image, and every change logged for it.
pub async fn image_state(state: &AppState, id: &str) -> ApiResult<Value> {
    check_id(id)?;
    let row = queries::fetch(&state.db, id).await?.ok_or(ApiError::NotFound)?;
    let history = sqlx::query(
        "SELECT seq, action, reason, note, actor, created_at FROM visibility_changes WHERE image_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(|r| {
        json!({
            "seq": r.get::<i64, _>(0), "action": r.get::<String, _>(1), "reason": r.get::<Option<String>, _>(2),
            "note": r.get::<Option<String>, _>(3), "actor": r.get::<String, _>(4), "created_at": iso(r.get(5)),
        })
    })
    .collect::<Vec<_>>();
    Ok(json!({
        "image_id": id,
        "team_id": row.team_id,
        "state": state_json(&row, state.clock.unix_now()),
        "history": history,
    }))
}

/// Images currently taken down, with the change that took each down.
pub async fn takedowns(db: &Db) -> ApiResult<Vec<Value>> {
    let rows = sqlx::query(
        "SELECT i.id, i.takedown_reason, (SELECT MAX(c.seq) FROM visibility_changes c WHERE c.image_id = i.id AND c.action = 'takedown') \
         FROM images i WHERE i.takedown_reason IS NOT NULL ORDER BY i.id LIMIT 1000",
    )
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| json!({ "image_id": r.get::<String, _>(0), "reason": r.get::<String, _>(1), "seq": r.get::<Option<i64>, _>(2) }))
        .collect())
}
