//! Account deletion: asked for by the person (reversible for
//! `privacy.deletion_grace_days`, then erased by the sweep) or by an
//! operator for an account reported as a child's (erased at once).
//!
//! **At submit** every session is deleted, the account is locked (sign-in
//! refused, the API keys of its personal team and the keys it created
//! refused) and a mail with a single-use cancel link goes out. **Cancelling**
//! restores the account as it was. **Erasure** ([`erase`]):
//! - teams: a team the person solely owns is handed to its oldest admin, or,
//!   with none, dissolved (its members are told); their personal team is
//!   dissolved; other memberships end;
//! - the images of dissolved teams go off every edge through the image
//!   lifecycle (bytes to the recovery store, reaped after the usual window)
//!   and their rows lose everything that tied them to anyone (team, uploader,
//!   file name, caption, labels, metadata); the reaper purges the rows;
//! - the account row goes, and with it its sessions, email links,
//!   memberships, consent records (and so marketing-list membership) and
//!   exports; keys of dissolved teams; invitations to their address; mail
//!   still queued for them; their teams' API request logs;
//! - abuse reports, DMCA notices and strikes stay (the repeat-infringer
//!   policy and counter-notice windows need them) with their identity
//!   replaced by `(erased)`;
//! - a row in `erasures` records when, why and how much, naming nobody.

use sqlx::{AnyConnection, Row};

use crate::accounts::{issue_email_token, sessions};
use crate::dates::{iso, DAY};
use crate::email::{enqueue, templates};
use crate::error::{ApiError, ApiResult};
use crate::images::lifecycle::{self, Actor, Edit};
use crate::secrets::{new_id, new_sortable_id};
use crate::AppState;

/// What identifying fields are replaced with in records that must stay.
pub const ERASED: &str = "(erased)";

/// Why an account was erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The person asked; the grace period passed.
    Request,
    /// An operator erased an account reported as a child's.
    Child,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Request => "request",
            Reason::Child => "child",
        }
    }
}

/// What one erasure did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Erased {
    pub images: u64,
    pub teams_dissolved: u64,
    pub teams_handed_over: u64,
}

/// Ask for the deletion of `user_id`'s account. `password` is required
/// unless the session is a fresh sign-in (the last 10 minutes); accounts
/// without a password (legacy keys) can only sign in by resetting one
/// first. Returns when the erasure will happen.
pub async fn request(state: &AppState, session: &sessions::Session, password: Option<String>) -> ApiResult<i64> {
    let now = state.clock.unix_now();
    let fresh: i64 = sqlx::query("SELECT created_at FROM sessions WHERE id = $1")
        .bind(&session.session_id)
        .fetch_one(&state.db.pool)
        .await?
        .get(0);
    let confirmed = match password {
        Some(pw) => {
            let stored: Option<String> = sqlx::query("SELECT password_hash FROM users WHERE id = $1")
                .bind(&session.user_id)
                .fetch_one(&state.db.pool)
                .await?
                .get(0);
            state.passwords.verify(pw, stored).await?
        }
        None => now - fresh <= 600,
    };
    if !confirmed {
        return Err(ApiError::validation("password", "Enter your password (or sign in again) to delete your account."));
    }
    let grace = state.cfg.privacy.deletion_grace_days * DAY;
    let due = now + grace;
    let mut tx = state.db.begin_write().await?;
    sqlx::query(
        "UPDATE users SET deletion_requested_at = $1, deletion_due_at = $2 WHERE id = $3 AND deletion_requested_at IS NULL",
    )
    .bind(now)
    .bind(due)
    .bind(&session.user_id)
    .execute(&mut *tx)
    .await?;
    sessions::end_all(&mut tx, &session.user_id, None).await?;
    let token = issue_email_token(&mut tx, &session.user_id, "cancel_deletion", grace, now).await?;
    let link = format!("{}/cancel-deletion?token={token}", state.cfg.public_base_url.trim_end_matches('/'));
    enqueue(&mut tx, templates::deletion_scheduled(&session.email, &iso(due), &link), now).await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    Ok(due)
}

/// Cancel a deletion with the emailed token: the account is as it was.
pub async fn cancel(state: &AppState, token: &str) -> ApiResult<()> {
    let now = state.clock.unix_now();
    let mut tx = state.db.begin_write().await?;
    let user_id = crate::accounts::consume_email_token(&mut tx, token, "cancel_deletion", now)
        .await?
        .ok_or_else(|| ApiError::validation("token", "This link is invalid, expired or already used."))?;
    let email: String = sqlx::query(
        "UPDATE users SET deletion_requested_at = NULL, deletion_due_at = NULL WHERE id = $1 RETURNING email",
    )
    .bind(&user_id)
    .fetch_one(&mut *tx)
    .await?
    .get(0);
    enqueue(&mut tx, templates::deletion_cancelled(&email), now).await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    Ok(())
}

