//! `/v1/images…`, `/v1/usage`, the legacy `/v1/upload`, and the viewer page.
//!
//! An upload is read field by field; the file is counted while it streams
//! and the request is cut off as soon as it passes the plan's limit, so an
//! oversized body is never buffered whole. The write path is: a row in
//! `processing`, the bytes and then the manifest in the public store, the
//! row `ready`. A crash in between leaves a `processing` row and perhaps
//! an object without manifest: nothing servable, counted once.

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Multipart, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use base64::Engine;
use imgcdn_shared::{ImageId, Manifest};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::inspect::{self, InspectError, Limits};
use super::object::{ImageRow, COLUMNS};
use super::ttl;
use super::{fetch, idempotency};
use crate::config::Plan;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{cookie, cookie_in, ClientMeta, KeyAuth, Principal, SessionAuth, SESSION_COOKIE};
use crate::http::json::ApiJson;
use crate::AppState;

const MAX_CAPTION: usize = 1000;
const MAX_LABELS: usize = 50;
const MAX_METADATA_BYTES: usize = 8 * 1024;
const DAY: i64 = 86_400;
/// Whatever a surface advertises, anonymous uploads never outlive this.
const ANONYMOUS_CEILING_SECS: i64 = 730 * DAY;

/// Who is uploading, decided before the body is read.
pub enum Uploader {
    Anonymous,
    Team { team_id: String, user_id: Option<String>, plan: String },
}

impl FromRequestParts<AppState> for Uploader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (team_id, user_id) = if let Some(key) = parts.extensions.get::<KeyAuth>() {
            (key.team_id.clone(), None)
        } else if cookie(parts, SESSION_COOKIE).is_some() {
            let s = SessionAuth::from_request_parts(parts, state).await?;
            (personal_team(state, &s.user_id).await?, Some(s.user_id))
        } else {
            return Ok(Uploader::Anonymous);
        };
        let plan: String =
            sqlx::query("SELECT plan FROM teams WHERE id = $1").bind(&team_id).fetch_one(&state.db.pool).await?.get(0);
        Ok(Uploader::Team { team_id, user_id, plan })
    }
}

async fn personal_team(state: &AppState, user_id: &str) -> ApiResult<String> {
    Ok(sqlx::query("SELECT personal_team_id FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&state.db.pool)
        .await?
        .get(0))
}

/// The team a credential acts for: a key's team, or the user's personal team.
async fn caller_team(state: &AppState, who: &Principal) -> ApiResult<String> {
    match who {
        Principal::Key(k) => Ok(k.team_id.clone()),
        Principal::Session(s) => personal_team(state, &s.user_id).await,
    }
}

/// What the multipart form said.
#[derive(Default)]
struct UploadForm {
    file: Option<Vec<u8>>,
    filename: Option<String>,
    caption: Option<String>,
    public: Option<bool>,
    ttl: Option<i64>,
    labels: Map<String, Value>,
    metadata: Map<String, Value>,
}

fn parse_bool(field: &str, v: &str) -> ApiResult<bool> {
    match v.trim() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ApiError::validation(field, "Use true or false.")),
    }
}

/// Labels: a JSON object of up to 50 string values.
pub fn check_labels(v: Value) -> ApiResult<Map<String, Value>> {
    let Value::Object(map) = v else {
        return Err(ApiError::validation("labels", "Labels are a JSON object of strings."));
    };
    if map.len() > MAX_LABELS {
        return Err(ApiError::validation("labels", format!("At most {MAX_LABELS} labels.")));
    }
    for (k, v) in &map {
        let ok = !k.is_empty() && k.len() <= 64 && v.as_str().is_some_and(|s| s.len() <= 256);
        if !ok {
            return Err(ApiError::validation(
                "labels",
                "Label keys are 1–64 characters and values strings of at most 256.",
            ));
        }
    }
    Ok(map)
}

/// Metadata: a JSON object of at most 8 KiB.
pub fn check_metadata(v: Value) -> ApiResult<Map<String, Value>> {
    let Value::Object(map) = v else {
        return Err(ApiError::validation("metadata", "Metadata is a JSON object."));
    };
    if serde_json::to_vec(&map).map_or(0, |b| b.len()) > MAX_METADATA_BYTES {
        return Err(ApiError::validation("metadata", "Metadata is at most 8 KiB of JSON."));
    }
    Ok(map)
}

