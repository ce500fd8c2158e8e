//! Accounts: sign-up with a consent record, email verification, sign-in,
//! password change and reset, profile and marketing consent.
//!
//! Privacy rules kept here:
//! - passwords are argon2id hashes, never stored or logged in clear;
//! - sign-up answers the same whether or not the email has an account
//!   (the owner of an existing account gets a mail instead);
//! - a wrong password and an unknown email take the same time and get the
//!   same message;
//! - `Sec-GPC: 1` means no marketing consent is recorded, and the consent
//!   record says the signal was present.

pub mod password;
pub mod sessions;

use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};

use crate::client::ClientMeta;
use crate::dates::iso;
use crate::db::Db;
use crate::email::{enqueue, templates};
use crate::error::{ApiError, ApiResult};
use crate::secrets::{hash_token, new_id, random_token};
use crate::AppState;

pub const MAX_NAME: usize = 100;

/// Lowercased, trimmed email if it looks deliverable; a validation error otherwise.
pub fn normalize_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_ascii_lowercase();
    let bad = || ApiError::validation("email", "Enter a valid email address.");
    if email.len() > 254
        || email.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',')
    {
        return Err(bad());
    }
    let (local, domain) = email.rsplit_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || local.len() > 64
        || local.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return Err(bad());
    }
    if email.parse::<lettre::Address>().is_err() {
        return Err(bad());
    }
    Ok(email)
}

pub fn check_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim().to_string();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::validation("name", format!("Enter a name of 1 to {MAX_NAME} characters.")));
    }
    Ok(name)
}

/// Insert a user with a personal team and owner membership. Returns the user id.
pub async fn insert_user(
    conn: &mut AnyConnection,
    email: &str,
    name: &str,
    password_hash: Option<&str>,
    now: i64,
) -> Result<String, ApiError> {
    let user_id = new_id("usr");
    let team_id = new_id("team");
    crate::storage_names::insert_team(&mut *conn, &team_id, &format!("{name}'s images"), true, now).await?;
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, email_verified_at, personal_team_id, created_at) \
         VALUES ($1, $2, $3, $4, NULL, $5, $6)",
    )
    .bind(&user_id)
    .bind(email)
    .bind(name)
    .bind(password_hash.map(str::to_string))
    .bind(&team_id)
    .bind(now)
    .execute(&mut *conn)
    .await;
    match inserted {
        Err(e) if crate::db::is_unique_violation(&e) => return Err(ApiError::Conflict("email taken".into())),
        other => other?,
    };
    sqlx::query("INSERT INTO memberships (team_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)")
        .bind(&team_id)
        .bind(&user_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(user_id)
}

