//! Sessions: opaque random tokens, stored hashed, with a sliding expiry
//! and a hard maximum. The client address and user agent at sign-in are
//! kept on the row and so deleted with it.

use axum::http::HeaderValue;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};

use crate::client::ClientMeta;
use crate::dates::{iso, DAY};
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::secrets::{hash_token, new_id, random_token};
use crate::AppState;

/// The cookie that carries the session token.
pub const SESSION_COOKIE: &str = "imgcdn_session";

/// A live session: who is signed in.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub session_id: String,
    pub csrf_token: String,
    pub email: String,
    pub email_verified: bool,
}

/// Do not rewrite a session row more often than this on use.
const TOUCH_EVERY_SECS: i64 = 300;

/// A new session for `user_id`: returns (cookie token, csrf token).
pub async fn create(
    conn: &mut AnyConnection,
    state: &AppState,
    user_id: &str,
    client: &ClientMeta,
) -> Result<(String, String), sqlx::Error> {
    let now = state.clock.unix_now();
    let token = random_token(32);
    let csrf = random_token(24);
    let hard = now + state.cfg.sessions.max_days * DAY;
    let expires = (now + state.cfg.sessions.sliding_days * DAY).min(hard);
    sqlx::query(
        "INSERT INTO sessions (id, token_hash, user_id, csrf_token, created_at, last_seen_at, expires_at, hard_expires_at, ip, user_agent) \
         VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9)",
    )
    .bind(new_id("ses"))
    .bind(hash_token(&token))
    .bind(user_id)
    .bind(&csrf)
    .bind(now)
    .bind(expires)
    .bind(hard)
    .bind(client.ip.clone())
    .bind(client.user_agent.clone())
    .execute(conn)
    .await?;
    Ok((token, csrf))
}

/// Resolve a cookie token to a live session, sliding its expiry forward.
/// Expired sessions are deleted when met.
pub async fn lookup(state: &AppState, token: &str) -> Result<Option<Session>, ApiError> {
    if token.len() > 128 {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT s.id, s.user_id, s.csrf_token, s.last_seen_at, s.expires_at, s.hard_expires_at, u.email, u.email_verified_at \
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
    )
    .bind(hash_token(token))
    .fetch_optional(&state.db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let now = state.clock.unix_now();
    let id: String = row.get("id");
    let expires: i64 = row.get("expires_at");
    let hard: i64 = row.get("hard_expires_at");
    if now >= expires || now >= hard {
        sqlx::query("DELETE FROM sessions WHERE id = $1").bind(&id).execute(&state.db.pool).await?;
        return Ok(None);
    }
    if now - row.get::<i64, _>("last_seen_at") >= TOUCH_EVERY_SECS {
        let slid = (now + state.cfg.sessions.sliding_days * DAY).min(hard);
        sqlx::query("UPDATE sessions SET last_seen_at = $1, expires_at = $2 WHERE id = $3")
            .bind(now)
            .bind(slid)
            .bind(&id)
            .execute(&state.db.pool)
            .await?;
    }
    Ok(Some(Session {
        user_id: row.get("user_id"),
        session_id: id,
        csrf_token: row.get("csrf_token"),
        email: row.get("email"),
        email_verified: row.get::<Option<i64>, _>("email_verified_at").is_some(),
    }))
}

/// The `Set-Cookie` value for a new session.
pub fn set_cookie(state: &AppState, token: &str) -> HeaderValue {
    let max_age = state.cfg.sessions.sliding_days * DAY;
    let secure = if state.cfg.cookie_secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}"
    ))
    .expect("token is URL-safe")
}

/// The `Set-Cookie` value that clears the session cookie.
pub fn clear_cookie(state: &AppState) -> HeaderValue {
    let secure = if state.cfg.cookie_secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0{secure}"))
        .expect("static")
}

/// Delete every session of `user_id`, except `keep` if given.
pub async fn end_all(conn: &mut AnyConnection, user_id: &str, keep: Option<&str>) -> Result<u64, sqlx::Error> {
    let r = match keep {
        Some(k) => {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
                .bind(user_id)
                .bind(k)
                .execute(conn)
                .await?
        }
        None => sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(conn).await?,
    };
    Ok(r.rows_affected())
}

/// End one session.
pub async fn end(db: &Db, session_id: &str) -> ApiResult<()> {
    sqlx::query("DELETE FROM sessions WHERE id = $1").bind(session_id).execute(&db.pool).await?;
    Ok(())
}

/// The live sessions of `user_id` at `now`, newest first; `current` is
/// marked. (Ended ones are deleted by the sweep; until then they are not
/// shown.)
pub async fn list(db: &Db, user_id: &str, current: &str, now: i64) -> ApiResult<Vec<Value>> {
    let rows = sqlx::query(
        "SELECT id, created_at, last_seen_at, expires_at, ip, user_agent FROM sessions \
         WHERE user_id = $1 AND expires_at > $2 AND hard_expires_at > $2 ORDER BY created_at DESC",
    )
    .bind(user_id)
    .bind(now)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: String = r.get("id");
            json!({
                "id": id,
                "object": "session",
                "current": id == current,
                "created_at": iso(r.get("created_at")),
                "last_seen_at": iso(r.get("last_seen_at")),
                "expires_at": iso(r.get("expires_at")),
                "ip_address": r.get::<Option<String>, _>("ip"),
                "user_agent": r.get::<Option<String>, _>("user_agent"),
            })
        })
        .collect())
}

/// Revoke one of `user_id`'s sessions; `NotFound` if it has no such session.
pub async fn revoke(db: &Db, user_id: &str, session_id: &str) -> ApiResult<()> {
    let n = sqlx::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2")
        .bind(session_id)
        .bind(user_id)
        .execute(&db.pool)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(())
}
