//! Reading an upload request: a multipart form (`file` and the owner's
//! fields) or an import's JSON body.

use axum::extract::{FromRequest, Multipart, Request};
use std::time::Duration;

use axum::http::header;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::images::fields::{check_caption, check_labels, check_metadata, json_field, parse_bool};
use crate::images::ttl;
use crate::images::upload::{too_large, Upload};
use crate::json::ApiJson;
use crate::AppState;

/// Longest text field accepted in a multipart form.
const MAX_TEXT_FIELD: usize = 64 * 1024;

/// Read the request: the URL to import if it is an import, and the
/// upload's fields (and file, for a multipart upload).
pub async fn read(
    state: &AppState,
    req: Request,
    max_file_bytes: u64,
    anonymous: bool,
) -> ApiResult<(Option<String>, Upload)> {
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let idle = Duration::from_secs(state.cfg.body_idle_timeout_secs);
    if content_type.starts_with("multipart/form-data") {
        let mp = Multipart::from_request(req, state).await.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        Ok((None, read_form(state, mp, max_file_bytes, anonymous, idle).await?))
    } else if content_type.starts_with("application/json") {
        // A small body (the JSON limit): one idle period for all of it.
        let ApiJson(body) = tokio::time::timeout(idle, ApiJson::<ImportBody>::from_request(req, state))
            .await
            .map_err(|_| ApiError::BodyTimeout)??;
        let (url, upload) = import_fields(body)?;
        Ok((Some(url), upload))
    } else {
        Err(ApiError::BadRequest(
            "Send the image as multipart/form-data with a `file` field, or JSON {\"url\": …}.".into(),
        ))
    }
}

/// Wait for the next piece of the body, at most `idle`.
async fn within<T, E>(
    idle: Duration,
    next: impl std::future::Future<Output = Result<T, E>>,
) -> ApiResult<Result<T, E>> {
    tokio::time::timeout(idle, next).await.map_err(|_| ApiError::BodyTimeout)
}

async fn read_form(
    state: &AppState,
    mut form: Multipart,
    max_file_bytes: u64,
    anonymous: bool,
    idle: Duration,
) -> ApiResult<Upload> {
    let bad =
        |e: axum::extract::multipart::MultipartError| ApiError::BadRequest(format!("Malformed multipart body: {e}"));
    let mut out = Upload::default();
    while let Some(mut field) = within(idle, form.next_field()).await?.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            out.filename = field.file_name().map(|f| f.chars().take(255).collect());
            let mut buf: Vec<u8> = Vec::new();
            // One wait for the room of the whole file, however many chunks.
            let deadline = state.body_budget.deadline();
            while let Some(chunk) = within(idle, field.chunk()).await?.map_err(bad)? {
                let needed = buf.len() + chunk.len();
                if needed as u64 > max_file_bytes {
                    // Stop reading here: the rest of the body is never buffered.
                    return Err(too_large(anonymous, max_file_bytes));
                }
                // The budget counts what is allocated, not only what is
                // filled: room for the buffer's next capacity before it grows.
                if needed > buf.capacity() {
                    let next = needed.max(buf.capacity() * 2).min(max_file_bytes as usize);
                    let room = state
                        .body_budget
                        .reserve_until((next - buf.capacity()) as u64, deadline)
                        .await
                        .map_err(|e| e.into_api("receive"))?;
                    out.file_budget.merge(room);
                    buf.reserve_exact(next - buf.len());
                }
                buf.extend_from_slice(&chunk);
            }
            out.file = Some(buf);
            continue;
        }
        // Text fields are read chunk by chunk and refused past the limit,
        // never held whole first.
        let mut raw = Vec::new();
        while let Some(chunk) = within(idle, field.chunk()).await?.map_err(bad)? {
            if raw.len() + chunk.len() > MAX_TEXT_FIELD {
                return Err(ApiError::validation(&name, "This field is too long."));
            }
            raw.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(raw).map_err(|_| ApiError::validation(&name, "This field is not UTF-8 text."))?;
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
fn import_fields(body: ImportBody) -> ApiResult<(String, Upload)> {
    let ttl = ttl::from_json(body.ttl.as_ref()).map_err(|m| ApiError::validation("ttl", m))?;
    let upload = Upload {
        caption: body.caption.as_deref().map(check_caption).transpose()?,
        public: body.public,
        ttl,
        labels: body.labels.map(check_labels).transpose()?.unwrap_or_default(),
        metadata: body.metadata.map(check_metadata).transpose()?.unwrap_or_default(),
        ..Upload::default()
    };
    Ok((body.url, upload))
}