fn check_caption(c: &str) -> ApiResult<String> {
    if c.chars().count() > MAX_CAPTION {
        return Err(ApiError::validation("caption", format!("A caption is at most {MAX_CAPTION} characters.")));
    }
    Ok(c.to_string())
}

fn json_field(field: &str, text: &str) -> ApiResult<Value> {
    serde_json::from_str(text).map_err(|_| ApiError::validation(field, format!("{field} must be JSON.")))
}

fn too_large(anonymous: bool, limit: u64) -> ApiError {
    ApiError::FileTooLarge {
        message: format!("The file is larger than {} MB, the limit of your plan.", limit / 1_000_000),
        anonymous,
    }
}

async fn read_form(mut form: Multipart, plan: &Plan, anonymous: bool) -> ApiResult<UploadForm> {
    let bad =
        |e: axum::extract::multipart::MultipartError| ApiError::BadRequest(format!("Malformed multipart body: {e}"));
    let mut out = UploadForm::default();
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            out.filename = field.file_name().map(|f| f.chars().take(255).collect());
            let mut buf = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                if (buf.len() + chunk.len()) as u64 > plan.max_file_bytes {
                    // Stop reading here: the rest of the body is never buffered.
                    return Err(too_large(anonymous, plan.max_file_bytes));
                }
                buf.extend_from_slice(&chunk);
            }
            out.file = Some(buf);
            continue;
        }
        let text = field.text().await.map_err(bad)?;
        if text.len() > 64 * 1024 {
            return Err(ApiError::validation(&name, "This field is too long."));
        }
        match name.as_str() {
            "caption" => out.caption = Some(check_caption(&text)?),
            "public" => out.public = Some(parse_bool("public", &text)?),
            "ttl" => out.ttl = Some(ttl::parse(&text).map_err(|m| ApiError::validation("ttl", m))?),
            "labels" => out.labels = check_labels(json_field("labels", &text)?)?,
            "metadata" => out.metadata = check_metadata(json_field("metadata", &text)?)?,
            _ => {} // unknown fields are ignored
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
pub struct ImportBody {
    url: String,
    caption: Option<String>,
    public: Option<bool>,
    ttl: Option<Value>,
    labels: Option<Value>,
    metadata: Option<Value>,
}

/// The fields of an import request (the URL is fetched later, after the
/// idempotency check).
fn import_fields(body: ImportBody) -> ApiResult<(String, UploadForm)> {
    let ttl = ttl::from_json(body.ttl.as_ref()).map_err(|m| ApiError::validation("ttl", m))?;
    let form = UploadForm {
        caption: body.caption.as_deref().map(check_caption).transpose()?,
        public: body.public,
        ttl,
        labels: body.labels.map(check_labels).transpose()?.unwrap_or_default(),
        metadata: body.metadata.map(check_metadata).transpose()?.unwrap_or_default(),
        ..UploadForm::default()
    };
    Ok((body.url, form))
}

/// Fetch `url` (public addresses only, the plan's size limit, 30 s) into `form`.
async fn fetch_into(state: &AppState, url: &str, form: &mut UploadForm, plan: &Plan, anonymous: bool) -> ApiResult<()> {
    let mut policy = fetch::FetchPolicy::new(plan.max_file_bytes);
    policy.allow = state.cfg.uploads.import_allow.clone();
    match fetch::fetch_public(url, &policy).await {
        Ok(f) => {
            form.filename =
                f.final_url.rsplit('/').next().filter(|n| !n.is_empty()).map(|n| n.chars().take(255).collect());
            form.file = Some(f.bytes);
            Ok(())
        }
        Err(fetch::FetchError::TooLarge { limit }) => Err(too_large(anonymous, limit)),
        Err(e) => Err(ApiError::FetchFailed(e.to_string())),
    }
}

/// What the request asked for, hashed for `Idempotency-Key` comparison.
fn request_hash(url: Option<&str>, form: &UploadForm) -> String {
    let fields = json!({
        "url": url,
        "file": form.file.as_ref().map(|f| hex::encode(Sha256::digest(f))),
        "filename": form.filename, "caption": form.caption, "public": form.public, "ttl": form.ttl,
        "labels": form.labels, "metadata": form.metadata,
    });
    hex::encode(Sha256::digest(fields.to_string().as_bytes()))
}

/// `POST /v1/images`: multipart upload, or JSON `{url}` to import.
pub async fn create(
    State(state): State<AppState>,
    uploader: Uploader,
    client: ClientMeta,
    req: Request,
) -> ApiResult<Response> {
    create_with(&state, uploader, &client, req, "api", |row, cfg, _| row.json(cfg)).await
}

/// Legacy `POST /v1/import` `{url}`: an import with the older response shape.
pub async fn legacy_import(
    State(state): State<AppState>,
    uploader: Uploader,
    client: ClientMeta,
    req: Request,
) -> ApiResult<Response> {
    create_with(&state, uploader, &client, req, "legacy_import", ImageRow::legacy_json).await
}

/// Legacy `POST /v1/upload`: the same upload, the older response shape.
pub async fn legacy_upload(
    State(state): State<AppState>,
    uploader: Uploader,
    client: ClientMeta,
    req: Request,
) -> ApiResult<Response> {
    create_with(&state, uploader, &client, req, "legacy_upload", ImageRow::legacy_json).await
}

type Shape = fn(&ImageRow, &crate::config::Config, bool) -> Value;

/// Create an image and answer 201 with `shape`; with an `Idempotency-Key`,
/// a retry of the same request gets the same answer and creates nothing.
async fn create_with(
    state: &AppState,
    uploader: Uploader,
    client: &ClientMeta,
    req: Request,
    source: &str,
    shape: Shape,
) -> ApiResult<Response> {
    let key = match req.headers().get("idempotency-key") {
        Some(v) => Some(idempotency::parse_key(v.to_str().unwrap_or("\u{0}"))?),
        None => None,
    };
    let anonymous = matches!(uploader, Uploader::Anonymous);
    let scope = match &uploader {
        Uploader::Anonymous => "anonymous".to_string(),
        Uploader::Team { team_id, .. } => team_id.clone(),
    };
    let (plan, url, form) = receive(state, &uploader, client, req).await?;
    if let Some(key) = &key {
        if let idempotency::Claim::Replay { status, body } =
            idempotency::claim(state, &scope, key, &request_hash(url.as_deref(), &form)).await?
        {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED);
            return Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response());
        }
    }
    let result = async {
        let mut form = form;
        if let Some(url) = &url {
            fetch_into(state, url, &mut form, &plan, anonymous).await?;
        }
        store(state, &uploader, form, &plan, source).await
    }
    .await;
    match result {
        Ok(row) => {
            let body = shape(&row, &state.cfg, anonymous);
            if let Some(key) = &key {
                idempotency::finish(state, &scope, key, 201, &body.to_string()).await?;
            }
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        Err(e) => {
            if let Some(key) = &key {
                idempotency::release(state, &scope, key).await;
            }
            Err(e)
        }
    }
}

