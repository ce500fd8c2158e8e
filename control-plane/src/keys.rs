//! API keys: `img_live_<random>`, shown once, stored as a SHA-256, with a
//! name, abilities (`read`, `write`), day-granular created/last-used
//! dates, revocable. Keys belong to a team.
//!
//! Also the legacy `POST /v1/keys` `{email, name?}`, which creates an
//! unverified, password-less account and its first key in one call (see
//! [`legacy_create`]).

use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};

use crate::accounts::{insert_user, issue_email_token, record_consent};
use crate::client::ClientMeta;
use crate::dates::{date, day};
use crate::db::Db;
use crate::email::{enqueue, templates};
use crate::error::{ApiError, ApiResult};
use crate::secrets::{hash_token, new_id, random_alnum};
use crate::AppState;

pub const KEY_PREFIX: &str = "img_live_";
pub const MAX_KEY_NAME: usize = 100;

/// A valid, unrevoked key, as a request presents it.
#[derive(Debug, Clone)]
pub struct ActiveKey {
    pub key_id: String,
    pub team_id: String,
    pub can_read: bool,
    pub can_write: bool,
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abilities {
    pub read: bool,
    pub write: bool,
}

impl Abilities {
    /// From the API's list form (`["read", "write"]`).
    pub fn parse(list: &[String]) -> ApiResult<Abilities> {
        if list.is_empty() || list.iter().any(|a| a != "read" && a != "write") {
            return Err(ApiError::validation("abilities", "Abilities are a non-empty list of \"read\" and \"write\"."));
        }
        Ok(Abilities { read: list.iter().any(|a| a == "read"), write: list.iter().any(|a| a == "write") })
    }
}

/// The key holding `token`, if it is valid and not revoked. Marks the key
/// used today (day granularity: at most one write per key per day).
pub async fn authenticate(db: &Db, token: &str, now: i64) -> Result<Option<ActiveKey>, sqlx::Error> {
    if !token.starts_with(KEY_PREFIX) {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT id, team_id, can_read, can_write, last_used_day FROM api_keys k WHERE key_hash = $1 AND revoked_at IS NULL \
         AND NOT EXISTS (SELECT 1 FROM users u WHERE u.deletion_requested_at IS NOT NULL \
         AND (u.id = k.created_by OR u.personal_team_id = k.team_id))",
    )
    .bind(hash_token(token))
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let key = ActiveKey {
        key_id: row.get("id"),
        team_id: row.get("team_id"),
        can_read: row.get::<i64, _>("can_read") != 0,
        can_write: row.get::<i64, _>("can_write") != 0,
    };
    let today = day(now);
    if row.get::<Option<i64>, _>("last_used_day") != Some(today) {
        sqlx::query("UPDATE api_keys SET last_used_day = $1 WHERE id = $2")
            .bind(today)
            .bind(&key.key_id)
            .execute(&db.pool)
            .await?;
    }
    Ok(Some(key))
}

/// Create a key; returns (id, secret).
async fn insert_key(
    conn: &mut AnyConnection,
    team_id: &str,
    created_by: Option<&str>,
    name: &str,
    abilities: Abilities,
    unproven: bool,
    now: i64,
) -> Result<(String, String), sqlx::Error> {
    let id = new_id("key");
    let secret = format!("{KEY_PREFIX}{}", random_alnum(40));
    sqlx::query(
        "INSERT INTO api_keys (id, team_id, created_by, name, prefix, key_hash, can_read, can_write, created_day, last_used_day, revoked_at, unproven) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, $10)",
    )
    .bind(&id)
    .bind(team_id)
    .bind(created_by.map(str::to_string))
    .bind(name)
    .bind(&secret[..KEY_PREFIX.len() + 4])
    .bind(hash_token(&secret))
    .bind(i64::from(abilities.read))
    .bind(i64::from(abilities.write))
    .bind(day(now))
    .bind(i64::from(unproven))
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

/// The key object of `key_id` (no secret).
pub async fn get_json(db: &Db, key_id: &str) -> ApiResult<Value> {
    let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
        .bind(key_id)
        .fetch_one(&db.pool)
        .await?;
    Ok(key_json(&row))
}

/// A new key for `team_id`, created by a signed-in user who may do so;
/// the key object with its secret (shown this once).
pub async fn create(
    state: &AppState,
    team_id: &str,
    user_id: &str,
    email_verified: bool,
    name: &str,
    abilities: Abilities,
) -> ApiResult<Value> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_KEY_NAME {
        return Err(ApiError::validation("name", format!("Name the key (1 to {MAX_KEY_NAME} characters).")));
    }
    let now = state.clock.unix_now();
    let mut tx = state.db.begin_write().await?;
    if !email_verified {
        let held = active_keys_created_by(&mut tx, user_id).await?;
        if held >= state.cfg.legacy_keys.unverified_max_keys {
            return Err(ApiError::Forbidden(format!(
                "Unverified accounts can hold {} keys. Confirm your email address to create more.",
                state.cfg.legacy_keys.unverified_max_keys
            )));
        }
    }
    let (id, secret) = insert_key(&mut tx, team_id, Some(user_id), name, abilities, !email_verified, now).await?;
    let row =
        sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1")).bind(&id).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    let mut out = key_json(&row);
    out["key"] = json!(secret);
    Ok(out)
}

async fn active_keys_created_by(conn: &mut AnyConnection, user_id: &str) -> Result<i64, sqlx::Error> {
    Ok(sqlx::query("SELECT COUNT(*) FROM api_keys WHERE created_by = $1 AND revoked_at IS NULL")
        .bind(user_id)
        .fetch_one(conn)
        .await?
        .get(0))
}

/// Every key of `team_id`, newest first: no secrets, ever.
pub async fn list(db: &Db, team_id: &str) -> ApiResult<Vec<Value>> {
    let rows =
        sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE team_id = $1 ORDER BY created_day DESC, id"))
            .bind(team_id)
            .fetch_all(&db.pool)
            .await?;
    Ok(rows.iter().map(key_json).collect())
}

/// Revoke a key of `team_id`; `NotFound` if there is no such active key.
pub async fn revoke(db: &Db, team_id: &str, key_id: &str, now: i64) -> ApiResult<()> {
    let n = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND team_id = $3 AND revoked_at IS NULL")
        .bind(now)
        .bind(key_id)
        .bind(team_id)
        .execute(&db.pool)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(())
}

/// Legacy `POST /v1/keys`: a new unverified account and its first key (the
/// key object with its secret). An email that already has an account gets
/// no key here (that would hand its images to whoever knows the address);
/// its owner is mailed instead, and the answer is a conflict.
pub async fn legacy_create(state: &AppState, email: &str, name: &str, client: &ClientMeta) -> ApiResult<Value> {
    let limits = &state.cfg.legacy_keys;
    let limited = |s| ApiError::RateLimited { retry_after_secs: s };
    if let Some(ip) = &client.ip {
        state.limiter.hit_client("legacy-keys-client", ip, limits.per_client_per_hour, 3600).map_err(limited)?;
    }
    state.limiter.hit("legacy-keys-email", email, limits.per_email_per_hour, 3600).map_err(limited)?;
    let now = state.clock.unix_now();
    let mut tx = state.db.begin_write().await?;
    match insert_user(&mut tx, email, name, None, now).await {
        Ok(user_id) => {
            record_consent(&mut tx, &user_id, "legacy_keys", false, client, now).await?;
            let team_id: String = sqlx::query("SELECT personal_team_id FROM users WHERE id = $1")
                .bind(&user_id)
                .fetch_one(&mut *tx)
                .await?
                .get(0);
            let all = Abilities { read: true, write: true };
            let (key_id, secret) = insert_key(&mut tx, &team_id, Some(&user_id), "Default key", all, true, now).await?;
            let token = issue_email_token(&mut tx, &user_id, "verify", state.cfg.verify_link_ttl_secs, now).await?;
            let link = format!("{}/verify-email?token={token}", state.cfg.public_base_url.trim_end_matches('/'));
            enqueue(&mut tx, templates::verify_email(email, name, &link), now).await?;
            tx.commit().await?;
            state.mail_wake.notify_one();
            Ok(json!({
                "object": "api_key", "id": key_id, "key": secret, "email": email, "verified": false,
                "limits": {
                    "keys": limits.unverified_max_keys,
                    "uploads": state.cfg.uploads.unverified_max_uploads,
                    "retention_days": state.cfg.retention.unverified_days,
                },
                "message": "Check your email to verify your account and lift the limits.",
            }))
        }
        Err(ApiError::Conflict(_)) => {
            tx.rollback().await?;
            let mut tx = state.db.begin_write().await?;
            let login = format!("{}/login", state.cfg.public_base_url.trim_end_matches('/'));
            enqueue(
                &mut tx,
                templates::security_alert(
                    email,
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
