//! API keys: `img_live_<random>`, shown once, stored as a SHA-256, with a
//! name, abilities (`read`, `write`), day-granular created/last-used
//! dates, revocable. Keys belong to a team.
//!
//! Also the legacy `POST /v1/keys` `{email, name?}`, which creates an
//! unverified, password-less account and its first key in one call, with
//! per-email and per-client rate limits.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};

use crate::accounts::{insert_user, issue_email_token, normalize_email, record_consent};
use crate::email::{enqueue, templates};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ClientMeta, Principal, SessionAuth};
use crate::http::json::ApiJson;
use crate::secrets::{hash_token, new_id, random_alnum};
use crate::teams::{require_role, Role};
use crate::AppState;

pub const KEY_PREFIX: &str = "img_live_";
const MAX_KEY_NAME: usize = 100;

/// Unix seconds truncated to the UTC day.
pub fn day(t: i64) -> i64 {
    t.div_euclid(86_400) * 86_400
}

fn date(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t).map(|d| d.date().to_string()).unwrap_or_default()
}

/// Create a key; returns (id, secret).
async fn insert_key(
    conn: &mut AnyConnection,
    team_id: &str,
    created_by: Option<&str>,
    name: &str,
    can_read: bool,
    can_write: bool,
    now: i64,
) -> Result<(String, String), sqlx::Error> {
    let id = new_id("key");
    let secret = format!("{KEY_PREFIX}{}", random_alnum(40));
    sqlx::query(
        "INSERT INTO api_keys (id, team_id, created_by, name, prefix, key_hash, can_read, can_write, created_day, last_used_day, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL)",
    )
    .bind(&id)
    .bind(team_id)
    .bind(created_by.map(str::to_string))
    .bind(name)
    .bind(&secret[..KEY_PREFIX.len() + 4])
    .bind(hash_token(&secret))
    .bind(i64::from(can_read))
    .bind(i64::from(can_write))
    .bind(day(now))
    .execute(conn)
    .await?;
    Ok((id, secret))
}

fn key_json(r: &sqlx::any::AnyRow) -> Value {
    let mut abilities = Vec::new();
    if r.get::<i64, _>("can_read") != 0 {
        abilities.push("read");
    }
    if r.get::<i64, _>("can_write") != 0 {
        abilities.push("write");
    }
    json!({
        "id": r.get::<String, _>("id"),
        "object": "api_key",
        "team_id": r.get::<String, _>("team_id"),
        "name": r.get::<String, _>("name"),
        "prefix": r.get::<String, _>("prefix"),
        "abilities": abilities,
        "created": date(r.get("created_day")),
        "last_used": r.get::<Option<i64>, _>("last_used_day").map(date),
        "revoked": r.get::<Option<i64>, _>("revoked_at").is_some(),
    })
}

const KEY_COLUMNS: &str = "id, team_id, name, prefix, can_read, can_write, created_day, last_used_day, revoked_at";

#[derive(Deserialize)]
pub struct CreateKeyBody {
    name: String,
    #[serde(default = "default_abilities")]
    abilities: Vec<String>,
}

fn default_abilities() -> Vec<String> {
    vec!["read".into(), "write".into()]
}