/// Check rate limits and quota, then read the request: (plan, URL to
/// import if it is an import, form fields and file).
async fn receive(
    state: &AppState,
    uploader: &Uploader,
    client: &ClientMeta,
    req: Request,
) -> ApiResult<(Plan, Option<String>, UploadForm)> {
    let anonymous = matches!(uploader, Uploader::Anonymous);
    let plan = match uploader {
        Uploader::Anonymous => state.cfg.plans.anonymous.clone(),
        Uploader::Team { plan, .. } => state.cfg.plans.get(plan).clone(),
    };
    if anonymous {
        let ip = client.ip.as_deref().unwrap_or("unknown");
        let up = &state.cfg.uploads;
        let limited = |s| ApiError::RateLimited { retry_after_secs: s };
        state.limiter.hit("anon-upload-hour", ip, up.anonymous_per_hour, 3600).map_err(limited)?;
        state.limiter.hit("anon-upload-day", ip, up.anonymous_per_day, DAY).map_err(limited)?;
    }
    if let Uploader::Team { team_id, .. } = uploader {
        if let Some(max) = plan.max_images {
            let used = live_images(state, team_id).await?;
            if used >= max as i64 {
                return Err(ApiError::QuotaExceeded {
                    message: format!("Your plan stores at most {max} images. Delete some or upgrade."),
                    usage: json!({ "images": { "used": used, "limit": max } }),
                });
            }
        }
    }
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mp = Multipart::from_request(req, state).await.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let form = read_form(mp, &plan, anonymous).await?;
        Ok((plan, None, form))
    } else if content_type.starts_with("application/json") {
        let ApiJson(body) = ApiJson::<ImportBody>::from_request(req, state).await?;
        let (url, form) = import_fields(body)?;
        Ok((plan, Some(url), form))
    } else {
        Err(ApiError::BadRequest(
            "Send the image as multipart/form-data with a `file` field, or JSON {\"url\": …}.".into(),
        ))
    }
}

