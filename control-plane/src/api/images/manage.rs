//! The Images API on existing images: list, get, edit, delete, batch
//! delete, and the team's usage. Every change of what may be served goes
//! through [`lifecycle::apply`].

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::cursor;
use crate::auth::Principal;
use crate::dates::DAY;
use crate::error::{ApiError, ApiResult};
use crate::images::fields::{check_caption, check_labels, check_metadata};
use crate::images::lifecycle::{self, Edit, FieldEdit};
use crate::images::queries;
use crate::images::row::{ImageRow, ImageStatus};
use crate::images::ttl;
use crate::json::ApiJson;
use crate::retention::{
    self,
    policy::{self, Class, Subject, Surface},
};
use crate::AppState;

/// A live image of the caller's team, or 404 (also for other teams' images).
async fn owned(state: &AppState, team: &str, id: &str) -> ApiResult<ImageRow> {
    match queries::fetch(&state.db, id).await? {
        Some(row) if row.team_id.as_deref() == Some(team) && row.deleted_at.is_none() => Ok(row),
        _ => Err(ApiError::NotFound),
    }
}

/// `GET /v1/images/{id}`
pub async fn get(State(state): State<AppState>, who: Principal, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let team = who.team(&state).await?;
    let row = owned(&state, &team, &id).await?;
    if row.status == ImageStatus::Failed {
        return Err(ApiError::MediaFailed);
    }
    if row.is_blocked() {
        return Err(ApiError::MediaBlocked("This image was removed from public serving.".into()));
    }
    Ok(Json(row.json(&state.cfg)))
}

/// Rows read per query while filling a page (label filters are applied
/// here, not in SQL, to stay portable).
const SCAN: i64 = 200;

/// `GET /v1/images?limit=&cursor=&label[k]=v` or `?ids=a,b,c`.
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let team = who.team(&state).await?;
    // Checked even where it does not apply (with `ids`), so a bad value is
    // always refused the same way.
    let limit = cursor::limit(q.get("limit"))?;
    if let Some(ids) = q.get("ids") {
        let ids: Vec<&str> = ids.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if ids.len() > 50 {
            return Err(ApiError::validation("ids", "At most 50 ids at a time."));
        }
        let mut data = Vec::new();
        for id in ids {
            if let Ok(row) = owned(&state, &team, id).await {
                if row.status == ImageStatus::Ready && !row.is_blocked() {
                    data.push(row.json(&state.cfg));
                }
            }
        }
        return Ok(Json(
            json!({ "object": "list", "data": data, "pagination": { "next_cursor": null, "has_more": false } }),
        ));
    }
    let labels: Vec<(String, String)> = q
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("label[").and_then(|k| k.strip_suffix(']')).map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    let mut after = q.get("cursor").map(|c| cursor::decode(c)).transpose()?;
    let mut data = Vec::new();
    let mut has_more = false;
    let mut last: Option<(i64, String)> = None;
    'pages: loop {
        let rows = queries::page(&state.db, &team, after.as_ref(), SCAN).await?;
        let n = rows.len();
        for row in rows {
            after = Some((row.created_at, row.id.clone()));
            if !labels.iter().all(|(k, v)| row.labels.get(k).and_then(Value::as_str) == Some(v)) {
                continue;
            }
            if data.len() == limit {
                has_more = true;
                break 'pages;
            }
            last = Some((row.created_at, row.id.clone()));
            data.push(row.json(&state.cfg));
        }
        if (n as i64) < SCAN {
            break;
        }
    }
    let next = if has_more { last.map(|(t, id)| cursor::encode(t, &id)) } else { None };
    Ok(Json(json!({ "object": "list", "data": data, "pagination": { "next_cursor": next, "has_more": has_more } })))
}

#[derive(Deserialize)]
pub struct PatchBody {
    /// Absent: unchanged; `null`: cleared; a string: set.
    #[serde(default, deserialize_with = "present")]
    caption: Option<Option<String>>,
    public: Option<bool>,
    labels: Option<Value>,
    metadata: Option<Value>,
    ttl: Option<Value>,
}

