//! `Idempotency-Key` for image creation.
//!
//! The first request with a key records a hash of what it asked for and
//! runs; its response is stored. A retry with the same key and the same
//! request gets that response again (no second image); the same key with a
//! different request is a 409 `idempotency_key_conflict`; a retry while
//! the first is still running is a 409 `idempotency_key_in_progress`. A
//! request that fails frees its key, so it can be retried; so does one the
//! client abandoned (the connection dropped mid-upload: [`ClaimGuard`]),
//! and a claim still `in_progress` after [`STALE_CLAIM_SECS`] (its process
//! died) counts as abandoned. Keys are scoped to the team (or to anonymous
//! callers) and forgotten after 24 hours.

use sqlx::Row;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub const KEEP_SECS: i64 = 86_400;

/// A claim this old that never finished belongs to a request that died
/// with its process: the key is free again.
pub const STALE_CLAIM_SECS: i64 = 900;

/// What the caller should do with the request.
pub enum Claim {
    /// First use: run it, then [`finish`] or [`release`].
    Run,
    /// Already done: send this stored response.
    Replay { status: u16, body: String },
}

/// A usable key from the header value, or a validation error.
pub fn parse_key(raw: &str) -> ApiResult<String> {
    let k = raw.trim();
    if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::validation("Idempotency-Key", "Use 1 to 255 visible ASCII characters."));
    }
    Ok(k.to_string())
}

/// Claim `key` in `scope` for a request whose content hashes to `hash`.
pub async fn claim(state: &AppState, scope: &str, key: &str, hash: &str) -> ApiResult<Claim> {
    let now = state.clock.unix_now();
    // Forget this key if it is old, or an abandoned claim, then try to take it.
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE scope = $1 AND idem_key = $2 \
         AND (created_at < $3 OR (state = 'in_progress' AND created_at < $4))",
    )
    .bind(scope)
    .bind(key)
    .bind(now - KEEP_SECS)
    .bind(now - STALE_CLAIM_SECS)
    .execute(&state.db.pool)
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, idem_key, request_hash, state, response_status, response_body, created_at) \
         VALUES ($1, $2, $3, 'in_progress', NULL, NULL, $4)",
    )
    .bind(scope)
    .bind(key)
    .bind(hash)
    .bind(now)
    .execute(&state.db.pool)
    .await;
    match inserted {
        Ok(_) => return Ok(Claim::Run),
        Err(e) if crate::db::is_unique_violation(&e) => {}
        Err(e) => return Err(e.into()),
    }
    let row = sqlx::query("SELECT request_hash, state, response_status, response_body FROM idempotency_keys WHERE scope = $1 AND idem_key = $2")
        .bind(scope)
        .bind(key)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or(ApiError::IdempotencyInProgress)?;
    if row.get::<String, _>("request_hash") != hash {
        return Err(ApiError::IdempotencyConflict);
    }
    if row.get::<String, _>("state") != "done" {
        return Err(ApiError::IdempotencyInProgress);
    }
    Ok(Claim::Replay {
        status: row.get::<Option<i64>, _>("response_status").unwrap_or(200) as u16,
        body: row.get::<Option<String>, _>("response_body").unwrap_or_default(),
    })
}

/// Store the response of a claimed request.
pub async fn finish(state: &AppState, scope: &str, key: &str, status: u16, body: &str) -> ApiResult<()> {
    sqlx::query("UPDATE idempotency_keys SET state = 'done', response_status = $1, response_body = $2 WHERE scope = $3 AND idem_key = $4")
        .bind(i64::from(status))
        .bind(body)
        .bind(scope)
        .bind(key)
        .execute(&state.db.pool)
        .await?;
    Ok(())
}

/// Free a claimed key after a failure, so the request can be retried.
pub async fn release(state: &AppState, scope: &str, key: &str) {
    let _ = sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND idem_key = $2 AND state = 'in_progress'")
        .bind(scope)
        .bind(key)
        .execute(&state.db.pool)
        .await;
}

/// A claimed key, freed if the request never reaches [`ClaimGuard::finish`]
/// or [`ClaimGuard::release`]: a client that drops the connection mid-upload
/// cancels the handler future, and its key must not stay `in_progress`
/// (every retry would get a 409).
pub struct ClaimGuard {
    state: Option<AppState>,
    scope: String,
    key: String,
}

impl ClaimGuard {
    pub fn new(state: &AppState, scope: &str, key: &str) -> ClaimGuard {
        ClaimGuard { state: Some(state.clone()), scope: scope.to_string(), key: key.to_string() }
    }

    /// Store the response; the key now replays it.
    pub async fn finish(mut self, status: u16, body: &str) -> ApiResult<()> {
        let state = self.state.take().expect("claimed");
        finish(&state, &self.scope, &self.key, status, body).await
    }

    /// Free the key after a failure.
    pub async fn release(mut self) {
        let state = self.state.take().expect("claimed");
        release(&state, &self.scope, &self.key).await;
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            let (scope, key) = (std::mem::take(&mut self.scope), std::mem::take(&mut self.key));
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { release(&state, &scope, &key).await });
            }
        }
    }
}
