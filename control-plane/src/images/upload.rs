//! Creating an image: who may upload how much ([`admit`]), fetching an
//! import ([`fetch_into`]), and storing what was received ([`store`]).
//!
//! The write path is: inspect the bytes (format from the bytes, bombs
//! refused from the header, metadata stripped), a row in `processing`, the
//! bytes and then the manifest in the public store, the row `ready`. A
//! crash in between leaves a `processing` row and perhaps an object without
//! manifest: nothing servable, counted once, finished or undone by the
//! sweep.

use std::sync::Arc;

use imgcdn_media::{decode_cost, inspect_with_pixels, InspectError, Limits};
use imgcdn_shared::storage::object_key;
use imgcdn_shared::{ImageId, Manifest};
use serde_json::{json, Map, Value};

use super::budget::Reserved;
use super::import::{self, FetchError, FetchPolicy};
use super::queries::{self, NewImage};
use super::row::{ImageRow, ImageStatus};
use super::store::Place;
use crate::client::ClientMeta;
use crate::config::Plan;
use crate::dates::DAY;
use crate::error::{ApiError, ApiResult};
use crate::moderation::classify::{self, Input, CLASSIFY_SIDE};
use crate::moderation::config::Outcome;
use crate::moderation::{blocklist, jobs, pipeline, queue};
use crate::retention::policy::{self, Class, Subject, Surface};
use crate::retention::{self, policy::Uploader as Kind};
use crate::AppState;

/// Who is uploading, decided before the body is read.
#[derive(Debug, Clone)]
pub enum Uploader {
    Anonymous,
    Team { team_id: String, user_id: Option<String>, plan: String },
}

impl Uploader {
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Uploader::Anonymous)
    }

    /// The plan whose limits apply.
    pub fn plan<'a>(&self, state: &'a AppState) -> &'a Plan {
        match self {
            Uploader::Anonymous => &state.cfg.plans.anonymous,
            Uploader::Team { plan, .. } => state.cfg.plans.get(plan),
        }
    }

    /// The team and the signed-in user uploading, if any.
    pub fn ids(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Uploader::Anonymous => (None, None),
            Uploader::Team { team_id, user_id, .. } => (Some(team_id.as_str()), user_id.as_deref()),
        }
    }

    /// Where `Idempotency-Key`s of this uploader live.
    pub fn idempotency_scope(&self) -> &str {
        match self {
            Uploader::Anonymous => "anonymous",
            Uploader::Team { team_id, .. } => team_id,
        }
    }
}

/// What an upload brings: the file and the owner's fields.
pub struct Upload {
    pub file: Option<Vec<u8>>,
    /// The room `file` takes in the body budget, given back with it.
    pub file_budget: Reserved,
    pub filename: Option<String>,
    pub caption: Option<String>,
    pub public: Option<bool>,
    pub ttl: Option<i64>,
    pub labels: Map<String, Value>,
    pub metadata: Map<String, Value>,
}

impl Default for Upload {
    fn default() -> Upload {
        Upload {
            file: None,
            file_budget: Reserved::none(),
            filename: None,
            caption: None,
            public: None,
            ttl: None,
            labels: Map::new(),
            metadata: Map::new(),
        }
    }
}

/// The error for a file over the plan's limit.
pub fn too_large(anonymous: bool, limit: u64) -> ApiError {
    ApiError::FileTooLarge {
        message: format!("The file is larger than {} MB, the limit of your plan.", limit / 1_000_000),
        anonymous,
    }
}