/// A field that is present (`Some`), even as `null` (`Some(None)`); serde
/// alone reads `null` as absent, and `"caption": null` would change nothing.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `PATCH /v1/images/{id}`: caption, public, labels, metadata, ttl.
pub async fn patch(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatchBody>,
) -> ApiResult<Json<Value>> {
    let team = who.team(&state).await?;
    owned(&state, &team, &id).await?;
    let caption = match body.caption {
        Some(Some(c)) => Some(Some(check_caption(&c)?)),
        Some(None) => Some(None),
        None => None,
    };
    // A ttl asks for a new expiry from now; the retention policy keeps it
    // within the window (it cannot lift an unverified account's or a
    // plan's). PATCH cannot remove an expiry.
    let ttl = ttl::from_json(body.ttl.as_ref()).map_err(|m| ApiError::validation("ttl", m))?;
    let edit = FieldEdit {
        caption,
        labels: body.labels.map(check_labels).transpose()?,
        metadata: body.metadata.map(check_metadata).transpose()?,
        public: body.public,
        requested_expires_at: ttl.map(|secs| state.clock.unix_now() + secs),
    };
    let note = match body.public {
        Some(true) => "made public",
        Some(false) => "made private",
        None => "edited",
    };
    let applied = lifecycle::apply(&state, &id, &who.actor(), note, Edit::Fields(edit)).await?;
    Ok(Json(applied.row.json(&state.cfg)))
}

/// `DELETE /v1/images/{id}`
pub async fn delete(State(state): State<AppState>, who: Principal, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let team = who.team(&state).await?;
    owned(&state, &team, &id).await?;
    lifecycle::apply(&state, &id, &who.actor(), "deleted", Edit::Delete).await?;
    Ok(Json(json!({ "id": id, "object": "image", "deleted": true })))
}

#[derive(Deserialize)]
pub struct BatchBody {
    ids: Vec<String>,
}

/// `DELETE /v1/images/batch` `{ids}` (≤ 100; deleting twice is not an error).
pub async fn delete_batch(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<BatchBody>,
) -> ApiResult<Json<Value>> {
    if body.ids.is_empty() || body.ids.len() > 100 {
        return Err(ApiError::validation("ids", "Send 1 to 100 ids."));
    }
    let team = who.team(&state).await?;
    let (mut data, mut errors) = (Vec::new(), Vec::new());
    for id in &body.ids {
        match queries::fetch(&state.db, id).await? {
            Some(row) if row.team_id.as_deref() == Some(team.as_str()) => {
                lifecycle::apply(&state, id, &who.actor(), "deleted", Edit::Delete).await?;
                data.push(json!({ "id": id, "object": "image", "deleted": true }));
            }
            _ => errors.push(json!({ "id": id, "error": { "type": "invalid_request_error", "code": "not_found", "message": "not found" } })),
        }
    }
    Ok(Json(json!({ "object": "batch_result", "data": data, "errors": errors })))
}

/// `GET /v1/usage`
pub async fn usage(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    let team = who.team(&state).await?;
    let plan_name = crate::teams::plan_of(&state.db, &team).await?;
    let plan = state.cfg.plans.get(&plan_name);
    let images = queries::live_count(&state.db, &team).await?;
    let bytes = queries::storage_used(&state.db, &team).await?;
    let total = queries::total_count(&state.db, &team).await?;
    // The window a clean upload made with this credential gets now.
    let user = match &who {
        Principal::Session(s) => Some(s.user_id.as_str()),
        Principal::Key(_) => None,
    };
    let mut conn = state.db.pool.acquire().await?;
    let uploader = retention::subject::uploader(&mut conn, Some(&team), user).await?;
    let subject = Subject {
        uploader,
        plan: plan.terms(),
        surface: Surface::Api,
        class: Class::Clean,
        created_at: 0,
        requested: None,
    };
    let retention_days = policy::expires_at(&state.cfg.retention, &subject).map(|t| t / DAY);
    Ok(Json(json!({
        "object": "usage",
        "plan": plan_name,
        // Whether a limit applies to this credential's uploads now: clients
        // pause uploading only when it is true (and the usage says full).
        "limits_enforced": plan.max_images.is_some(),
        "limits": {
            "images": { "used": images, "limit": plan.max_images },
            "storage": { "used_bytes": bytes },
            "max_file_bytes": plan.max_file_bytes,
            "max_svg_bytes": plan.max_svg_bytes,
            "retention_days": retention_days,
        },
        "totals": { "uploaded": total, "stored": images },
    })))
}
