//! HTTP for edge sync: the edge endpoints (`/v1/edge/…`, edge tokens) and
//! the operator API (`/v1/admin/…`, operator tokens). Neither is part of
//! the public API document; the wire format is in [`imgcdn_shared::sync`].

use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use imgcdn_shared::sync::{Ack, Action, Change, ChangesPage, Snapshot, MAX_PAGE, TAKEDOWN_REASONS};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;

use super::operators::Operator;
use super::{changes_after, head, parse_id, record};
use crate::accounts::iso;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::bearer;
use crate::http::json::ApiJson;
use crate::images::object::ImageRow;
use crate::secrets::same;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(imgcdn_shared::sync::PATH_CHANGES, get(changes))
        .route(imgcdn_shared::sync::PATH_SNAPSHOT, get(snapshot))
        .route(imgcdn_shared::sync::PATH_ACK, post(ack))
        .route("/v1/admin/images/{id}", get(image_state))
        .route("/v1/admin/images/{id}/{decision}", post(decision))
        .route("/v1/admin/takedowns", get(takedowns))
        .route("/v1/admin/changes/{seq}", get(change_propagation))
        .route("/v1/admin/edges", get(edges))
}

/// An edge, by the token configured for it.
pub struct EdgeAuth {
    pub name: String,
}

impl FromRequestParts<AppState> for EdgeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let sent = bearer(parts).unwrap_or("");
        // Compare against every token, each in constant time.
        let mut found = None;
        for (name, token) in &state.cfg.edge_sync.edges {
            if same(sent, token) && !sent.is_empty() {
                found = Some(name.clone());
            }
        }
        found.map(|name| EdgeAuth { name }).ok_or_else(|| ApiError::Unauthorized("Edge token required.".into()))
    }
}

async fn seen(state: &AppState, edge: &str) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO edges (name, applied_seq, last_seen_at) VALUES ($1, 0, $2) \
         ON CONFLICT (name) DO UPDATE SET last_seen_at = excluded.last_seen_at",
    )
    .bind(edge)
    .bind(state.clock.unix_now())
    .execute(&state.db.pool)
    .await?;
    Ok(())
}

#[derive(Deserialize)]
pub struct ChangesQuery {
    after: u64,
    #[serde(default)]
    wait_ms: u64,
}

/// `GET /v1/edge/changes?after=SEQ&wait_ms=MS`
async fn changes(
    State(state): State<AppState>,
    edge: EdgeAuth,
    Query(q): Query<ChangesQuery>,
) -> ApiResult<Json<ChangesPage>> {
    seen(&state, &edge.name).await?;
    // Subscribe before reading, so a change committed in between still wakes us.
    let mut wake = state.sync.subscribe();
    let wait = Duration::from_millis(q.wait_ms.min(state.cfg.edge_sync.max_wait_ms));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let h = head(&state.db.pool).await?;
        if q.after > h || h - q.after > state.cfg.edge_sync.snapshot_after {
            return Err(ApiError::SnapshotRequired);
        }
        if h > q.after || tokio::time::Instant::now() >= deadline {
            let changes = changes_after(&state.db.pool, q.after, h, MAX_PAGE).await?;
            let more = changes.last().is_some_and(|c| c.seq < h) && changes.len() == MAX_PAGE;
            return Ok(Json(ChangesPage { changes, head: h, more }));
        }
        state.sync.advance(h);
        // The hub may know a head above the database's (the database was
        // restored from a backup under a running process): then it cannot
        // tell us when to look again, so poll instead of spinning.
        let hub_ahead = *wake.borrow() > h;
        let poll = tokio::time::Instant::now() + Duration::from_millis(state.cfg.edge_sync.poll_ms);
        tokio::select! {
            woken = tokio::time::timeout_at(deadline, wake.wait_for(|known| *known > q.after)), if !hub_ahead => {
                if let Ok(Err(_)) = woken {
                    return Err(ApiError::Internal("edge sync hub closed".into()));
                }
            }
            _ = tokio::time::sleep_until(poll.min(deadline)), if hub_ahead => {}
            // Shutting down: answer now (empty), the edge polls another replica.
            _ = state.sync.closed() => return Ok(Json(ChangesPage { changes: vec![], head: q.after, more: false })),
        }
    }
}

/// `GET /v1/edge/snapshot`
async fn snapshot(State(state): State<AppState>, edge: EdgeAuth) -> ApiResult<Json<Snapshot>> {
    seen(&state, &edge.name).await?;
    Ok(Json(super::snapshot(&state.db.pool).await?))
}