/// Before reading the body: anonymous uploads are rate-limited per client,
/// a team's uploads by its plan's image quota.
pub async fn admit(state: &AppState, uploader: &Uploader, client: &ClientMeta) -> ApiResult<()> {
    match uploader {
        Uploader::Anonymous => {
            let ip = client.ip.as_deref().unwrap_or("unknown");
            let up = &state.cfg.uploads;
            let limited = |s| ApiError::RateLimited { retry_after_secs: s };
            state.limiter.hit_client("anon-upload-hour", ip, up.anonymous_per_hour, 3600).map_err(limited)?;
            state.limiter.hit_client("anon-upload-day", ip, up.anonymous_per_day, DAY).map_err(limited)?;
        }
        Uploader::Team { team_id, user_id, .. } => {
            // Repeat infringers lose upload rights (the uploader, or for a
            // key the team's owners).
            let people = match user_id {
                Some(u) => vec![u.clone()],
                None => crate::teams::owners_of(&state.db, team_id).await?,
            };
            if crate::moderation::reports::uploads_suspended(state, &people).await? {
                return Err(ApiError::Forbidden(
                    "Uploading is suspended for this account after repeated copyright infringement.".into(),
                ));
            }
            // Unverified accounts upload a limited number of images (to
            // each team) until they verify their email.
            let mut conn = state.db.pool.acquire().await?;
            if retention::subject::uploader(&mut conn, Some(team_id), user_id.as_deref()).await? == Kind::Unverified {
                let max = state.cfg.uploads.unverified_max_uploads;
                let uploaded = queries::total_count(&state.db, team_id).await?;
                if uploaded >= max as i64 {
                    return Err(ApiError::QuotaExceeded {
                        message: format!(
                            "Accounts with an unverified email can upload {max} images. Verify your email to lift the limit."
                        ),
                        usage: json!({ "uploads": { "used": uploaded, "limit": max }, "verified": false }),
                    });
                }
            }
            drop(conn);
            if let Some(max) = uploader.plan(state).max_images {
                let used = queries::live_count(&state.db, team_id).await?;
                if used >= max as i64 {
                    return Err(plan_full(used, max));
                }
            }
        }
    }
    Ok(())
}

/// The plan's stored-image limit is reached.
fn plan_full(used: i64, max: u64) -> ApiError {
    ApiError::QuotaExceeded {
        message: format!("Your plan stores at most {max} images. Delete some or upgrade."),
        usage: json!({ "images": { "used": used, "limit": max } }),
    }
}

/// Fetch `url` (public addresses only, the plan's size limit, 30 s) into `upload`.
pub async fn fetch_into(state: &AppState, url: &str, upload: &mut Upload, uploader: &Uploader) -> ApiResult<()> {
    let plan = uploader.plan(state);
    let mut policy = FetchPolicy::new(plan.max_file_bytes);
    policy.allow = state.cfg.uploads.import_allow.clone();
    policy.timeout = std::time::Duration::from_secs(state.cfg.uploads.import_timeout_secs);
    match import::fetch_public(url, &policy).await {
        Ok(f) => {
            upload.file_budget =
                state.body_budget.reserve(f.bytes.len() as u64).await.map_err(|e| e.into_api("receive"))?;
            upload.filename =
                f.final_url.rsplit('/').next().filter(|n| !n.is_empty()).map(|n| n.chars().take(255).collect());
            upload.file = Some(f.bytes);
            Ok(())
        }
        Err(FetchError::TooLarge { limit }) => Err(too_large(uploader.is_anonymous(), limit)),
        // The source's fault: 502, or 504 when it was too slow.
        Err(
            e @ (FetchError::Timeout | FetchError::Status(_) | FetchError::Network(_) | FetchError::TooManyRedirects),
        ) => Err(ApiError::SourceFailed { timed_out: matches!(e, FetchError::Timeout), message: e.to_string() }),
        // A URL we refuse to fetch: the request's fault.
        Err(e) => Err(ApiError::FetchFailed(e.to_string())),
    }
}

