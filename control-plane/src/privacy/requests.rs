//! Rights requests that arrive by email (people who write instead of
//! clicking): operators record them, each with its legal deadline — 30
//! days under GDPR, 45 under CCPA/CPRA — and close them when answered;
//! overdue ones are listed first.

use serde_json::{json, Value};
use sqlx::Row;

use crate::dates::{iso, DAY};
use crate::db::Db;
use crate::error::{ApiError, ApiResult};

pub const KINDS: [&str; 8] =
    ["access", "erasure", "rectification", "restriction", "objection", "portability", "opt_out", "other"];

/// Days to answer under `jurisdiction` (`gdpr` or `ccpa`).
pub fn deadline_days(jurisdiction: &str) -> Option<i64> {
    match jurisdiction {
        "gdpr" => Some(30),
        "ccpa" => Some(45),
        _ => None,
    }
}

/// Record a request received at `now`; its id.
pub async fn add(
    db: &Db,
    email: &str,
    kind: &str,
    jurisdiction: &str,
    note: Option<&str>,
    now: i64,
) -> ApiResult<String> {
    let email = crate::accounts::normalize_email(email)?;
    if !KINDS.contains(&kind) {
        return Err(ApiError::validation("kind", format!("one of {}", KINDS.join(", "))));
    }
    let days = deadline_days(jurisdiction).ok_or_else(|| ApiError::validation("jurisdiction", "gdpr or ccpa"))?;
    let id = crate::secrets::new_sortable_id("rr");
    sqlx::query(
        "INSERT INTO rights_requests (id, email, kind, jurisdiction, received_at, due_at, state, note, closed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, NULL)",
    )
    .bind(&id)
    .bind(&email)
    .bind(kind)
    .bind(jurisdiction)
    .bind(now)
    .bind(now + days * DAY)
    .bind(note.map(str::to_string))
    .execute(&db.pool)
    .await?;
    Ok(id)
}

/// Open requests, the most urgent first (`overdue_only`: past their deadline at `now`).
pub async fn list(db: &Db, now: i64, overdue_only: bool) -> ApiResult<Vec<Value>> {
    let rows = sqlx::query(
        "SELECT id, email, kind, jurisdiction, received_at, due_at, note FROM rights_requests \
         WHERE state = 'open' AND ($1 = 0 OR due_at < $2) ORDER BY due_at, id",
    )
    .bind(i64::from(overdue_only))
    .bind(now)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let due: i64 = r.get("due_at");
            json!({
                "id": r.get::<String, _>("id"), "email": r.get::<String, _>("email"),
                "kind": r.get::<String, _>("kind"), "jurisdiction": r.get::<String, _>("jurisdiction"),
                "received_at": iso(r.get("received_at")), "due_at": iso(due), "overdue": due < now,
                "days_left": (due - now).div_euclid(DAY), "note": r.get::<Option<String>, _>("note"),
            })
        })
        .collect())
}

/// Close a request as answered (`done`) or refused, with a note.
pub async fn close(db: &Db, id: &str, refused: bool, note: Option<&str>, now: i64) -> ApiResult<()> {
    let n = sqlx::query(
        "UPDATE rights_requests SET state = $1, closed_at = $2, note = COALESCE($3, note) WHERE id = $4 AND state = 'open'",
    )
    .bind(if refused { "refused" } else { "done" })
    .bind(now)
    .bind(note.map(str::to_string))
    .bind(id)
    .execute(&db.pool)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(())
}
