//! `POST /v1/images` (upload or import) and the legacy `POST /v1/upload`
//! and `POST /v1/import`.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::form;
use crate::auth::{cookie, ClientMeta, KeyAuth, SessionAuth, SESSION_COOKIE};
use crate::error::{ApiError, ApiResult};
use crate::images::idempotency;
use crate::images::row::ImageRow;
use crate::images::upload::{self, Upload, Uploader};
use crate::AppState;

impl FromRequestParts<AppState> for Uploader {
    type Rejection = ApiError;

    /// A key's team, a signed-in user's personal team, or anonymous.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (team_id, user_id) = if let Some(key) = parts.extensions.get::<KeyAuth>() {
            (key.team_id.clone(), None)
        } else if cookie(parts, SESSION_COOKIE).is_some() {
            let s = SessionAuth::from_request_parts(parts, state).await?;
            (crate::accounts::personal_team(&state.db, &s.user_id).await?, Some(s.user_id))
        } else {
            return Ok(Uploader::Anonymous);
        };
        let plan = crate::teams::plan_of(&state.db, &team_id).await?;
        Ok(Uploader::Team { team_id, user_id, plan })
    }
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

/// What the request asked for, hashed for `Idempotency-Key` comparison.
fn request_hash(url: Option<&str>, upload: &Upload) -> String {
    let fields = json!({
        "url": url,
        "file": upload.file.as_ref().map(|f| hex::encode(Sha256::digest(f))),
        "filename": upload.filename, "caption": upload.caption, "public": upload.public, "ttl": upload.ttl,
        "labels": upload.labels, "metadata": upload.metadata,
    });
    hex::encode(Sha256::digest(fields.to_string().as_bytes()))
}

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
    let anonymous = uploader.is_anonymous();
    let scope = uploader.idempotency_scope().to_string();
    // A JSON body is small: read it before the quota, so clients' write
    // probe (an empty JSON object) answers 422 for a write key whatever
    // the quota (a full App can still be reconnected to clean up). A
    // multipart body is read only once admitted.
    let json_body = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
    if !json_body {
        upload::admit(state, &uploader, client).await?;
    }
    let (url, upload) = form::read(state, req, uploader.plan(state).max_file_bytes, anonymous).await?;
    if json_body {
        upload::admit(state, &uploader, client).await?;
    }
    let mut claim = None;
    if let Some(key) = &key {
        match idempotency::claim(state, &scope, key, &request_hash(url.as_deref(), &upload)).await? {
            idempotency::Claim::Replay { status, body } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED);
                return Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response());
            }
            // Freed however this request ends, even if the client goes away.
            idempotency::Claim::Run => claim = Some(idempotency::ClaimGuard::new(state, &scope, key)),
        }
    }
    let result = async {
        let mut upload = upload;
        if let Some(url) = &url {
            upload::fetch_into(state, url, &mut upload, &uploader).await?;
        }
        upload::store(state, &uploader, upload, source).await
    }
    .await;
    match result {
        Ok(row) => {
            state.metrics.upload(row.status.as_str(), row.bytes as usize);
            let body = shape(&row, &state.cfg, anonymous);
            if let Some(claim) = claim {
                claim.finish(201, &body.to_string()).await?;
            }
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        Err(e) => {
            let outcome = if matches!(e, ApiError::MediaBlocked(_)) { "blocked" } else { "refused" };
            state.metrics.upload(outcome, 0);
            if let Some(claim) = claim {
                claim.release().await;
            }
            Err(e)
        }
    }
}
