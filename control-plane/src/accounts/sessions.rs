//! Sessions: opaque random tokens, stored hashed, with a sliding expiry
//! and a hard maximum. The client address and user agent at sign-in are
//! kept on the row and so deleted with it.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};

use super::iso;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ClientMeta, SessionAuth, SESSION_COOKIE};
use crate::secrets::{hash_token, new_id, random_token};
use crate::AppState;

const DAY: i64 = 86_400;

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
pub async fn lookup(state: &AppState, token: &str) -> Result<Option<SessionAuth>, ApiError> {
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
    Ok(Some(SessionAuth {
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

/// `POST /v1/auth/logout`
pub async fn logout(State(state): State<AppState>, auth: SessionAuth) -> ApiResult<Response> {
    sqlx::query("DELETE FROM sessions WHERE id = $1").bind(&auth.session_id).execute(&state.db.pool).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear_cookie(&state))]).into_response())
}

/// `POST /v1/auth/logout-all`
pub async fn logout_all(State(state): State<AppState>, auth: SessionAuth) -> ApiResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    end_all(&mut conn, &auth.user_id, None).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear_cookie(&state))]).into_response())
}

/// `GET /v1/sessions`: the caller's own sessions.
pub async fn list(State(state): State<AppState>, auth: SessionAuth) -> ApiResult<Json<Value>> {
    let rows = sqlx::query(
        "SELECT id, created_at, last_seen_at, expires_at, ip, user_agent FROM sessions WHERE user_id = $1 ORDER BY created_at DESC",
    )
    .bind(&auth.user_id)
    .fetch_all(&state.db.pool)
    .await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            let id: String = r.get("id");
            json!({
                "id": id,
                "object": "session",
                "current": id == auth.session_id,
                "created_at": iso(r.get("created_at")),
                "last_seen_at": iso(r.get("last_seen_at")),
                "expires_at": iso(r.get("expires_at")),
                "ip_address": r.get::<Option<String>, _>("ip"),
                "user_agent": r.get::<Option<String>, _>("user_agent"),
            })
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// `DELETE /v1/sessions/{id}`: revoke one of the caller's sessions.
pub async fn revoke(State(state): State<AppState>, auth: SessionAuth, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let n = sqlx::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2")
        .bind(&id)
        .bind(&auth.user_id)
        .execute(&state.db.pool)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}
