//! Rectification and the choices a person makes about processing:
//! - a new email address takes effect once the link sent to it is opened
//!   (the old address is told at once; the name changes through `PATCH
//!   /v1/me`);
//! - restriction (GDPR Art. 18) and objection (Art. 21) are flags with the
//!   time they were set, each also appended to the consent records; while
//!   either is set no optional processing happens (marketing mail: see
//!   [`crate::email::queue_marketing`]; there is no other optional
//!   processing: no analytics, no profiling).

use sqlx::Row;

use crate::accounts::{consume_email_token, issue_email_token, normalize_email, sessions};
use crate::client::ClientMeta;
use crate::email::{enqueue, templates};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Ask to change the account's email to `new_email` (the password
/// confirms it is the owner). Answers the same whether or not the new
/// address has an account (its owner is told instead).
pub async fn request_email_change(
    state: &AppState,
    session: &sessions::Session,
    new_email: &str,
    password: String,
) -> ApiResult<()> {
    let new_email = normalize_email(new_email)?;
    state
        .limiter
        .hit("email-change", &session.user_id, 5, 3600)
        .map_err(|s| ApiError::RateLimited { retry_after_secs: s })?;
    let stored: Option<String> = sqlx::query("SELECT password_hash FROM users WHERE id = $1")
        .bind(&session.user_id)
        .fetch_one(&state.db.pool)
        .await?
        .get(0);
    if !state.passwords.verify(password, stored).await? {
        return Err(ApiError::validation("password", "The password is wrong."));
    }
    let now = state.clock.unix_now();
    let mut tx = state.db.begin_write().await?;
    let taken = sqlx::query("SELECT 1 FROM users WHERE email = $1").bind(&new_email).fetch_optional(&mut *tx).await?;
    if taken.is_some() {
        let login = format!("{}/login", state.cfg.public_base_url.trim_end_matches('/'));
        enqueue(&mut tx, templates::account_exists(&new_email, &login), now).await?;
    } else {
        sqlx::query("UPDATE users SET pending_email = $1 WHERE id = $2")
            .bind(&new_email)
            .bind(&session.user_id)
            .execute(&mut *tx)
            .await?;
        let token =
            issue_email_token(&mut tx, &session.user_id, "change_email", state.cfg.verify_link_ttl_secs, now).await?;
        let link = format!("{}/confirm-email?token={token}", state.cfg.public_base_url.trim_end_matches('/'));
        enqueue(&mut tx, templates::confirm_new_email(&new_email, &link), now).await?;
        enqueue(&mut tx, templates::email_changing(&session.email), now).await?;
    }
    tx.commit().await?;
    state.mail_wake.notify_one();
    Ok(())
}

/// Use the link sent to the new address: it becomes the account's (and is
/// verified: the link proves it). Returns the user id.
pub async fn confirm_email_change(state: &AppState, token: &str) -> ApiResult<String> {
    let now = state.clock.unix_now();
    let invalid = || ApiError::validation("token", "This link is invalid, expired or already used.");
    let mut tx = state.db.begin_write().await?;
    let user_id = consume_email_token(&mut tx, token, "change_email", now).await?.ok_or_else(invalid)?;
    let changed = sqlx::query(
        "UPDATE users SET email = pending_email, pending_email = NULL, email_verified_at = COALESCE(email_verified_at, $1) \
         WHERE id = $2 AND pending_email IS NOT NULL",
    )
    .bind(now)
    .bind(&user_id)
    .execute(&mut *tx)
    .await;
    match changed {
        Err(e) if crate::db::is_unique_violation(&e) => {
            return Err(ApiError::Conflict("That address got an account in the meantime.".into()))
        }
        Err(e) => return Err(e.into()),
        Ok(r) if r.rows_affected() == 0 => return Err(invalid()),
        Ok(_) => {}
    }
    tx.commit().await?;
    Ok(user_id)
}

/// Which processing choice.
#[derive(Debug, Clone, Copy)]
pub enum Choice {
    /// Restriction of processing (Art. 18).
    Restrict,
    /// Objection to processing based on legitimate interests (Art. 21).
    Object,
}

/// Set or lift a choice, recorded with its time and appended to the
/// consent records (with marketing off while it is set).
pub async fn set_choice(
    state: &AppState,
    user_id: &str,
    choice: Choice,
    on: bool,
    client: &ClientMeta,
) -> ApiResult<()> {
    let now = state.clock.unix_now();
    let (column, source) = match choice {
        Choice::Restrict => ("restricted_at", if on { "restriction" } else { "restriction_lifted" }),
        Choice::Object => ("objected_at", if on { "objection" } else { "objection_withdrawn" }),
    };
    let mut tx = state.db.begin_write().await?;
    let current: Option<i64> = sqlx::query(&format!("SELECT {column} FROM users WHERE id = $1"))
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
    if current.is_some() == on {
        return Ok(());
    }
    sqlx::query(&format!("UPDATE users SET {column} = $1 WHERE id = $2"))
        .bind(on.then_some(now))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let marketing = !on
        && sqlx::query("SELECT marketing FROM consents WHERE user_id = $1 ORDER BY recorded_at DESC, id DESC LIMIT 1")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some_and(|r| r.get::<i64, _>(0) != 0);
    crate::accounts::record_consent(&mut tx, user_id, source, marketing, client, now).await?;
    tx.commit().await?;
    Ok(())
}