/// Erase every account whose grace period is over; how many.
pub async fn erase_due(state: &AppState, now: i64) -> Result<(u64, u64), String> {
    let due = sqlx::query("SELECT id FROM users WHERE deletion_due_at IS NOT NULL AND deletion_due_at <= $1")
        .bind(now)
        .fetch_all(&state.db.pool)
        .await
        .map_err(|e| e.to_string())?;
    let (mut done, mut failed) = (0, 0);
    for row in due {
        let id: String = row.get(0);
        match erase(state, &id, Reason::Request, None, None).await {
            Ok(_) => done += 1,
            Err(e) => {
                tracing::warn!(user = %id, error = %e, "erasing an account failed; will retry");
                failed += 1;
            }
        }
    }
    Ok((done, failed))
}

/// Accounts whose erasure is due at `now` (for the sweep's dry run).
pub async fn due_ids(state: &AppState, now: i64) -> Result<Vec<String>, sqlx::Error> {
    Ok(sqlx::query("SELECT id FROM users WHERE deletion_due_at IS NOT NULL AND deletion_due_at <= $1 ORDER BY id")
        .bind(now)
        .fetch_all(&state.db.pool)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Erase `user_id` now. Idempotent up to the final transaction: a failure
/// halfway is finished by the next call.
pub async fn erase(
    state: &AppState,
    user_id: &str,
    reason: Reason,
    operator: Option<&str>,
    note: Option<&str>,
) -> ApiResult<Erased> {
    let now = state.clock.unix_now();
    let user = sqlx::query("SELECT email, personal_team_id FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or(ApiError::NotFound)?;
    let (email, personal): (String, String) = (user.get(0), user.get(1));
    let mut out = Erased::default();

    // Decide each team's fate; dissolve what goes.
    let memberships = sqlx::query("SELECT team_id, role FROM memberships WHERE user_id = $1 ORDER BY team_id")
        .bind(user_id)
        .fetch_all(&state.db.pool)
        .await?;
    let mut dissolve = vec![personal.clone()];
    let mut tx = state.db.begin_write().await?;
    for m in &memberships {
        let (team, role): (String, String) = (m.get(0), m.get(1));
        if team == personal || role != "owner" || other_owners(&mut tx, &team, user_id).await? > 0 {
            continue;
        }
        let heir = sqlx::query(
            "SELECT m.user_id, u.email FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.team_id = $1 AND m.role = 'admin' AND m.user_id <> $2 ORDER BY m.created_at, m.user_id LIMIT 1",
        )
        .bind(&team)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let name = team_name(&mut tx, &team).await?;
        match heir {
            Some(h) => {
                let (heir_id, heir_email): (String, String) = (h.get(0), h.get(1));
                sqlx::query("UPDATE memberships SET role = 'owner' WHERE team_id = $1 AND user_id = $2")
                    .bind(&team)
                    .bind(&heir_id)
                    .execute(&mut *tx)
                    .await?;
                enqueue(&mut tx, templates::team_handed_over(&heir_email, &name), now).await?;
                out.teams_handed_over += 1;
            }
            None => {
                let members = sqlx::query(
                    "SELECT u.email FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.team_id = $1 AND m.user_id <> $2",
                )
                .bind(&team)
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
                for r in members {
                    enqueue(&mut tx, templates::team_dissolved(&r.get::<String, _>(0), &name), now).await?;
                }
                dissolve.push(team);
            }
        }
    }
    tx.commit().await?;

    // Off every edge first, through the lifecycle (bytes to recovery).
    let actor = Actor::System("erasure");
    for team in &dissolve {
        let live = sqlx::query("SELECT id FROM images WHERE team_id = $1 AND deleted_at IS NULL")
            .bind(team)
            .fetch_all(&state.db.pool)
            .await?;
        for r in live {
            let id: String = r.get(0);
            lifecycle::apply(state, &id, &actor, "account erased", Edit::Delete).await?;
            out.images += 1;
        }
    }
    for export in exports_of(state, user_id).await? {
        super::export::drop_archive(state, &export).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    }

    // Then everything else, at once.
    let mut tx = state.db.begin_write().await?;
    for team in &dissolve {
        scrub_team(&mut tx, team).await?;
    }
    let pseudonym = new_id("erased");
    for (sql, binds) in [
        ("UPDATE reports SET contact_email = NULL WHERE contact_email = $1", vec![email.as_str()]),
        ("UPDATE dmca_notices SET uploader_id = NULL WHERE uploader_id = $1", vec![user_id]),
        (
            "UPDATE dmca_notices SET claimant_name = $2, claimant_email = $2, claimant_address = $2, \
             claimant_phone = NULL, signature = $2 WHERE claimant_email = $1",
            vec![email.as_str(), ERASED],
        ),
        ("UPDATE strikes SET user_id = $2 WHERE user_id = $1", vec![user_id, pseudonym.as_str()]),
        ("UPDATE rights_requests SET email = $2 WHERE email = $1", vec![email.as_str(), ERASED]),
        ("DELETE FROM invitations WHERE email = $1", vec![email.as_str()]),
        ("DELETE FROM outbound_emails WHERE recipient = $1", vec![email.as_str()]),
        // Explicitly, not left to the schema's cascades: every table it
        // touches is named here.
        ("UPDATE images SET uploaded_by = NULL WHERE uploaded_by = $1", vec![user_id]),
        ("UPDATE api_keys SET created_by = NULL WHERE created_by = $1", vec![user_id]),
        ("UPDATE invitations SET invited_by = NULL WHERE invited_by = $1", vec![user_id]),
        ("DELETE FROM sessions WHERE user_id = $1", vec![user_id]),
        ("DELETE FROM email_tokens WHERE user_id = $1", vec![user_id]),
        ("DELETE FROM memberships WHERE user_id = $1", vec![user_id]),
        ("DELETE FROM consents WHERE user_id = $1", vec![user_id]),
        ("DELETE FROM exports WHERE user_id = $1", vec![user_id]),
        ("DELETE FROM users WHERE id = $1", vec![user_id]),
    ] {
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind(b);
        }
        q.execute(&mut *tx).await?;
    }
    // The teams last: the account row pointed at its personal team.
    for team in &dissolve {
        drop_team(&mut tx, team).await?;
        out.teams_dissolved += u64::from(team != &personal);
    }
    sqlx::query(
        "INSERT INTO erasures (id, at, reason, operator_id, note, images, teams_dissolved, teams_handed_over) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_sortable_id("ers"))
    .bind(now)
    .bind(reason.as_str())
    .bind(operator.map(str::to_string))
    .bind(note.map(str::to_string))
    .bind(out.images as i64)
    .bind(out.teams_dissolved as i64)
    .bind(out.teams_handed_over as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    // Deleted rows must not linger in the database files.
    state.db.checkpoint().await?;
    Ok(out)
}

async fn other_owners(conn: &mut AnyConnection, team: &str, user_id: &str) -> Result<i64, sqlx::Error> {
    Ok(sqlx::query("SELECT COUNT(*) FROM memberships WHERE team_id = $1 AND role = 'owner' AND user_id <> $2")
        .bind(team)
        .bind(user_id)
        .fetch_one(conn)
        .await?
        .get(0))
}

async fn team_name(conn: &mut AnyConnection, team: &str) -> Result<String, sqlx::Error> {
    Ok(sqlx::query("SELECT name FROM teams WHERE id = $1").bind(team).fetch_one(conn).await?.get(0))
}

async fn exports_of(state: &AppState, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
    Ok(sqlx::query("SELECT id FROM exports WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(&state.db.pool)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Before a dissolved team goes: its images' rows keep only what the
/// reaper needs (they no longer name the team or anyone in it), and what
/// it left elsewhere goes.
async fn scrub_team(conn: &mut AnyConnection, team: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE images SET team_id = NULL, uploaded_by = NULL, filename = NULL, caption = NULL, \
         labels = '{}', metadata = '{}' WHERE team_id = $1",
    )
    .bind(team)
    .execute(&mut *conn)
    .await?;
    for sql in [
        "DELETE FROM request_log WHERE team_id = $1",
        "DELETE FROM idempotency_keys WHERE scope = $1",
        "UPDATE blocklist_matches SET team_id = NULL WHERE team_id = $1",
    ] {
        sqlx::query(sql).bind(team).execute(&mut *conn).await?;
    }
    Ok(())
}

/// A dissolved team and what hangs off it: keys, invitations, memberships.
async fn drop_team(conn: &mut AnyConnection, team: &str) -> Result<(), sqlx::Error> {
    for sql in [
        "DELETE FROM api_keys WHERE team_id = $1",
        "DELETE FROM invitations WHERE team_id = $1",
        "DELETE FROM memberships WHERE team_id = $1",
        "DELETE FROM teams WHERE id = $1",
    ] {
        sqlx::query(sql).bind(team).execute(&mut *conn).await?;
    }
    Ok(())
}
