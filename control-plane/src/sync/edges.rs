//! The edges, as the control plane sees them: each long-poll for changes,
//! each acknowledgement of an applied `seq`, and from those the lag and
//! propagation the operator API reports.

use std::time::Duration;

use imgcdn_shared::sync::{ChangesPage, MAX_PAGE};
use serde_json::{json, Value};
use sqlx::Row;

use super::{changes_after, head};
use crate::dates::iso;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Note that `edge` called in now.
pub async fn seen(state: &AppState, edge: &str) -> ApiResult<()> {
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

/// The changes after `after` for a long-poll: at once if there are any,
/// otherwise when one commits or `wait_ms` (capped by config) passes.
/// `SnapshotRequired` when `after` is too far behind, or ahead of the log.
pub async fn poll_changes(state: &AppState, edge: &str, after: u64, wait_ms: u64) -> ApiResult<ChangesPage> {
    seen(state, edge).await?;
    // Subscribe before reading, so a change committed in between still wakes us.
    let mut wake = state.sync.subscribe();
    let wait = Duration::from_millis(wait_ms.min(state.cfg.edge_sync.max_wait_ms));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let h = head(&state.db.pool).await?;
        if after > h || h - after > state.cfg.edge_sync.snapshot_after {
            return Err(ApiError::SnapshotRequired);
        }
        if h > after || tokio::time::Instant::now() >= deadline {
            let changes = changes_after(&state.db.pool, after, h, MAX_PAGE).await?;
            let more = changes.last().is_some_and(|c| c.seq < h) && changes.len() == MAX_PAGE;
            return Ok(ChangesPage { changes, head: h, more });
        }
        state.sync.advance(h);
        // The hub may know a head above the database's (the database was
        // restored from a backup under a running process): then it cannot
        // tell us when to look again, so poll instead of spinning.
        let hub_ahead = *wake.borrow() > h;
        let poll = tokio::time::Instant::now() + Duration::from_millis(state.cfg.edge_sync.poll_ms);
        tokio::select! {
            woken = tokio::time::timeout_at(deadline, wake.wait_for(|known| *known > after)), if !hub_ahead => {
                if let Ok(Err(_)) = woken {
                    return Err(ApiError::Internal("edge sync hub closed".into()));
                }
            }
            _ = tokio::time::sleep_until(poll.min(deadline)), if hub_ahead => {}
            // Shutting down: answer now (empty), the edge polls another replica.
            _ = state.sync.closed() => return Ok(ChangesPage { changes: vec![], head: after, more: false }),
        }
    }
}

/// `edge` applied and persisted everything up to `seq` (an edge's applied
/// `seq` never goes down; each advance is kept with its time).
pub async fn ack(state: &AppState, edge: &str, seq: u64) -> ApiResult<()> {
    let now = state.clock.unix_now();
    let seq_i = i64::try_from(seq).map_err(|_| ApiError::validation("seq", "out of range"))?;
    if seq > head(&state.db.pool).await? {
        return Err(ApiError::validation("seq", "ahead of the log"));
    }
    let mut tx = state.db.begin_write().await?;
    let before: Option<i64> = sqlx::query("SELECT applied_seq FROM edges WHERE name = $1")
        .bind(edge)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.get(0));
    sqlx::query(
        "INSERT INTO edges (name, applied_seq, last_seen_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET last_seen_at = excluded.last_seen_at, \
         applied_seq = CASE WHEN excluded.applied_seq > edges.applied_seq THEN excluded.applied_seq ELSE edges.applied_seq END",
    )
    .bind(edge)
    .bind(seq_i)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if before.is_none_or(|b| seq_i > b) {
        sqlx::query(
            "INSERT INTO edge_acks (edge, seq, acked_at) VALUES ($1, $2, $3) ON CONFLICT (edge, seq) DO NOTHING",
        )
        .bind(edge)
        .bind(seq_i)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A change and, for every edge that has reported in, whether and when it
/// applied it.
pub async fn propagation(state: &AppState, seq: i64) -> ApiResult<Value> {
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
    add_silent_edges(state, &mut edges, || json!({ "applied": false, "applied_at": null, "applied_seq": null }));
    Ok(json!({
        "seq": c.get::<i64, _>(0),
        "image_id": c.get::<String, _>(1),
        "action": c.get::<String, _>(2),
        "reason": c.get::<Option<String>, _>(3),
        "note": c.get::<Option<String>, _>(4),
        "actor": c.get::<String, _>(5),
        "created_at": iso(c.get(6)),
        "edges": edges,
    }))
}

/// Every configured edge and every edge that has reported in, with its lag.
pub async fn list(state: &AppState) -> ApiResult<Value> {
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
    add_silent_edges(state, &mut data, || json!({ "applied_seq": null, "lag": null }));
    Ok(json!({ "object": "list", "head": h, "data": data }))
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