/// `POST /v1/edge/ack {seq}`: the edge applied and persisted up to `seq`.
async fn ack(State(state): State<AppState>, edge: EdgeAuth, ApiJson(body): ApiJson<Ack>) -> ApiResult<StatusCode> {
    let now = state.clock.unix_now();
    let seq = i64::try_from(body.seq).map_err(|_| ApiError::validation("seq", "out of range"))?;
    if body.seq > head(&state.db.pool).await? {
        return Err(ApiError::validation("seq", "ahead of the log"));
    }
    let mut tx = state.db.pool.begin().await?;
    let before: Option<i64> = sqlx::query("SELECT applied_seq FROM edges WHERE name = $1")
        .bind(&edge.name)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.get(0));
    sqlx::query(
        "INSERT INTO edges (name, applied_seq, last_seen_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET last_seen_at = excluded.last_seen_at, \
         applied_seq = CASE WHEN excluded.applied_seq > edges.applied_seq THEN excluded.applied_seq ELSE edges.applied_seq END",
    )
    .bind(&edge.name)
    .bind(seq)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if before.is_none_or(|b| seq > b) {
        sqlx::query(
            "INSERT INTO edge_acks (edge, seq, acked_at) VALUES ($1, $2, $3) ON CONFLICT (edge, seq) DO NOTHING",
        )
        .bind(&edge.name)
        .bind(seq)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
pub struct Decision {
    reason: Option<String>,
    note: Option<String>,
}

/// An operator decision: update the row, log the change, both in one
/// transaction; then wake long-polls and bring the public store in line
/// (a taken-down or hidden image keeps its bytes but loses its manifest;
/// a restored one gets it back before the restore is logged).
async fn decide(
    state: &AppState,
    op: &Operator,
    id: &str,
    set: &str,
    bind: Option<String>,
    note: &str,
) -> ApiResult<Json<Value>> {
    parse_id(id)?;
    let now = state.clock.unix_now();
    let mut tx = state.db.pool.begin().await?;
    let mut q = sqlx::query(set);
    if let Some(b) = bind {
        q = q.bind(b);
    }
    let updated = q.bind(id).execute(&mut *tx).await?.rows_affected();
    if updated == 0 {
        return Err(ApiError::NotFound);
    }
    // Before `record` takes the log's lock: no store I/O under it.
    crate::images::routes::publish_before_commit(state, &mut tx, id).await?;
    let change = record(&mut tx, state.db.backend, id, &op.actor(), note, now).await?;
    tx.commit().await?;
    if let Some(c) = &change {
        state.sync.advance(c.seq);
    }
    let row = load(state, id).await?;
    crate::images::routes::reconcile_publication(state, &row).await?;
    Ok(Json(json!({
        "image_id": id,
        "state": state_json(&row, now),
        "change": change.map(|c| change_json(&c, note, &op.actor(), now)),
    })))
}

/// `POST /v1/admin/images/{id}/takedown {reason, note?}`, `…/warn {note?}`,
/// `…/restore {note?}` (restore undoes takedown and warning).
async fn decision(
    State(state): State<AppState>,
    op: Operator,
    Path((id, decision)): Path<(String, String)>,
    ApiJson(d): ApiJson<Decision>,
) -> ApiResult<Json<Value>> {
    let note = d.note.clone().unwrap_or_default();
    if note.len() > 2000 {
        return Err(ApiError::validation("note", "At most 2000 characters."));
    }
    let (set, bind) = match decision.as_str() {
        "takedown" => {
            let reason = d.reason.clone().unwrap_or_default();
            if !TAKEDOWN_REASONS.contains(&reason.as_str()) {
                return Err(ApiError::validation("reason", format!("One of {}.", TAKEDOWN_REASONS.join(", "))));
            }
            ("UPDATE images SET takedown_reason = $1 WHERE id = $2", Some(reason))
        }
        "warn" => ("UPDATE images SET warned = 1 WHERE id = $1", None),
        "restore" => ("UPDATE images SET takedown_reason = NULL, warned = 0 WHERE id = $1", None),
        _ => return Err(ApiError::NotFound),
    };
    decide(&state, &op, &id, set, bind, &note).await
}

async fn load(state: &AppState, id: &str) -> ApiResult<ImageRow> {
    crate::images::routes::fetch(state, id).await?.ok_or(ApiError::NotFound)
}

fn state_json(row: &ImageRow, now: i64) -> Value {
    let (action, reason) = row.edge_action(now);
    json!({ "edge": if action == Action::Restore { "serve" } else { action.as_str() }, "reason": reason })
}

fn change_json(c: &Change, note: &str, actor: &str, at: i64) -> Value {
    json!({ "seq": c.seq, "action": c.action, "reason": c.reason, "note": note, "actor": actor, "created_at": iso(at) })
}

/// `GET /v1/admin/images/{id}`: what edges do with it, and its history.
async fn image_state(State(state): State<AppState>, _op: Operator, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    parse_id(&id)?;
    let row = load(&state, &id).await?;
    let history = sqlx::query(
        "SELECT seq, action, reason, note, actor, created_at FROM visibility_changes WHERE image_id = $1 ORDER BY seq",
    )
    .bind(&id)
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
    Ok(Json(json!({
        "image_id": id,
        "team_id": row.team_id,
        "state": state_json(&row, state.clock.unix_now()),
        "history": history,
    })))
}

/// `GET /v1/admin/takedowns`: images currently taken down.
async fn takedowns(State(state): State<AppState>, _op: Operator) -> ApiResult<Json<Value>> {
    let rows = sqlx::query(
        "SELECT i.id, i.takedown_reason, (SELECT MAX(c.seq) FROM visibility_changes c WHERE c.image_id = i.id AND c.action = 'takedown') \
         FROM images i WHERE i.takedown_reason IS NOT NULL ORDER BY i.id LIMIT 1000",
    )
    .fetch_all(&state.db.pool)
    .await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| json!({ "image_id": r.get::<String, _>(0), "reason": r.get::<String, _>(1), "seq": r.get::<Option<i64>, _>(2) }))
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// `GET /v1/admin/changes/{seq}`: a change and, for every edge that has
/// reported in, whether and when it applied it.
async fn change_propagation(
    State(state): State<AppState>,
    _op: Operator,
    Path(seq): Path<i64>,
) -> ApiResult<Json<Value>> {
    let c = sqlx::query(
        "SELECT seq, image_id, action, reason, note, actor, created_at FROM visibility_changes WHERE seq = $1",
    )
    .bind(seq)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or(ApiError::NotFound)?;
    let edges = sqlx::query(
        "SELECT e.name, e.applied_seq, e.last_seen_at, (SELECT MIN(a.acked_at) FROM edge_acks a WHERE a.edge = e.name AND a.seq >= $1) \
         FROM edges e ORDER BY e.name",
    )
    .bind(seq)
    .fetch_all(&state.db.pool)
    .await?;
    let mut edges: Vec<Value> = edges
        .iter()
        .map(|r| {
            let applied_at: Option<i64> = r.get(3);
            json!({
                "edge": r.get::<String, _>(0),
                "applied": r.get::<i64, _>(1) >= seq,
                "applied_at": applied_at.map(iso),
                "applied_seq": r.get::<i64, _>(1),
                "last_seen_at": iso(r.get(2)),
            })
        })
        .collect();
    add_silent_edges(&state, &mut edges, || json!({ "applied": false, "applied_at": null, "applied_seq": null }));
    Ok(Json(json!({
        "seq": c.get::<i64, _>(0),
        "image_id": c.get::<String, _>(1),
        "action": c.get::<String, _>(2),
        "reason": c.get::<Option<String>, _>(3),
        "note": c.get::<Option<String>, _>(4),
        "actor": c.get::<String, _>(5),
        "created_at": iso(c.get(6)),
        "edges": edges,
    })))
}

/// `GET /v1/admin/edges`: every edge that has reported in, and its lag.
async fn edges(State(state): State<AppState>, _op: Operator) -> ApiResult<Json<Value>> {
    let h = head(&state.db.pool).await? as i64;
    let rows = sqlx::query("SELECT name, applied_seq, last_seen_at FROM edges ORDER BY name")
        .fetch_all(&state.db.pool)
        .await?;
    let mut data: Vec<Value> = rows
        .iter()
        .map(|r| {
            let applied: i64 = r.get(1);
            json!({ "edge": r.get::<String, _>(0), "applied_seq": applied, "lag": (h - applied).max(0), "last_seen_at": iso(r.get(2)) })
        })
        .collect();
    add_silent_edges(&state, &mut data, || json!({ "applied_seq": null, "lag": null }));
    Ok(Json(json!({ "object": "list", "head": h, "data": data })))
}

/// Add the configured edges that never called in (`last_seen_at: null`):
/// an edge that is down must show, not be missing from the list.
fn add_silent_edges(state: &AppState, list: &mut Vec<Value>, blank: impl Fn() -> Value) {
    for name in state.cfg.edge_sync.edges.keys() {
        if !list.iter().any(|e| e["edge"] == name.as_str()) {
            let mut e = blank();
            e["edge"] = json!(name);
            e["last_seen_at"] = Value::Null;
            list.push(e);
        }
    }
    list.sort_by(|a, b| a["edge"].as_str().cmp(&b["edge"].as_str()));
}