/// Inspect, classify, then write. What classification decided sets where
/// the bytes go: published (a `processing` row, bytes and manifest,
/// `ready`), held (staging, `review`, an item in the review queue),
/// removed (recovery, `blocked`: answered `403 media_blocked`), or, with a
/// slow classifier configured, staging while its job runs (`processing`).
/// A match on the hash blocklist is refused before anything is stored.
/// `source` names the surface (`api`, `legacy_upload`, `legacy_import`).
pub async fn store(state: &AppState, uploader: &Uploader, upload: Upload, source: &str) -> ApiResult<ImageRow> {
    let anonymous = uploader.is_anonymous();
    let plan = uploader.plan(state);
    let file = upload.file.ok_or_else(|| ApiError::validation("file", "Attach the image as the `file` field."))?;
    if file.is_empty() {
        return Err(ApiError::validation("file", "The file is empty."));
    }
    let limits = Limits { max_pixels: state.cfg.uploads.max_pixels, max_svg_bytes: plan.max_svg_bytes as usize };
    // Reserve the decode's memory, read from the header, before decoding:
    // the decoder's buffers, and the copy of the file that stripping makes.
    let cost = decode_cost(&file).map_err(|e| ApiError::validation("file", e.to_string()))?;
    let decoding = state.decode_budget.reserve(cost + file.len() as u64).await.map_err(|e| e.into_api("process"))?;
    let (inspected, pixels, hashes) = state
        .decoders
        .run(move || {
            let _decoding = decoding;
            let (inspected, pixels) = inspect_with_pixels(file, &limits, CLASSIFY_SIDE)?;
            let hashes = pipeline::hashes(&inspected.bytes, pixels.as_ref());
            Ok::<_, InspectError>((inspected, pixels, hashes))
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e: InspectError| ApiError::validation("file", e.to_string()))?;
    if inspected.format == imgcdn_shared::Format::Svg && inspected.bytes.len() as u64 > plan.max_svg_bytes {
        return Err(too_large(anonymous, plan.max_svg_bytes));
    }
    let now = state.clock.unix_now();
    let team_id = match uploader {
        Uploader::Anonymous => None,
        Uploader::Team { team_id, .. } => Some(team_id.as_str()),
    };

    // Known-bad content is refused before a byte of it is stored.
    let moderation = &state.cfg.moderation;
    if let Some(m) = state.classifiers.blocklist.check(&state.db, &hashes, moderation.pdq_max_distance).await? {
        blocklist::record_match(&state.db, &m, source, team_id, now).await?;
        return Err(ApiError::MediaBlocked(
            "This image cannot be uploaded: it matches content removed for breaking our Acceptable Use Policy.".into(),
        ));
    }
    let format = inspected.format;
    let input = Input {
        bytes: Arc::new(inspected.bytes),
        content_type: format.content_type().to_string(),
        pixels: pixels.map(Arc::new),
    };
    let verdicts = state.classifiers.run_fast(&input).await;
    let classification = classify::combine(&verdicts);
    let verdict = classification.as_deref().map_or("unknown", |c| c.split(':').next().unwrap_or("unknown"));
    state.metrics.classifications.with_label_values(&[verdict]).inc();
    // With a slow classifier, the outcome waits for its job.
    let outcome =
        (!state.classifiers.has_slow()).then(|| moderation.outcome(classification.as_deref().unwrap_or("clean")));
    let (status, bytes_in) = match outcome {
        None => (ImageStatus::Processing, Place::Staging),
        Some(Outcome::Review) => (ImageStatus::Review, Place::Staging),
        Some(Outcome::Remove) => (ImageStatus::Blocked, Place::Recovery),
        Some(Outcome::Publish | Outcome::Restrict) => (ImageStatus::Processing, Place::Public),
    };

    // The window, from the retention policy; for an anonymous upload the
    // expiry shown now is also what a later recomputation may never pass.
    let requested = upload.ttl.map(|t| now + t);
    let expires_at = {
        let mut conn = state.db.pool.acquire().await?;
        let (team, user) = uploader.ids();
        let subject = Subject {
            uploader: retention::subject::uploader(&mut conn, team, user).await?,
            plan: plan.terms(),
            surface: Surface::parse(source).unwrap_or(Surface::Api),
            class: Class::of(classification.as_deref(), outcome == Some(Outcome::Restrict)),
            created_at: now,
            requested,
        };
        policy::expires_at(&state.cfg.retention, &subject)
    };
    let requested_expires_at = if anonymous { expires_at } else { requested };
    let reap_at = (bytes_in == Place::Recovery).then(|| now + state.cfg.retention.recovery_days * DAY);
    let public = upload.public.unwrap_or(true);
    let id = ImageId::generate();
    let sha256 = hashes.sha256.clone();
    // Choosing bytes to share and writing the row that shares them is one
    // transaction, with the source row locked: a concurrent delete of the
    // source either finishes first (it is not chosen) or sees this row.
    let mut tx = state.db.begin_write().await?;
    // The plan's limit, checked again with this insert's transaction so
    // concurrent uploads cannot pass it together (the check in `admit` only
    // saves reading a body that would be refused).
    if let (Uploader::Team { team_id, .. }, Some(max)) = (uploader, plan.max_images) {
        let used = queries::live_count_locked(&mut tx, state.db.backend, team_id).await?;
        if used >= max as i64 {
            return Err(plan_full(used, max));
        }
    }
    // The team's storage name is the first segment of the image's URL.
    let storage = match uploader {
        Uploader::Team { team_id, .. } => crate::storage_names::storage_name(&mut tx, team_id).await?,
        Uploader::Anonymous => None,
    };
    // Identical bytes already published in this team: show them, store nothing new.
    let shared_object = match (uploader, bytes_in) {
        (Uploader::Team { team_id, .. }, Place::Public) => {
            queries::same_bytes(&mut tx, state.db.backend, team_id, &sha256).await?.map(|r| r.stored_object())
        }
        _ => None,
    };
    let manifest = Manifest {
        content_type: format.content_type().to_string(),
        bytes: input.bytes.len() as u64,
        sha256: sha256.clone(),
        width: inspected.width,
        height: inspected.height,
        expires_at: expires_at.map(|t| time::OffsetDateTime::from_unix_timestamp(t).expect("valid time")),
        transformable: format.transformable(),
        object: shared_object.clone(),
        storage,
        shard_url: false,
    };
    let user_id = match uploader {
        Uploader::Anonymous => None,
        Uploader::Team { user_id, .. } => user_id.as_deref(),
    };
    queries::insert(
        &mut tx,
        NewImage {
            id: id.as_str(),
            team_id,
            uploaded_by: user_id,
            source,
            format: format.extension(),
            content_type: format.content_type(),
            width: inspected.width,
            height: inspected.height,
            bytes: input.bytes.len(),
            sha256: &sha256,
            filename: upload.filename,
            caption: upload.caption,
            public,
            labels: upload.labels,
            metadata: upload.metadata,
            created_at: now,
            expires_at,
            requested_expires_at,
            reap_at,
            object_key: shared_object.clone(),
            status,
            warned: outcome == Some(Outcome::Restrict),
            bytes_in,
            pdq: hashes.pdq.clone(),
            nsfw: classify::nsfw(&verdicts),
            classification: classification.clone(),
            storage,
        },
    )
    .await?;
    pipeline::save(&mut tx, id.as_str(), &verdicts, now).await?;
    match outcome {
        None => jobs::enqueue(&mut tx, id.as_str(), now).await?,
        // Held and removed uploads wait for an operator (who may overturn a removal).
        Some(Outcome::Review | Outcome::Remove) => {
            let category = classification.as_deref().and_then(|c| c.split_once(':')).map_or("unclear", |(_, c)| c);
            queue::open(&mut tx, id.as_str(), "classifier", category, None, now).await?;
        }
        _ => {}
    }
    tx.commit().await?;

    let bytes = Arc::try_unwrap(input.bytes).unwrap_or_else(|b| b.as_ref().clone());
    let stored = match (bytes_in, &shared_object, public) {
        (Place::Staging, _, _) => state.stores.put_staging(&id, bytes).await,
        (Place::Recovery, _, _) => {
            let reap_at = reap_at.unwrap_or(now);
            let reason = format!("classified:{}", classification.as_deref().unwrap_or("unknown"));
            state
                .stores
                .put_staging(&id, bytes)
                .await
                .and(state.stores.to_recovery(&id, &manifest, &object_key(&id), false, &reason, now, reap_at).await)
        }
        // A private image gets its bytes but no manifest: edges cannot serve it.
        (Place::Public, Some(_), true) => state.stores.publish_manifest(&id, &manifest).await,
        (Place::Public, Some(_), false) => Ok(()),
        (Place::Public, None, true) => state.stores.publish(&id, bytes, &manifest).await,
        (Place::Public, None, false) => state.stores.put_object(&id, bytes).await,
    };
    if let Err(e) = stored {
        // Nothing half-written stays: our own bytes (never shared ones) go.
        if shared_object.is_none() {
            let _ = state.stores.public.delete(&object_key(&id)).await;
            let _ = state.stores.staging.delete(&object_key(&id)).await;
        }
        let _ = queries::mark_failed(&state.db, id.as_str()).await;
        return Err(ApiError::UploadFailed(format!("store {id}: {e}")));
    }
    match outcome {
        Some(Outcome::Remove) => {
            let category = classification.as_deref().and_then(|c| c.split_once(':')).map_or("other", |(_, c)| c);
            if classification.as_deref().is_some_and(|c| c.starts_with("prohibited")) {
                blocklist::add_image(
                    &state.db,
                    &sha256,
                    hashes.pdq.as_deref(),
                    category,
                    &format!("classifier:{id}"),
                    now,
                )
                .await?;
            }
            return Err(ApiError::MediaBlocked(
                "This image cannot be published: it breaks our Acceptable Use Policy.".into(),
            ));
        }
        Some(Outcome::Publish | Outcome::Restrict) => {
            queries::finish(&state.db, id.as_str(), ImageStatus::Ready, now).await?;
        }
        Some(Outcome::Review) => {}
        None => state.classify_wake.notify_one(),
    }
    queries::fetch(&state.db, id.as_str()).await?.ok_or(ApiError::NotFound)
}