/// Inspect, then write: a `processing` row, bytes and manifest, `ready`.
async fn store(
    state: &AppState,
    uploader: &Uploader,
    form: UploadForm,
    plan: &Plan,
    source: &str,
) -> ApiResult<ImageRow> {
    let anonymous = matches!(uploader, Uploader::Anonymous);
    let file = form.file.ok_or_else(|| ApiError::validation("file", "Attach the image as the `file` field."))?;
    if file.is_empty() {
        return Err(ApiError::validation("file", "The file is empty."));
    }
    let limits = Limits { max_pixels: state.cfg.uploads.max_pixels, max_svg_bytes: plan.max_svg_bytes as usize };
    let inspected = tokio::task::spawn_blocking(move || inspect::inspect(file, &limits))
        .await
        .map_err(|e| ApiError::Internal(format!("inspect task: {e}")))?
        .map_err(|e: InspectError| ApiError::validation("file", e.to_string()))?;
    if inspected.format == imgcdn_shared::Format::Svg && inspected.bytes.len() as u64 > plan.max_svg_bytes {
        return Err(too_large(anonymous, plan.max_svg_bytes));
    }

    let now = state.clock.unix_now();
    let mut expires_at = expiry(now, anonymous, form.ttl, plan);
    if let Uploader::Team { team_id, .. } = uploader {
        // Unverified accounts keep uploads for a limited window (API.md).
        let unverified = sqlx::query("SELECT 1 FROM users WHERE personal_team_id = $1 AND email_verified_at IS NULL")
            .bind(team_id)
            .fetch_optional(&state.db.pool)
            .await?
            .is_some();
        if unverified {
            let window = now + state.cfg.uploads.unverified_retention_days * DAY;
            expires_at = Some(expires_at.map_or(window, |e| e.min(window)));
        }
    }
    let public = form.public.unwrap_or(true);
    let id = ImageId::generate();
    let sha256 = hex::encode(Sha256::digest(&inspected.bytes));
    // Identical bytes already live in this team: show them, store nothing new.
    let shared_object = match uploader {
        Uploader::Team { team_id, .. } => sqlx::query(&format!(
            "SELECT {COLUMNS} FROM images WHERE team_id = $1 AND sha256 = $2 AND deleted_at IS NULL AND status = 'ready' \
             ORDER BY created_at, id LIMIT 1"
        ))
        .bind(team_id)
        .bind(&sha256)
        .fetch_optional(&state.db.pool)
        .await?
        .map(|r| ImageRow::from_row(&r).stored_object()),
        Uploader::Anonymous => None,
    };
    let manifest = Manifest {
        content_type: inspected.format.content_type().to_string(),
        bytes: inspected.bytes.len() as u64,
        sha256: sha256.clone(),
        width: inspected.width,
        height: inspected.height,
        expires_at: expires_at.map(|t| time::OffsetDateTime::from_unix_timestamp(t).expect("valid time")),
        transformable: inspected.format.transformable(),
        object: shared_object.clone(),
    };
    let (team_id, user_id) = match uploader {
        Uploader::Anonymous => (None, None),
        Uploader::Team { team_id, user_id, .. } => (Some(team_id.clone()), user_id.clone()),
    };
    sqlx::query(
        "INSERT INTO images (id, team_id, uploaded_by, source, format, content_type, width, height, bytes, sha256, filename, caption, \
         public, labels, metadata, status, created_at, published_at, expires_at, deleted_at, object_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 'processing', $16, NULL, $17, NULL, $18)",
    )
    .bind(id.as_str())
    .bind(team_id)
    .bind(user_id)
    .bind(source)
    .bind(inspected.format.extension())
    .bind(inspected.format.content_type())
    .bind(i64::from(inspected.width))
    .bind(i64::from(inspected.height))
    .bind(inspected.bytes.len() as i64)
    .bind(&sha256)
    .bind(form.filename)
    .bind(form.caption)
    .bind(i64::from(public))
    .bind(Value::Object(form.labels).to_string())
    .bind(Value::Object(form.metadata).to_string())
    .bind(now)
    .bind(expires_at)
    .bind(shared_object.clone())
    .execute(&state.db.pool)
    .await?;
    // A private image gets its bytes but no manifest: edges cannot serve it.
    let published = match (&shared_object, public) {
        (Some(_), true) => state.stores.publish_manifest(&id, &manifest).await,
        (Some(_), false) => Ok(()),
        (None, true) => state.stores.publish(&id, inspected.bytes, &manifest).await,
        (None, false) => state.stores.put_object(&id, inspected.bytes).await,
    };
    if let Err(e) = published {
        let _ = sqlx::query("UPDATE images SET status = 'failed' WHERE id = $1")
            .bind(id.as_str())
            .execute(&state.db.pool)
            .await;
        return Err(ApiError::UploadFailed(format!("publish {id}: {e}")));
    }
    sqlx::query("UPDATE images SET status = 'ready', published_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id.as_str())
        .execute(&state.db.pool)
        .await?;
    fetch(state, id.as_str()).await?.ok_or(ApiError::NotFound)
}

/// When an upload expires: anonymous uploads always (their window, shortened
/// by a ttl, never past the 2-year ceiling); others by ttl or plan retention.
pub fn expiry(now: i64, anonymous: bool, ttl: Option<i64>, plan: &Plan) -> Option<i64> {
    let window = plan.retention_days.map(|d| d * DAY);
    if anonymous {
        let window = window.unwrap_or(ANONYMOUS_CEILING_SECS).min(ANONYMOUS_CEILING_SECS);
        return Some(now + ttl.map_or(window, |t| t.min(window)));
    }
    match (ttl, window) {
        (Some(t), Some(w)) => Some(now + t.min(w)),
        (Some(t), None) => Some(now + t),
        (None, Some(w)) => Some(now + w),
        (None, None) => None,
    }
}

async fn live_images(state: &AppState, team_id: &str) -> ApiResult<i64> {
    Ok(sqlx::query("SELECT COUNT(*) FROM images WHERE team_id = $1 AND deleted_at IS NULL AND status <> 'failed'")
        .bind(team_id)
        .fetch_one(&state.db.pool)
        .await?
        .get(0))
}

pub(crate) async fn fetch(state: &AppState, id: &str) -> ApiResult<Option<ImageRow>> {
    Ok(sqlx::query(&format!("SELECT {COLUMNS} FROM images WHERE id = $1"))
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?
        .map(|r| ImageRow::from_row(&r)))
}

/// A live image of the caller's team, or 404 (also for other teams' images).
async fn owned(state: &AppState, team: &str, id: &str) -> ApiResult<ImageRow> {
    match fetch(state, id).await? {
        Some(row) if row.team_id.as_deref() == Some(team) && row.deleted_at.is_none() => Ok(row),
        _ => Err(ApiError::NotFound),
    }
}

/// `GET /v1/images/{id}`
pub async fn get(State(state): State<AppState>, who: Principal, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let team = caller_team(&state, &who).await?;
    let row = owned(&state, &team, &id).await?;
    if row.status == "failed" {
        return Err(ApiError::MediaFailed);
    }
    Ok(Json(row.json(&state.cfg)))
}

fn encode_cursor(created_at: i64, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{created_at}:{id}"))
}

fn decode_cursor(c: &str) -> ApiResult<(i64, String)> {
    let bad = || ApiError::validation("cursor", "This cursor is not one we gave out.");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (t, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((t.parse().map_err(|_| bad())?, id.to_string()))
}

/// `GET /v1/images?limit=&cursor=&label[k]=v` or `?ids=a,b,c`.
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let team = caller_team(&state, &who).await?;
    if let Some(ids) = q.get("ids") {
        let ids: Vec<&str> = ids.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if ids.len() > 50 {
            return Err(ApiError::validation("ids", "At most 50 ids at a time."));
        }
        let mut data = Vec::new();
        for id in ids {
            if let Ok(row) = owned(&state, &team, id).await {
                if row.status == "ready" {
                    data.push(row.json(&state.cfg));
                }
            }
        }
        return Ok(Json(
            json!({ "object": "list", "data": data, "pagination": { "next_cursor": null, "has_more": false } }),
        ));
    }
    let limit: usize = match q.get("limit") {
        Some(l) => l
            .parse()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::validation("limit", "limit is 1 to 100."))?,
        None => 20,
    };
    let labels: Vec<(String, String)> = q
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("label[").and_then(|k| k.strip_suffix(']')).map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    let mut after = q.get("cursor").map(|c| decode_cursor(c)).transpose()?;
    let mut data = Vec::new();
    let mut has_more = false;
    let mut last: Option<(i64, String)> = None;
    // Label filters are applied here, not in SQL (portable): read pages until the page is full.
    'pages: loop {
        let rows = match &after {
            Some((t, id)) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM images WHERE team_id = $1 AND deleted_at IS NULL AND status = 'ready' \
                 AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT 200"
                ))
                .bind(&team)
                .bind(*t)
                .bind(id)
                .fetch_all(&state.db.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM images WHERE team_id = $1 AND deleted_at IS NULL AND status = 'ready' \
                 ORDER BY created_at DESC, id DESC LIMIT 200"
                ))
                .bind(&team)
                .fetch_all(&state.db.pool)
                .await?
            }
        };
        let n = rows.len();
        for r in rows {
            let row = ImageRow::from_row(&r);
            after = Some((row.created_at, row.id.clone()));
            if !labels.iter().all(|(k, v)| row.labels.get(k).and_then(Value::as_str) == Some(v)) {
                continue;
            }
            if data.len() == limit {
                has_more = true;
                break 'pages;
            }
            last = Some((row.created_at, row.id.clone()));
            data.push(row.json(&state.cfg));
        }
        if n < 200 {
            break;
        }
    }
    let next = if has_more { last.map(|(t, id)| encode_cursor(t, &id)) } else { None };
    Ok(Json(json!({ "object": "list", "data": data, "pagination": { "next_cursor": next, "has_more": has_more } })))
}

