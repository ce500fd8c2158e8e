//! Abuse reports and DMCA notices: anyone can report an image; a copyright
//! holder can file a notice with the statutory fields (17 U.S.C. §
//! 512(c)(3)). Both enter the review queue.
//!
//! A notice an operator acts on takes the image down (reason `copyright`),
//! mails its uploader (the team's owners for key uploads) a single-use link
//! to a counter-notice, and records a strike: an uploader with
//! `dmca.strikes` strikes in `dmca.strike_window_days` loses upload rights
//! (the repeat-infringer policy). A counter-notice (§ 512(g)(3)) is sent on
//! to the claimant, and the image is restored `dmca.counter_notice_days`
//! later by the sweep ([`restore_due`]) — unless an operator records that
//! the claimant started a court action.

use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;

use super::queue;
use crate::accounts::normalize_email;
use crate::client::ClientMeta;
use crate::dates::{iso, DAY};
use crate::email::{enqueue, Outgoing};
use crate::error::{ApiError, ApiResult};
use crate::images::lifecycle::{self, Actor, Edit};
use crate::images::queries;
use crate::images::row::ImageRow;
use crate::operators::Operator;
use crate::secrets::{hash_token, new_sortable_id, random_token};
use crate::AppState;

/// Reasons a report may give.
pub const REPORT_REASONS: &[&str] =
    &["csam", "terrorism", "violence", "nudity", "harassment", "privacy", "self_harm", "spam", "other"];

pub const MAX_TEXT: usize = 4000;

/// The image a report or notice names: an id, a viewer URL (`…/{id}`) or a
/// CDN URL (`…/{storage}/{id}.{ext}`, query ignored).
pub async fn resolve_image(state: &AppState, named: &str) -> ApiResult<ImageRow> {
    let path = named.trim().split(['?', '#']).next().unwrap_or("");
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let id = last.split('.').next().unwrap_or("");
    let not_found = || ApiError::validation("image", "No image by that id or URL.");
    if id.parse::<imgcdn_shared::ImageId>().is_err() {
        return Err(not_found());
    }
    queries::fetch(&state.db, id).await?.filter(|r| r.deleted_at.is_none()).ok_or_else(not_found)
}

fn text(field: &str, v: Option<String>, required: bool) -> ApiResult<Option<String>> {
    let v = v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    match v {
        None if required => Err(ApiError::validation(field, "Required.")),
        Some(s) if s.chars().count() > MAX_TEXT => {
            Err(ApiError::validation(field, format!("At most {MAX_TEXT} characters.")))
        }
        v => Ok(v),
    }
}

#[derive(Debug, Deserialize)]
pub struct Report {
    pub image: String,
    pub reason: String,
    pub details: Option<String>,
    pub contact_email: Option<String>,
}