/// Append a consent record. GPC wins over a requested marketing consent.
pub async fn record_consent(
    conn: &mut AnyConnection,
    user_id: &str,
    source: &str,
    marketing_requested: bool,
    client: &ClientMeta,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let marketing = marketing_requested && !client.gpc;
    sqlx::query(
        "INSERT INTO consents (id, user_id, recorded_at, source, country, marketing, gpc) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(crate::secrets::new_sortable_id("cns"))
    .bind(user_id)
    .bind(now)
    .bind(source)
    .bind(client.country.clone())
    .bind(i64::from(marketing))
    .bind(i64::from(client.gpc))
    .execute(conn)
    .await?;
    Ok(marketing)
}

/// Issue a single-use email token of `purpose` for `user_id`; returns the token.
pub async fn issue_email_token(
    conn: &mut AnyConnection,
    user_id: &str,
    purpose: &str,
    ttl: i64,
    now: i64,
) -> Result<String, sqlx::Error> {
    let token = random_token(32);
    sqlx::query("INSERT INTO email_tokens (token_hash, user_id, purpose, expires_at, used_at, created_at) VALUES ($1, $2, $3, $4, NULL, $5)")
        .bind(hash_token(&token))
        .bind(user_id)
        .bind(purpose)
        .bind(now + ttl)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(token)
}

/// Consume a token: returns its user if it exists, has this purpose, is
/// unexpired and unused; marks it used in the same statement, so two
/// concurrent uses cannot both succeed.
pub async fn consume_email_token(
    conn: &mut AnyConnection,
    token: &str,
    purpose: &str,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    let hash = hash_token(token);
    let used = sqlx::query("UPDATE email_tokens SET used_at = $1 WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1")
        .bind(now)
        .bind(&hash)
        .bind(purpose)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if used != 1 {
        return Ok(None);
    }
    let row = sqlx::query("SELECT user_id FROM email_tokens WHERE token_hash = $1").bind(&hash).fetch_one(conn).await?;
    Ok(Some(row.get(0)))
}

fn link(state: &AppState, path: &str, token: &str) -> String {
    format!("{}{path}?token={token}", state.cfg.public_base_url.trim_end_matches('/'))
}

/// The user object.
pub async fn user_json(conn: &mut AnyConnection, user_id: &str) -> Result<Value, ApiError> {
    let r = sqlx::query(
        "SELECT id, email, name, email_verified_at, personal_team_id, created_at, restricted_at, objected_at, \
         pending_email FROM users WHERE id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(ApiError::NotFound)?;
    let consent = sqlx::query("SELECT marketing, gpc, recorded_at FROM consents WHERE user_id = $1 ORDER BY recorded_at DESC, id DESC LIMIT 1")
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(json!({
        "id": r.get::<String, _>("id"),
        "object": "user",
        "email": r.get::<String, _>("email"),
        "name": r.get::<String, _>("name"),
        "email_verified": r.get::<Option<i64>, _>("email_verified_at").is_some(),
        "personal_team_id": r.get::<String, _>("personal_team_id"),
        "marketing_emails": consent.as_ref().is_some_and(|c| c.get::<i64, _>("marketing") != 0),
        "pending_email": r.get::<Option<String>, _>("pending_email"),
        "processing_restricted_at": r.get::<Option<i64>, _>("restricted_at").map(iso),
        "objected_at": r.get::<Option<i64>, _>("objected_at").map(iso),
        "created_at": iso(r.get("created_at")),
    }))
}

/// The personal team of `user_id`.
pub async fn personal_team(db: &Db, user_id: &str) -> ApiResult<String> {
    Ok(sqlx::query("SELECT personal_team_id FROM users WHERE id = $1").bind(user_id).fetch_one(&db.pool).await?.get(0))
}

/// What a sign-up asks for.
pub struct Signup {
    pub email: String,
    pub name: String,
    pub password: String,
    pub marketing_emails: bool,
    /// The person confirmed being at least 16.
    pub age_confirmed: bool,
}

/// Sign up: the same outcome whether or not the email already has an
/// account (either way one mail goes to that address); the normalised email.
pub async fn signup(state: &AppState, form: Signup, client: &ClientMeta) -> ApiResult<String> {
    let email = normalize_email(&form.email)?;
    let name = check_name(&form.name)?;
    if !form.age_confirmed {
        return Err(ApiError::validation(
            "age_confirmed",
            "You must be at least 16 to use imgcdn: confirm it to sign up.",
        ));
    }
    state.passwords.check_policy(&form.password, &email)?;
    if let Some(ip) = &client.ip {
        state.limiter.hit_client("signup", ip, 20, 3600).map_err(|s| ApiError::RateLimited { retry_after_secs: s })?;
    }
    let hash = state.passwords.hash(form.password).await?;
    let now = state.clock.unix_now();
    let mut tx = state.db.begin_write().await?;
    match insert_user(&mut tx, &email, &name, Some(&hash), now).await {
        Ok(user_id) => {
            sqlx::query("UPDATE users SET age_confirmed_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&user_id)
                .execute(&mut *tx)
                .await?;
            record_consent(&mut tx, &user_id, "signup", form.marketing_emails, client, now).await?;
            let token = issue_email_token(&mut tx, &user_id, "verify", state.cfg.verify_link_ttl_secs, now).await?;
            enqueue(&mut tx, templates::verify_email(&email, &name, &link(state, "/verify-email", &token)), now)
                .await?;
        }
        Err(ApiError::Conflict(_)) => {
            // Start over: the failed insert may have aborted the transaction (PostgreSQL).
            tx.rollback().await?;
            tx = state.db.begin_write().await?;
            // One notice an hour is enough for the owner (sign-up answers
            // the same either way, so nobody learns of the cap).
            if state.limiter.hit("account-exists-notice", &email, 1, 3600).is_ok() {
                let login = format!("{}/login", state.cfg.public_base_url.trim_end_matches('/'));
                enqueue(&mut tx, templates::account_exists(&email, &login), now).await?;
            }
        }
        Err(e) => return Err(e),
    }
    tx.commit().await?;
    state.mail_wake.notify_one();
    Ok(email)
}

/// Use an emailed verification token; the user it verified.
pub async fn verify_email(state: &AppState, token: &str) -> ApiResult<String> {
    let now = state.clock.unix_now();
    let mut tx = state.db.begin_write().await?;
    let user_id = consume_email_token(&mut tx, token, "verify", now)
        .await?
        .ok_or_else(|| ApiError::validation("token", "This link is invalid, expired or already used."))?;
    prove_address(&mut tx, &user_id, Proof::VerificationLink, now).await?;
    tx.commit().await?;
    crate::retention::recompute::for_user(state, &user_id).await?;
    Ok(user_id)
}

/// How an account's email address was proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The link of the verification mail sent when the account (or its
    /// legacy key) was created: whoever asked for that account or key
    /// controls the mailbox, so what they created stays.
    VerificationLink,
    /// A password reset through the emailed link.
    Reset,
    /// An invitation accepted from the mail it was sent to.
    Invitation,
}

/// Record that `user_id` proved its address. The first proof marks the
/// account verified. Keys created while it was unproven are kept after the
/// verification link, and revoked after any other proof: the mailbox owner
/// got in another way and may not be whoever created the account, and
/// otherwise anyone could ask for a key for someone else's address (legacy
/// `POST /v1/keys`, or by signing up with it) and read what its owner
/// uploads after taking the account back (account pre-hijacking).
pub async fn prove_address(conn: &mut AnyConnection, user_id: &str, how: Proof, now: i64) -> Result<(), sqlx::Error> {
    let first = sqlx::query("UPDATE users SET email_verified_at = $1 WHERE id = $2 AND email_verified_at IS NULL")
        .bind(now)
        .bind(user_id)
        .execute(&mut *conn)
        .await?
        .rows_affected()
        == 1;
    if !first {
        return Ok(());
    }
    let unproven = "created_by = $1 AND unproven = 1 AND revoked_at IS NULL";
    match how {
        Proof::VerificationLink => {
            sqlx::query(&format!("UPDATE api_keys SET unproven = 0 WHERE {unproven}"))
                .bind(user_id)
                .execute(&mut *conn)
                .await?;
        }
        Proof::Reset | Proof::Invitation => {
            sqlx::query(&format!("UPDATE api_keys SET revoked_at = $2 WHERE {unproven}"))
                .bind(user_id)
                .bind(now)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Check a password; the user id if it is right. A wrong password and an
/// unknown email cost the same and fail the same way.
pub async fn check_login(state: &AppState, email: &str, password: String, client: &ClientMeta) -> ApiResult<String> {
    let wrong = || ApiError::Unauthorized("Wrong email or password.".into());
    if let Some(ip) = &client.ip {
        state.limiter.hit_client("login", ip, 30, 600).map_err(|s| ApiError::RateLimited { retry_after_secs: s })?;
    }
    let email = normalize_email(email).unwrap_or_default();
    if password.len() > state.cfg.passwords.max_length {
        return Err(wrong());
    }
    // Per account: after 10 failures in 15 minutes, wait (from any client).
    let limited = |s| ApiError::RateLimited { retry_after_secs: s };
    state.limiter.check("login-failures", &email, 10, 900).map_err(limited)?;
    let row = sqlx::query("SELECT id, password_hash, deletion_requested_at FROM users WHERE email = $1")
        .bind(&email)
        .fetch_optional(&state.db.pool)
        .await?;
    let (user_id, stored, locked) = match row {
        Some(r) => (
            Some(r.get::<String, _>("id")),
            r.get::<Option<String>, _>("password_hash"),
            r.get::<Option<i64>, _>("deletion_requested_at").is_some(),
        ),
        None => (None, None, false),
    };
    if !state.passwords.verify(password, stored).await? {
        let _ = state.limiter.hit("login-failures", &email, 10, 900);
        return Err(wrong());
    }
    if locked {
        return Err(ApiError::Forbidden(
            "This account is being deleted. The link in the email we sent when you asked cancels the deletion.".into(),
        ));
    }
    user_id.ok_or_else(wrong)
}

/// Change the name and/or marketing consent (GPC honoured: a settings
/// change under GPC records the signal even if marketing was not touched).
pub async fn update_profile(
    state: &AppState,
    user_id: &str,
    name: Option<&str>,
    marketing_emails: Option<bool>,
    client: &ClientMeta,
) -> ApiResult<Value> {
    let name = name.map(check_name).transpose()?;
    let now = state.clock.unix_now();
    let mut tx = state.db.begin_write().await?;
    if let Some(name) = name {
        sqlx::query("UPDATE users SET name = $1 WHERE id = $2").bind(name).bind(user_id).execute(&mut *tx).await?;
    }
    if marketing_emails.is_some() || client.gpc {
        let current =
            sqlx::query("SELECT marketing FROM consents WHERE user_id = $1 ORDER BY recorded_at DESC, id DESC LIMIT 1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some_and(|r| r.get::<i64, _>(0) != 0);
        record_consent(&mut tx, user_id, "settings", marketing_emails.unwrap_or(current), client, now).await?;
    }
    let user = user_json(&mut tx, user_id).await?;
    tx.commit().await?;
    Ok(user)
}

/// Send a new verification link to `email` (rate-limited per user).
pub async fn resend_verification(state: &AppState, user_id: &str, email: &str) -> ApiResult<()> {
    state.limiter.hit("resend", user_id, 5, 3600).map_err(|s| ApiError::RateLimited { retry_after_secs: s })?;
    let now = state.clock.unix_now();
    let mut tx = state.db.begin_write().await?;
    let name: String =
        sqlx::query("SELECT name FROM users WHERE id = $1").bind(user_id).fetch_one(&mut *tx).await?.get(0);
    let token = issue_email_token(&mut tx, user_id, "verify", state.cfg.verify_link_ttl_secs, now).await?;
    enqueue(&mut tx, templates::verify_email(email, &name, &link(state, "/verify-email", &token)), now).await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    Ok(())
}

/// Change the password of a signed-in user: other sessions end, an alert is mailed.
pub async fn change_password(
    state: &AppState,
    session: &sessions::Session,
    current: String,
    new: String,
) -> ApiResult<()> {
    state.passwords.check_policy(&new, &session.email)?;
    let stored: Option<String> = sqlx::query("SELECT password_hash FROM users WHERE id = $1")
        .bind(&session.user_id)
        .fetch_one(&state.db.pool)
        .await?
        .get(0);
    if !state.passwords.verify(current, stored).await? {
        return Err(ApiError::validation("current_password", "The current password is wrong."));
    }
    let hash = state.passwords.hash(new).await?;
    let now = state.clock.unix_now();
    let mut tx = state.db.begin_write().await?;
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(&session.user_id)
        .execute(&mut *tx)
        .await?;
    sessions::end_all(&mut tx, &session.user_id, Some(&session.session_id)).await?;
    enqueue(
        &mut tx,
        templates::security_alert(
            &session.email,
            "Your password was changed, and your other sessions were signed out.",
        ),
        now,
    )
    .await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    Ok(())
}

/// Mail a reset link if `email` has an account (the caller always answers
/// the same).
pub async fn request_reset(state: &AppState, email: &str, client: &ClientMeta) -> ApiResult<()> {
    let email = normalize_email(email)?;
    let limited = |s| ApiError::RateLimited { retry_after_secs: s };
    // The client first: one client cannot make us track subjects it chose.
    if let Some(ip) = &client.ip {
        state.limiter.hit_client("reset-ip", ip, 20, 3600).map_err(limited)?;
        let pair = format!("{email} {}", crate::ratelimit::client_subject(ip));
        state.limiter.hit("reset-email-client", &pair, 5, 3600).map_err(limited)?;
    } else {
        state.limiter.hit("reset-email-client", &email, 5, 3600).map_err(limited)?;
    }
    // Per address, the mail is capped without telling the caller: others
    // asking for this address cannot lock its owner out with 429s, and
    // cannot flood the mailbox either.
    if state.limiter.hit("reset-email", &email, 10, 3600).is_err() {
        return Ok(());
    }
    let now = state.clock.unix_now();
    let mut tx = state.db.begin_write().await?;
    if let Some(row) =
        sqlx::query("SELECT id FROM users WHERE email = $1").bind(&email).fetch_optional(&mut *tx).await?
    {
        let user_id: String = row.get(0);
        let token = issue_email_token(&mut tx, &user_id, "reset", state.cfg.reset_link_ttl_secs, now).await?;
        enqueue(&mut tx, templates::password_reset(&email, &link(state, "/reset-password", &token)), now).await?;
    }
    tx.commit().await?;
    state.mail_wake.notify_one();
    Ok(())
}

/// Set a new password with an emailed reset token; every session ends,
/// every other reset link of the account stops working, and keys created
/// while the address was unproven are revoked (see [`prove_address`]).
///
/// The token is checked before any hashing: a bogus token costs one
/// indexed read, never an argon2 hash.
pub async fn confirm_reset(state: &AppState, token: &str, password: String, client: &ClientMeta) -> ApiResult<()> {
    let invalid = || ApiError::validation("token", "This link is invalid, expired or already used.");
    if let Some(ip) = &client.ip {
        state
            .limiter
            .hit_client("reset-confirm", ip, 30, 600)
            .map_err(|s| ApiError::RateLimited { retry_after_secs: s })?;
    }
    let now = state.clock.unix_now();
    let hash = hash_token(token);
    let email: String = sqlx::query(
        "SELECT u.email FROM email_tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.token_hash = $1 AND t.purpose = 'reset' AND t.used_at IS NULL AND t.expires_at > $2",
    )
    .bind(&hash)
    .bind(now)
    .fetch_optional(&state.db.pool)
    .await?
    .map(|r| r.get(0))
    .ok_or_else(invalid)?;
    state.passwords.check_policy(&password, &email)?;
    let new_hash = state.passwords.hash(password).await?;
    let mut tx = state.db.begin_write().await?;
    let user_id = consume_email_token(&mut tx, token, "reset", now).await?.ok_or_else(invalid)?;
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(new_hash)
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
    // Resetting through the emailed link also proves the address.
    prove_address(&mut tx, &user_id, Proof::Reset, now).await?;
    sqlx::query("UPDATE email_tokens SET used_at = $1 WHERE user_id = $2 AND purpose = 'reset' AND used_at IS NULL")
        .bind(now)
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
    sessions::end_all(&mut tx, &user_id, None).await?;
    enqueue(
        &mut tx,
        templates::security_alert(&email, "Your password was reset, and every session was signed out."),
        now,
    )
    .await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    crate::retention::recompute::for_user(state, &user_id).await?;
    Ok(())
}
