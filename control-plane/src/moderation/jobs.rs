//! Slow classification as leased jobs: an upload that waits for a slow
//! classifier (the HTTP hook) is a row in `classification_jobs`; a loop on
//! every control plane leases due jobs (one replica at a time per job),
//! runs the slow classifiers on the bytes in staging, and applies the
//! outcome through the image lifecycle. A classifier that fails is retried
//! with backoff up to `max_attempts`; then the hook's fail policy decides
//! (open: as if it said clean; closed: hold for review).

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyConnection, Row};

use super::classify::{self, Input, Kind, Verdict};
use super::config::{FailPolicy, Outcome};
use super::pipeline;
use crate::images::lifecycle::Actor;
use crate::images::queries;
use crate::AppState;

const LEASE_SECS: i64 = 120;
const CLASSIFIER: Actor = Actor::System("classifier");

/// Queue `image_id` for the slow classifiers (in the upload's transaction).
pub async fn enqueue(conn: &mut AnyConnection, image_id: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO classification_jobs (image_id, attempts, next_attempt_at, leased_until, created_at) VALUES ($1, 0, $2, NULL, $2)",
    )
    .bind(image_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Run what is due; how many jobs finished.
pub async fn run_due(state: &AppState) -> Result<usize, sqlx::Error> {
    let now = state.clock.unix_now();
    let due = sqlx::query(
        "SELECT image_id, attempts FROM classification_jobs \
         WHERE next_attempt_at <= $1 AND (leased_until IS NULL OR leased_until < $1) ORDER BY created_at LIMIT 20",
    )
    .bind(now)
    .fetch_all(&state.db.pool)
    .await?;
    let mut done = 0;
    for row in due {
        let image_id: String = row.get(0);
        let claimed = sqlx::query(
            "UPDATE classification_jobs SET leased_until = $1, attempts = attempts + 1 \
             WHERE image_id = $2 AND (leased_until IS NULL OR leased_until < $3)",
        )
        .bind(now + LEASE_SECS)
        .bind(&image_id)
        .bind(now)
        .execute(&state.db.pool)
        .await?
        .rows_affected();
        if claimed != 1 {
            continue; // another replica has it
        }
        let attempts = row.get::<i64, _>(1) + 1;
        match run_one(state, &image_id, attempts).await {
            Ok(true) => {
                sqlx::query("DELETE FROM classification_jobs WHERE image_id = $1")
                    .bind(&image_id)
                    .execute(&state.db.pool)
                    .await?;
                done += 1;
            }
            Ok(false) | Err(_) => {
                let delay = (10i64 << (attempts - 1).min(6)).min(600);
                sqlx::query(
                    "UPDATE classification_jobs SET leased_until = NULL, next_attempt_at = $1 WHERE image_id = $2",
                )
                .bind(now + delay)
                .bind(&image_id)
                .execute(&state.db.pool)
                .await?;
            }
        }
    }
    Ok(done)
}

/// Classify one upload; whether it is decided (false: try again later).
async fn run_one(state: &AppState, image_id: &str, attempts: i64) -> Result<bool, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let Some(row) = queries::fetch(&state.db, image_id).await.map_err(|e| err(&e))? else { return Ok(true) };
    if row.deleted_at.is_some() || row.status != crate::images::row::ImageStatus::Processing {
        return Ok(true); // deleted meanwhile, or decided by an operator
    }
    let bytes = state.stores.read_staging(&row.image_id()).await.map_err(|e| err(&e))?;
    let pixels = if row.format().transformable() {
        let limits = imgcdn_media::Limits { max_pixels: state.cfg.uploads.max_pixels, max_svg_bytes: usize::MAX };
        let cost = imgcdn_media::decode_cost(&bytes).map_err(|e| err(&e))?;
        let decoding = state.decode_budget.reserve(cost).await.map_err(|e| format!("{e:?}"))?;
        let copy = bytes.clone();
        state
            .decoders
            .run(move || {
                let _decoding = decoding;
                imgcdn_media::inspect_with_pixels(copy, &limits, classify::CLASSIFY_SIDE).ok().and_then(|(_, p)| p)
            })
            .await
            .map_err(|e| err(&e))?
    } else {
        None
    };
    let input = Input { bytes: Arc::new(bytes), content_type: row.content_type.clone(), pixels: pixels.map(Arc::new) };
    let slow = state.classifiers.run_slow(&input).await;
    let failed: Vec<&Verdict> = slow.iter().filter(|v| v.kind == Kind::Error).collect();
    let max_attempts = state.cfg.moderation.hook.as_ref().map_or(1, |h| i64::from(h.max_attempts));
    if !failed.is_empty() && attempts < max_attempts {
        tracing::warn!(%image_id, attempts, detail = ?failed[0].detail, "classifier failed; will retry");
        return Ok(false);
    }
    let now = state.clock.unix_now();
    let mut conn = state.db.pool.acquire().await.map_err(|e| err(&e))?;
    pipeline::save(&mut conn, image_id, &slow, now).await.map_err(|e| err(&e))?;
    drop(conn);
    let mut verdicts = pipeline::load(&state.db, image_id).await.map_err(|e| err(&e))?;
    verdicts.retain(|v| !slow.iter().any(|s| s.classifier == v.classifier));
    verdicts.extend(slow.iter().cloned());
    let classification = classify::combine(&verdicts);
    let fail_closed = state.cfg.moderation.hook.as_ref().is_some_and(|h| h.fail == FailPolicy::Closed);
    let outcome = if !failed.is_empty() && fail_closed {
        Outcome::Review
    } else {
        state.cfg.moderation.outcome(classification.as_deref().unwrap_or("clean"))
    };
    let note = match (&classification, failed.is_empty()) {
        (_, false) => format!(
            "classifier failed ({}); fail {}",
            failed[0].detail.clone().unwrap_or_default(),
            if fail_closed { "closed" } else { "open" }
        ),
        (Some(c), true) => format!("classified {c}"),
        (None, true) => "classified".to_string(),
    };
    super::decide_upload(state, image_id, &CLASSIFIER, &note, outcome, classification, classify::nsfw(&verdicts))
        .await
        .map_err(|e| err(&e))?;
    Ok(true)
}

/// Run due jobs whenever woken (an upload queued one) and every few
/// seconds (retries, jobs of other replicas), until `shutdown` flips.
pub async fn job_loop(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    if !state.classifiers.has_slow() {
        return;
    }
    loop {
        if let Err(e) = run_due(&state).await {
            tracing::warn!(error = %e, "classification jobs failed");
        }
        tokio::select! {
            _ = state.classify_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