/// File an abuse report; its id. Rate-limited per client.
pub async fn report(state: &AppState, r: Report, client: &ClientMeta) -> ApiResult<String> {
    if let Some(ip) = &client.ip {
        state.limiter.hit_client("report", ip, 20, 3600).map_err(|s| ApiError::RateLimited { retry_after_secs: s })?;
    }
    if !REPORT_REASONS.contains(&r.reason.as_str()) {
        return Err(ApiError::validation("reason", format!("One of {}.", REPORT_REASONS.join(", "))));
    }
    let details = text("details", r.details, false)?;
    let contact = r.contact_email.as_deref().map(normalize_email).transpose()?;
    let image = resolve_image(state, &r.image).await?;
    let now = state.clock.unix_now();
    let id = new_sortable_id("rpt");
    let mut tx = state.db.begin_write().await?;
    sqlx::query(
        "INSERT INTO reports (id, image_id, reason, details, contact_email, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(&image.id)
    .bind(&r.reason)
    .bind(details)
    .bind(contact)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    queue::open(&mut tx, &image.id, "report", &r.reason, Some(&id), now).await?;
    tx.commit().await?;
    Ok(id)
}

/// A DMCA notice: the statutory elements, each required.
#[derive(Debug, Deserialize)]
pub struct Notice {
    pub image: String,
    pub claimant_name: String,
    pub claimant_email: String,
    pub claimant_address: String,
    pub claimant_phone: Option<String>,
    /// The copyrighted work claimed to be infringed.
    pub work: String,
    /// "I have a good faith belief that use of the material in the manner
    /// complained of is not authorized by the copyright owner, its agent,
    /// or the law."
    pub good_faith: bool,
    /// "The information in this notice is accurate, and under penalty of
    /// perjury, I am authorized to act on behalf of the owner."
    pub accurate_under_penalty_of_perjury: bool,
    /// The claimant's (electronic) signature: their full legal name.
    pub signature: String,
}

/// File a DMCA notice; its id.
pub async fn notice(state: &AppState, n: Notice, client: &ClientMeta) -> ApiResult<String> {
    if let Some(ip) = &client.ip {
        state.limiter.hit_client("dmca", ip, 10, 3600).map_err(|s| ApiError::RateLimited { retry_after_secs: s })?;
    }
    let name = text("claimant_name", Some(n.claimant_name), true)?.unwrap_or_default();
    let email = normalize_email(&n.claimant_email)?;
    let address = text("claimant_address", Some(n.claimant_address), true)?.unwrap_or_default();
    let phone = text("claimant_phone", n.claimant_phone, false)?;
    let work = text("work", Some(n.work), true)?.unwrap_or_default();
    let signature = text("signature", Some(n.signature), true)?.unwrap_or_default();
    if !n.good_faith {
        return Err(ApiError::validation("good_faith", "A notice needs the good-faith statement."));
    }
    if !n.accurate_under_penalty_of_perjury {
        return Err(ApiError::validation(
            "accurate_under_penalty_of_perjury",
            "A notice needs the statement of accuracy and authority, under penalty of perjury.",
        ));
    }
    let image = resolve_image(state, &n.image).await?;
    let now = state.clock.unix_now();
    let id = new_sortable_id("dmca");
    let mut tx = state.db.begin_write().await?;
    sqlx::query(
        "INSERT INTO dmca_notices (id, image_id, claimant_name, claimant_email, claimant_address, claimant_phone, work, \
         signature, created_at, state, uploader_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'received', $10)",
    )
    .bind(&id)
    .bind(&image.id)
    .bind(name)
    .bind(&email)
    .bind(address)
    .bind(phone)
    .bind(work)
    .bind(signature)
    .bind(now)
    .bind(image.uploaded_by.clone())
    .execute(&mut *tx)
    .await?;
    queue::open(&mut tx, &image.id, "dmca", "copyright", Some(&id), now).await?;
    tx.commit().await?;
    Ok(id)
}

/// Who answers for an image: its uploader if signed in, else its team's owners.
async fn answerable(state: &AppState, image: &ImageRow) -> ApiResult<Vec<(String, String)>> {
    let rows = match (&image.uploaded_by, &image.team_id) {
        (Some(user), _) => {
            sqlx::query("SELECT id, email FROM users WHERE id = $1").bind(user).fetch_all(&state.db.pool).await?
        }
        (None, Some(team)) => {
            sqlx::query("SELECT u.id, u.email FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.team_id = $1 AND m.role = 'owner'")
                .bind(team)
                .fetch_all(&state.db.pool)
                .await?
        }
        (None, None) => Vec::new(),
    };
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

fn state_of(r: &sqlx::any::AnyRow) -> String {
    r.get("state")
}

async fn load(state: &AppState, notice_id: &str) -> ApiResult<sqlx::any::AnyRow> {
    sqlx::query("SELECT * FROM dmca_notices WHERE id = $1")
        .bind(notice_id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Act on a notice: take the image down for copyright, mail the uploader a
/// counter-notice link, record a strike (and suspend uploads past the
/// limit).
pub async fn act_on_notice(state: &AppState, op: &Operator, notice_id: &str) -> ApiResult<Value> {
    let n = load(state, notice_id).await?;
    if state_of(&n) != "received" {
        return Err(ApiError::Conflict("This notice was already acted on.".into()));
    }
    let image_id: String = n.get("image_id");
    let note = format!("DMCA notice {notice_id}");
    lifecycle::apply(state, &image_id, &op.actor(), &note, Edit::Takedown("copyright".into())).await?;
    let image = queries::fetch(&state.db, &image_id).await?.ok_or(ApiError::NotFound)?;
    let now = state.clock.unix_now();
    let token = random_token(32);
    let link = format!("{}/dmca/counter?token={token}", state.cfg.public_base_url.trim_end_matches('/'));
    let people = answerable(state, &image).await?;
    let mut tx = state.db.begin_write().await?;
    sqlx::query(
        "UPDATE dmca_notices SET state = 'taken_down', taken_down_at = $1, counter_token_hash = $2 WHERE id = $3",
    )
    .bind(now)
    .bind(hash_token(&token))
    .bind(notice_id)
    .execute(&mut *tx)
    .await?;
    let dmca = &state.cfg.moderation.dmca;
    for (user_id, email) in &people {
        sqlx::query("INSERT INTO strikes (id, user_id, notice_id, at) VALUES ($1, $2, $3, $4)")
            .bind(new_sortable_id("stk"))
            .bind(user_id)
            .bind(notice_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let strikes: i64 = sqlx::query("SELECT COUNT(*) FROM strikes WHERE user_id = $1 AND at > $2")
            .bind(user_id)
            .bind(now - dmca.strike_window_days * DAY)
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        let suspended = strikes >= dmca.strikes;
        if suspended {
            sqlx::query("UPDATE users SET uploads_suspended_at = COALESCE(uploads_suspended_at, $1) WHERE id = $2")
                .bind(now)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        let body = format!(
            "Hi,\n\nWe removed an image you uploaded ({page}) after a copyright holder sent us a DMCA notice.\n\
             The claimant says it infringes: {work}\n\n\
             If you believe this was a mistake or misidentification, you can send a counter-notice here:\n\n{link}\n\n\
             We then restore the image after {days} days unless the claimant tells us they went to court.\n\
             This is strike {strikes} of {max} in {window} days; at {max}, uploading is suspended.{note}\n",
            page = image.page_url(&state.cfg),
            work = n.get::<String, _>("work"),
            days = dmca.counter_notice_days,
            max = dmca.strikes,
            window = dmca.strike_window_days,
            note = if suspended { "\n\nYou have reached it: your upload rights are suspended." } else { "" },
        );
        let mail =
            Outgoing { kind: "dmca_takedown", to: email, subject: "An image of yours was removed (DMCA)".into(), body };
        enqueue(&mut tx, mail, now).await?;
    }
    tx.commit().await?;
    state.mail_wake.notify_one();
    Ok(json!({ "id": notice_id, "state": "taken_down", "image_id": image_id, "notified": people.len() }))
}

#[derive(Debug, Deserialize)]
pub struct CounterNotice {
    pub token: String,
    pub name: String,
    pub address: String,
    /// "Under penalty of perjury, I have a good faith belief that the
    /// material was removed as a result of mistake or misidentification."
    pub statement: String,
    /// Consent to the jurisdiction of the federal district court, and to
    /// accept service from the claimant.
    pub consent_to_jurisdiction: bool,
    pub signature: String,
}

/// File a counter-notice with the link from the takedown mail: the
/// claimant is told, and the image comes back after the waiting period.
pub async fn counter(state: &AppState, c: CounterNotice) -> ApiResult<Value> {
    let invalid = || ApiError::validation("token", "This link is invalid or was already used.");
    let n = sqlx::query("SELECT * FROM dmca_notices WHERE counter_token_hash = $1 AND state = 'taken_down'")
        .bind(hash_token(&c.token))
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(invalid)?;
    let name = text("name", Some(c.name), true)?.unwrap_or_default();
    let address = text("address", Some(c.address), true)?.unwrap_or_default();
    let statement = text("statement", Some(c.statement), true)?.unwrap_or_default();
    let signature = text("signature", Some(c.signature), true)?.unwrap_or_default();
    if !c.consent_to_jurisdiction {
        return Err(ApiError::validation("consent_to_jurisdiction", "A counter-notice needs this consent."));
    }
    let now = state.clock.unix_now();
    let restore_after = now + state.cfg.moderation.dmca.counter_notice_days * DAY;
    let id: String = n.get("id");
    let claimant: String = n.get("claimant_email");
    let mut tx = state.db.begin_write().await?;
    let done = sqlx::query(
        "UPDATE dmca_notices SET state = 'countered', counter_name = $1, counter_address = $2, counter_statement = $3, \
         counter_signature = $4, countered_at = $5, restore_after = $6, counter_token_hash = NULL \
         WHERE id = $7 AND state = 'taken_down'",
    )
    .bind(&name)
    .bind(&address)
    .bind(&statement)
    .bind(&signature)
    .bind(now)
    .bind(restore_after)
    .bind(&id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if done != 1 {
        return Err(invalid());
    }
    let body = format!(
        "Hello,\n\nThe uploader of the material named in your DMCA notice {id} sent a counter-notice:\n\n\
         Name: {name}\nAddress: {address}\nStatement: {statement}\nSignature: {signature}\n\n\
         Unless you tell us that you filed an action seeking a court order against them, we restore the material \
         on {when}.\n",
        when = iso(restore_after),
    );
    let mail = Outgoing {
        kind: "dmca_counter",
        to: &claimant,
        subject: format!("Counter-notice to your DMCA notice {id}"),
        body,
    };
    enqueue(&mut tx, mail, now).await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    Ok(json!({ "id": id, "state": "countered", "restore_after": iso(restore_after) }))
}

/// The claimant filed a court action: the image stays down.
pub async fn court_action(state: &AppState, notice_id: &str) -> ApiResult<Value> {
    let done = sqlx::query(
        "UPDATE dmca_notices SET state = 'court_action' WHERE id = $1 AND state IN ('taken_down', 'countered')",
    )
    .bind(notice_id)
    .execute(&state.db.pool)
    .await?
    .rows_affected();
    if done != 1 {
        return Err(ApiError::Conflict("Only a notice acted on and not yet restored can be marked.".into()));
    }
    Ok(json!({ "id": notice_id, "state": "court_action" }))
}

/// A notice, for operators.
pub async fn get(state: &AppState, notice_id: &str) -> ApiResult<Value> {
    let n = load(state, notice_id).await?;
    let t = |c: &str| n.get::<Option<i64>, _>(c).map(iso);
    Ok(json!({
        "id": n.get::<String, _>("id"), "object": "dmca_notice", "image_id": n.get::<String, _>("image_id"),
        "state": state_of(&n), "claimant_name": n.get::<String, _>("claimant_name"),
        "claimant_email": n.get::<String, _>("claimant_email"), "claimant_address": n.get::<String, _>("claimant_address"),
        "claimant_phone": n.get::<Option<String>, _>("claimant_phone"), "work": n.get::<String, _>("work"),
        "signature": n.get::<String, _>("signature"), "created_at": iso(n.get("created_at")),
        "taken_down_at": t("taken_down_at"), "countered_at": t("countered_at"), "restore_after": t("restore_after"),
        "counter_name": n.get::<Option<String>, _>("counter_name"),
        "counter_statement": n.get::<Option<String>, _>("counter_statement"),
    }))
}

/// An abuse report, for operators (the reporter's address only if they
/// left one, for answering them).
pub async fn get_report(state: &AppState, report_id: &str) -> ApiResult<Value> {
    let r = sqlx::query("SELECT id, image_id, reason, details, contact_email, created_at FROM reports WHERE id = $1")
        .bind(report_id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(json!({
        "id": r.get::<String, _>("id"), "object": "report", "image_id": r.get::<String, _>("image_id"),
        "reason": r.get::<String, _>("reason"), "details": r.get::<Option<String>, _>("details"),
        "contact_email": r.get::<Option<String>, _>("contact_email"), "created_at": iso(r.get("created_at")),
    }))
}

/// Restore the images of counter-noticed notices whose waiting period
/// ended (a sweep step); how many.
pub async fn restore_due(state: &AppState) -> Result<u64, String> {
    let now = state.clock.unix_now();
    let due = sqlx::query("SELECT id, image_id FROM dmca_notices WHERE state = 'countered' AND restore_after <= $1")
        .bind(now)
        .fetch_all(&state.db.pool)
        .await
        .map_err(|e| e.to_string())?;
    let mut restored = 0;
    for r in due {
        let (id, image): (String, String) = (r.get(0), r.get(1));
        let note = format!("DMCA counter-notice {id}: waiting period over");
        match lifecycle::apply(state, &image, &Actor::System("dmca"), &note, Edit::Restore).await {
            Ok(_) => {
                sqlx::query("UPDATE dmca_notices SET state = 'restored' WHERE id = $1 AND state = 'countered'")
                    .bind(&id)
                    .execute(&state.db.pool)
                    .await
                    .map_err(|e| e.to_string())?;
                restored += 1;
            }
            Err(e) => tracing::warn!(notice = %id, error = %e, "restoring after a counter-notice failed; will retry"),
        }
    }
    Ok(restored)
}

/// Whether `user_id` lost upload rights (repeat infringer).
pub async fn uploads_suspended(state: &AppState, user_ids: &[String]) -> ApiResult<bool> {
    for u in user_ids {
        let s: Option<i64> = sqlx::query("SELECT uploads_suspended_at FROM users WHERE id = $1")
            .bind(u)
            .fetch_optional(&state.db.pool)
            .await?
            .and_then(|r| r.get(0));
        if s.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}