#[derive(Deserialize)]
pub struct PatchBody {
    caption: Option<Option<String>>,
    public: Option<bool>,
    labels: Option<Value>,
    metadata: Option<Value>,
    ttl: Option<Value>,
}

/// `PATCH /v1/images/{id}`: caption, public, labels, metadata, ttl.
pub async fn patch(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatchBody>,
) -> ApiResult<Json<Value>> {
    let team = caller_team(&state, &who).await?;
    let row = owned(&state, &team, &id).await?;
    let caption = match body.caption {
        Some(Some(c)) => Some(check_caption(&c)?),
        Some(None) => None,
        None => row.caption.clone(),
    };
    let labels = body.labels.map(check_labels).transpose()?.unwrap_or(row.labels.clone());
    let metadata = body.metadata.map(check_metadata).transpose()?.unwrap_or(row.metadata.clone());
    let now = state.clock.unix_now();
    // Absent keeps the expiry; a ttl sets a new one from now. (PATCH cannot
    // remove an expiry: that could lift a plan's retention window.)
    let expires_at = match ttl::from_json(body.ttl.as_ref()).map_err(|m| ApiError::validation("ttl", m))? {
        Some(secs) => Some(now + secs),
        None => row.expires_at,
    };
    let public = body.public.unwrap_or(row.public);
    let mut tx = state.db.pool.begin().await?;
    sqlx::query(
        "UPDATE images SET caption = $1, labels = $2, metadata = $3, public = $4, expires_at = $5 WHERE id = $6",
    )
    .bind(caption)
    .bind(Value::Object(labels).to_string())
    .bind(Value::Object(metadata).to_string())
    .bind(i64::from(public))
    .bind(expires_at)
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    let change = if public != row.public {
        // The manifest first (outside the log's lock), then the log entry.
        publish_before_commit(&state, &mut tx, &id).await?;
        let note = if public { "made public" } else { "made private" };
        crate::sync::record(&mut tx, state.db.backend, &id, &who.actor(), note, now).await?
    } else {
        None
    };
    tx.commit().await?;
    if let Some(c) = change {
        state.sync.advance(c.seq);
    }
    let updated = fetch(&state, &id).await?.ok_or(ApiError::NotFound)?;
    if public != row.public || expires_at != row.expires_at {
        // Publish or withdraw the manifest; a new expiry goes into it,
        // since the edge enforces expiry from the manifest.
        reconcile_publication(&state, &updated).await?;
    }
    Ok(Json(updated.json(&state.cfg)))
}