/// `POST /v1/teams/{team_id}/keys` (admin or owner).
pub async fn create(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path(team_id): Path<String>,
    ApiJson(body): ApiJson<CreateKeyBody>,
) -> ApiResult<Response> {
    require_role(&state, &team_id, &auth.user_id, Role::Admin).await?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_KEY_NAME {
        return Err(ApiError::validation("name", format!("Name the key (1 to {MAX_KEY_NAME} characters).")));
    }
    if body.abilities.is_empty() || body.abilities.iter().any(|a| a != "read" && a != "write") {
        return Err(ApiError::validation("abilities", "Abilities are a non-empty list of \"read\" and \"write\"."));
    }
    let (can_read, can_write) =
        (body.abilities.iter().any(|a| a == "read"), body.abilities.iter().any(|a| a == "write"));
    let now = state.clock.unix_now();
    let mut tx = state.db.pool.begin().await?;
    if !auth.email_verified {
        let held = active_keys_created_by(&mut tx, &auth.user_id).await?;
        if held >= state.cfg.legacy_keys.unverified_max_keys {
            return Err(ApiError::Forbidden(format!(
                "Unverified accounts can hold {} keys. Confirm your email address to create more.",
                state.cfg.legacy_keys.unverified_max_keys
            )));
        }
    }
    let (id, secret) = insert_key(&mut tx, &team_id, Some(&auth.user_id), name, can_read, can_write, now).await?;
    let row =
        sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1")).bind(&id).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    let mut out = key_json(&row);
    out["key"] = json!(secret);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn active_keys_created_by(conn: &mut AnyConnection, user_id: &str) -> Result<i64, sqlx::Error> {
    Ok(sqlx::query("SELECT COUNT(*) FROM api_keys WHERE created_by = $1 AND revoked_at IS NULL")
        .bind(user_id)
        .fetch_one(conn)
        .await?
        .get(0))
}

/// `GET /v1/teams/{team_id}/keys` (any member): no secrets, ever.
pub async fn list(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path(team_id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_role(&state, &team_id, &auth.user_id, Role::Member).await?;
    let rows =
        sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE team_id = $1 ORDER BY created_day DESC, id"))
            .bind(&team_id)
            .fetch_all(&state.db.pool)
            .await?;
    Ok(Json(json!({ "object": "list", "data": rows.iter().map(key_json).collect::<Vec<_>>() })))
}

/// `DELETE /v1/teams/{team_id}/keys/{key_id}` (admin or owner).
pub async fn revoke(
    State(state): State<AppState>,
    auth: SessionAuth,
    Path((team_id, key_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    require_role(&state, &team_id, &auth.user_id, Role::Admin).await?;
    let n = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND team_id = $3 AND revoked_at IS NULL")
        .bind(state.clock.unix_now())
        .bind(&key_id)
        .bind(&team_id)
        .execute(&state.db.pool)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/whoami`: what the credential is (session or key).
pub async fn whoami(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    Ok(Json(match who {
        Principal::Key(k) => {
            let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
                .bind(&k.key_id)
                .fetch_one(&state.db.pool)
                .await?;
            json!({ "object": "whoami", "type": "api_key", "team_id": k.team_id, "key": key_json(&row) })
        }
        Principal::Session(s) => {
            json!({ "object": "whoami", "type": "session", "user_id": s.user_id })
        }
    }))
}

#[derive(Deserialize)]
pub struct LegacyKeyBody {
    email: String,
    name: Option<String>,
}

/// Legacy `POST /v1/keys` `{email, name?}`: a new unverified account and
/// its first key. An email that already has an account gets no key here
/// (that would hand its images to whoever knows the address); its owner is
/// mailed instead.
pub async fn legacy_create(
    State(state): State<AppState>,
    client: ClientMeta,
    ApiJson(body): ApiJson<LegacyKeyBody>,
) -> ApiResult<Response> {
    let email = normalize_email(&body.email)?;
    let name = match body.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => crate::accounts::check_name(n)?,
        None => email.split('@').next().unwrap_or("me").chars().take(crate::accounts::MAX_NAME).collect(),
    };
    let limits = &state.cfg.legacy_keys;
    let limited = |s| ApiError::RateLimited { retry_after_secs: s };
    if let Some(ip) = &client.ip {
        state.limiter.hit("legacy-keys-client", ip, limits.per_client_per_hour, 3600).map_err(limited)?;
    }
    state.limiter.hit("legacy-keys-email", &email, limits.per_email_per_hour, 3600).map_err(limited)?;
    let now = state.clock.unix_now();
    let mut tx = state.db.pool.begin().await?;
    match insert_user(&mut tx, &email, &name, None, now).await {
        Ok(user_id) => {
            record_consent(&mut tx, &user_id, "legacy_keys", false, &client, now).await?;
            let team_id: String = sqlx::query("SELECT personal_team_id FROM users WHERE id = $1")
                .bind(&user_id)
                .fetch_one(&mut *tx)
                .await?
                .get(0);
            let (key_id, secret) =
                insert_key(&mut tx, &team_id, Some(&user_id), "Default key", true, true, now).await?;
            let token = issue_email_token(&mut tx, &user_id, "verify", state.cfg.verify_link_ttl_secs, now).await?;
            let link = format!("{}/verify-email?token={token}", state.cfg.public_base_url.trim_end_matches('/'));
            enqueue(&mut tx, templates::verify_email(&email, &name, &link), now).await?;
            tx.commit().await?;
            state.mail_wake.notify_one();
            Ok((
                StatusCode::CREATED,
                Json(json!({
                    "object": "api_key", "id": key_id, "key": secret, "email": email, "verified": false,
                    "limits": { "keys": limits.unverified_max_keys, "uploads": 100, "retention_days": 30 },
                    "message": "Check your email to verify your account and lift the limits.",
                })),
            )
                .into_response())
        }
        Err(ApiError::Conflict(_)) => {
            tx.rollback().await?;
            let mut tx = state.db.pool.begin().await?;
            let login = format!("{}/login", state.cfg.public_base_url.trim_end_matches('/'));
            enqueue(
                &mut tx,
                templates::security_alert(
                    &email,
                    &format!("Someone asked for an API key for this address. Sign in at {login} to create keys."),
                ),
                now,
            )
            .await?;
            tx.commit().await?;
            state.mail_wake.notify_one();
            Err(ApiError::Conflict("This email already has an account: sign in to create keys.".into()))
        }
        Err(e) => Err(e),
    }
}
