//! Recomputing windows when what decides them changes outside an image:
//! a user verified their email (their uploads, and their teams' key
//! uploads, leave the unverified ceiling) or a team's plan changed.
//! Each image goes through [`lifecycle::apply`] with `Edit::Recompute`,
//! so a shorter expiry reaches the edges like any other change.

use sqlx::Row;

use crate::error::ApiResult;
use crate::images::lifecycle::{self, Actor, Edit};
use crate::AppState;

const WHO: Actor = Actor::System("retention");

/// Recompute the window of every live image `user_id` uploaded, and of
/// API-key uploads to the teams they own. Returns how many expiries changed.
pub async fn for_user(state: &AppState, user_id: &str) -> ApiResult<u64> {
    let ids = sqlx::query(
        "SELECT id FROM images WHERE deleted_at IS NULL AND (uploaded_by = $1 OR (uploaded_by IS NULL AND team_id IN \
         (SELECT team_id FROM memberships WHERE user_id = $1 AND role = 'owner')))",
    )
    .bind(user_id)
    .fetch_all(&state.db.pool)
    .await?;
    each(state, ids.iter().map(|r| r.get(0)).collect(), "email verified").await
}

/// Recompute the window of every live image of `team_id` (its plan changed).
pub async fn for_team(state: &AppState, team_id: &str) -> ApiResult<u64> {
    let ids = sqlx::query("SELECT id FROM images WHERE deleted_at IS NULL AND team_id = $1")
        .bind(team_id)
        .fetch_all(&state.db.pool)
        .await?;
    each(state, ids.iter().map(|r| r.get(0)).collect(), "plan changed").await
}

async fn each(state: &AppState, ids: Vec<String>, note: &str) -> ApiResult<u64> {
    let mut changed = 0;
    for id in ids {
        let applied = lifecycle::apply(state, &id, &WHO, note, Edit::Recompute).await?;
        changed += u64::from(applied.expiry_changed);
    }
    Ok(changed)
}

/// Set `team_id`'s plan and recompute its images' windows.
pub async fn change_plan(state: &AppState, team_id: &str, plan: &str) -> ApiResult<u64> {
    let n = sqlx::query("UPDATE teams SET plan = $1 WHERE id = $2")
        .bind(plan)
        .bind(team_id)
        .execute(&state.db.pool)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(crate::error::ApiError::NotFound);
    }
    for_team(state, team_id).await
}