/// Within a transaction that made `id` servable again (public, restored),
/// write its manifest before the change commits: an edge told "restore"
/// must find the manifest, or it would answer (and remember) 404. Making an
/// image less visible goes the other way: the log first (edges stop at
/// once), then [`reconcile_publication`] withdraws the manifest.
pub(crate) async fn publish_before_commit(state: &AppState, tx: &mut sqlx::AnyConnection, id: &str) -> ApiResult<()> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM images WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| ImageRow::from_row(&r));
    match row {
        // Only the publishing direction here; withdrawing waits for the commit.
        Some(row) if row.should_be_published(state.clock.unix_now()) => reconcile_publication(state, &row).await,
        _ => Ok(()),
    }
}

/// Make the public store agree with what may be served: the manifest of a
/// ready image that is public, not taken down and not expired is written
/// (with its current expiry); otherwise it is withdrawn (the bytes stay, so
/// a restore or `public: true` can bring it back). Deleted images are left
/// to [`remove`], which moves them to the recovery store.
pub(crate) async fn reconcile_publication(state: &AppState, row: &ImageRow) -> ApiResult<()> {
    if row.deleted_at.is_some() || row.status != "ready" {
        return Ok(());
    }
    let id = row.image_id();
    let done = if row.should_be_published(state.clock.unix_now()) {
        state.stores.publish_manifest(&id, &row.manifest()).await
    } else {
        state.stores.withdraw(&id).await
    };
    done.map_err(|e| ApiError::Internal(format!("manifest of {id}: {e}")))
}

/// Take an image off public serving and into the recovery store. Its bytes
/// leave the public store only if no other live image shows them.
pub(crate) async fn remove(state: &AppState, row: &ImageRow, reason: &str, actor: &str) -> ApiResult<()> {
    let now = state.clock.unix_now();
    // Mark first, and log the change for the edges in the same transaction:
    // if the store step fails, a retry (or the sweep) finds the row.
    let mut tx = state.db.pool.begin().await?;
    sqlx::query("UPDATE images SET deleted_at = COALESCE(deleted_at, $1) WHERE id = $2")
        .bind(now)
        .bind(&row.id)
        .execute(&mut *tx)
        .await?;
    let change = crate::sync::record(&mut tx, state.db.backend, &row.id, actor, reason, now).await?;
    tx.commit().await?;
    if let Some(c) = change {
        state.sync.advance(c.seq);
    }
    let object = row.stored_object();
    let others: i64 = sqlx::query(
        "SELECT COUNT(*) FROM images WHERE deleted_at IS NULL AND status <> 'failed' AND id <> $1 \
         AND (object_key = $2 OR ('objects/' || id) = $2)",
    )
    .bind(&row.id)
    .bind(&object)
    .fetch_one(&state.db.pool)
    .await?
    .get(0);
    let reap_at = now + state.cfg.uploads.recovery_days * DAY;
    state
        .stores
        .unpublish(&row.image_id(), &row.manifest(), &object, others == 0, reason, now, reap_at)
        .await
        .map_err(|e| ApiError::Internal(format!("unpublish {}: {e}", row.id)))
}

/// `DELETE /v1/images/{id}`
pub async fn delete(State(state): State<AppState>, who: Principal, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let team = caller_team(&state, &who).await?;
    let row = owned(&state, &team, &id).await?;
    remove(&state, &row, "deleted", &who.actor()).await?;
    Ok(Json(json!({ "id": id, "object": "image", "deleted": true })))
}

#[derive(Deserialize)]
pub struct BatchBody {
    ids: Vec<String>,
}

/// `DELETE /v1/images/batch` `{ids}` (≤ 100; deleting twice is not an error).
pub async fn delete_batch(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<BatchBody>,
) -> ApiResult<Json<Value>> {
    if body.ids.is_empty() || body.ids.len() > 100 {
        return Err(ApiError::validation("ids", "Send 1 to 100 ids."));
    }
    let team = caller_team(&state, &who).await?;
    let (mut data, mut errors) = (Vec::new(), Vec::new());
    for id in &body.ids {
        match fetch(&state, id).await? {
            Some(row) if row.team_id.as_deref() == Some(team.as_str()) => {
                remove(&state, &row, "deleted", &who.actor()).await?;
                data.push(json!({ "id": id, "object": "image", "deleted": true }));
            }
            _ => errors.push(json!({ "id": id, "error": { "type": "invalid_request_error", "code": "not_found", "message": "not found" } })),
        }
    }
    Ok(Json(json!({ "object": "batch_result", "data": data, "errors": errors })))
}

/// `GET /v1/usage`
pub async fn usage(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    let team = caller_team(&state, &who).await?;
    let plan_name: String =
        sqlx::query("SELECT plan FROM teams WHERE id = $1").bind(&team).fetch_one(&state.db.pool).await?.get(0);
    let plan = state.cfg.plans.get(&plan_name);
    let images: i64 = live_images(&state, &team).await?;
    // Storage counts each stored object once, however many images show it.
    let bytes: i64 = sqlx::query(
        "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM (SELECT DISTINCT COALESCE(object_key, 'objects/' || id) AS k, bytes \
         FROM images WHERE team_id = $1 AND deleted_at IS NULL AND status <> 'failed') AS stored",
    )
    .bind(&team)
    .fetch_one(&state.db.pool)
    .await?
    .get(0);
    let total: i64 = sqlx::query("SELECT COUNT(*) FROM images WHERE team_id = $1")
        .bind(&team)
        .fetch_one(&state.db.pool)
        .await?
        .get(0);
    Ok(Json(json!({
        "object": "usage",
        "plan": plan_name,
        "limits": {
            "images": { "used": images, "limit": plan.max_images },
            "storage": { "used_bytes": bytes },
            "max_file_bytes": plan.max_file_bytes,
            "max_svg_bytes": plan.max_svg_bytes,
            "retention_days": plan.retention_days,
        },
        "totals": { "uploaded": total, "stored": images },
    })))
}

/// `GET /{id}`: the viewer page. Private images are 404 for anyone but
/// members of the owning team.
pub async fn viewer(State(state): State<AppState>, Path(id): Path<String>, headers: axum::http::HeaderMap) -> Response {
    let not_found = || {
        (StatusCode::NOT_FOUND, Html("<!doctype html><title>Not found</title><h1>Not found</h1>".to_string()))
            .into_response()
    };
    if id.parse::<ImageId>().is_err() {
        return not_found();
    }
    let row = match fetch(&state, &id).await {
        Ok(Some(r))
            if r.deleted_at.is_none()
                && r.status == "ready"
                && r.expires_at.is_none_or(|e| e > state.clock.unix_now()) =>
        {
            r
        }
        Ok(_) => return not_found(),
        Err(e) => return e.into_response(),
    };
    if !row.public {
        let session = match cookie_in(&headers, SESSION_COOKIE) {
            Some(t) => crate::accounts::sessions::lookup(&state, t).await.ok().flatten(),
            None => None,
        };
        let member = match (session, &row.team_id) {
            (Some(s), Some(team)) => {
                crate::teams::require_role(&state, team, &s.user_id, crate::teams::Role::Member).await.is_ok()
            }
            _ => false,
        };
        if !member {
            return not_found();
        }
    }
    if row.takedown_reason.is_some() {
        let page = "<!doctype html><title>Unavailable</title><h1>This image is unavailable for legal reasons</h1>\
                    <p><a href=\"/legal/takedowns\">Why?</a></p>";
        return (StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS, Html(page.to_string())).into_response();
    }
    let esc = crate::http::html_escape;
    let caption = row.caption.clone().unwrap_or_default();
    let url = row.url(&state.cfg);
    let robots = if row.public && !row.warned { "" } else { "<meta name=\"robots\" content=\"noindex\">" };
    let figure = format!(
        "<figure><img src=\"{url}\" width=\"{w}\" height=\"{h}\" alt=\"{title}\"><figcaption>{cap}</figcaption></figure>",
        url = esc(&url),
        w = row.width,
        h = row.height,
        title = esc(if caption.is_empty() { "Image" } else { &caption }),
        cap = esc(&caption),
    );
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"referrer\" content=\"no-referrer\">{robots}<title>{title}</title>\
         <meta property=\"og:type\" content=\"website\"><meta property=\"og:title\" content=\"{title}\">\
         {preview}<meta property=\"og:url\" content=\"{page}\"></head>\
         <body><main>{figure}</main></body></html>",
        // Link unfurls show the image itself: not for a restricted one.
        preview = if row.warned {
            String::new()
        } else {
            format!(
                "<meta property=\"og:image\" content=\"{url}\"><meta property=\"og:image:width\" content=\"{w}\">\
                 <meta property=\"og:image:height\" content=\"{h}\"><meta name=\"twitter:card\" content=\"summary_large_image\">",
                url = esc(&url),
                w = row.width,
                h = row.height,
            )
        },
        figure = if row.warned {
            // Restricted: an interstitial the visitor clicks through (no script needed).
            format!(
                "<details class=\"content-warning\"><summary>This image may be sensitive. Show it</summary>{figure}</details>"
            )
        } else {
            figure
        },
        title = esc(if caption.is_empty() { "Image" } else { &caption }),
        page = esc(&row.page_url(&state.cfg)),
    ))
    .into_response()
}
